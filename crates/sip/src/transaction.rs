//! RFC 3261 §17 transaction state machines, sans-IO.
//!
//! A transaction never reads a clock: every entry point takes `now`, and the owner asks
//! [`ClientTx::poll_timeout`] / [`ServerTx::poll_timeout`] when to call `poll` next. That keeps
//! the timer tables testable with a fake clock and keeps all state in one task.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Timer base values (RFC 3261 §17.1.1.1 and Table 4). Configurable because networks with
/// long RTTs or tests want other values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; retransmission base and `64*T1` timeouts.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum duration a message remains in the network.
    pub t4: Duration,
    /// Proxy INVITE timer C (§16.6 step 11): how long a ringing INVITE may wait for a
    /// final response; restarted by every provisional. Must exceed 3 minutes.
    pub timer_c: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl TimerConfig {
    fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// Client transaction states (Figures 5 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard (INVITE "Calling", non-INVITE "Trying").
    Calling,
    Proceeding,
    Completed,
    /// RFC 6026: a 2xx arrived; 2xx retransmissions are still passed up for 64*T1.
    Accepted,
    Terminated,
}

/// What the transaction user must do with a response fed to [`ClientTx::handle_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// Pass the response up.
    Deliver,
    /// Pass it up, and (INVITE, non-2xx final) build the ACK, send it and hand it to
    /// [`ClientTx::set_ack`] so that retransmitted finals are answered with the same ACK.
    DeliverAndAck,
    /// A retransmitted non-2xx final: send this ACK again, do not pass up.
    ResendAck(Bytes),
    /// Retransmission or late response: drop it.
    Absorb,
}

/// Timer events of a client transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Timer A / E: send the request again.
    Retransmit(Bytes),
    /// Timer B / F: no final response; the TU should act as if a 408 arrived.
    TimedOut,
    /// Timer D / K, or after a 2xx: forget the transaction.
    Terminated,
}

/// An INVITE or non-INVITE client transaction (RFC 3261 §17.1).
#[derive(Debug)]
pub struct ClientTx {
    invite: bool,
    reliable: bool,
    timers: TimerConfig,
    state: ClientState,
    request: Bytes,
    ack: Option<Bytes>,
    /// Timer A (INVITE) or E (non-INVITE): next retransmission and current interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer B or F.
    timeout: Option<Instant>,
    /// Timer D or K.
    linger: Option<Instant>,
}

