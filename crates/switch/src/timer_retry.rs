//! RFC 4028 §6/§7.3 as UAC towards an agent's phone or a trunk: a `422 Session Interval
//! Too Small` to our INVITE is not a refusal of the call. We send the INVITE again, in the
//! same dialog-to-be (same Call-ID and From tag, next CSeq), with `Session-Expires` and
//! `Min-SE` raised to the Min-SE the 422 named; a second 422 that asks for no more than we
//! already offered ends the attempt (a loop guard).

use hotline_sip::msg::{self, Response};
use hotline_sip::session_timer;

/// Our INVITE to an agent as sent (text without Via, which the core adds), so it can go
/// again after a 422.
#[derive(Debug, Clone, Default)]
pub(crate) struct AgentInvite {
    /// The request text.
    text: String,
    /// Its CSeq number; the 2xx/4xx of this one is "the" answer to the offer.
    pub cseq: u32,
    /// The Session-Expires we asked for (0: we asked for none).
    asked: u32,
}

impl AgentInvite {
    /// The INVITE `text` we sent with CSeq 1, offering a session timer of `asked` s.
    pub(crate) fn new(text: String, asked: u32) -> AgentInvite {
        AgentInvite {
            text,
            cseq: 1,
            asked,
        }
    }

    /// The CSeq number of our current INVITE (1 when none was recorded).
    pub(crate) fn cseq(&self) -> u32 {
        self.cseq.max(1)
    }

    /// After a 422 to our current INVITE: the text of the INVITE to send instead (CSeq
    /// one up, interval and Min-SE raised to the 422's Min-SE), and this becomes it.
    /// `None` when there is nothing to retry with (no timer offered, Min-SE missing,
    /// malformed, or not above what we asked for).
    pub(crate) fn retry(&mut self, resp: &Response) -> Option<String> {
        if self.text.is_empty() {
            return None;
        }
        let interval = session_timer::retry_interval(&resp.headers, self.asked)?;
        let cseq = self.cseq() + 1;
        let mut out = String::with_capacity(self.text.len() + 16);
        let (head, body) = self.text.split_once("\r\n\r\n")?;
        let mut had_timer = false;
        for line in head.split("\r\n") {
            let name = line
                .split_once(':')
                .map(|(n, _)| n.trim().to_ascii_lowercase());
            match name.as_deref() {
                Some("cseq") => out.push_str(&format!("CSeq: {cseq} INVITE")),
                // `x` is the compact form.
                Some("session-expires" | "x") => {
                    had_timer = true;
                    out.push_str(&format!("Session-Expires: {interval}"));
                }
                Some("min-se") => out.push_str(&format!("Min-SE: {interval}")),
                _ => out.push_str(line),
            }
            out.push_str("\r\n");
        }
        if !had_timer {
            return None;
        }
        out.push_str("\r\n");
        out.push_str(body);
        self.text = out.clone();
        self.cseq = cseq;
        self.asked = interval;
        Some(out)
    }
}

/// Whether `resp` answers our current INVITE (not a re-INVITE or another request).
pub(crate) fn answers_invite(inv: &AgentInvite, resp: &Response) -> bool {
    msg::cseq(&resp.headers)
        .is_some_and(|(n, m)| n == inv.cseq() && m.eq_ignore_ascii_case("INVITE"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_sip::msg::{Limits, SipMessage};

    fn response(text: &str) -> Response {
        match msg::parse(text.as_bytes(), &Limits::default(), false) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nFrom: <sip:4000@h>;tag=a\r\nTo: <sip:bob@h>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nSupported: timer\r\nSession-Expires: 1800\r\nMin-SE: 90\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n";

    fn too_small(min_se: &str) -> Response {
        response(&format!(
            "SIP/2.0 422 Session Interval Too Small\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:4000@h>;tag=a\r\nTo: <sip:bob@h>;tag=b\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{min_se}Content-Length: 0\r\n\r\n"
        ))
    }

    #[test]
    fn a_422_raises_the_interval_and_the_cseq() {
        let mut inv = AgentInvite::new(INVITE.to_string(), 1800);
        let again = inv.retry(&too_small("Min-SE: 3600\r\n")).expect("retry");
        assert!(again.contains("CSeq: 2 INVITE\r\n"), "{again}");
        assert!(again.contains("Session-Expires: 3600\r\n"), "{again}");
        assert!(again.contains("Min-SE: 3600\r\n"), "{again}");
        assert!(again.ends_with("\r\n\r\nv=0\r\n"), "{again}");
        assert_eq!(inv.cseq(), 2);
    }

    #[test]
    fn no_retry_without_a_larger_min_se_or_a_timer() {
        let mut inv = AgentInvite::new(INVITE.to_string(), 1800);
        assert!(inv.retry(&too_small("Min-SE: 1800\r\n")).is_none());
        assert!(inv.retry(&too_small("")).is_none());
        assert!(inv.retry(&too_small("Min-SE: lots\r\n")).is_none());
        assert_eq!(inv.cseq(), 1, "nothing sent, nothing changed");
        let mut none = AgentInvite::default();
        assert!(none.retry(&too_small("Min-SE: 3600\r\n")).is_none());
        // A second 422 for the interval we already raised to: give up.
        let mut inv = AgentInvite::new(INVITE.to_string(), 1800);
        assert!(inv.retry(&too_small("Min-SE: 3600\r\n")).is_some());
        assert!(inv.retry(&too_small("Min-SE: 3600\r\n")).is_none());
    }
}
