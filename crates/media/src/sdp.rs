//! SDP (RFC 4566) parsing/serialisation and RFC 3264 offer/answer for G.711 audio.
//!
//! A hand-written parser for the subset a softswitch needs: it keeps every line it does
//! not interpret so the answer logic can ignore them safely, and it bounds sizes so a
//! hostile body cannot make it allocate without limit.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::error::{MediaError, Result};
use crate::g711::Law;

/// Largest SDP body accepted (bytes).
pub const MAX_SDP_LEN: usize = 16 * 1024;
/// Most `m=` sections accepted.
pub const MAX_MEDIA: usize = 16;
/// Most formats on one `m=` line.
pub const MAX_FORMATS: usize = 64;
/// Most attributes per section.
pub const MAX_ATTRIBUTES: usize = 128;

fn malformed(line: usize, reason: &'static str) -> MediaError {
    MediaError::SdpMalformed { line, reason }
}

/// Media direction (RFC 3264 §5.1 / §6.1), used for hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways (the default when absent).
    #[default]
    SendRecv,
    /// We send only (e.g. we put the peer on hold and play music).
    SendOnly,
    /// We receive only.
    RecvOnly,
    /// Neither way.
    Inactive,
}

impl Direction {
    fn from_parts(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
    /// Whether the side holding this attribute sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    /// Whether the side holding this attribute receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
    /// The direction seen from the other side.
    pub fn reversed(self) -> Self {
        Direction::from_parts(self.receives(), self.sends())
    }
    /// RFC 3264 §6.1: the answer's direction given the offer's and what we are willing to do.
    pub fn answer_to(offer: Direction, willing: Direction) -> Self {
        Direction::from_parts(
            offer.receives() && willing.sends(),
            offer.sends() && willing.receives(),
        )
    }
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// `c=` line: only `IN IP4`/`IN IP6` unicast addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// The connection address.
    pub addr: IpAddr,
}

impl Connection {
    fn parse(value: &str, line: usize) -> Result<Self> {
        let mut it = value.split_ascii_whitespace();
        let (Some(net), Some(kind), Some(addr), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(malformed(line, "c= needs <nettype> <addrtype> <address>"));
        };
        if net != "IN" {
            return Err(malformed(line, "c= nettype must be IN"));
        }
        // Multicast TTL/count suffixes are syntactically valid; we keep the address only.
        let addr = addr.split('/').next().unwrap_or(addr);
        let addr = match kind {
            "IP4" => IpAddr::V4(
                addr.parse()
                    .map_err(|_| malformed(line, "bad IPv4 address"))?,
            ),
            "IP6" => IpAddr::V6(
                addr.parse()
                    .map_err(|_| malformed(line, "bad IPv6 address"))?,
            ),
            _ => return Err(malformed(line, "c= addrtype must be IP4 or IP6")),
        };
        Ok(Connection { addr })
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "IN IP4 {a}"),
            IpAddr::V6(a) => write!(f, "IN IP6 {a}"),
        }
    }
}

/// `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (`-` when none).
    pub username: String,
    /// Session id.
    pub session_id: u64,
    /// Session version; must grow by one on every changed re-offer.
    pub session_version: u64,
    /// Unicast address of the originator.
    pub addr: IpAddr,
}

/// An `a=rtpmap` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name as written.
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels, when given.
    pub channels: Option<u8>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type (`audio`, `video`, ...).
    pub media: String,
    /// Transport port; 0 means the stream is rejected/disabled.
    pub port: u16,
    /// Transport protocol (`RTP/AVP`, ...).
    pub protocol: String,
    /// Format list as written (payload types for RTP).
    pub formats: Vec<String>,
    /// Media-level `c=`, overriding the session one.
    pub connection: Option<Connection>,
    /// `a=rtpmap` entries.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` entries: payload type and parameters.
    pub fmtps: Vec<(u8, String)>,
    /// `a=ptime` in milliseconds.
    pub ptime: Option<u32>,
    /// Media-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=rtcp` port (RFC 3605).
    pub rtcp_port: Option<u16>,
    /// Other attributes: name and optional value, kept in order.
    pub other: Vec<(String, Option<String>)>,
}

impl MediaDescription {
    fn new(media: &str, port: u16, protocol: &str) -> Self {
        MediaDescription {
            media: media.to_string(),
            port,
            protocol: protocol.to_string(),
            formats: Vec::new(),
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            ptime: None,
            direction: None,
            rtcp_port: None,
            other: Vec::new(),
        }
    }

