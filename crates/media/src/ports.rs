//! RTP/RTCP port allocation from a configured range: even port for RTP, the next odd
//! one for RTCP (RFC 3550 §11). Pairs go back to the pool when the [`PortPair`] drops,
//! so a call that ends any way at all cannot leak ports.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;

use crate::error::{MediaError, Result};
use crate::shared::{Inbox, SharedLeg};

#[derive(Debug)]
struct Pool {
    free: VecDeque<u16>,
    in_use: usize,
}

/// Hands out even/odd port pairs from `first..=last`. Cheap to clone (shared pool).
#[derive(Debug, Clone)]
pub struct PortAllocator {
    pool: Arc<Mutex<Pool>>,
    first: u16,
    last: u16,
}

impl PortAllocator {
    /// A pool over `first..=last`; an odd `first` is rounded up. Fails if no pair fits.
    pub fn new(first: u16, last: u16) -> Result<Self> {
        let start = first
            .checked_add(first % 2)
            .ok_or(MediaError::InvalidPortRange { first, last })?;
        if start == 0 || last <= start {
            return Err(MediaError::InvalidPortRange { first, last });
        }
        let mut free = VecDeque::new();
        let mut p = start;
        while p < last {
            free.push_back(p);
            match p.checked_add(2) {
                Some(n) => p = n,
                None => break,
            }
        }
        Ok(PortAllocator {
            pool: Arc::new(Mutex::new(Pool { free, in_use: 0 })),
            first,
            last,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A panic while holding this lock cannot leave the pool inconsistent (every
        // critical section is a single push/pop), so poisoning is safe to ignore.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the least recently used free pair.
    pub fn allocate(&self) -> Result<PortPair> {
        let mut pool = self.lock();
        let rtp = pool.free.pop_front().ok_or(MediaError::PortsExhausted {
            first: self.first,
            last: self.last,
        })?;
        pool.in_use += 1;
        Ok(PortPair {
            rtp,
            pool: Arc::clone(&self.pool),
        })
    }

    /// Pairs currently handed out (for metrics and leak tests).
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    /// Pairs currently free.
    pub fn available(&self) -> usize {
        self.lock().free.len()
    }

    /// Allocates a pair and binds only its RTCP socket on `ip` (a leg whose RTP is on a
    /// [`SharedPort`](crate::shared::SharedPort)); pairs whose RTCP port is taken by
    /// another process are skipped.
    pub async fn bind_rtcp(&self, ip: IpAddr) -> Result<(UdpSocket, PortPair)> {
        self.bind_with(|pair| async move {
            let rtcp = UdpSocket::bind(SocketAddr::new(ip, pair.rtcp())).await?;
            Ok((rtcp, pair))
        })
        .await
    }

    /// Allocates a pair and binds UDP sockets on `ip`; pairs whose ports are taken by
    /// another process are skipped (and returned to the pool).
    pub async fn bind(&self, ip: IpAddr) -> Result<BoundPorts> {
        self.bind_with(|pair| async move {
            let rtp = RtpSocket::bind(SocketAddr::new(ip, pair.rtp()))?;
            let rtcp = UdpSocket::bind(SocketAddr::new(ip, pair.rtcp())).await?;
            Ok(BoundPorts { rtp, rtcp, pair })
        })
        .await
    }

    /// Hands pairs to `bind` until one binds, at most as many as are free; a pair that
    /// fails goes back to the pool as it drops. The last bind error, or exhaustion.
    async fn bind_with<T, F>(&self, mut bind: impl FnMut(PortPair) -> F) -> Result<T>
    where
        F: std::future::Future<Output = io::Result<T>>,
    {
        let attempts = self.available().max(1);
        let mut last_err = None;
        for _ in 0..attempts {
            match bind(self.allocate()?).await {
                Ok(t) => return Ok(t),
                Err(e) => last_err = Some(e),
            }
        }
        Err(match last_err {
            Some(e) => MediaError::Io(e),
            None => MediaError::PortsExhausted {
                first: self.first,
                last: self.last,
            },
        })
    }
}

/// An allocated pair; returns itself to the pool on drop.
#[derive(Debug)]
pub struct PortPair {
    rtp: u16,
    pool: Arc<Mutex<Pool>>,
}

impl PortPair {
    /// The even RTP port.
    pub fn rtp(&self) -> u16 {
        self.rtp
    }
    /// The odd RTCP port.
    pub fn rtcp(&self) -> u16 {
        self.rtp + 1
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.in_use -= 1;
        // To the back: a just-freed port is reused last, so late packets of an old
        // call are unlikely to reach a new one.
        pool.free.push_back(self.rtp);
    }
}

/// Sockets bound on an allocated pair; the ports are released when this drops.
#[derive(Debug)]
pub struct BoundPorts {
    /// RTP socket (even port).
    pub rtp: RtpSocket,
    /// RTCP socket (odd port).
    pub rtcp: UdpSocket,
    /// Declared last so the sockets close before the ports go back to the pool.
    pub pair: PortPair,
}

/// A leg's RTP socket: a plain nonblocking socket, registered with tokio's reactor only
/// while a per-datagram session reads it. A registered socket makes every datagram wake
/// the reactor's thread; a tick-driven session reads it on its timer instead, so an
/// unregistered one costs no wake-up at all between ticks.
#[derive(Debug)]
pub struct RtpSocket {
    /// Declared first: deregistered before the socket closes.
    reg: Option<AsyncFd<Fd>>,
    /// Whether the socket is in the [`ticked`] readiness set (while unregistered).
    watched: bool,
    /// On a shared port: the leg's route and inbox there (`sock` is then a duplicate of
    /// the shared socket's descriptor, only sent on; its reader reads).
    shared: Option<SharedLeg>,
    sock: std::net::UdpSocket,
}

/// The socket's descriptor, borrowed by the registration (the socket owns it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fd(pub(crate) RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Whether RTP sockets carry the kernel's receive time (`HOTLINE_MEDIA_RTP_WAIT=1`), so
/// each session logs how long its datagrams waited in the socket before being read: the
/// delay its reads add, comparable between per-datagram and tick mode. Off by default
/// (timestamping every datagram costs the kernel a little on every socket).
pub(crate) fn rtp_wait_measured() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("HOTLINE_MEDIA_RTP_WAIT").is_ok_and(|v| v.trim() == "1"))
}

impl RtpSocket {
    /// Binds a nonblocking, unregistered socket on `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let sock = std::net::UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        let sock = RtpSocket {
            reg: None,
            watched: false,
            shared: None,
            sock,
        };
        if rtp_wait_measured() {
            sock.timestamp_arrivals()?;
        }
        Ok(sock)
    }

