//! Deterministic synthetic data for demos and benchmarks.
//!
//! Customer `i` of seed `s` is always the same person with the same numbers, trail and
//! tickets, whatever the batch size or backend: each customer draws from its own small
//! PRNG seeded by `(s, i)`. The PRNG is written here (SplitMix64) rather than taken from a
//! crate so the data set cannot change under a dependency upgrade.

use crate::bulk::{self, Batch, CustomerRec, IdTable, InteractionRec, TicketRec};
use crate::error::Result;
use crate::model::*;
use crate::store::{Pool, Store};
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    pub customers: u64,
    pub seed: u64,
    /// Customers per transaction.
    pub batch: usize,
    /// "Now" for the synthetic history (fixed, so reruns produce identical rows).
    pub now_ms: i64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            customers: 1000,
            seed: 1,
            batch: 5000,
            now_ms: 1_793_491_200_000,
        }
    }
}

/// What was written and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    pub customers: u64,
    pub numbers: u64,
    pub interactions: u64,
    pub tickets: u64,
    pub elapsed: Duration,
}

struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, index: u64) -> Self {
        let mut s = SplitMix(seed ^ 0x5851_f42d_4c95_7f2d);
        let a = s.next();
        SplitMix(a ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const MOBILE_PREFIXES: [&str; 11] = [
    "151", "152", "157", "159", "160", "162", "163", "176", "177", "178", "179",
];
const AREA_CODES: [&str; 10] = [
    "30", "40", "89", "221", "69", "711", "211", "341", "351", "511",
];
const FEMALE: [&str; 20] = [
    "Anna",
    "Maria",
    "Emma",
    "Sophie",
    "Laura",
    "Julia",
    "Lea",
    "Hannah",
    "Sarah",
    "Lena",
    "Elif",
    "Mia",
    "Katharina",
    "Claudia",
    "Sabine",
    "Petra",
    "Ayse",
    "Olga",
    "Fatma",
    "Ingrid",
];
const MALE: [&str; 20] = [
    "Thomas", "Michael", "Andreas", "Stefan", "Jan", "Lukas", "Felix", "Paul", "Jonas", "Mehmet",
    "Peter", "Klaus", "Jürgen", "Tobias", "Daniel", "Ali", "Ivan", "Markus", "Frank", "Uwe",
];
const SURNAMES: [&str; 40] = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Schmitt",
    "Werner",
    "Krause",
    "Meier",
    "Lehmann",
    "Yılmaz",
    "Kaya",
    "Nowak",
    "Kowalski",
    "Rossi",
    "Smith",
    "Jansen",
    "Petrović",
    "Öztürk",
    "Lang",
];
const COMPANIES: [&str; 12] = [
    "Nordwind GmbH",
    "Alpen Logistik AG",
    "Rhein Energie KG",
    "Stadtwerke Süd",
    "Havel Bau GmbH",
    "Elbe Medien",
    "Spree Software GmbH",
    "Isar Pharma AG",
    "Main Finanz",
    "Ruhr Stahl AG",
    "Weser Reederei",
    "Bodensee Hotels",
];
const QUEUES: [&str; 5] = ["repairs", "billing", "sales", "support", "vip-desk"];
const DISPOSITIONS: [&str; 7] = [
    "resolved_first_call",
    "callback_scheduled",
    "escalated",
    "information_given",
    "complaint",
    "cancel_request",
    "sale",
];
const NOTES: [&str; 6] = [
    "customer asked for written confirmation",
    "technician appointment agreed",
    "explained the invoice",
    "prefers contact by email",
    "will call back after checking",
    "very satisfied",
];
const SUBJECTS: [&str; 8] = [
    "Boiler repair",
    "Invoice correction",
    "Contract change",
    "Meter reading",
    "Router replacement",
    "Move to new address",
    "Complaint about waiting time",
    "Installation appointment",
];
const DAY: i64 = 86_400_000;

/// The unique mobile number of customer `index` (seed-independent, so a benchmark can dial
/// any generated customer). Bijective for `index < 1.1e9`.
pub fn mobile_number(index: u64) -> String {
    let prefix = MOBILE_PREFIXES[(index % MOBILE_PREFIXES.len() as u64) as usize];
    let q = index / MOBILE_PREFIXES.len() as u64;
    // 48271 is coprime with 10^8, so q -> subscriber is a permutation of 0..10^8.
    let subscriber = (q.wrapping_mul(48_271).wrapping_add(12_345_679)) % 100_000_000;
    format!("+49{prefix}{subscriber:08}")
}

/// One synthetic customer with its records, before ids are assigned.
pub(crate) struct Person {
    pub data: CustomerData,
    pub created_at: i64,
    pub numbers: Vec<String>,
    pub interactions: Vec<InteractionRec>,
    pub tickets: Vec<TicketRec>,
}

pub(crate) fn person(seed: u64, index: u64, now: i64) -> Person {
    let mut r = SplitMix::new(seed, index);
    let female = r.chance(50);
    let first = if female {
        r.pick(&FEMALE)
    } else {
        r.pick(&MALE)
    };
    let title = if r.chance(6) {
        if r.chance(70) { "Dr." } else { "Prof." }
    } else if female {
        "Ms"
    } else {
        "Mr"
    };
    let tier_roll = r.below(100);
    let tier = match tier_roll {
        0..=1 => Tier::Vip,
        2..=9 => Tier::KeyAccount,
        _ => Tier::Public,
    };
    let company =
        (tier == Tier::KeyAccount || r.chance(15)).then(|| r.pick(&COMPANIES).to_string());
    let segment = match (tier, company.is_some()) {
        (Tier::KeyAccount, _) => r.pick(&["enterprise", "public_sector"]),
        (_, true) => "small_business",
        _ => "private",
    };
    let language = match r.below(100) {
        0..=79 => "de",
        80..=94 => "en",
        _ => "tr",
    };
    let created_at = now - (r.below(3650) as i64 + 1) * DAY;
    let account_manager = (tier != Tier::Public).then(|| format!("am{:02}", r.below(40)));
    let notes = r.chance(10).then(|| r.pick(&NOTES).to_string());
    let data = CustomerData {
        title: Some(title.to_string()),
        first_name: Some(first.to_string()),
        surname: r.pick(&SURNAMES).to_string(),
        company,
        language: Some(language.to_string()),
        tier,
        segment: Some(segment.to_string()),
        account_manager,
        notes,
        custom_fields: serde_json::json!({ "contract": format!("C-{index:09}"), "newsletter": r.chance(30) }),
    };
    let mut numbers = vec![mobile_number(index)];
    if r.chance(35) {
        let landline = format!(
            "+49{}{}{:06}",
            r.pick(&AREA_CODES),
            2 + r.below(8),
            r.below(1_000_000)
        );
        numbers.push(landline);
    }
    let mut interactions = Vec::new();
    for k in 0..r.below(7) {
        let started_at = now - r.below(730 * DAY as u64) as i64;
        let channel = match r.below(10) {
            0..=6 => "voice",
            7..=8 => "email",
            _ => "chat",
        };
        let voice = channel == "voice";
        let call_id = voice.then(|| format!("gen-{seed}-{index}-{k}"));
        interactions.push(InteractionRec {
            customer_id: 0,
            channel,
            direction: if r.chance(80) {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            recording_path: call_id.as_ref().map(|c| format!("recordings/{c}.wav")),
            call_id,
            queue: Some(r.pick(&QUEUES)),
            agent: Some(format!("agent{:03}", r.below(400))),
            started_at,
            ended_at: Some(started_at + 30_000 + r.below(900_000) as i64),
            disposition: Some(r.pick(&DISPOSITIONS)),
            notes: r.chance(40).then(|| r.pick(&NOTES)),
        });
    }
    let mut tickets = Vec::new();
    let n_tickets = match r.below(10) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 2,
    };
    for _ in 0..n_tickets {
        let created = now - r.below(365 * DAY as u64) as i64;
        let updated = (created + r.below(30 * DAY as u64) as i64).min(now);
        let status = match r.below(100) {
            0..=29 => TicketStatus::Open,
            30..=44 => TicketStatus::InProgress,
            45..=54 => TicketStatus::Waiting,
            55..=79 => TicketStatus::Resolved,
            _ => TicketStatus::Closed,
        };
        let priority = r.pick(TicketPriority::ALL);
        let subject = r.pick(&SUBJECTS);
        let agent = format!("agent{:03}", r.below(400));
        let mut history = vec![(
            created,
            agent.clone(),
            format!("created: {subject} ({priority})"),
        )];
        if status != TicketStatus::Open {
            history.push((updated, agent.clone(), format!("status: open → {status}")));
        }
        tickets.push(TicketRec {
            id: 0,
            customer_id: 0,
            reference: String::new(),
            subject,
            status,
            priority,
            assignee: Some(agent),
            due_at: status.is_open().then_some(created + 14 * DAY),
            created_at: created,
            updated_at: updated,
            history,
        });
    }
    Person {
        data,
        created_at,
        numbers,
        interactions,
        tickets,
    }
}

/// Gives customers and tickets their reserved ids and flattens them into one batch.
pub(crate) fn assemble(people: Vec<Person>, customer_ids: &[i64], ticket_ids: &[i64]) -> Batch {
    let mut b = Batch::default();
    let mut tickets = ticket_ids.iter();
    for (p, &id) in people.into_iter().zip(customer_ids) {
        for n in p.numbers {
            b.numbers.push((id, n));
        }
        for mut i in p.interactions {
            i.customer_id = id;
            b.interactions.push(i);
        }
        for mut t in p.tickets {
            let Some(&tid) = tickets.next() else { break };
            t.id = tid;
            t.customer_id = id;
            t.reference = format!("RO-{tid}");
            b.tickets.push(t);
        }
        b.customers.push(CustomerRec {
            id,
            data: p.data,
            created_at: p.created_at,
        });
    }
    b
}

impl Store {
    /// Generates `config.customers` synthetic customers (best into an empty store: numbers
    /// depend on the customer index only). `progress(done, total)` is called per batch.
    pub async fn generate(
        &self,
        config: &GenerateConfig,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<GenerateReport> {
        let start = Instant::now();
        let mut report = GenerateReport {
            customers: 0,
            numbers: 0,
            interactions: 0,
            tickets: 0,
            elapsed: Duration::ZERO,
        };
        let batch = config.batch.max(1) as u64;
        let mut next = 0u64;
        while next < config.customers {
            let end = (next + batch).min(config.customers);
            let people: Vec<Person> = (next..end)
                .map(|i| person(config.seed, i, config.now_ms))
                .collect();
            let n_tickets: usize = people.iter().map(|p| p.tickets.len()).sum();
            let n = people.len();
            let b = match &self.pool {
                Pool::Sqlite(p) => {
                    let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                    let cids = bulk::reserve_sqlite(&mut tx, IdTable::Customers, n).await?;
                    let tids = bulk::reserve_sqlite(&mut tx, IdTable::Tickets, n_tickets).await?;
                    let b = assemble(people, &cids, &tids);
                    bulk::write_sqlite(&mut tx, &b).await?;
                    tx.commit().await?;
                    b
                }
                Pool::Postgres(p) => {
                    let mut tx = p.begin().await?;
                    let cids = bulk::reserve_pg(&mut tx, IdTable::Customers, n).await?;
                    let tids = bulk::reserve_pg(&mut tx, IdTable::Tickets, n_tickets).await?;
                    let b = assemble(people, &cids, &tids);
                    bulk::write_pg(&mut tx, &b).await?;
                    tx.commit().await?;
                    b
                }
            };
            report.customers += b.customers.len() as u64;
            report.numbers += b.numbers.len() as u64;
            report.interactions += b.interactions.len() as u64;
            report.tickets += b.tickets.len() as u64;
            next = end;
            progress(next, config.customers);
        }
        if let Pool::Postgres(p) = &self.pool {
            // Fresh statistics, so the planner uses the indexes on a freshly loaded table.
            sqlx::query("ANALYZE").execute(p).await?;
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }
}