    /// The encoding name and clock rate of a payload type: from `a=rtpmap`, or the
    /// static table of RFC 3551 for 0 (PCMU) and 8 (PCMA).
    pub fn encoding_of(&self, pt: u8) -> Option<(&str, u32)> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.payload_type == pt) {
            return Some((m.encoding.as_str(), m.clock_rate));
        }
        match pt {
            0 => Some(("PCMU", 8000)),
            8 => Some(("PCMA", 8000)),
            _ => None,
        }
    }

    fn attribute_count(&self) -> usize {
        self.rtpmaps.len() + self.fmtps.len() + self.other.len()
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=` line.
    pub origin: Origin,
    /// `s=` line.
    pub session_name: String,
    /// Session-level `c=`.
    pub connection: Option<Connection>,
    /// Session-level direction attribute (default for every media section).
    pub direction: Option<Direction>,
    /// Other session-level attributes.
    pub attributes: Vec<(String, Option<String>)>,
    /// `m=` sections in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body. Lines may end in CRLF or LF. Unknown line types and
    /// attributes are kept or ignored, never rejected.
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() > MAX_SDP_LEN {
            return Err(malformed(0, "SDP body too large"));
        }
        let mut origin: Option<Origin> = None;
        let mut session_name: Option<String> = None;
        let mut connection = None;
        let mut direction = None;
        let mut attributes = Vec::new();
        let mut media: Vec<MediaDescription> = Vec::new();
        let mut seen_version = false;

        for (idx, raw) in text.split('\n').enumerate() {
            let line_no = idx + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            // RFC 4566 §5: no field holds NUL or CR. A stray CR kept in a value would be
            // printed into our SDP as a line break (found by the `sdp` fuzz target).
            if line.bytes().any(|b| b == 0 || b == b'\r') {
                return Err(malformed(line_no, "NUL or CR inside a line"));
            }
            let bytes = line.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' {
                return Err(malformed(line_no, "line is not <type>=<value>"));
            }
            let kind = bytes[0];
            let value = &line[2..];
            if !seen_version {
                if kind != b'v' {
                    return Err(malformed(line_no, "SDP must start with v="));
                }
                if value != "0" {
                    return Err(malformed(line_no, "unsupported SDP version"));
                }
                seen_version = true;
                continue;
            }
            match kind {
                b'v' => return Err(malformed(line_no, "repeated v= line")),
                b'o' => {
                    if origin.is_some() || !media.is_empty() {
                        return Err(malformed(line_no, "misplaced o= line"));
                    }
                    origin = Some(parse_origin(value, line_no)?);
                }
                b's' => {
                    if session_name.is_some() || !media.is_empty() {
                        return Err(malformed(line_no, "misplaced s= line"));
                    }
                    session_name = Some(value.to_string());
                }
                b'c' => {
                    let c = Connection::parse(value, line_no)?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(c),
                        None => connection = Some(c),
                    }
                }
                b'm' => {
                    if media.len() >= MAX_MEDIA {
                        return Err(malformed(line_no, "too many m= sections"));
                    }
                    media.push(parse_media_line(value, line_no)?);
                }
                b'a' => {
                    let (name, val) = match value.split_once(':') {
                        Some((n, v)) => (n, Some(v)),
                        None => (value, None),
                    };
                    if name.is_empty() {
                        return Err(malformed(line_no, "empty attribute name"));
                    }
                    match media.last_mut() {
                        Some(m) => {
                            if m.attribute_count() >= MAX_ATTRIBUTES {
                                return Err(malformed(line_no, "too many attributes"));
                            }
                            parse_media_attribute(m, name, val, line_no)?;
                        }
                        None => {
                            if let Some(d) = Direction::parse(name) {
                                direction = Some(d);
                            } else {
                                if attributes.len() >= MAX_ATTRIBUTES {
                                    return Err(malformed(line_no, "too many attributes"));
                                }
                                attributes.push((name.to_string(), val.map(str::to_string)));
                            }
                        }
                    }
                }
                b't' | b'r' | b'z' | b'k' | b'b' | b'i' | b'u' | b'e' | b'p' => {}
                _ => return Err(malformed(line_no, "unknown line type")),
            }
        }
        if !seen_version {
            return Err(malformed(0, "empty SDP"));
        }
        let origin = origin.ok_or(malformed(0, "missing o= line"))?;
        let session_name = session_name.ok_or(malformed(0, "missing s= line"))?;
        Ok(SessionDescription {
            origin,
            session_name,
            connection,
            direction,
            attributes,
            media,
        })
    }

    /// The connection address that applies to media section `index`.
    pub fn connection_for(&self, index: usize) -> Option<IpAddr> {
        self.media
            .get(index)
            .and_then(|m| m.connection.or(self.connection))
            .map(|c| c.addr)
    }

    /// The direction that applies to media section `index` (media overrides session).
    pub fn direction_for(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(|m| m.direction)
            .or(self.direction)
            .unwrap_or_default()
    }
}

fn parse_origin(value: &str, line: usize) -> Result<Origin> {
    let parts: Vec<&str> = value.split_ascii_whitespace().collect();
    if parts.len() != 6 {
        return Err(malformed(line, "o= needs 6 fields"));
    }
    let session_id = parts[1]
        .parse()
        .map_err(|_| malformed(line, "o= session id is not a number"))?;
    let session_version = parts[2]
        .parse()
        .map_err(|_| malformed(line, "o= session version is not a number"))?;
    let c = Connection::parse(&parts[3..].join(" "), line).or_else(|e| {
        // Some UAs put a host name here; it is informational only, keep a placeholder.
        if parts[3] == "IN" && (parts[4] == "IP4" || parts[4] == "IP6") {
            Ok(Connection {
                addr: IpAddr::from([0, 0, 0, 0]),
            })
        } else {
            Err(e)
        }
    })?;
    Ok(Origin {
        username: parts[0].to_string(),
        session_id,
        session_version,
        addr: c.addr,
    })
}

fn parse_media_line(value: &str, line: usize) -> Result<MediaDescription> {
    let mut it = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
        return Err(malformed(line, "m= needs <media> <port> <proto> <fmt>..."));
    };
    // "<port>/<number of ports>" is allowed; we use the first port.
    let port_str = port.split('/').next().unwrap_or(port);
    let port = u16::from_str(port_str).map_err(|_| malformed(line, "m= port is not a number"))?;
    let mut m = MediaDescription::new(media, port, proto);
    for f in it {
        if m.formats.len() >= MAX_FORMATS {
            return Err(malformed(line, "too many formats on m= line"));
        }
        m.formats.push(f.to_string());
    }
    if m.formats.is_empty() {
        return Err(malformed(line, "m= line without formats"));
    }
    if proto.starts_with("RTP/")
        && m.formats
            .iter()
            .any(|f| f.parse::<u8>().map_or(true, |pt| pt > 127))
    {
        return Err(malformed(line, "RTP format is not a payload type 0-127"));
    }
    Ok(m)
}

fn parse_media_attribute(
    m: &mut MediaDescription,
    name: &str,
    val: Option<&str>,
    line: usize,
) -> Result<()> {
    if let Some(d) = Direction::parse(name) {
        m.direction = Some(d);
        return Ok(());
    }
    match (name, val) {
        ("rtpmap", Some(v)) => {
            let (pt, rest) = v
                .split_once(' ')
                .ok_or(malformed(line, "rtpmap needs <pt> <encoding>/<clock>"))?;
            let payload_type: u8 = pt
                .parse()
                .ok()
                .filter(|p| *p <= 127)
                .ok_or(malformed(line, "rtpmap payload type"))?;
            let mut enc = rest.trim().split('/');
            let encoding = enc.next().unwrap_or("");
            if encoding.is_empty() {
                return Err(malformed(line, "rtpmap without encoding name"));
            }
            let clock_rate = enc
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or(malformed(line, "rtpmap clock rate"))?;
            let channels = match enc.next() {
                Some(c) => Some(c.parse().map_err(|_| malformed(line, "rtpmap channels"))?),
                None => None,
            };
            m.rtpmaps.push(RtpMap {
                payload_type,
                encoding: encoding.to_string(),
                clock_rate,
                channels,
            });
        }
        ("fmtp", Some(v)) => {
            let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
            let pt: u8 = pt
                .parse()
                .ok()
                .filter(|p| *p <= 127)
                .ok_or(malformed(line, "fmtp payload type"))?;
            m.fmtps.push((pt, params.trim().to_string()));
        }
        ("ptime", Some(v)) => {
            let p: u32 = v
                .trim()
                .parse()
                .ok()
                .filter(|p| (1..=1000).contains(p))
                .ok_or(malformed(line, "ptime"))?;
            m.ptime = Some(p);
        }
        ("rtcp", Some(v)) => {
            let port = v.split_ascii_whitespace().next().unwrap_or("");
            m.rtcp_port = Some(port.parse().map_err(|_| malformed(line, "rtcp port"))?);
        }
        ("rtpmap" | "fmtp" | "ptime" | "rtcp", None) => {
            return Err(malformed(line, "attribute needs a value"));
        }
        _ => m.other.push((name.to_string(), val.map(str::to_string))),
    }
    Ok(())
}

fn write_attr(f: &mut fmt::Formatter<'_>, name: &str, val: &Option<String>) -> fmt::Result {
    match val {
        Some(v) => write!(f, "a={name}:{v}\r\n"),
        None => write!(f, "a={name}\r\n"),
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(f, "v=0\r\n")?;
        write!(
            f,
            "o={} {} {} {}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            Connection { addr: o.addr }
        )?;
        let name = if self.session_name.is_empty() {
            "-"
        } else {
            &self.session_name
        };
        write!(f, "s={name}\r\n")?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        write!(f, "t=0 0\r\n")?;
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.as_str())?;
        }
        for (n, v) in &self.attributes {
            write_attr(f, n, v)?;
        }
        for m in &self.media {
            write!(f, "m={} {} {}", m.media, m.port, m.protocol)?;
            for fmt_ in &m.formats {
                write!(f, " {fmt_}")?;
            }
            write!(f, "\r\n")?;
            if let Some(c) = &m.connection {
                write!(f, "c={c}\r\n")?;
            }
            for r in &m.rtpmaps {
                write!(
                    f,
                    "a=rtpmap:{} {}/{}",
                    r.payload_type, r.encoding, r.clock_rate
                )?;
                if let Some(ch) = r.channels {
                    write!(f, "/{ch}")?;
                }
                write!(f, "\r\n")?;
            }
            for (pt, p) in &m.fmtps {
                write!(f, "a=fmtp:{pt} {p}\r\n")?;
            }
            if let Some(p) = m.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            if let Some(p) = m.rtcp_port {
                write!(f, "a=rtcp:{p}\r\n")?;
            }
            if let Some(d) = m.direction {
                write!(f, "a={}\r\n", d.as_str())?;
            }
            for (n, v) in &m.other {
                write_attr(f, n, v)?;
            }
        }
        Ok(())
    }
}

/// Audio codecs the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, payload type 0.
    Pcmu,
    /// G.711 A-law, payload type 8.
    Pcma,
}

impl Codec {
    /// Static RTP payload type.
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    /// SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
    /// The G.711 law used to decode/encode this codec.
    pub fn law(self) -> Law {
        match self {
            Codec::Pcmu => Law::Ulaw,
            Codec::Pcma => Law::Alaw,
        }
    }
    fn from_encoding(name: &str, clock: u32) -> Option<Self> {
        if clock != 8000 {
            return None;
        }
        if name.eq_ignore_ascii_case("PCMU") {
            Some(Codec::Pcmu)
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(Codec::Pcma)
        } else {
            None
        }
    }
}

/// What we offer/accept on our side of a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our RTP address (the leg's socket, as reachable by the peer).
    pub addr: IpAddr,
    /// Our RTP port (even; RTCP is port + 1 unless `rtcp_port` says otherwise).
    pub rtp_port: u16,
    /// Our RTCP port when it is not `rtp_port + 1` (a leg on the shared RTP port):
    /// written as `a=rtcp` (RFC 3605).
    pub rtcp_port: Option<u16>,
    /// Codecs we accept, in our order of preference.
    pub codecs: Vec<Codec>,
    /// Payload type to offer telephone-event (RFC 4733) on; `None` disables DTMF events.
    pub telephone_event: Option<u8>,
    /// Packetisation time we send, in ms.
    pub ptime: u32,
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` session version (bump on every re-offer that changes something).
    pub session_version: u64,
}

