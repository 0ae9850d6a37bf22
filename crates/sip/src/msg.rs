//! Our thin layer over the rsip message API (`rsipstack::sip`).
//!
//! Everything else in this crate reaches SIP messages only through this module, so the
//! parser can be swapped. It also closes the gaps of the underlying parser that matter for a
//! server facing the open network (see [`parse`]): rsip stops at the first non-UTF-8 header
//! line, silently skips lines without a colon, truncates a body shorter than its
//! Content-Length, drops the body of a datagram without Content-Length, and does not check
//! duplicate single-valued headers.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;

use crate::Error;

pub use rsipstack::sip as rsip;
pub use rsipstack::sip::{Header, Headers, Method, Request, Response, SipMessage, Uri};

/// Limits applied before any parsing, so hostile input cannot make us allocate without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of one message (headers + body) in bytes.
    pub max_message_size: usize,
    /// Maximum number of header lines.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 65_535,
            max_headers: 100,
        }
    }
}

/// Headers that may appear only once, by [`known_header`]'s number (which also knows
/// their compact forms); the names are for error messages.
const SINGLE: [&str; 7] = [
    "call-id",
    "cseq",
    "from",
    "to",
    "max-forwards",
    "content-length",
    "content-type",
];
/// [`known_header`]'s number for Content-Length (its value is checked too).
const CONTENT_LENGTH: usize = 5;

/// Index in [`SINGLE`] of the headers every request and response must carry, and Via.
const MUST: [(usize, &str); 4] = [(2, "From"), (3, "To"), (0, "Call-ID"), (1, "CSeq")];
/// [`known_header`]'s number for Via (may repeat, must be present).
const VIA: usize = SINGLE.len();

/// Which header `name` is: its index in [`SINGLE`], [`VIA`] for Via, `None` for any
/// other (case-insensitive, long or compact form). One pass over a short name instead of
/// a comparison per known header: every header line of every message comes here.
fn known_header(name: &str) -> Option<usize> {
    let mut buf = [0u8; 14];
    let b = name.as_bytes();
    if b.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..b.len()];
    lower.copy_from_slice(b);
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"call-id" | b"i" => 0,
        b"cseq" => 1,
        b"from" | b"f" => 2,
        b"to" | b"t" => 3,
        b"max-forwards" => 4,
        b"content-length" | b"l" => 5,
        b"content-type" | b"c" => 6,
        b"via" | b"v" => VIA,
        _ => return None,
    })
}

/// The lines of a message head, split at CRLF only (a lone LF stays inside its line).
fn crlf_lines(head: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let r = rest?;
        let b = r.as_bytes();
        let mut from = 0;
        while let Some(i) = memchr::memchr(b'\n', &b[from..]).map(|i| i + from) {
            if i > 0 && b[i - 1] == b'\r' {
                rest = Some(&r[i + 1..]);
                return Some(&r[..i - 1]);
            }
            from = i + 1;
        }
        rest = None;
        Some(r)
    })
}

fn bad(reason: &str) -> Error {
    Error::Malformed(reason.to_string())
}

