//! Dialogs (RFC 3261 §12): identity, CSeq spaces, route set and remote target, and the
//! construction of in-dialog requests. Sans-IO; the proxy does not need dialogs, the
//! B2BUA (call control) will.

use crate::Error;
use crate::msg::{self, Header, Request, Response};

/// Call-ID plus both tags (§12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// One side's view of a dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: DialogId,
    /// Our From (UAC) / To (UAS) value, with tag, as it goes into requests we send.
    local: String,
    /// The peer's header value, with tag.
    remote: String,
    local_seq: u32,
    remote_seq: Option<u32>,
    /// The peer's Contact URI.
    pub remote_target: String,
    /// Route set, in the order requests must carry it (values with angle brackets).
    pub route_set: Vec<String>,
}

fn missing(what: &str) -> Error {
    Error::Malformed(format!("dialog: missing {what}"))
}

/// Every value of every header matching `pred`, comma-joined values split.
fn values(headers: &msg::Headers, pred: impl Fn(&Header) -> bool) -> Vec<String> {
    let mut out = vec![];
    for h in headers.iter().filter(|h| pred(h)) {
        let mut rest = Some(msg::header_value(h));
        while let Some(r) = rest {
            let (v, tail) = msg::split_first(r);
            rest = tail;
            if !v.is_empty() {
                out.push(v.to_string());
            }
        }
    }
    out
}

fn contact_uri(headers: &msg::Headers) -> Option<String> {
    let c = msg::find(headers, |h| matches!(h, Header::Contact(_)))?;
    Some(msg::addr_uri(msg::split_first(c).0).to_string())
}

