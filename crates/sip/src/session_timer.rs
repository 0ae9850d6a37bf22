//! Session timers (RFC 4028): a dialog whose refreshes stop is dead, so a B2BUA can end
//! both legs instead of holding a half-open call for hours.
//!
//! Negotiation helpers for both roles (UAS: answer a request, or 422 when its interval is
//! too small; UAC: offer an interval, read the 2xx, retry after 422) and a sans-IO timer
//! with an injected clock that says when to refresh and when the session has expired.
//!
//! The `refresher` parameter names a role *of the transaction* that carries it: in a
//! refresh we send, `refresher=uac` means us.

use std::time::{Duration, Instant};

use crate::Error;
use crate::msg::{self, Header, Headers};

/// The smallest interval the RFC allows anyone to ask for (§4).
pub const MIN_SE_FLOOR: u32 = 90;

/// Who refreshes, relative to the transaction that negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// A Session-Expires value: `delta-seconds[;refresher=uac|uas]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub delta: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    pub fn parse(value: &str) -> Result<SessionExpires, Error> {
        let bad = || Error::Malformed("Bad Session-Expires".into());
        let mut parts = value.split(';');
        let delta: u32 = parts
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| bad())?;
        if delta == 0 {
            return Err(bad());
        }
        let mut refresher = None;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case("refresher") {
                refresher = match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => return Err(bad()),
                };
            }
        }
        Ok(SessionExpires { delta, refresher })
    }

    /// The Session-Expires of a message, if any.
    pub fn from_headers(headers: &Headers) -> Result<Option<SessionExpires>, Error> {
        msg::find(headers, |h| matches!(h, Header::SessionExpires(_)))
            .map(SessionExpires::parse)
            .transpose()
    }
}

impl std::fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.delta)?;
        match self.refresher {
            Some(Refresher::Uac) => f.write_str(";refresher=uac"),
            Some(Refresher::Uas) => f.write_str(";refresher=uas"),
            None => Ok(()),
        }
    }
}

/// The Min-SE of a message (absent means the RFC's 90 s).
pub fn min_se(headers: &Headers) -> Result<u32, Error> {
    match msg::find(headers, |h| matches!(h, Header::MinSE(_))) {
        None => Ok(MIN_SE_FLOOR),
        Some(v) => v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| Error::Malformed("Bad Min-SE".into())),
    }
}

/// Whether a message lists option tag `tag` in Supported or Require.
pub fn has_option_tag(headers: &Headers, tag: &str) -> bool {
    headers
        .iter()
        .filter(|h| matches!(h, Header::Supported(_) | Header::Require(_)))
        .flat_map(|h| msg::header_value(h).split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// What this side wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerPolicy {
    /// Interval we ask for (UAC) or impose when the request has none (UAS); 0 = none of
    /// our own (a peer's request is still honoured).
    pub session_expires: u32,
    /// The smallest interval we accept. The RFC's floor is 90 s; lower values are for
    /// tests that must see an expiry quickly.
    pub min_se: u32,
}

impl Default for TimerPolicy {
    fn default() -> Self {
        TimerPolicy {
            session_expires: 1800,
            min_se: MIN_SE_FLOOR,
        }
    }
}

/// A negotiated session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// The interval in seconds.
    pub interval: u32,
    /// Whether we are the refresher.
    pub we_refresh: bool,
}

/// How a UAS answers a request's session timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UasDecision {
    /// No timer for this dialog.
    None,
    /// A timer: put `headers` into the 2xx.
    Timer {
        timer: Negotiated,
        headers: Vec<String>,
    },
    /// Answer 422 Session Interval Too Small with `Min-SE: min_se` (§6).
    TooSmall { min_se: u32 },
}

/// UAS side (§9): decides the timer for a request (INVITE, re-INVITE or UPDATE).
pub fn uas_negotiate(req: &Headers, policy: &TimerPolicy) -> Result<UasDecision, Error> {
    let ours = policy.min_se.max(1);
    let supported = has_option_tag(req, "timer");
    let asked = SessionExpires::from_headers(req)?;
    let their_min = min_se(req)?;
    let (interval, refresher) = match asked {
        Some(se) if se.delta < ours => {
            if supported {
                return Ok(UasDecision::TooSmall { min_se: ours });
            }
            // A UAC that cannot retry after 422: raise it ourselves (§9) and refresh.
            (ours, Some(Refresher::Uas))
        }
        Some(se) => (se.delta, se.refresher),
        None if policy.session_expires == 0 => return Ok(UasDecision::None),
        None => (policy.session_expires.max(ours).max(their_min), None),
    };
    // Without support the UAC will not refresh, so we must (§9).
    let refresher = match refresher {
        Some(Refresher::Uac) if supported => Refresher::Uac,
        Some(Refresher::Uas) => Refresher::Uas,
        None if supported => Refresher::Uac,
        _ => Refresher::Uas,
    };
    let se = SessionExpires {
        delta: interval,
        refresher: Some(refresher),
    };
    let mut headers = vec![format!("Session-Expires: {se}")];
    if supported {
        headers.push("Require: timer".to_string());
    }
    Ok(UasDecision::Timer {
        timer: Negotiated {
            interval,
            we_refresh: refresher == Refresher::Uas,
        },
        headers,
    })
}