impl LocalMedia {
    /// Defaults for a leg: PCMU then PCMA, telephone-event on 101, 20 ms.
    pub fn new(addr: IpAddr, rtp_port: u16) -> Self {
        LocalMedia {
            addr,
            rtp_port,
            rtcp_port: None,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: Some(101),
            ptime: 20,
            session_id: rand::random::<u32>() as u64,
            session_version: 1,
        }
    }

    /// Call before building a changed re-offer (hold, resume, new port): RFC 3264 §8
    /// requires the `o=` version to grow by one.
    pub fn bump_version(&mut self) {
        self.session_version = self.session_version.wrapping_add(1);
    }

    fn origin(&self) -> Origin {
        Origin {
            username: "hotline".to_string(),
            session_id: self.session_id,
            session_version: self.session_version,
            addr: self.addr,
        }
    }
}

/// The outcome of a negotiation: what a leg's RTP handling needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where the peer said to send RTP; `None` when on hold with a null address
    /// (`c=0.0.0.0`) or the port is 0. Symmetric latching may override it later.
    pub remote_rtp: Option<SocketAddr>,
    /// Where to send RTCP (`a=rtcp` or port + 1).
    pub remote_rtcp: Option<SocketAddr>,
    /// The chosen audio codec.
    pub codec: Codec,
    /// Its payload type (static).
    pub payload_type: u8,
    /// Negotiated telephone-event payload type, if both sides support it.
    pub telephone_event: Option<u8>,
    /// Packetisation time the peer asked for (ms), default 20.
    pub ptime: u32,
    /// Our direction after negotiation (send and/or receive).
    pub local_direction: Direction,
}