impl Dialog {
    /// The caller's dialog, from the INVITE it sent and a response with a To tag
    /// (§12.1.2): route set is the response's Record-Route reversed.
    pub fn from_uac(request: &Request, response: &Response) -> Result<Dialog, Error> {
        let from = msg::from_value(&request.headers).ok_or_else(|| missing("From"))?;
        let to = msg::to_value(&response.headers).ok_or_else(|| missing("To"))?;
        let call_id = msg::call_id(&request.headers).ok_or_else(|| missing("Call-ID"))?;
        let (seq, _) = msg::cseq(&request.headers).ok_or_else(|| missing("CSeq"))?;
        let mut route_set = values(&response.headers, |h| matches!(h, Header::RecordRoute(_)));
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag: msg::tag(from)
                    .ok_or_else(|| missing("From tag"))?
                    .to_string(),
                remote_tag: msg::tag(to).ok_or_else(|| missing("To tag"))?.to_string(),
            },
            local: from.to_string(),
            remote: to.to_string(),
            local_seq: seq,
            remote_seq: None,
            remote_target: contact_uri(&response.headers).ok_or_else(|| missing("Contact"))?,
            route_set,
        })
    }

    /// The callee's dialog, from the request it received and the tag it chose (§12.1.1):
    /// route set is the request's Record-Route in order.
    pub fn from_uas(request: &Request, local_tag: &str) -> Result<Dialog, Error> {
        let from = msg::from_value(&request.headers).ok_or_else(|| missing("From"))?;
        let to = msg::to_value(&request.headers).ok_or_else(|| missing("To"))?;
        let call_id = msg::call_id(&request.headers).ok_or_else(|| missing("Call-ID"))?;
        let (seq, _) = msg::cseq(&request.headers).ok_or_else(|| missing("CSeq"))?;
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag: msg::tag(from)
                    .ok_or_else(|| missing("From tag"))?
                    .to_string(),
            },
            local: format!("{to};tag={local_tag}"),
            remote: from.to_string(),
            local_seq: 0,
            remote_seq: Some(seq),
            remote_target: contact_uri(&request.headers).ok_or_else(|| missing("Contact"))?,
            route_set: values(&request.headers, |h| matches!(h, Header::RecordRoute(_))),
        })
    }

    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// Whether an incoming request belongs to this dialog (§12.2.2).
    pub fn matches(&self, req: &Request) -> bool {
        msg::call_id(&req.headers) == Some(self.id.call_id.as_str())
            && msg::to_value(&req.headers).and_then(msg::tag) == Some(self.id.local_tag.as_str())
            && msg::from_value(&req.headers).and_then(msg::tag) == Some(self.id.remote_tag.as_str())
    }

    /// Checks and records the CSeq of an in-dialog request from the peer: a lower or equal
    /// number (except ACK/CANCEL, which reuse the INVITE's) must be answered 500 (§12.2.2).
    pub fn handle_request(&mut self, req: &Request) -> Result<(), Error> {
        let (seq, method) = msg::cseq(&req.headers).ok_or_else(|| missing("CSeq"))?;
        if method.eq_ignore_ascii_case("ACK") || method.eq_ignore_ascii_case("CANCEL") {
            return Ok(());
        }
        if let Some(r) = self.remote_seq
            && seq <= r
        {
            return Err(Error::Malformed("CSeq out of order".into()));
        }
        self.remote_seq = Some(seq);
        Ok(())
    }

    /// Builds the next in-dialog request (§12.2.1.1). `via` is the full Via value
    /// (`SIP/2.0/UDP host:port;branch=...`). ACK reuses `ack_seq` (the INVITE's CSeq);
    /// other methods take the next local CSeq.
    pub fn request(
        &mut self,
        method: &str,
        via: &str,
        ack_seq: Option<u32>,
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        self.build(method, Some(via), ack_seq, &[], body)
    }

    /// The next in-dialog request as a message for [`crate::server::AppHandle::send_request`]
    /// (which adds its own Via): a B2BUA's re-INVITE, UPDATE, NOTIFY, REFER or BYE with
    /// the right CSeq, route set and target. `extra` are whole header lines
    /// (`Name: value`, no CRLF), e.g. Contact, Event, Session-Expires.
    pub fn app_request(
        &mut self,
        method: &str,
        extra: &[String],
        body: Option<(&str, &[u8])>,
    ) -> Result<Request, Error> {
        let bytes = self.build(method, None, None, extra, body);
        parse_own(&bytes)
    }

    /// The ACK of a 2xx to our (re-)INVITE with CSeq `invite_seq` (§13.2.2.4), for
    /// [`crate::server::AppHandle::send_stateless`].
    pub fn app_ack(&mut self, invite_seq: u32) -> Result<Request, Error> {
        let bytes = self.build("ACK", None, Some(invite_seq), &[], None);
        parse_own(&bytes)
    }

    /// A target refresh (§12.2): a re-INVITE or UPDATE from the peer (or the 2xx to ours)
    /// may carry a new Contact, which becomes where our requests go.
    pub fn refresh_target(&mut self, headers: &msg::Headers) {
        if let Some(t) = contact_uri(headers) {
            self.remote_target = t;
        }
    }

    /// Our From/To value with our tag (Referred-By, NOTIFY bodies, logs).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The peer's From/To value with its tag.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    fn build(
        &mut self,
        method: &str,
        via: Option<&str>,
        ack_seq: Option<u32>,
        extra: &[String],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let seq = match (method, ack_seq) {
            ("ACK", Some(s)) => s,
            _ => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        // Loose routing when the first route has `lr`; strict routing otherwise (§12.2.1.1).
        let strict = self
            .route_set
            .first()
            .is_some_and(|r| msg::param(msg::addr_uri(r), "lr").is_none());
        let (ruri, routes): (String, Vec<String>) = if strict {
            let mut rs: Vec<String> = self.route_set[1..].to_vec();
            rs.push(format!("<{}>", self.remote_target));
            (msg::addr_uri(&self.route_set[0]).to_string(), rs)
        } else {
            (self.remote_target.clone(), self.route_set.clone())
        };
        // The message API wants a Via to parse; `parse_own` removes this placeholder.
        let via = via.unwrap_or(PLACEHOLDER_VIA);
        let mut out = format!(
            "{method} {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {seq} {method}\r\n",
            self.local, self.remote, self.id.call_id
        );
        for r in &routes {
            out.push_str("Route: ");
            out.push_str(r);
            out.push_str("\r\n");
        }
        for e in extra {
            // A header line with a line break would smuggle in another header.
            out.push_str(&e.replace(['\r', '\n'], " "));
            out.push_str("\r\n");
        }
        let mut bytes = match body {
            Some((ctype, b)) => {
                out.push_str(&format!(
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                ));
                let mut v = out.into_bytes();
                v.extend_from_slice(b);
                v
            }
            None => {
                out.push_str("Content-Length: 0\r\n\r\n");
                out.into_bytes()
            }
        };
        bytes.shrink_to_fit();
        bytes
    }
}