    /// A leg's RTP on a shared port: sends go out on `sock` (the shared socket's
    /// descriptor, duplicated), datagrams come in through the leg's inbox.
    pub(crate) fn shared(sock: std::net::UdpSocket, leg: SharedLeg) -> Self {
        RtpSocket {
            reg: None,
            watched: false,
            shared: Some(leg),
            sock,
        }
    }

    /// The inbox of a leg on a shared port.
    pub(crate) fn inbox(&self) -> Option<&Inbox> {
        self.shared.as_ref().map(SharedLeg::inbox)
    }

    /// The leg's place on a shared port, through which it sends.
    pub(crate) fn shared_leg(&self) -> Option<&SharedLeg> {
        self.shared.as_ref()
    }

    /// Whether the leg's RTP is on a shared port.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// On a shared port, hears `remote` from now on (see [`SharedLeg::reroute`]);
    /// `false` when another leg there has that address. Always `true` on a leg's own
    /// socket, which hears any sender.
    pub(crate) fn reroute(&mut self, remote: SocketAddr) -> bool {
        self.shared.as_mut().is_none_or(|s| s.reroute(remote))
    }

    /// On a shared port, hears `remote` from now on: the address a phone's answer gives
    /// for a leg from [`SharedPort::reserve_leg`](crate::SharedPort::reserve_leg).
    /// [`MediaError::SharedAddressTaken`] when another leg there has it (nothing
    /// changes); nothing to do on a leg's own socket.
    pub fn route(&mut self, remote: SocketAddr) -> Result<()> {
        if self.reroute(remote) {
            Ok(())
        } else {
            Err(MediaError::SharedAddressTaken(remote))
        }
    }