impl ClientTx {
    /// Starts the transaction; the caller sends `request` once right away.
    pub fn new(
        invite: bool,
        request: Bytes,
        reliable: bool,
        timers: TimerConfig,
        now: Instant,
    ) -> Self {
        let retransmit = (!reliable).then_some((now + timers.t1, timers.t1));
        Self {
            invite,
            reliable,
            timers,
            state: ClientState::Calling,
            request,
            ack: None,
            retransmit,
            timeout: Some(now + timers.t64()),
            linger: None,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// The request as first sent (for building CANCEL/ACK).
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// Feeds a response whose top Via matched this transaction.
    pub fn handle_response(&mut self, status: u16, now: Instant) -> ClientAction {
        let provisional = status < 200;
        match (self.invite, self.state) {
            (_, ClientState::Terminated) => ClientAction::Absorb,
            (true, ClientState::Calling | ClientState::Proceeding) => {
                if provisional {
                    self.state = ClientState::Proceeding;
                    self.retransmit = None; // A stops on any provisional (§17.1.1.2)
                    // B only runs in Calling; from here the proxy's Timer C guards the
                    // wait, restarted by each provisional.
                    self.timeout = Some(now + self.timers.timer_c);
                    ClientAction::Deliver
                } else if status < 300 {
                    // 2xx: RFC 6026 Accepted, so 2xx retransmissions still reach the TU.
                    self.state = ClientState::Accepted;
                    self.retransmit = None;
                    self.timeout = None;
                    self.linger = Some(now + self.timers.t64());
                    ClientAction::Deliver
                } else {
                    self.state = ClientState::Completed;
                    self.retransmit = None;
                    self.timeout = None;
                    self.linger = Some(
                        now + if self.reliable {
                            Duration::ZERO
                        } else {
                            // Timer D: at least 32 s for unreliable transports.
                            Duration::from_secs(32).max(self.timers.t64())
                        },
                    );
                    ClientAction::DeliverAndAck
                }
            }
            (_, ClientState::Accepted) => {
                if (200..300).contains(&status) {
                    ClientAction::Deliver
                } else {
                    ClientAction::Absorb
                }
            }
            (true, ClientState::Completed) => match (&self.ack, status >= 300) {
                (Some(ack), true) => ClientAction::ResendAck(ack.clone()),
                _ => ClientAction::Absorb,
            },
            (false, ClientState::Calling | ClientState::Proceeding) => {
                if provisional {
                    self.state = ClientState::Proceeding;
                    ClientAction::Deliver
                } else {
                    self.state = ClientState::Completed;
                    self.retransmit = None;
                    self.timeout = None;
                    self.linger = Some(
                        now + if self.reliable {
                            Duration::ZERO
                        } else {
                            self.timers.t4
                        },
                    );
                    ClientAction::Deliver
                }
            }
            (false, ClientState::Completed) => ClientAction::Absorb,
        }
    }

    /// Remembers the ACK sent for a non-2xx final response.
    pub fn set_ack(&mut self, ack: Bytes) {
        self.ack = Some(ack);
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
    }

    /// The earliest instant at which [`ClientTx::poll`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.retransmit.map(|(t, _)| t), self.timeout, self.linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires due timers, one event per call; call until it returns `None`.
    pub fn poll(&mut self, now: Instant) -> Option<ClientEvent> {
        if let Some(t) = self.timeout
            && t <= now
        {
            self.terminate();
            return Some(ClientEvent::TimedOut);
        }
        if let Some(t) = self.linger
            && t <= now
        {
            self.terminate();
            return Some(ClientEvent::Terminated);
        }
        if let Some((t, interval)) = self.retransmit
            && t <= now
        {
            let next = if self.invite {
                interval * 2 // Timer A doubles without bound (B stops it)
            } else if self.state == ClientState::Proceeding {
                self.timers.t2 // Timer E in Proceeding fires every T2
            } else {
                (interval * 2).min(self.timers.t2)
            };
            self.retransmit = Some((now + next, next));
            return Some(ClientEvent::Retransmit(self.request.clone()));
        }
        None
    }
}

/// Server transaction states (Figures 7 and 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE "Trying": request received, no response sent.
    Trying,
    Proceeding,
    Completed,
    /// INVITE only: ACK for the non-2xx final received.
    Confirmed,
    /// INVITE only (RFC 6026): a 2xx was sent; INVITE retransmissions are absorbed for
    /// 64*T1 instead of creating a new transaction.
    Accepted,
    Terminated,
}

/// Timer events of a server transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Timer G: send the final response again.
    Retransmit(Bytes),
    /// Timer H: the ACK never came.
    TimedOut,
    /// Timer I / J, or after a 2xx: forget the transaction.
    Terminated,
}

/// An INVITE or non-INVITE server transaction (RFC 3261 §17.2).
#[derive(Debug)]
pub struct ServerTx {
    invite: bool,
    reliable: bool,
    timers: TimerConfig,
    state: ServerState,
    last_response: Option<Bytes>,
    last_status: u16,
    /// Timer G: next retransmission and interval.
    retransmit: Option<(Instant, Duration)>,
    /// Timer H.
    timeout: Option<Instant>,
    /// Timer I or J.
    linger: Option<Instant>,
}

impl ServerTx {
    pub fn new(invite: bool, reliable: bool, timers: TimerConfig) -> Self {
        Self {
            invite,
            reliable,
            timers,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            last_status: 0,
            retransmit: None,
            timeout: None,
            linger: None,
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// Status of the last response sent, 0 if none.
    pub fn last_status(&self) -> u16 {
        self.last_status
    }

    /// A retransmission of the request arrived: the response to resend, if any.
    pub fn handle_retransmission(&self) -> Option<Bytes> {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.last_response.clone(),
            _ => None,
        }
    }

    /// ACK matching this INVITE transaction. Returns true if it was absorbed here.
    pub fn handle_ack(&mut self, now: Instant) -> bool {
        match self.state {
            ServerState::Completed if self.invite => {
                self.state = ServerState::Confirmed;
                self.retransmit = None;
                self.timeout = None;
                self.linger = Some(
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    },
                );
                true
            }
            ServerState::Confirmed => true,
            _ => false,
        }
    }

