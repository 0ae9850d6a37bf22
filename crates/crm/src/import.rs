//! CSV import of customers: every row is validated before anything is written; one bad row
//! rejects the file with the line numbers and reasons of all bad rows (up to a cap).
//!
//! Columns (header row required, names case-insensitive, any order; only `surname` is
//! mandatory): `title, first_name, surname, company, language, tier, segment,
//! account_manager, notes, phones, custom_fields`. `phones` holds numbers separated by `;`
//! or `|`, in any format the default region understands; `custom_fields` is a JSON object.
//! Validated rows are held in memory until written (a few hundred bytes each).

use crate::bulk::{self, Batch, CustomerRec, IdTable};
use crate::error::{Error, Result, RowError};
use crate::model::{CustomerData, Tier};
use crate::phone::Normalizer;
use crate::store::{Pool, Store, now_ms, validate_customer};
use std::io::Read;

/// Most row errors collected before validation stops (the file is rejected anyway).
pub const MAX_ERRORS: usize = 1000;
/// Customers per bulk write inside the import transaction.
const BATCH: usize = 2000;

const COLUMNS: [&str; 11] = [
    "title",
    "first_name",
    "surname",
    "company",
    "language",
    "tier",
    "segment",
    "account_manager",
    "notes",
    "phones",
    "custom_fields",
];

/// Where an import is; reported through the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportProgress {
    /// Rows checked so far (every 1000 rows and at the end).
    Validated { rows: u64 },
    /// Customers written so far out of the total.
    Written { rows: u64, total: u64 },
}

/// What an accepted import wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    pub customers: u64,
    pub numbers: u64,
}

/// One validated row, ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRow {
    pub line: u64,
    pub data: CustomerData,
    /// E.164, deduplicated.
    pub numbers: Vec<String>,
}

/// Reads and checks the whole file; returns the rows or every problem found.
pub fn validate(
    reader: impl Read,
    normalizer: &Normalizer,
    mut progress: impl FnMut(ImportProgress),
) -> Result<Vec<ValidRow>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut records = rdr.byte_records();
    let header = match records.next() {
        None => {
            return Err(Error::ImportRejected(vec![RowError {
                line: 1,
                reason: "empty file: a header row is required".into(),
            }]));
        }
        Some(Err(e)) => return Err(Error::Csv(e.to_string())),
        Some(Ok(h)) => h,
    };
    let mut index: Vec<Option<usize>> = Vec::new(); // file column -> known column
    let mut header_errors = Vec::new();
    for (i, raw) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(raw)
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        match COLUMNS.iter().position(|c| *c == name) {
            Some(k) if index.contains(&Some(k)) => {
                header_errors.push(format!("column {name:?} appears twice"))
            }
            Some(k) => index.push(Some(k)),
            None => {
                header_errors.push(format!(
                    "unknown column {:?} (column {})",
                    name.chars().take(40).collect::<String>(),
                    i + 1
                ));
                index.push(None);
            }
        }
    }
    if !index.contains(&Some(2)) {
        header_errors.push("missing required column \"surname\"".into());
    }
    if !header_errors.is_empty() {
        return Err(Error::ImportRejected(vec![RowError {
            line: 1,
            reason: header_errors.join("; "),
        }]));
    }
    let width = index.len();
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen = 0u64;
    for rec in records {
        let rec = rec.map_err(|e| Error::Csv(e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        seen += 1;
        if seen.is_multiple_of(1000) {
            progress(ImportProgress::Validated { rows: seen });
        }
        if rec.len() == 1 && rec.get(0).is_some_and(|f| f.is_empty()) {
            continue; // a blank line
        }
        match check_row(&rec, &index, width, normalizer) {
            Ok((data, numbers)) => rows.push(ValidRow {
                line,
                data,
                numbers,
            }),
            Err(reason) => {
                errors.push(RowError { line, reason });
                if errors.len() >= MAX_ERRORS {
                    break;
                }
            }
        }
    }
    progress(ImportProgress::Validated { rows: seen });
    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(Error::ImportRejected(errors))
    }
}