    /// On a shared port, makes this a browser leg routed by our ICE username fragment
    /// (see [`SharedLeg::route_ice`]); nothing to do on a leg's own socket.
    pub fn route_ice(&mut self, ufrag: &str) -> Result<()> {
        if self.shared.as_mut().is_none_or(|s| s.route_ice(ufrag)) {
            Ok(())
        } else {
            Err(MediaError::SharedIceTaken(ufrag.into()))
        }
    }

    /// Has the kernel stamp each datagram's arrival (`SO_TIMESTAMPNS`), for the wait
    /// measured by [`rtp_wait_measured`].
    pub(crate) fn timestamp_arrivals(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: the socket is open and `on` a live c_int of the size given.
        let r = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Registers the socket for read readiness with the current runtime's reactor (a
    /// per-datagram session), or deregisters it and watches its readiness (`false`: a
    /// tick-driven session; a leg between sessions is [`parked`](Self::park)). Registering must run inside a runtime (tokio panics
    /// otherwise; sessions call it from their task); on failure the socket stays
    /// unregistered and the error is returned.
    pub(crate) fn set_registered(&mut self, on: bool) -> io::Result<()> {
        // A shared port's reader wakes the session through the inbox, in either mode.
        if self.shared.is_some() {
            return Ok(());
        }
        if on {
            self.unwatch();
        } else if !self.watched {
            // Without the readiness set the socket is simply read on every tick.
            self.watched = ticked::watch(self.sock.as_raw_fd());
        }
        self.register(on)
    }

    /// A socket no session reads (a leg leaving its session, or a call's end): neither
    /// registered nor watched, so a per-datagram call pays no readiness-set
    /// `epoll_ctl`s at its end.
    pub(crate) fn park(&mut self) {
        self.unwatch();
        self.reg = None;
    }

    fn unwatch(&mut self) {
        if std::mem::take(&mut self.watched) {
            ticked::unwatch(self.sock.as_raw_fd());
        }
    }

    fn register(&mut self, on: bool) -> io::Result<()> {
        match (on, self.reg.is_some()) {
            (true, false) => {
                let fd = Fd(self.sock.as_raw_fd());
                // SAFETY: `fd` is `self.sock`'s open descriptor; the socket is never
                // replaced, and `reg` is declared before it, so the registration is
                // dropped (deregistered) before the socket closes the descriptor.
                let reg = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
                self.reg = Some(reg.map_err(|e| e.into_parts().1)?);
            }
            (false, true) => self.reg = None,
            _ => {}
        }
        Ok(())
    }

    /// The reactor registration, if any (see [`RtpSocket::set_registered`]).
    pub(crate) fn registration(&self) -> Option<&AsyncFd<Fd>> {
        self.reg.as_ref()
    }

    /// Whether the socket is registered with a reactor (or, on a shared port, woken
    /// through its inbox, which is the same to a session).
    pub fn is_registered(&self) -> bool {
        self.reg.is_some() || self.shared.is_some()
    }

    /// Whether a tick-driven session should read this (unregistered) socket on the tick
    /// that fell due at `tick`: it held datagrams when the readiness set was last polled
    /// (once per tick for the whole process), or its readiness is not watched.
    pub(crate) fn tick_ready(&self, tick: std::time::Instant) -> bool {
        !self.watched || ticked::ready(self.sock.as_raw_fd(), tick)
    }
}

impl Drop for RtpSocket {
    fn drop(&mut self) {
        self.unwatch();
    }
}

/// The descriptor of the epoll set that watches ticked RTP sockets' readiness (see
/// `ticked` below), which nothing ever waits on: diagnostics and tests tell it from a
/// reactor's, whose sockets wake a thread.
#[doc(hidden)]
pub fn tick_readiness_fd() -> Option<RawFd> {
    ticked::epoll_fd()
}

/// Which unregistered RTP sockets hold datagrams, learnt for the whole process with one
/// `epoll_wait` per tick instead of one read per socket per tick. A leg gets a packet
/// every 20 ms, so a 10 ms tick used to find half its sockets empty: one `recvmmsg`
/// returning `EAGAIN` per packet relayed. The epoll set is level-triggered and nobody
/// blocks on it, so a datagram arriving costs no wake-up; the first session to run on a
/// new tick collects the ready sockets, and each session then reads only its own ready
/// ones. A socket left unread (a flood's cap) is simply reported again at the next poll.
mod ticked {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::{Mutex, OnceLock};
    use std::time::Instant;

