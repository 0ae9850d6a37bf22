//! Graceful drain: `hotline serve` as a child process with a SIPp caller talking to a SIPp
//! agent through a queue; SIGTERM; a new call (to a number or phone-to-phone) gets 503
//! with Retry-After and a CDR with route `drained`, the talking call
//! goes on to its end (or is hung up on both legs at the `[drain]` bound), the process
//! exits 0 and the CDRs are in the SQLite store.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hotline_cdr::{CallResult, CdrStore, StoreOptions};
use hotline_sip_tests::{Proto, SippBuilder, caller_audio, free_port};

/// The `hotline` binary of this build (built here when the test runs alone).
fn hotline_bin() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "hotline", "--bin", "hotline"])
        .status()
        .context("building the hotline binary")?;
    anyhow::ensure!(status.success(), "cargo build -p hotline failed: {status}");
    // The test runs from target/<profile>/deps; the binary is one level up.
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary location")?
        .join("hotline");
    anyhow::ensure!(bin.exists(), "no hotline binary at {}", bin.display());
    Ok(bin)
}

/// A `hotline serve` child and its log lines.
struct Server {
    child: Child,
    lines: std_mpsc::Receiver<String>,
    seen: Vec<String>,
    sip: std::net::SocketAddr,
    db: String,
    dir: PathBuf,
}

impl Server {
    async fn start(name: &str, drain: &str) -> anyhow::Result<Server> {
        let dir = std::env::temp_dir().join(format!("hotline-drain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = free_port();
        let db = format!("sqlite://{}/hotline.db", dir.display());
        let mut toml = format!(
            "[sip]\nudp = [\"127.0.0.1:{port}\"]\ndigest_algorithms = [\"MD5\"]\nt1_ms = 100\nt2_ms = 400\n\
             {}voice = false\nrecord = false\n\
             [[numbers]]\nnumber = \"4900\"\nqueue = \"support\"\n\
             [acd]\n[[acd.queue]]\nname = \"support\"\n[[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
             [store]\nurl = \"{db}\"\n{drain}",
            hotline_sip_tests::media(100)
        );
        for (u, p) in hotline_sip_tests::USERS {
            toml.push_str(&format!("[[users]]\nname = \"{u}\"\npassword = \"{p}\"\n"));
        }
        let cfg = dir.join("hotline.toml");
        std::fs::write(&cfg, toml)?;
        let mut child = Command::new(hotline_bin()?)
            .args(["serve", "--config"])
            .arg(&cfg)
            .current_dir(&dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting hotline serve")?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            lines,
            seen: Vec::new(),
            sip: ([127, 0, 0, 1], port).into(),
            db,
            dir,
        };
        s.wait_log("SIP server listening", Duration::from_secs(20))?;
        Ok(s)
    }

    /// Waits for a log line containing `needle` (bounded); `Err` with the log otherwise.
    fn wait_log(&mut self, needle: &str, within: Duration) -> anyhow::Result<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Ok(l.clone());
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Ok(l);
                    }
                }
                Err(_) => bail!(
                    "no log line with {needle:?}; log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill {sig} failed");
        Ok(())
    }

    /// Waits for the process to exit (bounded) and returns its status.
    async fn exit(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait()? {
                // The rest of the log, for the asserts on it.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.seen.push(l);
                }
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("hotline did not exit; log:\n{}", self.seen.join("\n"));
            }
            // Polling the child: there is no exit event to await on a std Child.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// bob registers and answers with an RTP echo (`scenario`).