fn rtp_media(m: &MediaDescription) -> bool {
    m.media == "audio" && (m.protocol == "RTP/AVP" || m.protocol == "RTP/AVPF") && m.port != 0
}

fn find_telephone_event(m: &MediaDescription) -> Option<u8> {
    m.formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find(|pt| {
            m.encoding_of(*pt)
                .is_some_and(|(n, c)| n.eq_ignore_ascii_case("telephone-event") && c == 8000)
        })
}

fn remote_addrs(
    sdp: &SessionDescription,
    idx: usize,
) -> Result<(Option<SocketAddr>, Option<SocketAddr>)> {
    let m = &sdp.media[idx];
    let ip = sdp
        .connection_for(idx)
        .ok_or(malformed(0, "no c= line for the audio stream"))?;
    if ip.is_unspecified() || m.port == 0 {
        return Ok((None, None));
    }
    let rtcp_port = m.rtcp_port.unwrap_or(m.port.wrapping_add(1));
    Ok((
        Some(SocketAddr::new(ip, m.port)),
        Some(SocketAddr::new(ip, rtcp_port)),
    ))
}

fn our_audio_section(
    local: &LocalMedia,
    codecs: &[Codec],
    te: Option<u8>,
    dir: Direction,
) -> MediaDescription {
    let mut m = MediaDescription::new("audio", local.rtp_port, "RTP/AVP");
    for c in codecs {
        m.formats.push(c.payload_type().to_string());
        m.rtpmaps.push(RtpMap {
            payload_type: c.payload_type(),
            encoding: c.name().to_string(),
            clock_rate: 8000,
            channels: None,
        });
    }
    if let Some(pt) = te {
        m.formats.push(pt.to_string());
        m.rtpmaps.push(RtpMap {
            payload_type: pt,
            encoding: "telephone-event".to_string(),
            clock_rate: 8000,
            channels: None,
        });
        m.fmtps.push((pt, "0-16".to_string()));
    }
    m.ptime = Some(local.ptime);
    m.direction = Some(dir);
    m.rtcp_port = local.rtcp_port;
    m
}

/// Builds an offer for one audio stream with our codecs (also used for re-INVITEs that
/// put the peer on hold: `direction` = `SendOnly` or `Inactive`).
pub fn build_offer(local: &LocalMedia, direction: Direction) -> SessionDescription {
    SessionDescription {
        origin: local.origin(),
        session_name: "Hotline".to_string(),
        connection: Some(Connection { addr: local.addr }),
        direction: None,
        attributes: Vec::new(),
        media: vec![our_audio_section(
            local,
            &local.codecs,
            local.telephone_event,
            direction,
        )],
    }
}

