//! The wallboard in headless Chromium (playwright-core, `sip-tests/browser-wall/wall.mjs`):
//! a supervisor logs in on `/wall`; a SIPp caller dials the support queue while its only
//! agent (bob, a registered SIPp UAS) is logged out, and the wall's waiting count goes to 1;
//! bob logs in from his desk (a CTI WebSocket client here), the ACD offers him the call, his
//! phone answers and the count goes back to 0 with one agent on call, shown with the caller
//! in the floor view with the time in state from `since` and Monitor/Whisper/Barge buttons
//! (Monitor is refused there: the supervisor has no registered phone). After the call the
//! supervisor logs bob out from the floor view (his desk gets the `agent.state` event), and
//! the report page shows the call and exports it as CSV. Screenshots land in `sip-tests/out/wallboard/`.

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use client::Desk;
use hotline_sip_tests::browser::{browser_dir, expect_line};
use hotline_sip_tests::{Proto, SippBuilder, caller_audio, free_port, out_dir, start_hotline_with};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_count_follows_a_call_in_chromium() -> anyhow::Result<()> {
    let browser_dir = browser_dir("browser-wall")?;
    let shots = out_dir().join("wallboard");
    std::fs::create_dir_all(&shots)?;
    let db = std::env::temp_dir().join(format!("hotline-wall-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&db);
    let hash = hotline_cti::hash_password("s3cret")?;
    let http = free_port();
    let origin = format!("http://127.0.0.1:{http}");
    let media = hotline_sip_tests::media(200);
    let cfg = format!(
        "{media}record = false\n\
         [[numbers]]\nnumber = \"4701\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\nwrapup_secs = 1\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [cti]\nlisten = \"127.0.0.1:{http}\"\nallowed_origins = [\"{origin}\"]\n\
         [cti.wall]\nwaiting_warn = 1\nwaiting_alarm = 2\n\
         [[cti.user]]\nname = \"bob\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"bob\"\n\
         [[cti.user]]\nname = \"sue\"\npassword_hash = \"{hash}\"\nrole = \"supervisor\"\n\
         [store]\nurl = \"sqlite://{}\"\n",
        db.display()
    );
    let h = start_hotline_with(&cfg).await?;
    let server = Proto::Udp.server_addr(&h);

    // bob's phone: registered, answering, echoing RTP. bob himself is logged out.
    let port = free_port();
    SippBuilder::new("wall-bob-register", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let phone = SippBuilder::new("wall-bob-uas", "uas_call.xml", Proto::Udp, port)
        .set("-timeout", "50s")
        .args(["-s", "bob", "-rtp_echo"])
        .spawn_bound()
        .await?;

    let mut node = Command::new("node")
        .arg("wall.mjs")
        .current_dir(&browser_dir)
        .env("URL", &origin)
        .env("USER", "sue")
        .env("PASSWORD", "s3cret")
        .env("QUEUE", "support")
        .env("AGENT", "bob")
        .env("CALLER", "alice")
        .env("OUT", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawning node (sip-tests/run-tests.sh installs it)")?;
    let mut stdin = node.stdin.take().context("stdin")?;
    let mut lines = BufReader::new(node.stdout.take().context("stdout")?).lines();
    expect_line(&mut lines, "READY").await?;

    caller_audio()?;
    let caller = SippBuilder::new(
        "wall-caller",
        "uac_call_audio_long.xml",
        Proto::Udp,
        free_port(),
    )
    .set("-timeout", "40s")
    .args([
        "-s", "4701", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-d", "15000",
    ])
    .spawn(Some(server))?;
    expect_line(&mut lines, "UP").await?;

    // The call waits; bob logs in from his desk and is offered it.
    let mut desk =
        Desk::connect(h.cti.as_ref().context("cti")?.local_addr(), Some(&origin)).await?;
    desk.login("bob", "s3cret").await;
    let state = desk.ok(json!({"type": "agent.ready"})).await;
    assert_eq!(state["agent"], "bob");
    expect_line(&mut lines, "DOWN").await?;

    caller.expect_success().await?;
    phone.expect_success().await?;
    // The CDR is committed before the call's dialog is released; wait for it in the store.
    let store = hotline_cdr::CdrStore::open(&db.display().to_string(), &Default::default()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let calls = store.calls(0, hotline_cdr::now_millis() + 1).await?;
        if calls.iter().any(|c| c.answered_at.is_some()) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no answered CDR in the store: {calls:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
    stdin.write_all(b"CALL_DONE\n").await?;
    expect_line(&mut lines, "FORCED").await?;
    // bob's own desk sees the forced logout.
    loop {
        let (_, ev) = desk.event("agent.state").await;
        if ev["data"]["agent"] == "bob" && ev["data"]["state"] == "logged_out" {
            break;
        }
    }
    expect_line(&mut lines, "REPORTS_OK").await?;
    let status = tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .context("browser script did not exit")??;
    assert!(status.success(), "browser script: {status}");
    for shot in [
        "wall-waiting.png",
        "wall-answered.png",
        "wall-floor.png",
        "reports.png",
    ] {
        assert!(
            shots.join(shot).metadata()?.len() > 10_000,
            "{shot} written"
        );
    }
    h.shutdown().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    Ok(())
}
