//! The store commands of the binary (`hotline report`, `hotline crm import|generate`) run
//! as processes against real SQLite files and a real PostgreSQL database, and `start`
//! wires the CDR store (calls a crash left in progress become interrupted).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hotline_cdr::{CallRecord, CallResult, CdrStore, HangupSide, StartedCall, StoreOptions};

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!(
        "hotline-store-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_config(dir: &Path, url: &str) -> PathBuf {
    let p = dir.join("hotline.toml");
    std::fs::write(
        &p,
        format!(
            "[sip]\nudp = [\"127.0.0.1:0\"]\n[[numbers]]\nnumber = \"4000\"\nqueue = \"support\"\n\
             [acd]\nshort_abandon_secs = 5\n[[acd.queue]]\nname = \"support\"\nsl_secs = 20\n\
             [store]\nurl = \"{url}\"\n"
        ),
    )
    .unwrap();
    p
}

fn hotline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const DAY: i64 = 20_780 * 86_400_000; // 2026-11-23T00:00Z

fn call(id: &str, minute: i64, wait_s: i64, result: CallResult) -> CallRecord {
    let arrived = DAY + 9 * 3_600_000 + minute * 60_000;
    let answered = result == CallResult::Answered;
    CallRecord {
        call_id: id.into(),
        sip_call_id: format!("{id}@t"),
        direction: "inbound".into(),
        caller: "+4930555".into(),
        caller_name: None,
        dialed: "4000".into(),
        route: "queue:support".into(),
        queue: Some("support".into()),
        agent: answered.then(|| "1001".into()),
        arrived_at: arrived,
        queued_at: Some(arrived),
        offered_at: None,
        answered_at: answered.then_some(arrived + wait_s * 1000),
        ended_at: arrived + wait_s * 1000 + if answered { 100_000 } else { 0 },
        wait_ms: wait_s * 1000,
        talk_ms: if answered { 100_000 } else { 0 },
        hold_ms: 0,
        result,
        hangup_side: HangupSide::Caller,
        sip_status: 200,
        recording: None,
        transfers: 0,
    }
}

/// Three support calls: answered after 10 s, answered after 30 s, abandoned after 40 s.
/// SL(20 s) = 1 / (2 + 1) ; ASA = 20 s ; AHT = 100 s.
async fn seed(url: &str) {
    let store = CdrStore::open(url, &StoreOptions::default()).await.unwrap();
    store
        .write_call(&call("a", 0, 10, CallResult::Answered))
        .await
        .unwrap();
    store
        .write_call(&call("b", 5, 30, CallResult::Answered))
        .await
        .unwrap();
    store
        .write_call(&call("c", 10, 40, CallResult::Abandoned))
        .await
        .unwrap();
    store.close().await;
}