    struct Set {
        epfd: OwnedFd,
        state: Mutex<State>,
    }

    #[derive(Default)]
    struct State {
        /// The tick the set was last polled for.
        polled: Option<Instant>,
        /// Ready flags indexed by descriptor, and the descriptors flagged (to clear them).
        flags: Vec<bool>,
        flagged: Vec<RawFd>,
    }

    /// Events taken per `epoll_wait`; more ready sockets take more calls.
    const EVENTS: usize = 256;

    fn set() -> Option<&'static Set> {
        static SET: OnceLock<Option<Set>> = OnceLock::new();
        SET.get_or_init(|| {
            // SAFETY: no pointer arguments; a non-negative result is a new descriptor.
            let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if fd < 0 {
                tracing::warn!(
                    error = %std::io::Error::last_os_error(),
                    "no epoll set for ticked RTP sockets; each is read on every tick"
                );
                return None;
            }
            Some(Set {
                // SAFETY: a fresh descriptor nobody else owns.
                epfd: unsafe { OwnedFd::from_raw_fd(fd) },
                state: Mutex::new(State::default()),
            })
        })
        .as_ref()
    }

    pub(super) fn epoll_fd() -> Option<RawFd> {
        set().map(|s| s.epfd.as_raw_fd())
    }

    fn ctl(op: libc::c_int, fd: RawFd) -> bool {
        let Some(s) = set() else { return false };
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a live epoll_event; `fd` is an open socket of the caller's.
        unsafe { libc::epoll_ctl(s.epfd.as_raw_fd(), op, fd, &mut ev) == 0 }
    }

    /// Adds `fd` to the set; `false` if it could not be watched.
    pub(super) fn watch(fd: RawFd) -> bool {
        ctl(libc::EPOLL_CTL_ADD, fd)
    }

    /// Removes `fd` (before it is registered elsewhere or closed).
    pub(super) fn unwatch(fd: RawFd) {
        ctl(libc::EPOLL_CTL_DEL, fd);
        // A flag left for a reused descriptor number costs one empty read at most.
    }

    /// Whether `fd` held datagrams at the latest poll; polls the set first if `tick` is
    /// newer than the tick it was last polled for. Taking the flag clears it. A session
    /// running late for an older tick uses the newer poll's flags (a socket still holding
    /// datagrams is reported at every poll) instead of polling again: with two workers,
    /// one on a tick and one still on the previous, re-polling whenever the tick differs
    /// made them take turns polling every ready socket of the process, once per session
    /// (at 1,000 ticked calls the sessions went unread for seconds). A datagram arriving
    /// after the poll waits for the next tick's.
    pub(super) fn ready(fd: RawFd, tick: Instant) -> bool {
        let Some(s) = set() else { return true };
        let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.polled.is_none_or(|p| tick > p) {
            st.polled = Some(tick);
            poll(s.epfd.as_raw_fd(), &mut st);
        }
        let i = fd as usize;
        match st.flags.get_mut(i) {
            Some(f) => std::mem::take(f),
            None => false,
        }
    }