/// Parses and validates one complete SIP message.
///
/// `datagram` is true for UDP, where the message ends at the end of the datagram; for
/// streams the framer has already cut the message by Content-Length.
pub fn parse(data: &[u8], limits: &Limits, datagram: bool) -> Result<SipMessage, Error> {
    if data.len() > limits.max_message_size {
        return Err(Error::TooLarge(data.len()));
    }
    let head_end =
        memchr::memmem::find(data, b"\r\n\r\n").ok_or_else(|| bad("Missing CRLF CRLF"))?;
    let head = std::str::from_utf8(&data[..head_end]).map_err(|_| bad("Header not UTF-8"))?;
    let body_start = head_end + 4;
    let mut lines = crlf_lines(head);
    let start = lines.next().unwrap_or("");
    if start.is_empty() {
        return Err(bad("Empty start line"));
    }
    let mut count = 0usize;
    let mut seen = [0u8; SINGLE.len()];
    let mut content_length: Option<usize> = None;
    let mut has_via = false;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            continue; // folded continuation of the previous header
        }
        count += 1;
        if count > limits.max_headers {
            return Err(Error::TooManyHeaders);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("Malformed header line"));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(bad("Malformed header name"));
        }
        match known_header(name) {
            Some(VIA) => has_via = true,
            Some(i) => {
                seen[i] = seen[i].saturating_add(1);
                if seen[i] > 1 {
                    return Err(Error::Malformed(format!("Duplicate {} header", SINGLE[i])));
                }
                if i == CONTENT_LENGTH {
                    let v = value.trim();
                    content_length = Some(
                        v.parse::<usize>()
                            .map_err(|_| bad("Invalid Content-Length"))?,
                    );
                }
            }
            None => {}
        }
    }
    let available = data.len().saturating_sub(body_start);
    let body_len = match content_length {
        Some(cl) if cl > available => return Err(bad("Content-Length exceeds body")),
        Some(cl) => cl,
        None if datagram => available,
        None => 0,
    };
    // rsip's Method has no "other" variant: an unknown but well-formed method would fail
    // the whole parse. Detect it so the core can answer 501 instead of 400.
    if !start.starts_with("SIP/")
        && let Some(m) = start.split(' ').next()
        && !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        && m.parse::<Method>().is_err()
    {
        return Err(Error::UnsupportedMethod(m.chars().take(32).collect()));
    }
    if !has_via {
        return Err(bad("Missing Via header"));
    }
    if let Some((_, name)) = MUST.iter().find(|(i, _)| seen[*i] == 0) {
        return Err(Error::Malformed(format!("Missing {name} header")));
    }
    let mut msg = rsip::parser::parse_message(&data[..body_start + body_len])
        .map_err(|e| Error::Malformed(format!("Unparseable: {}", one_line(&e.to_string()))))?;
    match &mut msg {
        SipMessage::Request(req) => {
            if content_length.is_none() && body_len > 0 {
                req.body = data[body_start..body_start + body_len].to_vec();
            }
            let cseq = cseq(&req.headers).ok_or_else(|| bad("Invalid CSeq"))?;
            if !cseq.1.eq_ignore_ascii_case(&req.method.to_string()) {
                return Err(bad("CSeq method mismatch"));
            }
            if let Some(mf) = find(&req.headers, |h| matches!(h, Header::MaxForwards(_))) {
                mf.trim()
                    .parse::<u8>()
                    .map_err(|_| bad("Invalid Max-Forwards"))?;
            }
            let via = top_via(&req.headers).ok_or_else(|| bad("Invalid Via"))?;
            rsip::typed::Via::parse(via).map_err(|_| bad("Invalid Via"))?;
        }
        SipMessage::Response(resp) => {
            if content_length.is_none() && body_len > 0 {
                resp.body = data[body_start..body_start + body_len].to_vec();
            }
            cseq(&resp.headers).ok_or_else(|| bad("Invalid CSeq"))?;
        }
    }
    Ok(msg)
}

/// Parses a message Hotline wrote itself (a request to an agent, an ACK, a BYE): none of
/// [`parse`]'s checks for hostile input, and no Via required (the core adds its own when
/// it sends the request).
pub fn parse_own(data: &[u8]) -> Result<SipMessage, Error> {
    rsip::parser::parse_message(data)
        .map_err(|e| Error::Malformed(format!("Unparseable: {}", one_line(&e.to_string()))))
}

