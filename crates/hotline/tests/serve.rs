//! The binary: `hotline serve` starts, logs that it listens, and stops cleanly on SIGTERM
//! and SIGINT; a bad config is refused with file, line and column.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("hotline.toml");
    std::fs::write(&p, body).unwrap();
    p
}

fn dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("hotline-serve-{name}-{}", std::process::id()))
}

fn serve_and_signal(signal: &str) {
    let cfg = config(
        &dir(signal),
        "[sip]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the "listening" log line: the server is up.
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let started = Instant::now();
    loop {
        let line = lines
            .next()
            .expect("hotline exited before listening")
            .unwrap();
        if line.contains("SIP server listening") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("SIP server stopped")),
        "{rest:?}"
    );
}

#[test]
fn stops_cleanly_on_sigterm() {
    serve_and_signal("-TERM");
}

#[test]
fn stops_cleanly_on_sigint() {
    serve_and_signal("-INT");
}

#[test]
fn bad_config_is_refused_with_location() {
    let cfg = config(&dir("bad"), "[sip]\nudp = [\"127.0.0.1:0\"]\nlisten = 1\n");
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hotline.toml:3:1:"), "{err}");
    assert!(err.contains("listen"), "{err}");
}

/// `[media] kernel_relay` naming an interface this machine does not have: the start
/// stops with what was asked and why, instead of running without the relay.
#[test]
fn kernel_relay_on_a_missing_interface_stops_the_start_with_the_reason() {
    let d = dir("kernel");
    let cfg = config(
        &d,
        &format!(
            "[sip]\nudp = [\"127.0.0.1:0\"]\n\
             [media]\nrtp_ip = \"127.0.0.1\"\nrecord = false\nprompt_cache = \"{p}\"\n\
             kernel_relay = [\"nosuchif9\"]\n\
             [[users]]\nname = \"bob\"\npassword = \"x\"\n\
             [[numbers]]\nnumber = \"4001\"\nextension = \"bob\"\n\
             [store]\nurl = \"memory\"\n",
            p = d.join("prompts").display()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[media] kernel_relay on [\"nosuchif9\"]"),
        "{err}"
    );
    assert!(err.contains("kernel relay: attach"), "{err}");
}
