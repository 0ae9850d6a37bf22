//! `hotline config check FILE`: a good file says "ok" with a summary (exit 0); a bad one
//! lists every error with file:line:column and exits 1.

use std::process::Command;

fn check(file: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(["config", "check"])
        .arg(file)
        .output()
        .expect("running hotline");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hotline-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_demo_config_is_ok_with_a_summary() {
    let (ok, out, err) = check(std::path::Path::new("config/hotline.toml"));
    assert!(ok, "{err}");
    assert!(out.starts_with("ok: config/hotline.toml:"), "{out}");
    assert!(
        out.contains("2 numbers") && out.contains("2 queues"),
        "{out}"
    );
}

#[test]
fn every_validation_error_is_listed_with_its_position() {
    let p = temp(
        "bad.toml",
        "[sip]\nudp = [\"127.0.0.1:5060\"]\n\
         [[numbers]]\nnumber = \"1\"\nmenu = \"nowhere\"\n\
         [[numbers]]\nnumber = \"2\"\nqueue = \"q\"\nhours = \"nope\"\n\
         [[menus]]\nname = \"m\"\n\
         [[hours]]\nname = \"h\"\nholidays = [\"2026-02-30\"]\n",
    );
    let (ok, out, err) = check(&p);
    assert!(!ok, "{out}");
    let f = p.display().to_string();
    // The date error goes on with the parser's reason; compare its start.
    let lines: Vec<String> = err
        .lines()
        .map(|l| l.split(" (expected").next().unwrap_or(l).to_string())
        .collect();
    assert_eq!(
        lines,
        [
            format!("{f}:4:10: number \"1\": menu \"nowhere\" is not defined in [[menus]]"),
            format!("{f}:7:10: number \"2\": hours \"nope\" are not defined in [[hours]]"),
            format!("{f}:11:8: menu \"m\" needs exactly one of prompt or say"),
            format!("{f}:14:13: hours \"h\": invalid date \"2026-02-30\""),
            "4 error(s)".to_string(),
        ],
        "{err}"
    );
}

#[test]
fn a_syntax_error_and_a_missing_prompt_are_located() {
    let p = temp("syntax.toml", "[sip]\nudp = [\"127.0.0.1:5060\"\n");
    let (ok, _, err) = check(&p);
    assert!(!ok);
    assert!(err.starts_with(&format!("{}:2:", p.display())), "{err}");
    let p = temp(
        "prompt.toml",
        "[sip]\nudp = [\"127.0.0.1:5060\"]\n[[menus]]\nname = \"m\"\nprompt = \"/nonexistent/welcome.wav\"\n",
    );
    let (ok, _, err) = check(&p);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{}:4:8: menu \"m\": prompt /nonexistent/welcome.wav",
            p.display()
        )),
        "{err}"
    );
    let (ok, _, err) = check(std::path::Path::new("/nonexistent/hotline.toml"));
    assert!(!ok);
    assert!(err.contains("/nonexistent/hotline.toml"), "{err}");
}
