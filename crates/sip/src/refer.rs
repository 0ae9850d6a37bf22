//! Call transfer pieces a B2BUA needs: REFER (RFC 3515) with its Refer-To, Referred-By
//! (RFC 3892), Replaces (RFC 3891) for attended transfer, and the NOTIFYs with
//! `message/sipfrag` bodies that report the transfer's progress to the referrer.
//!
//! Only parsing and formatting: what a transfer does to calls is the application's.

use crate::Error;
use crate::msg::{self, Header, Headers};

fn bad(what: &str) -> Error {
    Error::Malformed(format!("Bad {what}"))
}

/// A Replaces value (RFC 3891 §6.1): the dialog to take over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    /// The `to-tag`: the tag of the UA that *received* the Replaces' dialog's INVITE.
    pub to_tag: String,
    /// The `from-tag`: the tag of the dialog's initiator.
    pub from_tag: String,
    /// Replace only a dialog that is not yet confirmed.
    pub early_only: bool,
}

impl Replaces {
    /// Parses `callid;to-tag=x;from-tag=y[;early-only]` (both tags are mandatory).
    pub fn parse(value: &str) -> Result<Replaces, Error> {
        let mut parts = value.split(';');
        let call_id = parts.next().unwrap_or("").trim();
        if call_id.is_empty() || call_id.contains([' ', '\t', '<', '>']) {
            return Err(bad("Replaces: no Call-ID"));
        }
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("to-tag") && !v.is_empty() {
                to_tag = Some(v);
            } else if k.eq_ignore_ascii_case("from-tag") && !v.is_empty() {
                from_tag = Some(v);
            } else if k.eq_ignore_ascii_case("early-only") {
                early_only = true;
            }
        }
        match (to_tag, from_tag) {
            (Some(t), Some(f)) => Ok(Replaces {
                call_id: call_id.to_string(),
                to_tag: t.to_string(),
                from_tag: f.to_string(),
                early_only,
            }),
            _ => Err(bad("Replaces: to-tag and from-tag are required")),
        }
    }

    /// Whether this names the dialog with `call_id` whose tags are `local` and `remote`
    /// (either orientation: the referrer may have been caller or callee of it).
    pub fn names(&self, call_id: &str, local: &str, remote: &str) -> bool {
        self.call_id == call_id
            && ((self.to_tag == local && self.from_tag == remote)
                || (self.to_tag == remote && self.from_tag == local))
    }
}

impl std::fmt::Display for Replaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        if self.early_only {
            f.write_str(";early-only")?;
        }
        Ok(())
    }
}

/// A Refer-To value: where the referee should go, and for an attended transfer the
/// dialog it replaces (carried as a `?Replaces=` URI header, RFC 3891 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferTo {
    /// The target URI without its `?headers` part.
    pub uri: String,
    /// The URI's user part (an extension, queue number or phone number).
    pub user: Option<String>,
    pub replaces: Option<Replaces>,
}

impl ReferTo {
    /// Parses a Refer-To header value (name-addr or addr-spec).
    pub fn parse(value: &str) -> Result<ReferTo, Error> {
        let full = msg::addr_uri(value);
        // In an addr-spec, `;params` belong to the header, and `addr_uri` already cut them;
        // `?headers` only appear inside angle brackets, but be lenient.
        let (uri, headers) = match full.split_once('?') {
            Some((u, h)) => (u, Some(h)),
            None => (full, None),
        };
        let scheme_ok = ["sip:", "sips:", "tel:"].iter().any(|s| {
            uri.len() > s.len()
                && uri
                    .get(..s.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(s))
        });
        if !scheme_ok {
            return Err(bad("Refer-To: not a SIP or tel URI"));
        }
        let mut replaces = None;
        for h in headers.into_iter().flat_map(|h| h.split('&')) {
            let (k, v) = h.split_once('=').unwrap_or((h, ""));
            if k.eq_ignore_ascii_case("Replaces") {
                let decoded =
                    crate::percent::decode(v).ok_or_else(|| bad("Refer-To: bad escape"))?;
                replaces = Some(Replaces::parse(&decoded)?);
            }
        }
        Ok(ReferTo {
            user: uri_user(uri).map(str::to_string),
            uri: uri.to_string(),
            replaces,
        })
    }

    /// The Refer-To header value (`<uri?Replaces=...>`).
    pub fn to_header_value(&self) -> String {
        match &self.replaces {
            Some(r) => format!("<{}?Replaces={}>", self.uri, percent_encode(&r.to_string())),
            None => format!("<{}>", self.uri),
        }
    }
}

