//! Graceful drain (SIGTERM): the dispatcher stops taking new calls, which are refused with
//! `503` and `Retry-After` (or redirected with `302` to an overflow destination, e.g.
//! another site), while the calls in progress run to their end. At the bound the calls
//! still up are hung up (BYE to both legs) so the process can exit with every CDR written.

use std::time::Duration;

use hotline_cdr::{CallRecord, CallResult, HangupSide};
use hotline_sip::AppResponse;
use hotline_sip::msg::{self, Request};

/// How a drain treats new and running calls (`[drain]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainPolicy {
    /// How long calls in progress may go on before Hotline hangs them up.
    pub grace: Duration,
    /// `Retry-After` on the 503 that refuses new calls, in seconds.
    pub retry_after_secs: u32,
    /// A SIP URI new calls are redirected to (`302`, Contact) instead of the 503.
    pub overflow: Option<String>,
}

impl Default for DrainPolicy {
    fn default() -> Self {
        DrainPolicy {
            grace: Duration::from_secs(30),
            retry_after_secs: 60,
            overflow: None,
        }
    }
}

impl DrainPolicy {
    /// The answer to a new INVITE while draining.
    pub fn refusal(&self) -> AppResponse {
        match &self.overflow {
            Some(uri) => {
                AppResponse::new(302, "Moved Temporarily").header(format!("Contact: <{uri}>"))
            }
            None => AppResponse::new(503, "Service Unavailable")
                .header(format!("Retry-After: {}", self.retry_after_secs)),
        }
    }
}

/// The CDR of a call refused while draining (route `drained`): a refused call is a call
/// the operator must be able to count, phone-to-phone calls included.
pub(crate) fn refused_record(
    call_id: &str,
    invite: &Request,
    status: u16,
    now_ms: i64,
) -> CallRecord {
    let from = msg::from_value(&invite.headers).unwrap_or_default();
    let (caller, caller_name) = crate::call::from_identity(from);
    CallRecord {
        call_id: call_id.to_string(),
        sip_call_id: call_id.to_string(),
        direction: "inbound".into(),
        caller,
        caller_name,
        dialed: invite.uri.user().unwrap_or_default().to_string(),
        route: "drained".into(),
        queue: None,
        agent: None,
        arrived_at: now_ms,
        queued_at: None,
        offered_at: None,
        answered_at: None,
        ended_at: now_ms,
        wait_ms: 0,
        talk_ms: 0,
        hold_ms: 0,
        result: CallResult::Rejected,
        hangup_side: HangupSide::System,
        sip_status: status,
        recording: None,
        transfers: 0,
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Calls up when the drain began.
    pub calls_at_start: usize,
    /// Calls still up at the bound, which Hotline hung up.
    pub hung_up: usize,
    /// Calls whose task had not ended shortly after being hung up (0 unless a task is
    /// stuck; the shutdown then drops them).
    pub left: usize,
}

/// How long hung-up calls get to finish their BYEs and CDRs before shutdown goes on.
pub(crate) const HANGUP_WAIT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_503_with_retry_after() {
        let r = DrainPolicy {
            retry_after_secs: 120,
            ..DrainPolicy::default()
        }
        .refusal();
        assert_eq!(r.status, 503);
        assert_eq!(r.headers, vec!["Retry-After: 120".to_string()]);
    }

    #[test]
    fn overflow_redirects() {
        let r = DrainPolicy {
            overflow: Some("sip:+4930999@192.0.2.7".into()),
            ..DrainPolicy::default()
        }
        .refusal();
        assert_eq!(r.status, 302);
        assert_eq!(
            r.headers,
            vec!["Contact: <sip:+4930999@192.0.2.7>".to_string()]
        );
    }
}
