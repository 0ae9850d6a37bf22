//! The admin page (`/admin`) in headless Chromium (playwright-core,
//! `sip-tests/browser-admin/admin.mjs`), against a Hotline started from a file (so the
//! admin API is on). The admin logs in, sees the route tree, edits queue `support` (its
//! fallback: hang up → queue `sales`), sees the what-if figures at the configured default
//! rate, and saves. A SIPp caller then dials 4801: `support` has no agent and
//! `leave_when_empty`, so the call follows the new fallback to `sales`, where bob (a
//! registered SIPp UAS) answers. Next a bad value (a negative ring timeout) shows the
//! API's error beside its field and changes nothing; the what-if of `sales` now uses the
//! last hour's calls from the CDRs; history shows the saved version's diff, and its
//! rollback puts the original file back. Screenshots land in `target/admin-screenshots/`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use hotline_sip_tests::browser::{browser_dir, expect_line};
use hotline_sip_tests::{Proto, SippBuilder, caller_audio, free_port};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const PW: &str = "admin-s3cret";

fn config(dir: &Path, http: u16, hash: &str) -> String {
    let d = dir.display();
    let [rtp_first, rtp_last] = hotline_sip_tests::rtp_ports(200);
    format!(
        r#"# The admin page test's configuration.
[sip]
udp = ["127.0.0.1:0"]
digest_algorithms = ["MD5"]
t1_ms = 100
t2_ms = 400

[[users]]
name = "alice"
password = "alice-pw"

[[users]]
name = "bob"
password = "bob-pw"

[media]
rtp_ip = "127.0.0.1"
rtp_ports = [{rtp_first}, {rtp_last}]
voice = false
record = false

[[numbers]]
number = "4801"
queue = "support"

[acd]
# No agent serves support: its callers leave at once for the fallback.
[[acd.queue]]
name = "support"
leave_when_empty = true
fallback = "hangup"

[[acd.queue]]
name = "sales"
wrapup_secs = 0

[[acd.agent]]
id = "bob"
queues = {{ sales = 0 }}

[cti]
listen = "127.0.0.1:{http}"

[[cti.user]]
name = "root"
password_hash = "{hash}"
role = "admin"

[store]
url = "memory"

[admin]
versions = "{d}/versions"
audit_log = "{d}/audit.jsonl"
prompts = "{d}/prompts"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_edits_a_queue_in_chromium_and_the_next_call_follows_it() -> anyhow::Result<()> {
    let browser_dir = browser_dir("browser-admin")?;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/admin-screenshots");
    std::fs::create_dir_all(&shots)?;
    let dir = std::env::temp_dir().join(format!("hotline-admin-page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("hotline.toml");
    let http = free_port();
    let original = config(&dir, http, &hotline_cti::hash_password(PW)?);
    std::fs::write(&file, &original)?;
    let h = hotline::start_file(&file).await?;
    let server = Proto::Udp.server_addr(&h);
    let memory = h
        .cdr
        .as_ref()
        .and_then(|c| c.memory.clone())
        .context("memory CDRs")?;

    let mut node = Command::new("node")
        .arg("admin.mjs")
        .current_dir(&browser_dir)
        .env("URL", format!("http://127.0.0.1:{http}"))
        .env("USER", "root")
        .env("PASSWORD", PW)
        .env("OUT", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawning node (sip-tests/run-tests.sh installs it)")?;
    let mut stdin = node.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(node.stdout.take().context("stdout")?).lines();
    expect_line(&mut lines, "SAVED").await?;
    let saved = std::fs::read_to_string(&file)?;
    assert!(
        saved.contains("fallback = { queue = \"sales\" }"),
        "the page's save is in the file: {saved}"
    );

    // The next call follows the new rule: support → fallback sales → bob answers.
    caller_audio()?;
    let port = free_port();
    SippBuilder::new("admin-bob-reg", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let bob = SippBuilder::new("admin-bob", "uas_answer_then_bye.xml", Proto::Udp, port)
        .set("-m", "1")
        .set("-timeout", "40s")
        .args(["-s", "bob", "-rtp_echo"])
        .spawn_bound()
        .await?;
    let caller = SippBuilder::new(
        "admin-caller",
        "uac_call_hung_up_on.xml",
        Proto::Udp,
        free_port(),
    )
    .set("-timeout", "40s")
    .args([
        "-s", "4801", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .spawn(Some(server))?;
    caller.expect_success().await?;
    bob.expect_success().await?;
    let calls = memory.wait_calls(1, Duration::from_secs(10)).await;
    let call = calls.first().context("no CDR for the call")?;
    assert_eq!(call.agent.as_deref(), Some("bob"), "{call:?}");
    assert_eq!(call.queue.as_deref(), Some("sales"), "{call:?}");
    assert!(call.answered_at.is_some(), "{call:?}");
    stdin.write_all(b"CALL_DONE\n").await?;

    expect_line(&mut lines, "BAD_REFUSED").await?;
    assert_eq!(
        std::fs::read_to_string(&file)?,
        saved,
        "a refused value changes nothing"
    );
    expect_line(&mut lines, "RATE_OK").await?;
    expect_line(&mut lines, "ROLLED_BACK").await?;
    assert_eq!(
        std::fs::read_to_string(&file)?,
        original,
        "the rollback put the original file back"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .context("browser script did not exit")??;
    assert!(status.success(), "browser script: {status}");
    for shot in [
        "routes.png",
        "whatif.png",
        "field-error.png",
        "whatif-recent.png",
        "history.png",
    ] {
        assert!(
            shots.join(shot).metadata()?.len() > 10_000,
            "{shot} written"
        );
    }
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