/// The user part of a sip/sips/tel URI (`sip:1001@host;p` → `1001`, `tel:+4930;p` → `+4930`).
pub fn uri_user(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once(':')?;
    let user = match rest.split_once('@') {
        Some((u, _)) => u,
        None if uri.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("tel:")) => rest,
        None => return None,
    };
    let user = user.split([';', ':']).next().unwrap_or("");
    (!user.is_empty()).then_some(user)
}

/// Escapes what may not appear in a URI header value (RFC 3261 `hvalue`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()[]/?:+$".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The Refer-To of a REFER: exactly one is required (RFC 3515 §2.4.1), so none or
/// several is a 400.
pub fn refer_to(headers: &Headers) -> Result<ReferTo, Error> {
    let mut it = headers.iter().filter(|h| matches!(h, Header::ReferTo(_)));
    match (it.next(), it.next()) {
        (Some(h), None) => ReferTo::parse(msg::header_value(h)),
        (None, _) => Err(bad("REFER: missing Refer-To")),
        _ => Err(bad("REFER: more than one Refer-To")),
    }
}

/// The URI of a Referred-By header (RFC 3892), if present.
pub fn referred_by(headers: &Headers) -> Option<&str> {
    msg::find(headers, |h| matches!(h, Header::ReferredBy(_))).map(msg::addr_uri)
}

/// The Replaces header of an INVITE (RFC 3891 §3), if present and well-formed.
pub fn replaces(headers: &Headers) -> Option<Result<Replaces, Error>> {
    msg::find(headers, |h| matches!(h, Header::Replaces(_))).map(Replaces::parse)
}

/// A `message/sipfrag` body reporting a status line (RFC 3515 §2.4.5).
pub fn sipfrag(status: u16, reason: &str) -> String {
    format!("SIP/2.0 {status} {}\r\n", reason.replace(['\r', '\n'], " "))
}

/// The status code of a sipfrag body's status line.
pub fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let line = body.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim();
    let mut it = line.split_whitespace();
    if !it.next()?.starts_with("SIP/") {
        return None;
    }
    it.next()?.parse().ok().filter(|s| (100..700).contains(s))
}

/// Content type of the NOTIFY bodies of a REFER subscription.
pub const SIPFRAG: &str = "message/sipfrag;version=2.0";

/// The header lines of a NOTIFY in the implicit subscription a REFER creates (RFC 3515
/// §2.4.4): `Event: refer` and the Subscription-State — active while the transfer is in
/// progress (status < 200), terminated with its final status.
pub fn notify_headers(status: u16, expires_secs: u32) -> Vec<String> {
    let state = if status < 200 {
        format!("active;expires={expires_secs}")
    } else {
        "terminated;reason=noresource".to_string()
    };
    vec![
        "Event: refer".to_string(),
        format!("Subscription-State: {state}"),
    ]
}

/// A Subscription-State value (RFC 6665 §8.2.3), as far as a referrer cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    Active { expires: Option<u32> },
    Pending { expires: Option<u32> },
    Terminated { reason: Option<String> },
}

impl SubscriptionState {
    pub fn parse(value: &str) -> Result<SubscriptionState, Error> {
        let mut parts = value.split(';');
        let state = parts.next().unwrap_or("").trim();
        let mut expires = None;
        let mut reason = None;
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if k.trim().eq_ignore_ascii_case("expires") {
                expires = Some(
                    v.trim()
                        .parse()
                        .map_err(|_| bad("Subscription-State expires"))?,
                );
            } else if k.trim().eq_ignore_ascii_case("reason") {
                reason = Some(v.trim().to_string());
            }
        }
        match state.to_ascii_lowercase().as_str() {
            "active" => Ok(SubscriptionState::Active { expires }),
            "pending" => Ok(SubscriptionState::Pending { expires }),
            "terminated" => Ok(SubscriptionState::Terminated { reason }),
            _ => Err(bad("Subscription-State")),
        }
    }
}

