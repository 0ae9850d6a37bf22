//! The application interface of the core: how a B2BUA owns calls.
//!
//! Requests to a configured *number* (and in-dialog requests of dialogs the application
//! owns, by Call-ID) are not proxied: the core makes a server transaction and hands the
//! request up as an [`AppEvent`] with its [`ServerTxId`]. The application answers with
//! [`crate::Core::respond`]; the transaction layer still does retransmissions, timers and
//! the ACK of non-2xx finals, and the core retransmits an application's 2xx to an INVITE
//! until its ACK arrives (RFC 3261 §13.3.1.4). The application sends its own requests with
//! [`crate::Core::send_request`]; their responses come back as events.

use bytes::Bytes;

use crate::flow::Flow;
use crate::msg::{Request, Response};

/// Handle of a server transaction the application must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerTxId(pub(crate) u64);

/// Handle of a client transaction the application started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientTxId(pub(crate) u64);

/// What the core hands to the application.
#[derive(Debug, Clone)]
pub enum AppEvent {
    /// A request to answer on `tx` (for INVITE the core has already sent 100 Trying).
    Request {
        tx: ServerTxId,
        request: Box<Request>,
        /// Where it came from; responses and our requests in the dialog go back on it.
        flow: Flow,
        /// Our `host:port` as the peer should see it (for Contact): `flow.local`, or the
        /// first configured domain when we listen on an unspecified address.
        local: String,
    },
    /// The ACK of a 2xx the application sent (end to end, no transaction).
    Ack { request: Box<Request>, flow: Flow },
    /// The caller cancelled INVITE `tx`: the core answered CANCEL 200 and INVITE 487.
    Cancelled { tx: ServerTxId },
    /// A 2xx to INVITE was retransmitted for 64*T1 without an ACK (the dialog is dead).
    AckTimeout { tx: ServerTxId, call_id: String },
    /// A response (not 100) to a request the application sent; 2xx retransmissions of an
    /// INVITE come up again so the application can repeat its ACK.
    Response {
        tx: ClientTxId,
        response: Box<Response>,
        /// The flow the request went on (where an ACK or BYE for a 2xx goes).
        flow: Flow,
    },
    /// A request the application sent got no final response in time (Timer B/F/C).
    Timeout { tx: ClientTxId, call_id: String },
    /// A phone-to-phone dialog the proxy carries (not the application's) was established
    /// (`up`, its INVITE's 2xx passed) or ended (its BYE passed): the users of its From and
    /// To, e.g. so that an agent on a direct call is seen busy.
    Dialog {
        call_id: String,
        users: Vec<String>,
        up: bool,
    },
}

/// A response the application sends on a server transaction. The core copies Via, From,
/// Call-ID, CSeq and To from the request, adding `to_tag` (default: one derived from the
/// transaction) to To for everything but 100.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppResponse {
    pub status: u16,
    pub reason: String,
    pub to_tag: Option<String>,
    /// Extra header lines, e.g. `Contact: <sip:4000@10.0.0.1:5060>`.
    pub headers: Vec<String>,
    /// Content type and body.
    pub body: Option<(String, Bytes)>,
}

impl AppResponse {
    pub fn new(status: u16, reason: &str) -> Self {
        AppResponse {
            status,
            reason: reason.to_string(),
            ..AppResponse::default()
        }
    }

    pub fn tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_string());
        self
    }

    pub fn header(mut self, line: impl Into<String>) -> Self {
        self.headers.push(line.into());
        self
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = Some((content_type.to_string(), body.into()));
        self
    }
}