/// Answers an offer (RFC 3264 §6): accepts the first usable audio stream with the
/// offerer's most preferred codec that we support, rejects every other stream with
/// port 0, and computes the direction from the offer and what we are `willing` to do.
pub fn answer_offer(
    offer: &SessionDescription,
    local: &LocalMedia,
    willing: Direction,
) -> Result<(SessionDescription, Negotiated)> {
    let (idx, codec) = chosen_stream(offer, local)?;
    let om = &offer.media[idx];
    let (remote_rtp, remote_rtcp) = remote_addrs(offer, idx)?;
    let te = if local.telephone_event.is_some() {
        find_telephone_event(om)
    } else {
        None
    };
    let offer_dir = if remote_rtp.is_none() {
        // RFC 2543-style hold (c=0.0.0.0): the peer wants nothing sent to it.
        match offer.direction_for(idx) {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            _ => Direction::Inactive,
        }
    } else {
        offer.direction_for(idx)
    };
    let answer_dir = Direction::answer_to(offer_dir, willing);
    let ptime = om.ptime.unwrap_or(20);

    let mut media = Vec::with_capacity(offer.media.len());
    for (i, m) in offer.media.iter().enumerate() {
        if i == idx {
            let mut ours = our_audio_section(local, &[codec], te, answer_dir);
            ours.ptime = Some(ptime);
            media.push(ours);
        } else {
            // Rejected stream: same media type and formats, port 0 (RFC 3264 §6).
            let mut r = MediaDescription::new(&m.media, 0, &m.protocol);
            r.formats = m.formats.clone();
            media.push(r);
        }
    }
    let answer = SessionDescription {
        origin: local.origin(),
        session_name: "Hotline".to_string(),
        connection: Some(Connection { addr: local.addr }),
        direction: None,
        attributes: Vec::new(),
        media,
    };
    Ok((
        answer,
        Negotiated {
            remote_rtp,
            remote_rtcp,
            codec,
            payload_type: codec.payload_type(),
            telephone_event: te,
            ptime,
            local_direction: answer_dir,
        },
    ))
}

/// Where the offerer will send the RTP of the stream [`answer_offer`] would accept (none
/// for a held or rejected one), without building the answer: to pick the port the
/// answer names by the offerer's address.
pub fn offered_rtp(offer: &SessionDescription, local: &LocalMedia) -> Result<Option<SocketAddr>> {
    let (idx, _) = chosen_stream(offer, local)?;
    Ok(remote_addrs(offer, idx)?.0)
}

/// The first usable audio stream of an offer, with the offerer's most preferred codec
/// that we support.
fn chosen_stream(offer: &SessionDescription, local: &LocalMedia) -> Result<(usize, Codec)> {
    let chosen = offer
        .media
        .iter()
        .enumerate()
        .filter(|(_, m)| rtp_media(m))
        .find_map(|(i, m)| {
            m.formats
                .iter()
                .filter_map(|f| f.parse::<u8>().ok())
                .find_map(|pt| {
                    let (name, clock) = m.encoding_of(pt)?;
                    let c = Codec::from_encoding(name, clock)?;
                    local.codecs.contains(&c).then_some((i, c))
                })
        });
    chosen.ok_or_else(|| {
        let has_audio = offer.media.iter().any(rtp_media);
        MediaError::SdpNotAcceptable(if has_audio {
            "no common audio codec"
        } else {
            "no RTP/AVP audio stream"
        })
    })
}

/// Processes the answer to an offer we sent (RFC 3264 §7).
pub fn process_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated> {
    if answer.media.len() != offer.media.len() {
        return Err(malformed(
            0,
            "answer has a different number of m= lines than the offer",
        ));
    }
    let idx = answer
        .media
        .iter()
        .position(rtp_media)
        .ok_or(MediaError::SdpNotAcceptable(
            "answer rejected the audio stream",
        ))?;
    let am = &answer.media[idx];
    let om = &offer.media[idx];
    let codec = am
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find_map(|pt| {
            let (n, c) = am.encoding_of(pt)?;
            let codec = Codec::from_encoding(n, c)?;
            om.formats.contains(&pt.to_string()).then_some(codec)
        })
        .ok_or(MediaError::SdpNotAcceptable(
            "answer has no codec we offered",
        ))?;
    let te = find_telephone_event(am).filter(|pt| om.formats.contains(&pt.to_string()));
    let (remote_rtp, remote_rtcp) = remote_addrs(answer, idx)?;
    let offered = offer.direction_for(idx);
    let answered = if remote_rtp.is_none() {
        Direction::Inactive
    } else {
        answer.direction_for(idx)
    };
    let local_direction = Direction::from_parts(
        offered.sends() && answered.receives(),
        offered.receives() && answered.sends(),
    );
    Ok(Negotiated {
        remote_rtp,
        remote_rtcp,
        codec,
        payload_type: codec.payload_type(),
        telephone_event: te,
        ptime: am.ptime.unwrap_or(20),
        local_direction,
    })
}

impl Negotiated {
    /// Whether the peer asked us not to send (`sendonly`, `inactive` or `c=0.0.0.0`):
    /// it put the call on hold.
    pub fn peer_holds(&self) -> bool {
        !self.local_direction.sends()
    }
}

/// Our side of one leg's SDP across a dialog's offer/answer exchanges (re-INVITE,
/// UPDATE): the `o=` line keeps its session id, and its version grows by one exactly
/// when our description changes (RFC 3264 §8), so a phone that compares versions sees
/// a change when there is one and none when we only repeat ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSdp {
    local: LocalMedia,
    /// What we last sent, for the comparison.
    last: Option<SessionDescription>,
}

impl LegSdp {
    /// `local` is the leg's media; its first description goes out with its version.
    pub fn new(local: LocalMedia) -> Self {
        LegSdp { local, last: None }
    }