fn one_line(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// The raw value of a header, found by predicate.
pub fn find(headers: &Headers, pred: impl Fn(&Header) -> bool) -> Option<&str> {
    headers.iter().find(|h| pred(h)).map(header_value)
}

/// The raw value of any header (what follows `Name: `).
pub fn header_value(h: &Header) -> &str {
    use Header as H;
    match h {
        H::Via(v) => &v.0,
        H::From(v) => &v.0,
        H::To(v) => &v.0,
        H::CallId(v) => &v.0,
        H::CSeq(v) => &v.0,
        H::Contact(v) => &v.0,
        H::MaxForwards(v) => &v.0,
        H::Expires(v) => &v.0,
        H::Route(v) => &v.0,
        H::RecordRoute(v) => &v.0,
        H::Authorization(v) => &v.0,
        H::ProxyAuthorization(v) => &v.0,
        H::ContentLength(v) => &v.0,
        H::ProxyRequire(v) => &v.0,
        H::Require(v) => &v.0,
        H::Supported(v) => &v.0,
        H::Unsupported(v) => &v.0,
        H::ContentType(v) => &v.0,
        H::Allow(v) => &v.0,
        H::Event(v) => &v.0,
        H::SubscriptionState(v) => &v.0,
        H::ReferTo(v) => &v.0,
        H::ReferredBy(v) => &v.0,
        H::Replaces(v) => &v.0,
        H::SessionExpires(v) => &v.0,
        H::MinSE(v) => &v.0,
        H::Reason(v) => &v.0,
        H::UserAgent(v) => &v.0,
        H::Other(_, v) => v,
        _ => "",
    }
}

pub fn call_id(headers: &Headers) -> Option<&str> {
    find(headers, |h| matches!(h, Header::CallId(_))).map(str::trim)
}

/// `(number, method)` from CSeq.
pub fn cseq(headers: &Headers) -> Option<(u32, &str)> {
    let v = find(headers, |h| matches!(h, Header::CSeq(_)))?;
    let mut it = v.split_whitespace();
    let n = it.next()?.parse().ok()?;
    let m = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some((n, m))
}

pub fn from_value(headers: &Headers) -> Option<&str> {
    find(headers, |h| matches!(h, Header::From(_)))
}

pub fn to_value(headers: &Headers) -> Option<&str> {
    find(headers, |h| matches!(h, Header::To(_)))
}

/// First hop of the first Via header (a comma-joined Via counts as several hops).
pub fn top_via(headers: &Headers) -> Option<&str> {
    let v = find(headers, |h| matches!(h, Header::Via(_)))?;
    Some(split_first(v).0)
}

/// Splits a comma-joined header value into its first element and the rest (after the comma).
/// Commas inside quotes or `<...>` do not split.
pub fn split_first(v: &str) -> (&str, Option<&str>) {
    let mut quoted = false;
    let mut angle = false;
    let mut escaped = false;
    for (i, c) in v.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => return (v[..i].trim(), Some(v[i + 1..].trim())),
            _ => {}
        }
    }
    (v.trim(), None)
}

/// A `;name=value` parameter of a header value, outside `<...>` (case-insensitive name).
/// `Some("")` for a parameter without a value.
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let tail = match angle(value) {
        Some((_, b)) => &value[b + 1..],
        None => value,
    };
    tail.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// The tag parameter of a From/To value.
pub fn tag(value: &str) -> Option<&str> {
    param(value, "tag").filter(|t| !t.is_empty())
}

/// The URI inside a name-addr (`"x" <sip:a@b>;p`) or addr-spec (`sip:a@b;p`) value.
pub fn addr_uri(value: &str) -> &str {
    if let Some((a, b)) = angle(value) {
        return value[a + 1..b].trim();
    }
    value.split(';').next().unwrap_or("").trim()
}

/// Byte offsets of the `<` and `>` around the URI of a name-addr: the first `<` outside a
/// quoted display name and the first `>` after it. Not the last `>` of the value: header
/// parameters may hold one in quotes (RFC 5626 `+sip.instance="<urn:uuid:...>"`, as
/// JsSIP and SIP.js send).
fn angle(value: &str) -> Option<(usize, usize)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => {
                let b = value[i..].find('>')? + i;
                return Some((i, b));
            }
            _ => {}
        }
    }
    None
}

