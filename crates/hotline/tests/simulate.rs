//! The binary: `hotline simulate` runs the ACD simulator on the shipped example center and
//! answers a staffing question; bad input is refused with a reason.

use std::process::Command;

fn hotline(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .expect("running hotline")
}

#[test]
fn simulates_the_example_center_per_queue() {
    let out = hotline(&[
        "simulate",
        "--config",
        "config/simulate.toml",
        "--hours",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // One report row per queue of the example file, with a service level in percent.
    for queue in ["sales", "support"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(queue))
            .unwrap_or_else(|| panic!("no row for {queue} in:\n{text}"));
        assert!(row.contains('%'), "{row}");
    }
}

#[test]
fn staffing_matches_erlang_c_within_one_agent() {
    let out = hotline(&[
        "simulate",
        "--staffing",
        "--calls-per-hour",
        "300",
        "--aht",
        "240",
        "--sl-secs",
        "20",
        "--hours",
        "50",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let agents = |label: &str| -> i64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line in:\n{text}"));
        line.split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line}"))
    };
    let simulated = agents("simulated:");
    let erlang = agents("Erlang C:");
    // 300 calls/h × 240 s = 20 Erlangs: at least 21 agents are needed for a stable queue.
    assert!(simulated > 20, "{text}");
    assert!((simulated - erlang).abs() <= 1, "{text}");
}

#[test]
fn staffing_without_traffic_is_refused_with_a_reason() {
    let out = hotline(&["simulate", "--staffing"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--calls-per-hour"), "{err}");
}
