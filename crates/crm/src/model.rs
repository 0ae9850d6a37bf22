//! Records as the rest of Hotline sees them. Times are Unix milliseconds.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub type CustomerId = i64;
pub type InteractionId = i64;
pub type TicketId = i64;

/// Declares a closed set of values stored as text, with parsing that reports the field.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident, $field:literal { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $var),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The stored (and wire) spelling.
            pub fn as_str(self) -> &'static str { match self { $($name::$var => $s),+ } }
            /// Parses the stored spelling; case-insensitive, `-`/space accepted for `_`.
            pub fn parse(s: &str) -> Result<Self> {
                let norm = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
                match norm.as_str() {
                    $($s => Ok($name::$var),)+
                    _ => Err(Error::Invalid { field: $field, reason: format!("unknown value {:?}", s.chars().take(40).collect::<String>()) }),
                }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

text_enum!(
    /// Service tier: sets call priority and selects scripts and offers.
    Tier, "tier" { Vip = "vip", KeyAccount = "key_account", Public = "public" }
);
text_enum!(
    /// Which way the contact went.
    Direction, "direction" { Inbound = "inbound", Outbound = "outbound" }
);
text_enum!(
    /// Ticket life cycle; the first three count as open.
    TicketStatus, "status" { Open = "open", InProgress = "in_progress", Waiting = "waiting", Resolved = "resolved", Closed = "closed" }
);
text_enum!(
    /// Ticket urgency.
    TicketPriority, "priority" { Low = "low", Normal = "normal", High = "high", Urgent = "urgent" }
);

impl TicketStatus {
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TicketStatus::Open | TicketStatus::InProgress | TicketStatus::Waiting
        )
    }
}

/// The editable part of a customer record, used to create one and to replace it when an
/// agent completes or edits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerData {
    pub title: Option<String>,
    pub first_name: Option<String>,
    pub surname: String,
    pub company: Option<String>,
    pub language: Option<String>,
    pub tier: Tier,
    pub segment: Option<String>,
    pub account_manager: Option<String>,
    pub notes: Option<String>,
    /// Operator-defined fields; always a JSON object.
    pub custom_fields: serde_json::Value,
}

impl Default for CustomerData {
    fn default() -> Self {
        CustomerData {
            title: None,
            first_name: None,
            surname: String::new(),
            company: None,
            language: None,
            tier: Tier::Public,
            segment: None,
            account_manager: None,
            notes: None,
            custom_fields: serde_json::Value::Object(Default::default()),
        }
    }
}

/// A customer as stored, with all its numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Customer {
    pub id: CustomerId,
    #[serde(flatten)]
    pub data: CustomerData,
    /// Created automatically for an unknown caller; the agent is expected to complete it.
    pub provisional: bool,
    /// E.164 numbers, sorted.
    pub numbers: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A new entry in the service trail, written when a call (or other contact) ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewInteraction {
    pub customer_id: CustomerId,
    /// `voice`, `email`, `chat`, ...
    pub channel: String,
    pub direction: Direction,
    pub call_id: Option<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub recording_path: Option<String>,
    /// Tickets this contact was about.
    pub ticket_ids: Vec<TicketId>,
}

/// One entry of the service trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interaction {
    pub id: InteractionId,
    pub customer_id: CustomerId,
    pub channel: String,
    pub direction: Direction,
    pub call_id: Option<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub disposition: Option<String>,
    pub notes: Option<String>,
    pub recording_path: Option<String>,
    pub ticket_ids: Vec<TicketId>,
}

/// A ticket / work order to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTicket {
    pub customer_id: CustomerId,
    pub subject: String,
    pub priority: TicketPriority,
    pub assignee: Option<String>,
    pub due_at: Option<i64>,
    /// Shown to agents and read out by greetings; `T-<id>` when not given.
    pub reference: Option<String>,
}

/// Changes to a ticket; `None` leaves a field alone. Every change lands in the history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketUpdate {
    pub status: Option<TicketStatus>,
    pub priority: Option<TicketPriority>,
    pub assignee: Option<Option<String>>,
    pub due_at: Option<Option<i64>>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    pub id: TicketId,
    pub customer_id: CustomerId,
    pub reference: String,
    pub subject: String,
    pub status: TicketStatus,
    pub priority: TicketPriority,
    pub assignee: Option<String>,
    pub due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One line of a ticket's history, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketEvent {
    pub at: i64,
    pub actor: String,
    pub change: String,
}

/// A next-best-offer rule. All given conditions must hold; the highest rank wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    #[serde(default)]
    pub id: i64,
    pub name: String,
    pub text: String,
    pub tier: Option<Tier>,
    pub segment: Option<String>,
    /// At least this many contacts among the last 10 in the trail.
    pub min_interactions: Option<i64>,
    /// At most this many open tickets (e.g. 0: do not up-sell during a complaint).
    pub max_open_tickets: Option<i64>,
    /// The most recent contact ended with this disposition (e.g. `cancel_request`).
    pub last_disposition: Option<String>,
    pub rank: i64,
}

/// How a caller was identified.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Identification {
    /// Exactly one customer has this number.
    Known { customer: Box<Customer> },
    /// Nobody had the number: a provisional record now exists for the agent to complete.
    Provisional { customer: Box<Customer> },
    /// Several customers share the number (a family, a switchboard): the agent picks.
    Candidates { customers: Vec<Customer> },
    /// The caller withheld the number; nothing was looked up or created.
    Withheld,
    /// The caller id is not a phone number (e.g. a SIP user name); nothing was looked up.
    Unusable { raw: String },
}

/// Everything the agent desktop shows when the call is offered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View360 {
    pub customer: Customer,
    /// The last 10 contacts, newest first.
    pub interactions: Vec<Interaction>,
    /// Open tickets, most recently updated first (at most 20).
    pub open_tickets: Vec<Ticket>,
    /// The rendered greeting script, empty if no script applies.
    pub greeting: String,
    pub offer: Option<Offer>,
}

/// The result of identifying a caller and, where one customer is certain, their 360° view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScreenPop {
    /// The normalised number, if there was one.
    pub number: Option<String>,
    pub identification: Identification,
    pub view: Option<View360>,
}

/// A search hit, small enough to list many.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerSummary {
    pub id: CustomerId,
    pub title: Option<String>,
    pub first_name: Option<String>,
    pub surname: String,
    pub company: Option<String>,
    pub tier: Tier,
    pub provisional: bool,
}

/// An access to customer records to log: who, what, which customer, allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub actor: String,
    /// e.g. `pop`, `read`, `update`, `search`, `ticket_create`.
    pub action: String,
    pub customer_id: Option<CustomerId>,
    pub allowed: bool,
    pub detail: String,
}

/// A logged access (times are Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub customer_id: Option<CustomerId>,
    pub allowed: bool,
    pub detail: String,
}