/// The Via branch, if any.
pub fn branch(via: &str) -> Option<&str> {
    param(via, "branch").filter(|b| !b.is_empty())
}

/// `host[:port]` of a Via hop, and its transport token.
pub fn via_sent_by(via: &str) -> Option<(&str, &str)> {
    let rest = via.trim().strip_prefix("SIP")?.trim_start();
    let rest = rest.strip_prefix('/')?;
    let (_, rest) = rest.split_once('/')?;
    let rest = rest.trim_start();
    let end = rest.find([' ', '\t'])?;
    let transport = &rest[..end];
    let sent_by = rest[end..].trim_start().split(';').next()?.trim();
    Some((sent_by, transport))
}

/// Port of a `host[:port]`, IPv6 literals in brackets allowed.
pub fn hostport_port(hp: &str) -> Option<u16> {
    let after_host = match hp.rfind(']') {
        Some(i) => &hp[i + 1..],
        None => hp,
    };
    after_host
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim().parse().ok())
}

/// `(host, port)` of a sip/sips URI (host without IPv6 brackets).
pub fn uri_hostport(uri: &str) -> Option<(&str, Option<u16>)> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .or_else(|| uri.strip_prefix("SIP:"))?;
    let rest = match rest.rfind('@') {
        Some(i) => &rest[i + 1..],
        None => rest,
    };
    let hp = rest.split([';', '?', '>']).next()?;
    Some((hostport_host(hp), hostport_port(hp)))
}

/// Host part of a `host[:port]` with brackets removed.
pub fn hostport_host(hp: &str) -> &str {
    if let Some(rest) = hp.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    hp.split(':').next().unwrap_or("")
}

/// RFC 3581 and §18.2.1: adds `received` (and fills `rport`) to the top Via of a request
/// so responses find their way back through NAT.
pub fn stamp_received(req: &mut Request, source: SocketAddr) {
    let Some(Header::Via(via)) = req.headers.iter_mut().find(|h| matches!(h, Header::Via(_)))
    else {
        return;
    };
    let (first, rest) = split_first(&via.0);
    let Some((sent_by, _)) = via_sent_by(first) else {
        return;
    };
    let host = hostport_host(sent_by);
    let has_rport = param(first, "rport").is_some();
    let ip_differs = host.parse::<std::net::IpAddr>().ok() != Some(source.ip());
    if !has_rport && !ip_differs {
        return;
    }
    let mut out = String::with_capacity(first.len() + 40);
    for (i, p) in first.split(';').enumerate() {
        let key = p.split('=').next().unwrap_or("").trim();
        if i > 0 && (key.eq_ignore_ascii_case("received") || key.eq_ignore_ascii_case("rport")) {
            continue;
        }
        if i > 0 {
            out.push(';');
        }
        out.push_str(p);
    }
    let _ = write!(out, ";received={}", source.ip());
    if has_rport {
        let _ = write!(out, ";rport={}", source.port());
    }
    if let Some(rest) = rest {
        out.push_str(", ");
        out.push_str(rest);
    }
    via.0 = out;
}

/// Removes the first hop of the first Via header (a proxy removing its own Via from a
/// response); a comma-joined Via keeps its other hops.
pub fn pop_top_via(headers: &mut Headers) {
    let Some(idx) = headers.iter().position(|h| matches!(h, Header::Via(_))) else {
        return;
    };
    let rest = match &headers.iter().nth(idx) {
        Some(Header::Via(v)) => split_first(&v.0).1.map(str::to_string),
        _ => None,
    };
    let mut all: Vec<Header> = std::mem::take(headers).into_iter().collect();
    match rest {
        Some(rest) => all[idx] = Header::Via(rsip::Via::new(rest)),
        None => {
            all.remove(idx);
        }
    }
    *headers = all.into();
}

/// Writes a header the way it goes on the wire.
fn write_header(out: &mut Vec<u8>, h: &Header) {
    let _ = write!(out, "{h}\r\n");
}