    /// Remembers a description already sent with [`answer_offer`] or [`build_offer`]
    /// (e.g. the initial answer), so the next one is compared against it.
    pub fn sent(local: LocalMedia, sdp: SessionDescription) -> Self {
        LegSdp {
            local,
            last: Some(sdp),
        }
    }

    pub fn local(&self) -> &LocalMedia {
        &self.local
    }

    /// Moves the leg to other ports of ours: the next description names them (and, as
    /// a change, gets a new version).
    pub fn set_ports(&mut self, rtp_port: u16, rtcp_port: Option<u16>) {
        self.local.rtp_port = rtp_port;
        self.local.rtcp_port = rtcp_port;
    }

    /// What we last sent (a session refresh re-offers it unchanged).
    pub fn last(&self) -> Option<&SessionDescription> {
        self.last.as_ref()
    }

    /// Answers a (re-)offer from the peer; `willing` as in [`answer_offer`].
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        willing: Direction,
    ) -> Result<(SessionDescription, Negotiated)> {
        let (sdp, n) = answer_offer(offer, &self.local, willing)?;
        Ok((self.versioned(sdp), n))
    }

    /// A (re-)offer of ours: e.g. a session refresh (unchanged) or a new direction.
    pub fn offer(&mut self, direction: Direction) -> SessionDescription {
        let sdp = build_offer(&self.local, direction);
        self.versioned(sdp)
    }

    fn versioned(&mut self, mut sdp: SessionDescription) -> SessionDescription {
        if let Some(last) = &self.last {
            let mut same = sdp.clone();
            same.origin = last.origin.clone();
            if same != *last {
                self.local.bump_version();
            }
        }
        sdp.origin = self.local.origin();
        self.last = Some(sdp.clone());
        sdp
    }
}

#[cfg(test)]
mod tests {

    /// Fuzz regression (`fuzz/artifacts/sdp`): NULs in an attribute name and a bare CR in
    /// a value were accepted, and printing the description wrote the CR out as a line
    /// break. Both are refused now.
    #[test]
    fn nul_and_bare_cr_inside_lines_are_refused() {
        let crash = "v=0\r\no=- 2 2 IN IP6 ::1\r\ns=\r\na=ina\0\0RTP/AVP 8\r\na=rtcp:6009 I5N IP6%::1\r,m=video 0 RTP/AVP 96\r\nm=audio 7000 RTP/SAVP 0\r\n";
        assert!(SessionDescription::parse(crash).is_err());
        let cr = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=tool:x\ry\r\n";
        assert!(SessionDescription::parse(cr).is_err());
        let nul = "v=0\no=- 2 2 IN IP4 127.0.0.1\ns=a\0b\nt=0 0\n";
        assert!(SessionDescription::parse(nul).is_err());
        // CRLF and bare LF line ends still parse.
        let ok = "v=0\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\nt=0 0\r\n";
        assert!(SessionDescription::parse(ok).is_ok());
    }
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const PHONE_OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:30\r\n\
a=sendrecv\r\n";