fn check_report(config: &Path) {
    let cfg = config.to_str().unwrap();
    let out = hotline(&[
        "report",
        "--config",
        cfg,
        "--from",
        "2026-11-23",
        "--to",
        "2026-11-24",
        "--by",
        "queue",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)));
    let row = &json["rows"][0];
    assert_eq!(row["key"], "support");
    assert_eq!(row["offered"], 3);
    assert_eq!(row["answered"], 2);
    assert_eq!(row["abandoned"], 1);
    assert!((row["service_level"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(row["asa_secs"], 20.0);
    assert_eq!(row["aht_secs"], 100.0);
    assert_eq!(json["service_level_secs"], 20);

    let out = hotline(&[
        "report",
        "--config",
        cfg,
        "--from",
        "2026-11-23T09:00Z",
        "--to",
        "2026-11-23T10:00Z",
        "--by",
        "hour",
        "--format",
        "csv",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("key,offered,"), "{csv}");
    assert!(
        lines[1].starts_with("2026-11-23T09:00Z,3,2,1,0,0,1,"),
        "{csv}"
    );

    let out = hotline(&["report", "--config", cfg, "--from", "yesterday"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("yesterday"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn report_on_sqlite() {
    let dir = temp_dir("report");
    let url = format!("sqlite://{}/hotline.db", dir.display());
    seed(&url).await;
    check_report(&write_config(&dir, &url));
    let _ = std::fs::remove_dir_all(dir);
}

fn pg_url() -> String {
    std::env::var("HOTLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database on the test server (a URL names a database, not a schema).
async fn with_pg_database(name: &str, body: impl AsyncFnOnce(String)) {
    let url = pg_url();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL not reachable at {url}: {e}\nstart it with crates/crm/scripts/ensure-postgres.sh")
        });
    let db = format!("hotline_{name}_{}", std::process::id());
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
        .execute(&admin)
        .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(body(
        format!("{base}/{db}"),
    )))
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

#[tokio::test]
async fn report_and_crm_on_postgres() {
    with_pg_database("cli", async |url| {
        seed(&url).await;
        let dir = temp_dir("pg");
        let config = write_config(&dir, &url);
        check_report(&config);
        // The CRM shares the database with the CDRs.
        let out = hotline(&[
            "crm",
            "generate",
            "--customers",
            "40",
            "--config",
            config.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).starts_with("generated 40 customers"));
        check_report(&config);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await;
}

#[test]
fn crm_import_checks_every_row_first() {
    let dir = temp_dir("import");
    let url = format!("sqlite://{}/hotline.db", dir.display());
    let config = write_config(&dir, &url);
    let cfg = config.to_str().unwrap();
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "surname,first_name,phones,tier\nMustermann,Erika,+49 30 1234567,vip\n\
         Musterfrau,Max,not-a-number,public\nSchmidt,,030 7654321,emperor\n",
    )
    .unwrap();
    let out = hotline(&["crm", "import", bad.to_str().unwrap(), "--config", cfg]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("bad.csv:3:"), "{err}");
    assert!(err.contains("bad.csv:4:"), "{err}");
    assert!(err.contains("2 bad row(s); nothing was imported"), "{err}");

    let good = dir.join("good.csv");
    std::fs::write(
        &good,
        "surname,first_name,phones,tier\nMustermann,Erika,+49 30 1234567,vip\n\
         Schmidt,Hans,030 7654321;+49 170 1234567,public\n",
    )
    .unwrap();
    let out = hotline(&["crm", "import", good.to_str().unwrap(), "--config", cfg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "imported 2 customers with 3 numbers"
    );
    // Nothing of the rejected file was written: the first bad-file row (Erika) is in once.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let crm = hotline_crm::Store::open(&url, &hotline_crm::StoreConfig::default())
            .await
            .unwrap();
        let found = crm.search_customers("Mustermann", 10).await.unwrap();
        assert_eq!(found.len(), 1);
        crm.close().await;
    });
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn store_url_is_validated_with_location() {
    let dir = temp_dir("badurl");
    let config = write_config(&dir, "mysql://db/hotline");
    let out = hotline(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("hotline.toml:12:7:"), "{err}");
    assert!(err.contains("[store] url"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A crash left a call in progress: the next start records it as interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_settles_calls_left_in_progress() {
    let dir = temp_dir("interrupted");
    let url = format!("sqlite://{}/hotline.db", dir.display());
    let store = CdrStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    store
        .start_call(&StartedCall {
            call_id: "crashed".into(),
            sip_call_id: "crashed@t".into(),
            caller: "+4930555".into(),
            dialed: "4000".into(),
            arrived_at: DAY,
        })
        .await
        .unwrap();
    let config = write_config(&dir, &url);
    let cfg = hotline::Config::load(&config).unwrap();
    let running = hotline::start(&cfg).await.unwrap();
    let rec = store
        .call("crashed")
        .await
        .unwrap()
        .expect("settled at start");
    assert_eq!(rec.result, CallResult::Interrupted);
    assert_eq!(rec.hangup_side, HangupSide::System);
    running.shutdown().await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The Docker files agree: the image's config parses, its store is the compose file's
/// PostgreSQL service, and the image carries that config where compose runs it from.
#[test]
fn docker_config_parses_and_points_at_the_db_service() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cfg = hotline::Config::load(&root.join("docker/hotline.toml")).unwrap();
    let url = cfg.store.url.get_ref();
    assert!(
        url.starts_with("postgres://") && url.contains("@db:55432/"),
        "{url}"
    );
    assert!(!cfg.numbers.is_empty(), "the demo's numbers");
    // The CRM reads the same database (no second store setting).
    assert!(cfg.crm.as_ref().is_some_and(|c| c.store.is_none()));
    assert!(cfg.deprecations().is_empty());
    let compose = std::fs::read_to_string(root.join("docker/compose.yaml")).unwrap();
    assert!(compose.contains("\"127.0.0.1:55432:5432\""), "{compose}");
    assert!(compose.contains("\"db:127.0.0.1\""));
    assert!(compose.contains("/etc/hotline/hotline.toml"));
    let dockerfile = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY docker/hotline.toml /etc/hotline/hotline.toml"));
    let [first, last] = *cfg.media.rtp_ports.get_ref();
    assert!(dockerfile.contains(&format!("EXPOSE 5060/udp 5060/tcp {first}-{last}/udp")));
}