async fn agent(
    server: std::net::SocketAddr,
    scenario: &str,
) -> anyhow::Result<hotline_sip_tests::Sipp> {
    let port = free_port();
    SippBuilder::new("drain-bob-register", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let uas = SippBuilder::new("drain-bob", scenario, Proto::Udp, port)
        .args(["-s", "bob", "-rtp_echo"])
        .set("-timeout", "40s")
        .spawn_bound()
        .await?;
    Ok(uas)
}

fn caller(
    server: std::net::SocketAddr,
    scenario: &str,
    extra: &[&str],
) -> anyhow::Result<hotline_sip_tests::Sipp> {
    caller_audio()?;
    SippBuilder::new("drain-caller", scenario, Proto::Udp, free_port())
        .args([
            "-s", "4900", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ])
        .args(extra.iter().copied())
        .set("-timeout", "40s")
        .spawn(Some(server))
}

/// SIGTERM while a call is bridged: a new call to the queue and a phone-to-phone call are
/// refused with 503 and `Retry-After: 42` (each with a `drained` CDR), the talking call runs to the caller's BYE, Hotline exits 0 and the call's CDR
/// (answered by bob) is in the SQLite store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_calls_and_lets_the_talking_call_finish() -> anyhow::Result<()> {
    let mut s = Server::start(
        "finish",
        "[drain]\ngrace_secs = 30\nretry_after_secs = 42\n",
    )
    .await?;
    let bob = agent(s.sip, "uas_call.xml").await?;
    // The caller talks for 6 s, then hangs up.
    let talking = caller(s.sip, "uac_call_audio_long.xml", &["-d", "6000"])?;
    s.wait_log("legs bridged", Duration::from_secs(15))?;
    s.signal("-TERM")?;
    s.wait_log("draining: new calls refused", Duration::from_secs(5))?;
    SippBuilder::new(
        "drain-refused",
        "uac_expect_503.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4900", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .args(["-key", "retry", "42"])
    .spawn(Some(s.sip))?
    .expect_success()
    .await?;
    // A phone-to-phone call (alice dials the user bob, proxied, no number) is refused
    // the same way: bob's device never sees it.
    SippBuilder::new(
        "drain-refused-p2p",
        "uac_expect_503.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "bob", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .args(["-key", "retry", "42"])
    .spawn(Some(s.sip))?
    .expect_success()
    .await?;
    talking.expect_success().await?;
    bob.expect_success().await?;
    let status = s.exit(Duration::from_secs(20)).await?;
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        s.seen.join("\n")
    );
    s.wait_log("draining: new call refused", Duration::ZERO)?;
    let drained = s.wait_log("drained", Duration::ZERO)?;
    assert!(drained.contains("hung_up: 0"), "{drained}");
    let store = CdrStore::open(&s.db, &StoreOptions::default()).await?;
    let calls = store.calls(0, i64::MAX).await?;
    assert_eq!(calls.len(), 3, "{calls:?}");
    // Both refused calls have their CDR: rejected with the 503, route `drained`.
    let mut refused: Vec<_> = calls.iter().filter(|c| c.route == "drained").collect();
    refused.sort_by(|a, b| a.dialed.cmp(&b.dialed));
    assert_eq!(refused.len(), 2, "{calls:?}");
    for (c, dialed) in refused.iter().zip(["4900", "bob"]) {
        assert_eq!(c.dialed, dialed, "{c:?}");
        assert_eq!(c.caller, "alice", "{c:?}");
        assert_eq!(c.result, CallResult::Rejected, "{c:?}");
        assert_eq!(c.sip_status, 503, "{c:?}");
        assert!(c.agent.is_none(), "{c:?}");
    }
    let Some(c) = calls.iter().find(|c| c.route != "drained") else {
        bail!("no answered call: {calls:?}");
    };
    assert_eq!(c.result, CallResult::Answered, "{c:?}");
    assert_eq!(c.agent.as_deref(), Some("bob"), "{c:?}");
    assert_eq!(c.hangup_side, hotline_cdr::HangupSide::Caller, "{c:?}");
    assert!(c.talk_ms >= 3_000, "the call went on after SIGTERM: {c:?}");
    assert!(store.in_progress().await?.is_empty());
    store.close().await;
    Ok(())
}

/// SIGTERM with a 1 s bound while the caller would talk on: at the bound Hotline sends BYE
/// to both legs (the caller's and bob's scenarios expect it), exits 0, and the CDR is
/// written (answered, hung up by the system, not left in progress).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_bound_hangs_up_both_legs_and_exits_0() -> anyhow::Result<()> {
    let mut s = Server::start("bound", "[drain]\ngrace_secs = 1\n").await?;
    let bob = agent(s.sip, "uas_call.xml").await?;
    let hung_up_on = caller(s.sip, "uac_call_hung_up_on.xml", &[])?;
    s.wait_log("legs bridged", Duration::from_secs(15))?;
    let t = Instant::now();
    s.signal("-TERM")?;
    hung_up_on.expect_success().await?;
    bob.expect_success().await?;
    let status = s.exit(Duration::from_secs(20)).await?;
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        s.seen.join("\n")
    );
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "not before the bound"
    );
    let drained = s.wait_log("drained", Duration::ZERO)?;
    assert!(drained.contains("hung_up: 1"), "{drained}");
    let store = CdrStore::open(&s.db, &StoreOptions::default()).await?;
    let calls = store.calls(0, i64::MAX).await?;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].result, CallResult::Answered, "{:?}", calls[0]);
    // Neither side hung up: Hotline did, at the bound.
    assert_eq!(
        calls[0].hangup_side,
        hotline_cdr::HangupSide::System,
        "{:?}",
        calls[0]
    );
    assert!(store.in_progress().await?.is_empty());
    store.close().await;
    Ok(())
}
