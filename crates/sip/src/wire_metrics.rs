//! Prometheus counters of SIP messages on the wire, by method and by status code
//! (`hotline_sip_requests_total{direction,method}`, `hotline_sip_responses_total{direction,code}`).
//! Read from the start line only, so malformed and retransmitted messages count as they
//! travel; labels come from a closed set, so a peer cannot grow the label space.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// What the start line says: `Ok(index into METHODS, or METHODS.len() for "other")` of
/// a request, `Err(code - 100, or CODES for "other")` of a response.
fn classify(data: &[u8]) -> Option<Result<usize, usize>> {
    if let Some(rest) = data.strip_prefix(b"SIP/2.0 ") {
        let code = rest.get(..3)?;
        if !code.iter().all(u8::is_ascii_digit) || !(b'1'..=b'6').contains(&code[0]) {
            return Some(Err(CODES));
        }
        let n = code
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        return Some(Err(n - 100));
    }
    let end = data.iter().position(|b| *b == b' ')?;
    let m = &data[..end];
    Some(Ok(METHODS
        .iter()
        .position(|k| k.as_bytes() == m)
        .unwrap_or(METHODS.len())))
}

/// Response codes with a label of their own: 100..=699.
const CODES: usize = 600;

fn method_label(i: usize) -> &'static str {
    METHODS.get(i).copied().unwrap_or("other")
}

/// Static labels for the 3-digit codes (no allocation per message).
fn code_label(i: usize) -> &'static str {
    static LABELS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| (100..700).map(|c| c.to_string()).collect());
    labels.get(i).map_or("other", String::as_str)
}

fn dir_label(direction: Direction) -> &'static str {
    match direction {
        Direction::In => "in",
        Direction::Out => "out",
    }
}

type Slots<const N: usize> = [[OnceLock<metrics::Counter>; N]; 2];

/// Counter handles by `[direction][method index]` ("other" last), each looked up in the
/// recorder the first time it counts: the `counter!` macro builds the key and hashes it
/// into the recorder's registry on every call, an allocation and a map lookup per
/// datagram. Filled on first use, so `/metrics` shows only the labels seen.
static REQUESTS: Slots<{ METHODS.len() + 1 }> =
    [const { [const { OnceLock::new() }; METHODS.len() + 1] }; 2];
/// The same by `[direction][code - 100]` ("other" last).
static RESPONSES: Slots<{ CODES + 1 }> = [const { [const { OnceLock::new() }; CODES + 1] }; 2];
/// Set by [`register`]: the recorder is installed, handles may be kept.
static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Lets [`count`] keep the counter handles it takes from the recorder; call it once the
/// process's recorder is set (`hotline_cti::metrics::install`). Before, each message looks
/// its counter up (a handle kept then would belong to no recorder).
pub fn register() {
    REGISTERED.store(true, Ordering::Release);
}

/// Counts one message (a datagram or a framed TCP message).
pub fn count(direction: Direction, data: &[u8]) {
    let Some(class) = classify(data) else {
        return;
    };
    let d = direction as usize;
    let dir = dir_label(direction);
    let lookup = || match class {
        Ok(m) => {
            metrics::counter!("hotline_sip_requests_total", "direction" => dir, "method" => method_label(m))
        }
        Err(c) => {
            metrics::counter!("hotline_sip_responses_total", "direction" => dir, "code" => code_label(c))
        }
    };
    if !REGISTERED.load(Ordering::Acquire) {
        return lookup().increment(1);
    }
    let slot = match class {
        Ok(m) => REQUESTS[d].get(m),
        Err(c) => RESPONSES[d].get(c),
    };
    match slot {
        Some(s) => s.get_or_init(lookup).increment(1),
        None => lookup().increment(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_lines_map_to_closed_labels() {
        let label = |d: &[u8]| {
            classify(d).map(|c| match c {
                Ok(m) => Ok(method_label(m)),
                Err(c) => Err(code_label(c)),
            })
        };
        assert_eq!(label(b"INVITE sip:4000@h SIP/2.0\r\n"), Some(Ok("INVITE")));
        assert_eq!(label(b"FOO sip:x SIP/2.0\r\n"), Some(Ok("other")));
        assert_eq!(label(b"SIP/2.0 100 Trying\r\n"), Some(Err("100")));
        assert_eq!(label(b"SIP/2.0 200 OK\r\n"), Some(Err("200")));
        assert_eq!(label(b"SIP/2.0 486 Busy\r\n"), Some(Err("486")));
        assert_eq!(label(b"SIP/2.0 699 Last\r\n"), Some(Err("699")));
        assert_eq!(label(b"SIP/2.0 999 Odd\r\n"), Some(Err("other")));
        assert_eq!(label(b"SIP/2.0 2x0 Odd\r\n"), Some(Err("other")));
        assert_eq!(label(b"SIP/2.0 2"), None);
        assert_eq!(label(b"garbage"), None);
    }

    /// Kept handles count into the recorder that renders `/metrics`, and only the labels
    /// seen appear there (the slots are filled on first use, not at `register`).
    #[test]
    fn kept_handles_count_into_the_installed_recorder() {
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test process");
        register();
        count(Direction::In, b"INVITE sip:4000@h SIP/2.0\r\n");
        count(Direction::In, b"INVITE sip:4000@h SIP/2.0\r\n");
        count(Direction::Out, b"SIP/2.0 200 OK\r\n");
        count(Direction::Out, b"SIP/2.0 200 OK\r\n");
        count(Direction::Out, b"SIP/2.0 200 OK\r\n");
        count(Direction::In, b"SIP/2.0 999 Odd\r\n");
        let text = handle.render();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
        };
        assert_eq!(
            value(r#"hotline_sip_requests_total{direction="in",method="INVITE"}"#),
            Some(2),
            "{text}"
        );
        assert_eq!(
            value(r#"hotline_sip_responses_total{direction="out",code="200"}"#),
            Some(3),
            "{text}"
        );
        assert_eq!(
            value(r#"hotline_sip_responses_total{direction="in",code="other"}"#),
            Some(1),
            "{text}"
        );
        assert!(!text.contains(r#"method="BYE""#), "{text}");
        assert!(!text.contains(r#"code="486""#), "{text}");
    }
}