const PLACEHOLDER_VIA: &str = "SIP/2.0/UDP 0.0.0.0;branch=z9hG4bK-hl-placeholder";

/// Parses a request built by [`Dialog::build`] and drops the placeholder Via.
fn parse_own(bytes: &[u8]) -> Result<Request, Error> {
    match msg::parse(bytes, &msg::Limits::default(), false)? {
        msg::SipMessage::Request(mut r) => {
            msg::pop_top_via(&mut r.headers);
            Ok(r)
        }
        msg::SipMessage::Response(_) => Err(Error::Malformed("dialog: not a request".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Limits, SipMessage, parse};

    fn request(text: &str) -> Request {
        match parse(text.as_bytes(), &Limits::default(), false) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn response(text: &str) -> Response {
        match parse(text.as_bytes(), &Limits::default(), false) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const INVITE: &str = "INVITE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK-1\r\nRecord-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\nFrom: \"Alice\" <sip:alice@a.example>;tag=at\r\nTo: <sip:bob@b.example>\r\nCall-ID: d1\r\nCSeq: 10 INVITE\r\nContact: <sip:alice@10.0.0.1:5062>\r\nContent-Length: 0\r\n\r\n";
    const OK: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK-1\r\nRecord-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example;lr>\r\nFrom: \"Alice\" <sip:alice@a.example>;tag=at\r\nTo: <sip:bob@b.example>;tag=bt\r\nCall-ID: d1\r\nCSeq: 10 INVITE\r\nContact: <sip:bob@10.0.0.2:5064;transport=udp>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn uac_dialog_reverses_record_route_and_targets_contact() {
        let mut d = Dialog::from_uac(&request(INVITE), &response(OK)).unwrap();
        assert_eq!(d.id.local_tag, "at");
        assert_eq!(d.id.remote_tag, "bt");
        assert_eq!(
            d.route_set,
            vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        let ack = String::from_utf8(d.request(
            "ACK",
            "SIP/2.0/UDP a.example;branch=z9hG4bK-2",
            Some(10),
            None,
        ))
        .unwrap();
        assert!(
            ack.starts_with("ACK sip:bob@10.0.0.2:5064;transport=udp SIP/2.0\r\n"),
            "{ack}"
        );
        assert!(ack.contains("CSeq: 10 ACK\r\n"));
        let bye = String::from_utf8(d.request(
            "BYE",
            "SIP/2.0/UDP a.example;branch=z9hG4bK-3",
            None,
            None,
        ))
        .unwrap();
        assert!(bye.contains("CSeq: 11 BYE\r\n"), "{bye}");
        assert!(
            bye.contains("Route: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>\r\n"),
            "{bye}"
        );
        assert!(bye.contains(
            "From: \"Alice\" <sip:alice@a.example>;tag=at\r\nTo: <sip:bob@b.example>;tag=bt\r\n"
        ));
        // The built request parses.
        let parsed = request(&bye);
        assert_eq!(msg::cseq(&parsed.headers), Some((11, "BYE")));
    }

    #[test]
    fn uas_dialog_keeps_route_order_and_rejects_old_cseq() {
        let inv = request(INVITE);
        let mut d = Dialog::from_uas(&inv, "bt").unwrap();
        assert_eq!(
            d.route_set,
            vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
        );
        assert_eq!(d.remote_target, "sip:alice@10.0.0.1:5062");
        let bye = request(
            "BYE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK-9\r\nFrom: <sip:alice@a.example>;tag=at\r\nTo: <sip:bob@b.example>;tag=bt\r\nCall-ID: d1\r\nCSeq: 11 BYE\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(d.matches(&bye));
        assert!(d.handle_request(&bye).is_ok());
        assert!(d.handle_request(&bye).is_err(), "same CSeq again");
        let other = request(&String::from_utf8_lossy(&d.request(
            "BYE",
            "SIP/2.0/UDP b;branch=z9hG4bK-x",
            None,
            None,
        )));
        assert!(!d.matches(&other), "our own request is not from the peer");
        assert_eq!(
            msg::to_value(&other.headers),
            Some("\"Alice\" <sip:alice@a.example>;tag=at")
        );
    }

    #[test]
    fn strict_route_puts_first_route_in_request_uri() {
        let ok = OK.replace("<sip:p1.example;lr>", "<sip:p1.example>");
        let mut d = Dialog::from_uac(&request(INVITE), &response(&ok)).unwrap();
        let bye = String::from_utf8(d.request("BYE", "SIP/2.0/UDP a;branch=z9hG4bK-4", None, None))
            .unwrap();
        assert!(bye.starts_with("BYE sip:p1.example SIP/2.0\r\n"), "{bye}");
        assert!(
            bye.contains(
                "Route: <sip:p2.example;lr>\r\nRoute: <sip:bob@10.0.0.2:5064;transport=udp>\r\n"
            ),
            "{bye}"
        );
    }

    #[test]
    fn response_without_to_tag_cannot_make_a_dialog() {
        let ok = OK.replace(";tag=bt", "");
        assert!(Dialog::from_uac(&request(INVITE), &response(&ok)).is_err());
    }

    #[test]
    fn app_requests_for_a_b2bua() {
        let mut d = Dialog::from_uac(&request(INVITE), &response(OK)).unwrap();
        let reinvite = d
            .app_request(
                "INVITE",
                &["Contact: <sip:alice@10.0.0.1:5062>".to_string()],
                Some(("application/sdp", b"v=0\r\n")),
            )
            .unwrap();
        assert_eq!(reinvite.method, msg::Method::Invite);
        assert_eq!(msg::cseq(&reinvite.headers), Some((11, "INVITE")));
        assert!(
            msg::top_via(&reinvite.headers).is_none(),
            "the core adds the Via"
        );
        assert_eq!(reinvite.body, b"v=0\r\n");
        assert!(
            reinvite
                .uri
                .to_string()
                .eq_ignore_ascii_case("sip:bob@10.0.0.2:5064;transport=udp")
        );
        let routes: Vec<_> = reinvite
            .headers
            .iter()
            .filter(|h| matches!(h, Header::Route(_)))
            .map(msg::header_value)
            .collect();
        assert_eq!(routes, vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        let ack = d.app_ack(11).unwrap();
        assert_eq!(msg::cseq(&ack.headers), Some((11, "ACK")));
        let notify = d
            .app_request("NOTIFY", &["Event: refer\r\nX-Evil: 1".to_string()], None)
            .unwrap();
        assert_eq!(msg::cseq(&notify.headers), Some((12, "NOTIFY")));
        assert!(
            !notify
                .headers
                .iter()
                .any(|h| matches!(h, Header::Other(n, _) if n == "X-Evil")),
            "a CRLF in an extra header cannot add a header"
        );
        // A target refresh moves where the next request goes.
        let moved = response(&OK.replace("10.0.0.2:5064;transport=udp", "10.0.0.9:5070"));
        d.refresh_target(&moved.headers);
        let bye = d.app_request("BYE", &[], None).unwrap();
        assert_eq!(bye.uri.to_string(), "sip:bob@10.0.0.9:5070");
        assert_eq!(d.local(), "\"Alice\" <sip:alice@a.example>;tag=at");
        assert_eq!(d.remote(), "<sip:bob@b.example>;tag=bt");
    }
}