    fn local() -> LocalMedia {
        let mut l = LocalMedia::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 20000);
        l.session_id = 42;
        l
    }

    #[test]
    fn parses_a_typical_phone_offer() {
        let sdp = SessionDescription::parse(PHONE_OFFER).unwrap();
        assert_eq!(sdp.origin.username, "alice");
        assert_eq!(sdp.media.len(), 1);
        let m = &sdp.media[0];
        assert_eq!(m.port, 49170);
        assert_eq!(m.formats, vec!["8", "0", "18", "101"]);
        assert_eq!(m.ptime, Some(30));
        assert_eq!(m.direction, Some(Direction::SendRecv));
        assert_eq!(m.encoding_of(101), Some(("telephone-event", 8000)));
        assert_eq!(
            sdp.connection_for(0),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
        );
    }

    /// The address the offerer sends from is the one `answer_offer` negotiates, without
    /// an answer built; a held stream has none, an unusable offer is refused alike.
    #[test]
    fn offered_rtp_is_what_the_answer_would_negotiate() {
        let offer = SessionDescription::parse(PHONE_OFFER).unwrap();
        let (_, n) = answer_offer(&offer, &local(), Direction::SendRecv).unwrap();
        assert_eq!(offered_rtp(&offer, &local()).unwrap(), n.remote_rtp);
        assert_eq!(n.remote_rtp, Some("192.0.2.10:49170".parse().unwrap()));
        let held = SessionDescription::parse(
            &PHONE_OFFER.replace("IN IP4 192.0.2.10\r\nt", "IN IP4 0.0.0.0\r\nt"),
        )
        .unwrap();
        assert_eq!(offered_rtp(&held, &local()).unwrap(), None);
        let g729 =
            SessionDescription::parse(&PHONE_OFFER.replace("RTP/AVP 8 0 18 101", "RTP/AVP 18"))
                .unwrap();
        assert!(offered_rtp(&g729, &local()).is_err());
    }

    #[test]
    fn serialise_parse_round_trip() {
        let sdp = SessionDescription::parse(PHONE_OFFER).unwrap();
        let text = sdp.to_string();
        let again = SessionDescription::parse(&text).unwrap();
        assert_eq!(sdp, again);
        let offer = build_offer(&local(), Direction::SendOnly);
        assert_eq!(
            SessionDescription::parse(&offer.to_string()).unwrap(),
            offer
        );
    }

    #[test]
    fn answer_follows_offerer_preference_and_keeps_dtmf_pt() {
        let offer = SessionDescription::parse(PHONE_OFFER).unwrap();
        let (answer, neg) = answer_offer(&offer, &local(), Direction::SendRecv).unwrap();
        assert_eq!(neg.codec, Codec::Pcma);
        assert_eq!(neg.telephone_event, Some(101));
        assert_eq!(neg.ptime, 30);
        assert_eq!(neg.remote_rtp, Some("192.0.2.10:49170".parse().unwrap()));
        assert_eq!(neg.remote_rtcp, Some("192.0.2.10:49171".parse().unwrap()));
        assert_eq!(neg.local_direction, Direction::SendRecv);
        let m = &answer.media[0];
        assert_eq!(m.formats, vec!["8", "101"]);
        assert_eq!(m.port, 20000);
        assert_eq!(
            answer.connection_for(0),
            Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)))
        );
        // The answer must itself be a valid offer-compatible SDP.
        let neg2 = process_answer(
            &offer,
            &SessionDescription::parse(&answer.to_string()).unwrap(),
        )
        .unwrap();
        assert_eq!(neg2.codec, Codec::Pcma);
        assert_eq!(neg2.telephone_event, Some(101));
    }

    #[test]
    fn hold_directions_are_answered_per_rfc3264() {
        for (offered, willing, expected) in [
            ("sendonly", Direction::SendRecv, Direction::RecvOnly),
            ("recvonly", Direction::SendRecv, Direction::SendOnly),
            ("inactive", Direction::SendRecv, Direction::Inactive),
            ("sendrecv", Direction::SendOnly, Direction::SendOnly),
            ("sendrecv", Direction::SendRecv, Direction::SendRecv),
            ("sendonly", Direction::SendOnly, Direction::Inactive),
        ] {
            let text = PHONE_OFFER.replace("a=sendrecv", &format!("a={offered}"));
            let offer = SessionDescription::parse(&text).unwrap();
            let (answer, neg) = answer_offer(&offer, &local(), willing).unwrap();
            assert_eq!(
                neg.local_direction, expected,
                "offer {offered}, willing {willing:?}"
            );
            assert_eq!(answer.direction_for(0), expected);
        }
    }

    #[test]
    fn old_style_hold_with_null_address() {
        let text = PHONE_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0");
        let offer = SessionDescription::parse(&text).unwrap();
        let (_, neg) = answer_offer(&offer, &local(), Direction::SendRecv).unwrap();
        assert_eq!(neg.remote_rtp, None);
        assert_eq!(neg.local_direction, Direction::RecvOnly);
    }

    #[test]
    fn ipv6_and_media_level_connection() {
        let text = "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=x\nc=IN IP4 192.0.2.1\nt=0 0\n\
m=video 5000 RTP/AVP 96\nm=audio 6000 RTP/AVP 0\nc=IN IP6 2001:db8::2\na=rtcp:7001\n";
        let offer = SessionDescription::parse(text).unwrap();
        let (answer, neg) = answer_offer(&offer, &local(), Direction::SendRecv).unwrap();
        let v6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        assert_eq!(neg.remote_rtp, Some(SocketAddr::new(v6.into(), 6000)));
        assert_eq!(neg.remote_rtcp, Some(SocketAddr::new(v6.into(), 7001)));
        assert_eq!(neg.codec, Codec::Pcmu);
        assert_eq!(neg.telephone_event, None);
        // Video rejected with port 0, same number of m= lines.
        assert_eq!(answer.media.len(), 2);
        assert_eq!(answer.media[0].port, 0);
        assert_eq!(answer.media[0].media, "video");
        assert_eq!(answer.media[1].port, 20000);
    }

    #[test]
    fn static_payload_types_without_rtpmap_are_understood() {
        let text = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let offer = SessionDescription::parse(text).unwrap();
        let (_, neg) = answer_offer(&offer, &local(), Direction::SendRecv).unwrap();
        assert_eq!(neg.codec, Codec::Pcmu);
        assert_eq!(neg.ptime, 20);
    }

    #[test]
    fn nothing_acceptable_is_488() {
        let g729 = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let e = answer_offer(
            &SessionDescription::parse(g729).unwrap(),
            &local(),
            Direction::SendRecv,
        )
        .unwrap_err();
        assert!(matches!(e, MediaError::SdpNotAcceptable(_)));
        assert_eq!(e.sip_status(), 488);
        let video = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n";
        let e = answer_offer(
            &SessionDescription::parse(video).unwrap(),
            &local(),
            Direction::SendRecv,
        )
        .unwrap_err();
        assert_eq!(e.sip_status(), 488);
        let srtp = PHONE_OFFER.replace("RTP/AVP", "RTP/SAVP");
        let e = answer_offer(
            &SessionDescription::parse(&srtp).unwrap(),
            &local(),
            Direction::SendRecv,
        )
        .unwrap_err();
        assert_eq!(e.sip_status(), 488);
        // PCMU relabelled at a different clock rate is not PCMU.
        let odd = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/16000\r\n";
        let e = answer_offer(
            &SessionDescription::parse(odd).unwrap(),
            &local(),
            Direction::SendRecv,
        )
        .unwrap_err();
        assert_eq!(e.sip_status(), 488);
    }

    #[test]
    fn malformed_is_400() {
        let cases = [
            "",
            "o=- 1 1 IN IP4 1.2.3.4\r\n",
            "v=1\r\n",
            "v=0\r\ns=-\r\n",
            "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 999.1.1.1\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP6 1.2.3.4\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4000 RTP/AVP\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4000 RTP/AVP 300\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:abc\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\ngarbage\r\n",
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nx=1\r\n",
        ];
        for c in cases {
            let e = SessionDescription::parse(c).unwrap_err();
            assert_eq!(e.sip_status(), 400, "{c:?} gave {e}");
        }
        // Parses but the audio stream has no address at all.
        let no_c = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let e = answer_offer(
            &SessionDescription::parse(no_c).unwrap(),
            &local(),
            Direction::SendRecv,
        )
        .unwrap_err();
        assert_eq!(e.sip_status(), 400);
    }

    #[test]
    fn size_limits_are_enforced() {
        let mut s = String::from("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n");
        for _ in 0..(MAX_MEDIA + 1) {
            s.push_str("m=audio 4000 RTP/AVP 0\r\n");
        }
        assert_eq!(SessionDescription::parse(&s).unwrap_err().sip_status(), 400);
        let big = "a=x\r\n".repeat(MAX_SDP_LEN);
        assert_eq!(
            SessionDescription::parse(&big).unwrap_err().sip_status(),
            400
        );
    }

    #[test]
    fn hold_reoffer_bumps_version_and_says_sendonly() {
        let mut l = local();
        let first = build_offer(&l, Direction::SendRecv);
        l.bump_version();
        let hold = build_offer(&l, Direction::SendOnly);
        assert_eq!(hold.origin.session_id, first.origin.session_id);
        assert_eq!(
            hold.origin.session_version,
            first.origin.session_version + 1
        );
        assert!(hold.to_string().contains("a=sendonly\r\n"));
    }

    #[test]
    fn process_answer_checks_codecs_and_stream_count() {
        let l = local();
        let offer = build_offer(&l, Direction::SendRecv);
        let good = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n";
        let neg = process_answer(&offer, &SessionDescription::parse(good).unwrap()).unwrap();
        assert_eq!(neg.codec, Codec::Pcma);
        assert_eq!(neg.telephone_event, Some(101));
        assert_eq!(neg.local_direction, Direction::SendOnly);
        let rejected = good.replace("audio 4000", "audio 0");
        assert_eq!(
            process_answer(&offer, &SessionDescription::parse(&rejected).unwrap())
                .unwrap_err()
                .sip_status(),
            488
        );
        let two = format!("{good}m=video 0 RTP/AVP 96\r\n");
        assert_eq!(
            process_answer(&offer, &SessionDescription::parse(&two).unwrap())
                .unwrap_err()
                .sip_status(),
            400
        );
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,400}") {
            let _ = SessionDescription::parse(&s);
        }

        #[test]
        fn parser_never_panics_on_sdp_like_lines(lines in proptest::collection::vec("[vosctma]=[ -~]{0,40}", 0..20)) {
            let text = lines.join("\r\n");
            if let Ok(sdp) = SessionDescription::parse(&text) {
                let _ = answer_offer(&sdp, &local(), Direction::SendRecv);
            }
        }
    }

    #[test]
    fn reoffers_bump_the_version_only_on_change() {
        let offer = SessionDescription::parse(PHONE_OFFER).unwrap();
        let (first, n) = answer_offer(&offer, &local(), Direction::SendRecv).unwrap();
        assert!(!n.peer_holds());
        let mut leg = LegSdp::sent(local(), first.clone());
        // The same offer again (a session refresh): same o= version.
        let (again, _) = leg.answer(&offer, Direction::SendRecv).unwrap();
        assert_eq!(again.origin, first.origin);
        // Hold: the phone goes sendonly, we answer recvonly with a new version.
        let hold =
            SessionDescription::parse(&PHONE_OFFER.replace("a=sendrecv", "a=sendonly")).unwrap();
        let (held, n) = leg.answer(&hold, Direction::SendRecv).unwrap();
        assert!(n.peer_holds());
        assert_eq!(held.media[0].direction, Some(Direction::RecvOnly));
        assert_eq!(held.origin.session_id, first.origin.session_id);
        assert_eq!(
            held.origin.session_version,
            first.origin.session_version + 1
        );
        // Old-style hold with c=0.0.0.0 also counts.
        let zero = SessionDescription::parse(
            &PHONE_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0"),
        )
        .unwrap();
        let (_, n) = leg.answer(&zero, Direction::SendRecv).unwrap();
        assert!(n.peer_holds());
        assert_eq!(n.remote_rtp, None);
        // Resume on a new port: sendrecv again, the new address is used.
        let moved = SessionDescription::parse(&PHONE_OFFER.replace("49170", "49180")).unwrap();
        let (resumed, n) = leg.answer(&moved, Direction::SendRecv).unwrap();
        assert!(!n.peer_holds());
        assert_eq!(resumed.media[0].direction, Some(Direction::SendRecv));
        assert_eq!(n.remote_rtp, Some("192.0.2.10:49180".parse().unwrap()));
        // (The c=0.0.0.0 answer was the same as the sendonly one: no bump.)
        assert_eq!(
            resumed.origin.session_version,
            first.origin.session_version + 2
        );
        // Our own re-offer for a refresh repeats a sendrecv offer: one bump for the
        // offer's different shape (all codecs), none for the repeat.
        let o1 = leg.offer(Direction::SendRecv);
        let o2 = leg.offer(Direction::SendRecv);
        assert_eq!(o1.origin.session_version, o2.origin.session_version);
        let o3 = leg.offer(Direction::SendOnly);
        assert_eq!(o3.origin.session_version, o2.origin.session_version + 1);
    }
}
