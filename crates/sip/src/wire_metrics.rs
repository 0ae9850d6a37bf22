//! Prometheus counters of SIP messages on the wire, by method and by status code
//! (`hotline_sip_requests_total{direction,method}`, `hotline_sip_responses_total{direction,code}`).
//! Read from the start line only, so malformed and retransmitted messages count as they
//! travel; labels come from a closed set, so a peer cannot grow the label space.

/// Whether the message came in or goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
];

/// What the start line says: `Ok(method)` of a request, `Err(code)` of a response.
fn classify(data: &[u8]) -> Option<Result<&'static str, &'static str>> {
    if let Some(rest) = data.strip_prefix(b"SIP/2.0 ") {
        let code = rest.get(..3)?;
        if !code.iter().all(u8::is_ascii_digit) || !(b'1'..=b'6').contains(&code[0]) {
            return Some(Err("other"));
        }
        return Some(Err(code_label(code)));
    }
    let end = data.iter().position(|b| *b == b' ')?;
    let m = &data[..end];
    Some(Ok(METHODS
        .iter()
        .find(|k| k.as_bytes() == m)
        .copied()
        .unwrap_or("other")))
}

/// Static labels for the 3-digit codes (no allocation per message).
fn code_label(code: &[u8]) -> &'static str {
    static LABELS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| (100..700).map(|c| c.to_string()).collect());
    let n = code
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    labels
        .get(n.wrapping_sub(100))
        .map_or("other", String::as_str)
}

/// Counts one message (a datagram or a framed TCP message).
pub fn count(direction: Direction, data: &[u8]) {
    let dir = match direction {
        Direction::In => "in",
        Direction::Out => "out",
    };
    match classify(data) {
        Some(Ok(method)) => {
            metrics::counter!("hotline_sip_requests_total", "direction" => dir, "method" => method)
                .increment(1)
        }
        Some(Err(code)) => {
            metrics::counter!("hotline_sip_responses_total", "direction" => dir, "code" => code)
                .increment(1)
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_lines_map_to_closed_labels() {
        assert_eq!(
            classify(b"INVITE sip:4000@h SIP/2.0\r\n"),
            Some(Ok("INVITE"))
        );
        assert_eq!(classify(b"FOO sip:x SIP/2.0\r\n"), Some(Ok("other")));
        assert_eq!(classify(b"SIP/2.0 200 OK\r\n"), Some(Err("200")));
        assert_eq!(classify(b"SIP/2.0 486 Busy\r\n"), Some(Err("486")));
        assert_eq!(classify(b"SIP/2.0 999 Odd\r\n"), Some(Err("other")));
        assert_eq!(classify(b"SIP/2.0 2x0 Odd\r\n"), Some(Err("other")));
        assert_eq!(classify(b"SIP/2.0 2"), None);
        assert_eq!(classify(b"garbage"), None);
    }
}
