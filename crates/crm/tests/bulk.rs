//! Import and synthetic data, identical on SQLite and PostgreSQL.

mod common;

use hotline_crm::generate::{GenerateConfig, mobile_number};
use hotline_crm::import::ImportProgress;
use hotline_crm::*;

const GOOD: &str = "\u{feff}Surname,first_name,TITLE,phones,tier,company,custom_fields,notes\n\
Weber,Anna,Dr.,+49 30 1234567; 0171 2345678,vip,,\"{\"\"contract\"\": \"\"K-1\"\"}\",\"likes\n\
two-line notes\"\n\
\n\
Schulz,Jan,Mr,089 555000|+49 89 555000,Key Account,Nordwind GmbH,,\n\
Öztürk,Elif,Ms,,,,,\n";

async fn import_good_file_writes_all_rows(store: Store) {
    let mut events = Vec::new();
    let report = store
        .import_customers(GOOD.as_bytes(), |p| events.push(p))
        .await
        .unwrap();
    assert_eq!(report.customers, 3);
    assert_eq!(
        report.numbers, 3,
        "duplicate spellings of one number count once"
    );
    assert_eq!(
        events.last(),
        Some(&ImportProgress::Written { rows: 3, total: 3 })
    );
    assert!(
        events.contains(&ImportProgress::Validated { rows: 3 }),
        "{events:?}"
    );
    let weber = match store.identify("01712345678").await.unwrap() {
        Identification::Known { customer } => customer,
        other => panic!("expected Known, got {other:?}"),
    };
    assert_eq!(weber.data.surname, "Weber");
    assert_eq!(weber.data.title.as_deref(), Some("Dr."));
    assert_eq!(weber.data.tier, Tier::Vip);
    assert_eq!(weber.data.company, None);
    assert_eq!(weber.data.notes.as_deref(), Some("likes\ntwo-line notes"));
    assert_eq!(
        weber.data.custom_fields,
        serde_json::json!({"contract": "K-1"})
    );
    assert_eq!(
        weber.numbers,
        vec!["+491712345678".to_string(), "+49301234567".to_string()]
    );
    let schulz = store.search_customers("schulz", 10).await.unwrap();
    assert_eq!(schulz.len(), 1);
    assert_eq!(schulz[0].tier, Tier::KeyAccount);
    assert_eq!(schulz[0].company.as_deref(), Some("Nordwind GmbH"));
    assert_eq!(store.counts().await.unwrap(), (3, 3, 0, 0));
    // Imported ids do not collide with ids handed out afterwards.
    let next = store
        .create_customer(
            &CustomerData {
                surname: "After".into(),
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap();
    assert!(next > weber.id);
    assert_eq!(store.counts().await.unwrap().0, 4);
}

async fn import_bad_file_writes_nothing_and_names_lines(store: Store) {
    store
        .create_customer(
            &CustomerData {
                surname: "Existing".into(),
                ..Default::default()
            },
            &["+49 30 999999"],
        )
        .await
        .unwrap();
    let bad = "surname,first_name,phones,tier,custom_fields,notes\n\
Good,Row,030 111111,public,,\"a note\n\
over two lines\"\n\
,NoSurname,,,,\n\
Good,Two,,vip,,\n\
Bad,Phone,12ab,,,\n\
Bad,Tier,,gold,,\n\
Good,Three,,,,\n\
Too,Few,Fields\n\
Bad,Json,,,[1],\n\
Bad,Json2,,,{oops,\n";
    let mut wrote = false;
    let err = store
        .import_customers(bad.as_bytes(), |p| {
            wrote |= matches!(p, ImportProgress::Written { .. })
        })
        .await
        .unwrap_err();
    let Error::ImportRejected(rows) = err else {
        panic!("expected ImportRejected, got {err:?}")
    };
    let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![4, 6, 7, 9, 10, 11], "{rows:?}");
    assert!(rows[0].reason.contains("surname"), "{}", rows[0]);
    assert!(rows[1].reason.contains("12ab"), "{}", rows[1]);
    assert!(rows[2].reason.contains("gold"), "{}", rows[2]);
    assert!(
        rows[3].reason.contains("expected 6 fields, found 3"),
        "{}",
        rows[3]
    );
    assert!(rows[4].reason.contains("JSON object"), "{}", rows[4]);
    assert!(rows[5].reason.starts_with("custom_fields"), "{}", rows[5]);
    assert!(!wrote, "nothing written");
    assert_eq!(store.counts().await.unwrap(), (1, 1, 0, 0));

    for (csv, reason) in [
        ("", "empty file"),
        ("surname,shoe_size\nX,42\n", "unknown column \"shoe_size\""),
        ("first_name\nX\n", "missing required column \"surname\""),
        ("surname,Surname\nX,Y\n", "appears twice"),
    ] {
        match store.import_customers(csv.as_bytes(), |_| {}).await {
            Err(Error::ImportRejected(rows)) => {
                assert_eq!(rows.len(), 1);
                assert_eq!(rows[0].line, 1);
                assert!(rows[0].reason.contains(reason), "{csv:?}: {}", rows[0]);
            }
            other => panic!("{csv:?}: expected rejection, got {other:?}"),
        }
    }
    // Invalid UTF-8 inside a field is a row error, not a panic.
    let mut bytes = b"surname,notes\nOk,fine\nBad,".to_vec();
    bytes.extend([0xff, 0xfe, b'\n']);
    match store.import_customers(&bytes[..], |_| {}).await {
        Err(Error::ImportRejected(rows)) => {
            assert_eq!((rows[0].line, rows.len()), (3, 1), "{rows:?}")
        }
        other => panic!("expected rejection, got {other:?}"),
    }
    assert_eq!(store.counts().await.unwrap(), (1, 1, 0, 0));
}

/// Customer content without ids, for comparing generated data across runs.
async fn dump(store: &Store, ids: std::ops::RangeInclusive<i64>) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let c = store
            .customer(id)
            .await
            .unwrap()
            .expect("generated customer");
        let trail: Vec<_> = store
            .trail(id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|i| {
                (
                    i.channel,
                    i.direction,
                    i.call_id,
                    i.queue,
                    i.agent,
                    i.started_at,
                    i.ended_at,
                    i.disposition,
                    i.notes,
                    i.recording_path,
                )
            })
            .collect();
        let tickets: Vec<_> = store
            .tickets_of(id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|t| {
                (
                    t.subject,
                    t.status,
                    t.priority,
                    t.assignee,
                    t.due_at,
                    t.created_at,
                    t.updated_at,
                )
            })
            .collect();
        out.push(format!(
            "{:?} {:?} {} {:?} {:?}",
            c.data, c.numbers, c.created_at, trail, tickets
        ));
    }
    out
}