/// Whether a NOTIFY belongs to a REFER subscription (`Event: refer`, maybe with an id).
pub fn is_refer_event(headers: &Headers) -> bool {
    msg::find(headers, |h| matches!(h, Header::Event(_))).is_some_and(|e| {
        e.split(';')
            .next()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("refer"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Limits, SipMessage, parse};

    fn headers(extra: &str) -> Headers {
        let text = format!(
            "REFER sip:hotline@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK-1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 2 REFER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        match parse(text.as_bytes(), &Limits::default(), false) {
            Ok(SipMessage::Request(r)) => r.headers,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_escape_in_replaces_is_refused() {
        for bad in ["c%4", "c%+1", "c%ZZ"] {
            let v = format!("<sip:b@x?Replaces={bad}%3Bto-tag%3D1%3Bfrom-tag%3D2>");
            assert!(ReferTo::parse(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn blind_refer_to_an_extension() {
        let h = headers(
            "Refer-To: <sip:1002@hotline.example>\r\nReferred-By: <sip:1001@hotline.example>\r\n",
        );
        let r = refer_to(&h).unwrap();
        assert_eq!(r.uri, "sip:1002@hotline.example");
        assert_eq!(r.user.as_deref(), Some("1002"));
        assert_eq!(r.replaces, None);
        assert_eq!(referred_by(&h), Some("sip:1001@hotline.example"));
    }

    #[test]
    fn compact_form_and_addr_spec() {
        let h = headers("r: sip:4000@10.0.0.1;transport=udp\r\n");
        let r = refer_to(&h).unwrap();
        assert_eq!(r.user.as_deref(), Some("4000"));
        let t = ReferTo::parse("<tel:+4930123456;phone-context=x>").unwrap();
        assert_eq!(t.user.as_deref(), Some("+4930123456"));
    }

    #[test]
    fn attended_refer_carries_an_escaped_replaces() {
        let h = headers(
            "Refer-To: <sip:1002@10.0.0.1?Replaces=abc%40host%3Bto-tag%3Dhl7%3Bfrom-tag%3Da9>\r\n",
        );
        let r = refer_to(&h).unwrap();
        assert_eq!(r.uri, "sip:1002@10.0.0.1");
        let rep = r.replaces.clone().unwrap();
        assert_eq!(rep.call_id, "abc@host");
        assert_eq!(rep.to_tag, "hl7");
        assert_eq!(rep.from_tag, "a9");
        assert!(rep.names("abc@host", "hl7", "a9"));
        assert!(rep.names("abc@host", "a9", "hl7"));
        assert!(!rep.names("abc@host", "hl7", "zz"));
        // Round trip through our own formatting.
        assert_eq!(ReferTo::parse(&r.to_header_value()).unwrap(), r);
    }

    #[test]
    fn bad_refers_are_errors_not_panics() {
        assert!(refer_to(&headers("")).is_err(), "missing");
        assert!(
            refer_to(&headers("Refer-To: <sip:1@a>\r\nRefer-To: <sip:2@a>\r\n")).is_err(),
            "two"
        );
        assert!(ReferTo::parse("<http://x>").is_err());
        assert!(
            ReferTo::parse("<sip:1@a?Replaces=x%4>").is_err(),
            "short escape"
        );
        assert!(
            ReferTo::parse("<sip:1@a?Replaces=x%3Bto-tag%3D1>").is_err(),
            "no from-tag"
        );
        assert!(
            ReferTo::parse("<sip:1@a?Replaces=%FF%FE>").is_err(),
            "not UTF-8"
        );
        assert!(Replaces::parse(";to-tag=1;from-tag=2").is_err());
    }

    #[test]
    fn replaces_header_with_early_only() {
        let h = headers(
            "Replaces: 98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only\r\n",
        );
        let r = replaces(&h).unwrap().unwrap();
        assert_eq!(r.call_id, "98732@sip.example.com");
        assert!(r.early_only);
        assert_eq!(
            r.to_string(),
            "98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r;early-only"
        );
    }

    #[test]
    fn notify_bodies_and_states() {
        assert_eq!(sipfrag(100, "Trying"), "SIP/2.0 100 Trying\r\n");
        assert_eq!(sipfrag_status(b"SIP/2.0 200 OK\r\n"), Some(200));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here"), Some(486));
        assert_eq!(sipfrag_status(b"garbage"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 99999 x"), None);
        let h = notify_headers(100, 60);
        assert_eq!(h[0], "Event: refer");
        assert_eq!(h[1], "Subscription-State: active;expires=60");
        assert_eq!(
            notify_headers(503, 60)[1],
            "Subscription-State: terminated;reason=noresource"
        );
        assert_eq!(
            SubscriptionState::parse("terminated;reason=noresource").unwrap(),
            SubscriptionState::Terminated {
                reason: Some("noresource".into())
            }
        );
        assert_eq!(
            SubscriptionState::parse("active;expires=60").unwrap(),
            SubscriptionState::Active { expires: Some(60) }
        );
        assert!(SubscriptionState::parse("weird").is_err());
        assert!(SubscriptionState::parse("active;expires=x").is_err());
        assert!(is_refer_event(&headers("Event: refer;id=3\r\n")));
        assert!(!is_refer_event(&headers("Event: presence\r\n")));
    }
}