fn check_row(
    rec: &csv::ByteRecord,
    index: &[Option<usize>],
    width: usize,
    normalizer: &Normalizer,
) -> Result<(CustomerData, Vec<String>), String> {
    if rec.len() != width {
        return Err(format!("expected {width} fields, found {}", rec.len()));
    }
    let mut vals: [Option<String>; COLUMNS.len()] = Default::default();
    for (raw, col) in rec.iter().zip(index) {
        let Some(k) = col else { continue };
        let text = std::str::from_utf8(raw)
            .map_err(|_| format!("column {}: not valid UTF-8", COLUMNS[*k]))?;
        let text = text.trim();
        if !text.is_empty() {
            vals[*k] = Some(text.to_string());
        }
    }
    let [
        title,
        first_name,
        surname,
        company,
        language,
        tier,
        segment,
        account_manager,
        notes,
        phones,
        custom,
    ] = vals;
    let surname = surname.ok_or("surname is empty")?;
    let tier = match tier {
        None => Tier::Public,
        Some(t) => Tier::parse(&t).map_err(|_| {
            format!(
                "unknown tier {:?} (vip, key_account, public)",
                t.chars().take(40).collect::<String>()
            )
        })?,
    };
    let custom_fields = match custom {
        None => serde_json::Value::Object(Default::default()),
        Some(j) => match serde_json::from_str::<serde_json::Value>(&j) {
            Ok(v) if v.is_object() => v,
            Ok(_) => return Err("custom_fields must be a JSON object".into()),
            Err(e) => return Err(format!("custom_fields: {e}")),
        },
    };
    let mut numbers = Vec::new();
    for p in phones
        .iter()
        .flat_map(|p| p.split([';', '|']))
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let n = normalizer.normalize(p).map_err(|_| {
            format!(
                "invalid phone number {:?}",
                p.chars().take(40).collect::<String>()
            )
        })?;
        if !numbers.contains(&n) {
            numbers.push(n);
        }
    }
    let data = CustomerData {
        title,
        first_name,
        surname,
        company,
        language,
        tier,
        segment,
        account_manager,
        notes,
        custom_fields,
    };
    validate_customer(&data).map_err(|e| e.to_string())?;
    Ok((data, numbers))
}

impl Store {
    /// Imports customers from CSV: validates every row first (nothing is written if any row
    /// is bad: [`Error::ImportRejected`] lists them), then writes all rows in one transaction.
    /// Reading is blocking IO; call from a blocking context for large files.
    pub async fn import_customers(
        &self,
        reader: impl Read,
        mut progress: impl FnMut(ImportProgress),
    ) -> Result<ImportReport> {
        let rows = validate(reader, self.normalizer(), &mut progress)?;
        let total = rows.len() as u64;
        let now = now_ms();
        let mut report = ImportReport {
            customers: 0,
            numbers: 0,
        };
        macro_rules! write_all {
            ($tx:ident, $reserve:path, $write:path) => {{
                for chunk in rows.chunks(BATCH) {
                    let ids = $reserve(&mut $tx, IdTable::Customers, chunk.len()).await?;
                    let mut b = Batch::default();
                    for (row, &id) in chunk.iter().zip(&ids) {
                        b.numbers
                            .extend(row.numbers.iter().map(|n| (id, n.clone())));
                        b.customers.push(CustomerRec {
                            id,
                            data: row.data.clone(),
                            created_at: now,
                        });
                    }
                    $write(&mut $tx, &b).await?;
                    report.customers += b.customers.len() as u64;
                    report.numbers += b.numbers.len() as u64;
                    progress(ImportProgress::Written {
                        rows: report.customers,
                        total,
                    });
                }
                $tx.commit().await?;
            }};
        }
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                write_all!(tx, bulk::reserve_sqlite, bulk::write_sqlite);
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                write_all!(tx, bulk::reserve_pg, bulk::write_pg);
                // As after `generate`: fresh statistics for the tables a large import
                // grew, so lookups plan on the indexes before autovacuum gets round to it.
                sqlx::query("ANALYZE").execute(p).await?;
            }
        }
        Ok(report)
    }
}