    /// Records a response the TU sends. Returns false (and the caller must not send) when
    /// the transaction cannot send it any more (a final was already sent).
    pub fn send_response(&mut self, status: u16, response: Bytes, now: Instant) -> bool {
        match self.state {
            ServerState::Trying | ServerState::Proceeding => {}
            _ => return false,
        }
        self.last_status = status;
        self.last_response = Some(response);
        if status < 200 {
            self.state = ServerState::Proceeding;
        } else if self.invite && status < 300 {
            // 2xx: the TU retransmits end to end (§17.2.1); RFC 6026 Accepted state.
            self.state = ServerState::Accepted;
            self.linger = Some(now + self.timers.t64());
        } else if self.invite {
            self.state = ServerState::Completed;
            if !self.reliable {
                self.retransmit = Some((now + self.timers.t1, self.timers.t1));
            }
            self.timeout = Some(now + self.timers.t64());
        } else {
            self.state = ServerState::Completed;
            self.linger = Some(
                now + if self.reliable {
                    Duration::ZERO
                } else {
                    self.timers.t64() // Timer J
                },
            );
        }
        true
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.retransmit.map(|(t, _)| t), self.timeout, self.linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires due timers, one event per call; call until it returns `None`.
    pub fn poll(&mut self, now: Instant) -> Option<ServerEvent> {
        if let Some(t) = self.linger
            && t <= now
        {
            self.state = ServerState::Terminated;
            self.linger = None;
            return Some(ServerEvent::Terminated);
        }
        if let Some(t) = self.timeout
            && t <= now
        {
            self.state = ServerState::Terminated;
            self.retransmit = None;
            self.timeout = None;
            return Some(ServerEvent::TimedOut);
        }
        if let Some((t, interval)) = self.retransmit
            && t <= now
        {
            let next = (interval * 2).min(self.timers.t2);
            self.retransmit = Some((now + next, next));
            return self.last_response.clone().map(ServerEvent::Retransmit);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Runs all events due at `now`.
    fn drain_client(tx: &mut ClientTx, now: Instant) -> Vec<ClientEvent> {
        std::iter::from_fn(|| tx.poll(now)).collect()
    }

    /// Timer A doubles from T1 (0.5, 1, 2, 4, 8, 16 s), Timer B ends it at 64*T1 = 32 s.
    #[test]
    fn invite_client_timer_a_and_b_table() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut tx = ClientTx::new(true, Bytes::from_static(b"INVITE"), false, timers, t0);
        let mut sends = vec![];
        let mut now = t0;
        while let Some(next) = tx.poll_timeout() {
            now = next;
            for ev in drain_client(&mut tx, now) {
                match ev {
                    ClientEvent::Retransmit(_) => sends.push(now - t0),
                    ClientEvent::TimedOut => {
                        assert_eq!(now - t0, ms(32_000));
                    }
                    ClientEvent::Terminated => {}
                }
            }
            if tx.state() == ClientState::Terminated {
                break;
            }
        }
        let expect: Vec<_> = [500, 1500, 3500, 7500, 15500, 31500]
            .into_iter()
            .map(ms)
            .collect();
        assert_eq!(sends, expect);
        assert_eq!(now - t0, ms(32_000));
    }

    /// Timer E doubles up to T2 (0.5, 1, 2, 4, 4, 4 ...), Timer F at 32 s.
    #[test]
    fn non_invite_client_timer_e_caps_at_t2_and_f_times_out() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(
            false,
            Bytes::from_static(b"REGISTER"),
            false,
            TimerConfig::default(),
            t0,
        );
        let mut sends = vec![];
        let mut timed_out = None;
        while let Some(next) = tx.poll_timeout() {
            for ev in drain_client(&mut tx, next) {
                match ev {
                    ClientEvent::Retransmit(_) => sends.push((next - t0).as_millis()),
                    ClientEvent::TimedOut => timed_out = Some(next - t0),
                    ClientEvent::Terminated => {}
                }
            }
        }
        assert_eq!(
            sends,
            vec![
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(timed_out, Some(ms(32_000)));
    }

    /// In Proceeding, Timer E fires every T2 and Timer F still applies.
    #[test]
    fn non_invite_client_proceeding_retransmits_at_t2() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(
            false,
            Bytes::from_static(b"BYE"),
            false,
            TimerConfig::default(),
            t0,
        );
        assert_eq!(tx.handle_response(100, t0), ClientAction::Deliver);
        assert_eq!(tx.state(), ClientState::Proceeding);
        let first = tx.poll_timeout().unwrap();
        assert_eq!(first - t0, ms(500));
        tx.poll(first);
        assert_eq!(tx.poll_timeout().unwrap() - first, ms(4000));
    }

    #[test]
    fn reliable_transport_has_no_retransmissions_and_zero_linger() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(
            true,
            Bytes::from_static(b"INVITE"),
            true,
            TimerConfig::default(),
            t0,
        );
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(tx.handle_response(486, t0), ClientAction::DeliverAndAck);
        // Timer D is zero on reliable transports.
        assert_eq!(tx.poll(t0), Some(ClientEvent::Terminated));
    }

    #[test]
    fn invite_client_non_2xx_final_acks_and_absorbs_retransmissions_until_timer_d() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(
            true,
            Bytes::from_static(b"INVITE"),
            false,
            TimerConfig::default(),
            t0,
        );
        assert_eq!(tx.handle_response(180, t0), ClientAction::Deliver);
        // Provisional stops Timer A and Timer B; Timer C takes over.
        assert_eq!(tx.poll_timeout(), Some(t0 + Duration::from_secs(181)));
        assert_eq!(tx.handle_response(404, t0), ClientAction::DeliverAndAck);
        tx.set_ack(Bytes::from_static(b"ACK"));
        assert_eq!(
            tx.handle_response(404, t0 + ms(10)),
            ClientAction::ResendAck(Bytes::from_static(b"ACK"))
        );
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(tx.poll(t0 + ms(31_999)), None);
        assert_eq!(tx.poll(t0 + ms(32_000)), Some(ClientEvent::Terminated));
    }