    fn poll(epfd: RawFd, st: &mut State) {
        let State { flags, flagged, .. } = st;
        for fd in flagged.drain(..) {
            if let Some(f) = flags.get_mut(fd as usize) {
                *f = false;
            }
        }
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            // SAFETY: `events` has room for EVENTS entries; timeout 0 never blocks.
            let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EVENTS as i32, 0) };
            if n <= 0 {
                return;
            }
            // A level-triggered set hands the same ready sockets out again once every
            // one was returned: a descriptor seen twice ends the poll.
            let mut wrapped = false;
            for ev in &events[..n as usize] {
                let fd = ev.u64 as usize;
                if flags.len() <= fd {
                    flags.resize(fd + 1, false);
                }
                wrapped |= std::mem::replace(&mut flags[fd], true);
                flagged.push(fd as RawFd);
            }
            if wrapped || (n as usize) < EVENTS {
                return;
            }
        }
    }
}

impl std::ops::Deref for RtpSocket {
    type Target = std::net::UdpSocket;
    fn deref(&self) -> &std::net::UdpSocket {
        &self.sock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn hands_out_even_odd_pairs_and_exhausts() {
        let a = PortAllocator::new(30001, 30008).unwrap();
        // 30002, 30004, 30006 fit (30008 would need 30009).
        assert_eq!(a.available(), 3);
        let p: Vec<_> = (0..3).map(|_| a.allocate().unwrap()).collect();
        for pair in &p {
            assert_eq!(pair.rtp() % 2, 0);
            assert_eq!(pair.rtcp(), pair.rtp() + 1);
            assert!(pair.rtp() >= 30001 && pair.rtcp() <= 30008);
        }
        assert!(matches!(
            a.allocate(),
            Err(MediaError::PortsExhausted { .. })
        ));
        assert_eq!(a.in_use(), 3);
    }

    #[test]
    fn dropped_pairs_return_and_nothing_leaks() {
        let a = PortAllocator::new(31000, 31099).unwrap();
        let total = a.available();
        for _ in 0..10 {
            let held: Vec<_> = (0..total).map(|_| a.allocate().unwrap()).collect();
            assert_eq!(a.available(), 0);
            drop(held);
            assert_eq!(a.available(), total);
            assert_eq!(a.in_use(), 0);
        }
        // Freed ports go to the back of the queue.
        let first = a.allocate().unwrap().rtp();
        let second = a.allocate().unwrap();
        assert_ne!(first, second.rtp());
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        assert!(PortAllocator::new(100, 100).is_err());
        assert!(PortAllocator::new(101, 102).is_err());
        assert!(PortAllocator::new(0, 10).is_err());
        assert!(PortAllocator::new(65535, 65535).is_err());
        assert!(PortAllocator::new(65534, 65535).is_ok());
    }

    /// Sends `n` datagrams to `to` and returns once `sock` reports them queued (loopback
    /// delivers within the send; the check only guards against a slow kernel).
    fn queue(to: &RtpSocket, n: usize) -> std::net::UdpSocket {
        let tx = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for _ in 0..n {
            tx.send_to(&[0x80; 20], to.local_addr().unwrap()).unwrap();
        }
        let mut b = [0u8; 1];
        for _ in 0..10_000 {
            // SAFETY: peeks one byte into `b` without blocking.
            let r = unsafe {
                libc::recv(
                    to.as_raw_fd(),
                    b.as_mut_ptr().cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if r >= 0 {
                return tx;
            }
            std::thread::yield_now();
        }
        panic!("datagrams never arrived");
    }

    /// The readiness set is process-wide: tests that poll it take turns.
    static READINESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn readiness_turn() -> std::sync::MutexGuard<'static, ()> {
        READINESS.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A tick strictly after `t` (Instant's resolution may repeat a reading).
    fn after(t: std::time::Instant) -> std::time::Instant {
        loop {
            let n = std::time::Instant::now();
            if n > t {
                return n;
            }
            std::thread::yield_now();
        }
    }

    /// A session late for an older tick uses the newest poll instead of polling again
    /// (two workers on neighbouring ticks would otherwise poll every ready socket once
    /// per session); the next tick's poll finds what arrived since.
    #[tokio::test]
    async fn sessions_late_for_an_older_tick_do_not_poll_again() {
        let _turn = readiness_turn();
        let mut s = RtpSocket::bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        s.set_registered(false).unwrap();
        let t1 = std::time::Instant::now();
        let t2 = after(t1);
        assert!(!s.tick_ready(t2), "empty at the poll for t2");
        let _tx = queue(&s, 1);
        assert!(!s.tick_ready(t1), "late for t1: t2's poll stands");
        assert!(!s.tick_ready(t2), "t2 already polled");
        assert!(s.tick_ready(after(t2)), "the next tick's poll finds it");
    }

    /// A ticked socket is read on a tick only if it holds datagrams: an empty one is
    /// skipped, a full one reported once per tick and again on the next while unread,
    /// and no more once drained; a registered socket is not watched (its reads wake).
    #[tokio::test]
    async fn ticked_sockets_are_read_only_when_they_hold_datagrams() {
        let _turn = readiness_turn();
        let mut last = std::time::Instant::now();
        let mut tick = || {
            last = after(last);
            last
        };
        let mut s = RtpSocket::bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        s.set_registered(false).unwrap();
        assert!(!s.tick_ready(tick()), "empty: not read");
        let _tx = queue(&s, 2);
        let t = tick();
        assert!(s.tick_ready(t));
        assert!(!s.tick_ready(t), "taken for this tick");
        assert!(s.tick_ready(tick()), "still unread: ready on the next tick");
        let mut buf = [0u8; 64];
        while s.recv_from(&mut buf).is_ok() {}
        assert!(!s.tick_ready(tick()), "drained");
        s.set_registered(true).unwrap();
        let _tx = queue(&s, 1);
        assert!(s.tick_ready(tick()), "registered: not watched, always read");
    }

    /// Whether `s` is in the process-wide readiness set (`EPOLL_CTL_MOD` fails with
    /// `ENOENT` for a descriptor the set does not hold).
    fn in_readiness_set(s: &RtpSocket) -> bool {
        let epfd = tick_readiness_fd().expect("readiness set");
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: s.as_raw_fd() as u64,
        };
        // SAFETY: `ev` is a live epoll_event; both descriptors are open.
        unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, s.as_raw_fd(), &mut ev) == 0 }
    }

    /// Only a ticked socket is watched: registering or parking it (a leg leaving its
    /// session, a call's end) takes it out of the set, so a per-datagram call costs
    /// no readiness-set `epoll_ctl`s.
    #[tokio::test]
    async fn only_ticked_sockets_are_in_the_readiness_set() {
        let _turn = readiness_turn();
        let mut s = RtpSocket::bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        s.set_registered(true).unwrap();
        assert!(!in_readiness_set(&s), "registered");
        s.set_registered(false).unwrap();
        assert!(in_readiness_set(&s), "ticked");
        s.park();
        assert!(!in_readiness_set(&s), "parked");
        assert!(!s.is_registered());
        s.set_registered(false).unwrap();
        assert!(in_readiness_set(&s), "ticked again");
        s.set_registered(true).unwrap();
        assert!(!in_readiness_set(&s), "registered again");
    }

    #[tokio::test]
    async fn bind_skips_taken_ports_and_releases_on_drop() {
        // A port the OS hands out (not a fixed one, which a neighbouring test process
        // may hold) squats the range's first pair.
        let squatter = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let first = squatter.local_addr().unwrap().port() & !1;
        let a = PortAllocator::new(first, first + 9).unwrap();
        let b = a.bind(Ipv4Addr::LOCALHOST.into()).await.unwrap();
        assert_ne!(b.pair.rtp(), first);
        assert_eq!(b.rtp.local_addr().unwrap().port(), b.pair.rtp());
        assert_eq!(b.rtcp.local_addr().unwrap().port(), b.pair.rtp() + 1);
        assert_eq!(a.in_use(), 1);
        drop(b);
        assert_eq!(a.in_use(), 0);
        drop(squatter);
    }
}