async fn generator_is_deterministic_and_realistic(store: Store) {
    let n = 120u64;
    let cfg = GenerateConfig {
        customers: n,
        seed: 7,
        batch: 50,
        ..GenerateConfig::default()
    };
    let mut calls = Vec::new();
    let r1 = store
        .generate(&cfg, |done, total| calls.push((done, total)))
        .await
        .unwrap();
    assert_eq!(calls, vec![(50, n), (100, n), (120, n)]);
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (
            r1.customers as i64,
            r1.numbers as i64,
            r1.interactions as i64,
            r1.tickets as i64
        ),
        counts
    );
    assert!(
        r1.numbers > n && r1.interactions > n && r1.tickets > n / 5,
        "{r1:?}"
    );
    // Every generated mobile number is valid E.164 and finds exactly its customer.
    for i in [0u64, 1, 57, 119] {
        let number = mobile_number(i);
        assert_eq!(store.normalizer().normalize(&number).unwrap(), number);
        match store.identify(&number).await.unwrap() {
            Identification::Known { customer } => assert_eq!(customer.numbers[0..1].len(), 1),
            other => panic!("{number}: expected Known, got {other:?}"),
        }
    }
    let first = dump(&store, 1..=n as i64).await;
    // Same seed, different batching: same people.
    store
        .generate(
            &GenerateConfig {
                batch: 33,
                ..cfg.clone()
            },
            |_, _| {},
        )
        .await
        .unwrap();
    let again = dump(&store, n as i64 + 1..=2 * n as i64).await;
    assert_eq!(first, again);
    // Another seed: other people.
    store
        .generate(&GenerateConfig { seed: 8, ..cfg }, |_, _| {})
        .await
        .unwrap();
    let other = dump(&store, 2 * n as i64 + 1..=3 * n as i64).await;
    assert_ne!(first, other);
    let distinct: std::collections::HashSet<_> = first.iter().collect();
    assert_eq!(
        distinct.len(),
        first.len(),
        "no two generated customers are identical"
    );
}

on_both_backends!(
    import_good_file_writes_all_rows,
    import_bad_file_writes_nothing_and_names_lines,
    generator_is_deterministic_and_realistic,
);