    #[test]
    fn invite_client_2xx_is_accepted_and_passes_retransmitted_2xx_up() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(
            true,
            Bytes::from_static(b"INVITE"),
            false,
            TimerConfig::default(),
            t0,
        );
        assert_eq!(tx.handle_response(200, t0), ClientAction::Deliver);
        assert_eq!(tx.state(), ClientState::Accepted);
        assert_eq!(tx.handle_response(200, t0 + ms(500)), ClientAction::Deliver);
        assert_eq!(tx.handle_response(180, t0 + ms(500)), ClientAction::Absorb);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(tx.poll(t0 + ms(32_000)), Some(ClientEvent::Terminated));
    }

    #[test]
    fn invite_server_2xx_absorbs_invite_retransmissions_for_64_t1() {
        let t0 = Instant::now();
        let mut tx = ServerTx::new(true, false, TimerConfig::default());
        tx.send_response(100, Bytes::from_static(b"100"), t0);
        tx.send_response(200, Bytes::from_static(b"200"), t0);
        assert_eq!(tx.state(), ServerState::Accepted);
        assert_eq!(tx.handle_retransmission(), None);
        // The ACK for a 2xx is end to end: not absorbed by the transaction.
        assert!(!tx.handle_ack(t0));
        assert_eq!(tx.poll(t0 + ms(31_999)), None);
        assert_eq!(tx.poll(t0 + ms(32_000)), Some(ServerEvent::Terminated));
    }

    /// Timer G doubles to T2 (0.5, 1, 2, 4, 4 ...), Timer H at 64*T1.
    #[test]
    fn invite_server_timer_g_and_h_table() {
        let t0 = Instant::now();
        let mut tx = ServerTx::new(true, false, TimerConfig::default());
        assert!(tx.send_response(486, Bytes::from_static(b"486"), t0));
        let mut sends = vec![];
        let mut timed_out = None;
        while let Some(next) = tx.poll_timeout() {
            while let Some(ev) = tx.poll(next) {
                match ev {
                    ServerEvent::Retransmit(_) => sends.push((next - t0).as_millis()),
                    ServerEvent::TimedOut => timed_out = Some(next - t0),
                    ServerEvent::Terminated => {}
                }
            }
        }
        assert_eq!(
            sends,
            vec![
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(timed_out, Some(ms(32_000)));
    }

    #[test]
    fn invite_server_ack_moves_to_confirmed_and_timer_i_is_t4() {
        let t0 = Instant::now();
        let mut tx = ServerTx::new(true, false, TimerConfig::default());
        tx.send_response(100, Bytes::from_static(b"100"), t0);
        assert_eq!(tx.handle_retransmission(), Some(Bytes::from_static(b"100")));
        tx.send_response(480, Bytes::from_static(b"480"), t0);
        assert!(!tx.send_response(500, Bytes::from_static(b"500"), t0));
        assert!(tx.handle_ack(t0 + ms(100)));
        assert_eq!(tx.state(), ServerState::Confirmed);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5100)));
        // ACK retransmissions are absorbed in Confirmed.
        assert!(tx.handle_ack(t0 + ms(200)));
        assert_eq!(tx.poll(t0 + ms(5100)), Some(ServerEvent::Terminated));
    }

    #[test]
    fn non_invite_server_timer_j_and_absorption() {
        let t0 = Instant::now();
        let mut tx = ServerTx::new(false, false, TimerConfig::default());
        assert_eq!(tx.state(), ServerState::Trying);
        // No response yet: a retransmission is absorbed silently.
        assert_eq!(tx.handle_retransmission(), None);
        tx.send_response(200, Bytes::from_static(b"200"), t0);
        assert_eq!(tx.handle_retransmission(), Some(Bytes::from_static(b"200")));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        let mut tcp = ServerTx::new(false, true, TimerConfig::default());
        tcp.send_response(200, Bytes::from_static(b"200"), t0);
        assert_eq!(tcp.poll_timeout(), Some(t0));
    }

    #[test]
    fn timers_scale_with_configured_t1_t2_t4() {
        let timers = TimerConfig {
            t1: ms(100),
            t2: ms(400),
            t4: ms(1000),
            ..TimerConfig::default()
        };
        let t0 = Instant::now();
        let mut tx = ClientTx::new(false, Bytes::from_static(b"X"), false, timers, t0);
        let mut sends = vec![];
        while let Some(next) = tx.poll_timeout() {
            while let Some(ev) = tx.poll(next) {
                if let ClientEvent::Retransmit(_) = ev {
                    sends.push((next - t0).as_millis());
                }
            }
        }
        assert_eq!(&sends[..5], &[100, 300, 700, 1100, 1500]);
    }

    /// Two peers over a lossy link, stepped by a fake clock: a non-INVITE request whose first
    /// two copies and first response are lost still completes via retransmission.
    #[test]
    fn lossy_link_harness_completes_non_invite() {
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut client = ClientTx::new(false, Bytes::from_static(b"REQ"), false, timers, t0);
        let mut server: Option<ServerTx> = None;
        // Loss pattern per direction: true = drop.
        let mut c2s_loss = [true, true, false, false, false].into_iter();
        let mut s2c_loss = [true, false, false].into_iter();
        let mut now = t0;
        let mut delivered = None;
        // The initial send.
        let mut to_server: Vec<Bytes> = vec![Bytes::from_static(b"REQ")];
        for _ in 0..50 {
            let mut to_client = vec![];
            for _req in to_server.drain(..) {
                if c2s_loss.next().unwrap_or(false) {
                    continue;
                }
                match server.as_mut() {
                    None => {
                        let mut s = ServerTx::new(false, false, timers);
                        s.send_response(200, Bytes::from_static(b"200"), now);
                        to_client.push(Bytes::from_static(b"200"));
                        server = Some(s);
                    }
                    Some(s) => to_client.extend(s.handle_retransmission()),
                }
            }
            for _resp in to_client {
                if s2c_loss.next().unwrap_or(false) {
                    continue;
                }
                if client.handle_response(200, now) == ClientAction::Deliver {
                    delivered = Some(now - t0);
                }
            }
            if delivered.is_some() {
                break;
            }
            let Some(next) = client.poll_timeout() else {
                break;
            };
            now = next;
            while let Some(ev) = client.poll(now) {
                if let ClientEvent::Retransmit(b) = ev {
                    to_server.push(b);
                }
            }
        }
        // Sent at 0 (lost), 0.5 (lost), 1.5 (response lost), 3.5 (response delivered).
        assert_eq!(delivered, Some(ms(3500)));
        assert_eq!(client.state(), ClientState::Completed);
    }

    /// INVITE with a non-2xx final over a lossy link: the first INVITE, the first 486 and
    /// the first ACK are lost. Timer A retransmits the INVITE, the server answers it from
    /// its transaction, Timer G retransmits the 486, the client re-sends the same ACK, and
    /// the server ends in Confirmed then Terminated (Timer I).
    #[test]
    fn lossy_link_harness_invite_non_2xx_with_ack_loss() {
        #[derive(Debug, Clone, PartialEq)]
        enum Pkt {
            Invite,
            Final,
            Ack,
        }
        let t0 = Instant::now();
        let timers = TimerConfig::default();
        let mut client = ClientTx::new(true, Bytes::from_static(b"INVITE"), false, timers, t0);
        let mut server: Option<ServerTx> = None;
        let mut lost = vec![Pkt::Invite, Pkt::Final, Pkt::Ack];
        let mut wire: Vec<Pkt> = vec![Pkt::Invite];
        let mut now = t0;
        let mut delivered_finals = 0;
        let mut acks_received = 0;
        for _ in 0..100 {
            while let Some(p) = wire.pop() {
                if let Some(i) = lost.iter().position(|l| *l == p) {
                    lost.remove(i); // each kind is lost once
                    continue;
                }
                match p {
                    Pkt::Invite => match server.as_mut() {
                        None => {
                            let mut s = ServerTx::new(true, false, timers);
                            s.send_response(486, Bytes::from_static(b"486"), now);
                            wire.push(Pkt::Final);
                            server = Some(s);
                        }
                        Some(s) => {
                            if s.handle_retransmission().is_some() {
                                wire.push(Pkt::Final);
                            }
                        }
                    },
                    Pkt::Final => match client.handle_response(486, now) {
                        ClientAction::DeliverAndAck => {
                            delivered_finals += 1;
                            client.set_ack(Bytes::from_static(b"ACK"));
                            wire.push(Pkt::Ack);
                        }
                        ClientAction::ResendAck(_) => wire.push(Pkt::Ack),
                        _ => {}
                    },
                    Pkt::Ack => {
                        if let Some(s) = server.as_mut()
                            && s.handle_ack(now)
                        {
                            acks_received += 1;
                        }
                    }
                }
            }
            let next = [
                client.poll_timeout(),
                server.as_ref().and_then(|s| s.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { break };
            now = next;
            while let Some(ev) = client.poll(now) {
                if let ClientEvent::Retransmit(_) = ev {
                    wire.push(Pkt::Invite);
                }
            }
            if let Some(s) = server.as_mut() {
                while let Some(ev) = s.poll(now) {
                    if let ServerEvent::Retransmit(_) = ev {
                        wire.push(Pkt::Final);
                    }
                }
            }
        }
        assert_eq!(delivered_finals, 1, "the TU sees the final once");
        assert!(acks_received >= 1);
        assert_eq!(client.state(), ClientState::Terminated);
        assert_eq!(server.unwrap().state(), ServerState::Terminated);
        // Client finished with Timer D (32 s after its final at 1.0 s).
        assert!(now - t0 >= Duration::from_secs(32));
    }
}