/// UAC side: the header lines for a request (initial INVITE or our refresh). In a
/// refresh `we_refresh` asks to stay the refresher (`refresher=uac`).
pub fn uac_headers(interval: u32, min_se: u32, we_refresh: Option<bool>) -> Vec<String> {
    let se = SessionExpires {
        delta: interval,
        refresher: we_refresh.map(|w| if w { Refresher::Uac } else { Refresher::Uas }),
    };
    vec![
        "Supported: timer".to_string(),
        format!("Session-Expires: {se}"),
        format!("Min-SE: {}", min_se.max(1)),
    ]
}

/// UAC side (§7.2): the timer a 2xx establishes; none when it has no Session-Expires
/// (the UAS does not do timers).
pub fn uac_negotiate(resp: &Headers) -> Result<Option<Negotiated>, Error> {
    Ok(SessionExpires::from_headers(resp)?.map(|se| Negotiated {
        interval: se.delta,
        // A 2xx without refresher (§7.2): the UAC refreshes.
        we_refresh: se.refresher != Some(Refresher::Uas),
    }))
}

/// UAC side (§7.3): after a 422, the interval to retry with (its Min-SE), if it is one we
/// can still ask for.
pub fn retry_interval(resp: &Headers, asked: u32) -> Option<u32> {
    let m = min_se(resp).ok()?;
    (m > asked).then_some(m)
}

/// What a [`SessionTimer`] wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// We are the refresher: send a re-INVITE or UPDATE now.
    Refresh,
    /// No refresh arrived (or ours failed) in time: end the dialog with BYE (§10).
    Expired,
}

/// The timer of one dialog. Sans-IO: feed it the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    timer: Negotiated,
    /// When the current interval started (the last successful refresh).
    since: Instant,
    refresh_sent: bool,
}

impl SessionTimer {
    pub fn new(timer: Negotiated, now: Instant) -> SessionTimer {
        SessionTimer {
            timer,
            since: now,
            refresh_sent: false,
        }
    }

    /// A refresh succeeded (a 2xx to a re-INVITE/UPDATE, either way) with `timer`.
    pub fn refreshed(&mut self, timer: Negotiated, now: Instant) {
        *self = SessionTimer::new(timer, now);
    }