/// Serializes a request with exactly one Content-Length (added when missing).
pub fn request_bytes(req: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + req.body.len());
    let _ = write!(out, "{} {} SIP/2.0\r\n", req.method, req.uri);
    for h in req.headers.iter() {
        if !matches!(h, Header::ContentLength(_)) {
            write_header(&mut out, h);
        }
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", req.body.len());
    out.extend_from_slice(&req.body);
    out
}

/// Serializes a response with exactly one Content-Length.
pub fn response_bytes(resp: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + resp.body.len());
    let _ = write!(
        out,
        "SIP/2.0 {} {}\r\n",
        u16::from(resp.status_code.clone()),
        resp.reason_phrase().unwrap_or("")
    );
    for h in resp.headers.iter() {
        if !matches!(h, Header::ContentLength(_)) {
            write_header(&mut out, h);
        }
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", resp.body.len());
    out.extend_from_slice(&resp.body);
    out
}

/// Builds a response to `req` (§8.2.6): copies Via, From, To (adding `to_tag` when the To
/// has none), Call-ID and CSeq, then `extra` header lines (`Name: value`, no CRLF).
pub fn build_response(
    req: &Request,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[&str],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(400);
    let _ = write!(out, "SIP/2.0 {code} {}\r\n", sanitize(reason));
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                write_header(&mut out, h)
            }
            Header::To(to) => {
                let _ = write!(out, "To: {}", to.0);
                if let Some(t) = to_tag
                    && tag(&to.0).is_none()
                {
                    let _ = write!(out, ";tag={t}");
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    for e in extra {
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Server: Hotline\r\nContent-Length: 0\r\n\r\n");
    out
}

fn sanitize(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(120)
        .collect()
}

/// Builds an error response from raw bytes that did not parse: only possible for a
/// request whose Via, From, To, Call-ID and CSeq lines can be found. `None` means the
/// message must be dropped (and counted).
pub fn raw_error_response(data: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let head_end = memchr::memmem::find(data, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(data, b"\n\n"))
        .unwrap_or(data.len().min(16 * 1024));
    let head = &data[..head_end];
    let mut lines = head.split(|&b| b == b'\n');
    let start = lines.next()?;
    if start.starts_with(b"SIP/") || start.is_empty() {
        return None; // responses are never answered
    }
    let mut via: Vec<&str> = vec![];
    let (mut from, mut to, mut callid, mut cseq) = (None, None, None, None);
    for line in lines {
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if value.is_empty() || value.contains(['\r', '\n']) {
            continue;
        }
        let is = |l: &str, s: &str| name.eq_ignore_ascii_case(l) || name.eq_ignore_ascii_case(s);
        if is("via", "v") {
            via.push(value);
        } else if is("from", "f") {
            from.get_or_insert(value);
        } else if is("to", "t") {
            to.get_or_insert(value);
        } else if is("call-id", "i") {
            callid.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("cseq") {
            cseq.get_or_insert(value);
        }
    }
    let (from, to, callid, cseq) = (from?, to?, callid?, cseq?);
    if via.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(400);
    let _ = write!(out, "SIP/2.0 {code} {}\r\n", sanitize(reason));
    for v in via {
        let _ = write!(out, "Via: {v}\r\n");
    }
    let _ = write!(out, "From: {from}\r\nTo: {to}");
    if tag(to).is_none() {
        out.extend_from_slice(b";tag=hl-err");
    }
    let _ = write!(
        out,
        "\r\nCall-ID: {callid}\r\nCSeq: {cseq}\r\nServer: Hotline\r\nContent-Length: 0\r\n\r\n"
    );
    Some(out)
}

/// True when the bytes look like a request (for deciding whether an error can be answered).
pub fn looks_like_request(data: &[u8]) -> bool {
    !data.starts_with(b"SIP/") && !data.is_empty()
}

#[cfg(test)]
mod tests;