    pub fn negotiated(&self) -> Negotiated {
        self.timer
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.timer.interval))
    }

    /// When the session expires without a refresh: the interval less min(32 s, a third)
    /// (§10), so a BYE is sent before the peer's own timer fires.
    fn expiry(&self) -> Instant {
        let i = self.interval();
        self.since + i - (i / 3).min(Duration::from_secs(32))
    }

    /// When [`SessionTimer::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Instant {
        if self.timer.we_refresh && !self.refresh_sent {
            self.since + self.interval() / 2
        } else {
            self.expiry()
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if now < self.poll_timeout() {
            return None;
        }
        if self.timer.we_refresh && !self.refresh_sent {
            self.refresh_sent = true;
            return Some(TimerAction::Refresh);
        }
        Some(TimerAction::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Limits, SipMessage, parse};

    fn headers(extra: &str) -> Headers {
        let text = format!(
            "INVITE sip:4000@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK-1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:4000@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes(), &Limits::default(), false) {
            Ok(SipMessage::Request(r)) => r.headers,
            other => panic!("{other:?}"),
        }
    }

    const POLICY: TimerPolicy = TimerPolicy {
        session_expires: 1800,
        min_se: 120,
    };

    #[test]
    fn parses_and_formats_session_expires() {
        let se = SessionExpires::parse("4000;refresher=UAS").unwrap();
        assert_eq!(se.delta, 4000);
        assert_eq!(se.refresher, Some(Refresher::Uas));
        assert_eq!(se.to_string(), "4000;refresher=uas");
        assert!(SessionExpires::parse("0").is_err());
        assert!(SessionExpires::parse("abc").is_err());
        assert!(SessionExpires::parse("90;refresher=me").is_err());
        // Compact form `x`.
        let h = headers("x: 600\r\n");
        assert_eq!(
            SessionExpires::from_headers(&h).unwrap().map(|s| s.delta),
            Some(600)
        );
    }

    #[test]
    fn uas_honours_a_supporting_uac_and_lets_it_refresh() {
        let h = headers("Supported: timer, 100rel\r\nSession-Expires: 600\r\n");
        let UasDecision::Timer { timer, headers } = uas_negotiate(&h, &POLICY).unwrap() else {
            panic!()
        };
        assert_eq!(
            timer,
            Negotiated {
                interval: 600,
                we_refresh: false
            }
        );
        assert_eq!(
            headers,
            vec!["Session-Expires: 600;refresher=uac", "Require: timer"]
        );
    }

    #[test]
    fn uas_refreshes_itself_when_asked_or_when_the_uac_cannot() {
        let h = headers("Supported: timer\r\nSession-Expires: 600;refresher=uas\r\n");
        let d = uas_negotiate(&h, &POLICY).unwrap();
        assert!(matches!(d, UasDecision::Timer { timer, .. } if timer.we_refresh));
        // No support, no header: our own interval, we refresh, no Require.
        let d = uas_negotiate(&headers(""), &POLICY).unwrap();
        let UasDecision::Timer {
            timer,
            headers: lines,
        } = d
        else {
            panic!()
        };
        assert_eq!(timer.interval, 1800);
        assert!(timer.we_refresh);
        assert_eq!(lines, vec!["Session-Expires: 1800;refresher=uas"]);
        let off = TimerPolicy {
            session_expires: 0,
            ..POLICY
        };
        assert_eq!(
            uas_negotiate(&headers(""), &off).unwrap(),
            UasDecision::None
        );
    }

    #[test]
    fn too_small_is_422_for_a_supporting_uac_and_raised_otherwise() {
        let h = headers("Supported: timer\r\nSession-Expires: 100\r\n");
        assert_eq!(
            uas_negotiate(&h, &POLICY).unwrap(),
            UasDecision::TooSmall { min_se: 120 }
        );
        let h = headers("Session-Expires: 100\r\n");
        let UasDecision::Timer { timer, .. } = uas_negotiate(&h, &POLICY).unwrap() else {
            panic!()
        };
        assert_eq!(timer.interval, 120);
        assert!(timer.we_refresh);
        assert!(uas_negotiate(&headers("Session-Expires: soon\r\n"), &POLICY).is_err());
    }

    #[test]
    fn uac_reads_the_answer_and_retries_after_422() {
        let h = uac_headers(1800, 90, None);
        assert_eq!(h[1], "Session-Expires: 1800");
        assert_eq!(
            uac_headers(600, 90, Some(true))[1],
            "Session-Expires: 600;refresher=uac"
        );
        let ok = headers("Session-Expires: 1800;refresher=uas\r\nRequire: timer\r\n");
        assert_eq!(
            uac_negotiate(&ok).unwrap(),
            Some(Negotiated {
                interval: 1800,
                we_refresh: false
            })
        );
        assert_eq!(uac_negotiate(&headers("")).unwrap(), None);
        assert_eq!(
            retry_interval(&headers("Min-SE: 3600\r\n"), 1800),
            Some(3600)
        );
        assert_eq!(retry_interval(&headers("Min-SE: 900\r\n"), 1800), None);
    }

    #[test]
    fn refresher_refreshes_at_half_then_expires_if_the_refresh_fails() {
        let t0 = Instant::now();
        let n = Negotiated {
            interval: 90,
            we_refresh: true,
        };
        let mut t = SessionTimer::new(n, t0);
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(45));
        assert_eq!(t.handle_timeout(t0 + Duration::from_secs(44)), None);
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(45)),
            Some(TimerAction::Refresh)
        );
        // 90 - min(32, 30) = 60 s.
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(60));
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(60)),
            Some(TimerAction::Expired)
        );
        // A successful refresh starts over.
        t.refreshed(n, t0 + Duration::from_secs(50));
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(95));
    }

    #[test]
    fn non_refresher_expires_a_bit_before_the_interval() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(
            Negotiated {
                interval: 1800,
                we_refresh: false,
            },
            t0,
        );
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(1800 - 32));
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(1800)),
            Some(TimerAction::Expired)
        );
    }
}
