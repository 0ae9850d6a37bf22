//! Support for the integration tests in `tests/`: start Hotline in-process on ephemeral
//! loopback ports and run SIPp scenarios against it, bounded in time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, bail};
use hotline::{Config, Hotline};
use tokio::process::{Child, Command};

pub mod browser;
pub mod calls;
mod cut;
pub mod deskview;
mod ports;
pub mod rawua;
mod rtp;
pub use cut::CutProxy;
pub use ports::{free_media_port, free_port};
pub use rtp::{media, rtp_ports};

/// Users every test server knows (name, password).
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
];

/// Address the raw-socket tests send from: trusted by the test server, unlike SIPp's
/// 127.0.0.1, so raw requests skip authentication.
pub const TRUSTED_IP: &str = "127.0.0.2";

/// Starts Hotline on ephemeral UDP and TCP ports on 127.0.0.1.
pub async fn start_hotline() -> anyhow::Result<Hotline> {
    start_hotline_with("").await
}

/// Like [`start_hotline`], with more configuration appended (e.g. `[[numbers]]`).
pub async fn start_hotline_with(extra: &str) -> anyhow::Result<Hotline> {
    start_hotline_with_sip("", extra).await
}

/// Like [`start_hotline_with`], with more `[sip]` keys (e.g. `min_se_secs = 2\n`).
pub async fn start_hotline_with_sip(sip: &str, extra: &str) -> anyhow::Result<Hotline> {
    let mut toml = String::from(
        "[sip]\nudp = [\"127.0.0.1:0\"]\ntcp = [\"127.0.0.1:0\"]\ntrusted = [\"127.0.0.2/32\"]\n\
         digest_algorithms = [\"MD5\"]\nt1_ms = 100\nt2_ms = 400\n",
    );
    toml.push_str(sip);
    for (u, p) in USERS {
        toml.push_str(&format!("[[users]]\nname = \"{u}\"\npassword = \"{p}\"\n"));
    }
    toml.push_str(extra);
    // Tests read call records back from memory unless they name a store themselves.
    if !extra.contains("[store]") {
        toml.push_str("\n[store]\nurl = \"memory\"\n");
    }
    let cfg = Config::parse(Path::new("<sip-tests>"), &toml)?;
    hotline::start(&cfg).await
}

/// Scenario file path.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

/// SIPp's working directory (logs, and files scenarios read such as `caller.wav`).
pub fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("out");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Transport for SIPp and which Hotline port to aim at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    fn sipp_flag(self) -> &'static str {
        match self {
            Proto::Udp => "u1",
            Proto::Tcp => "t1",
        }
    }

    /// Hotline's listen address for this transport.
    pub fn server_addr(self, h: &Hotline) -> SocketAddr {
        match self {
            Proto::Udp => h.sip.udp_addrs()[0],
            Proto::Tcp => h.sip.tcp_addrs()[0],
        }
    }
}

/// One SIPp process.
pub struct Sipp {
    child: Child,
    name: String,
    err_file: PathBuf,
    stderr_file: PathBuf,
}

/// Builds SIPp command lines with unique ports and files.
pub struct SippBuilder {
    args: Vec<String>,
    name: String,
    port: u16,
    proto: Proto,
}

impl SippBuilder {
    /// `scenario` from `scenarios/`, local SIP port `port`.
    pub fn new(name: &str, scenario_file: &str, proto: Proto, port: u16) -> Self {
        let args = vec![
            "-sf".into(),
            scenario(scenario_file).display().to_string(),
            "-t".into(),
            proto.sipp_flag().into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-cp".into(),
            free_port().to_string(),
            "-mp".into(),
            free_media_port().to_string(),
            "-m".into(),
            "1".into(),
            "-timeout".into(),
            "20s".into(),
            "-timeout_error".into(),
            "-nostdin".into(),
            "-trace_err".into(),
        ];
        Self {
            args,
            name: format!("{name}-{}-{port}", std::process::id()),
            port,
            proto,
        }
    }

    /// Sets `flag` to `value`, replacing a default (`-i`, `-m`, `-timeout`) if present.
    pub fn set(mut self, flag: &str, value: impl Into<String>) -> Self {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.into(),
            _ => self.args.extend([flag.to_string(), value.into()]),
        }
        self
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, it: I) -> Self {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts SIPp (as a UAC when `remote` is given, as a UAS otherwise).
    pub fn spawn(mut self, remote: Option<SocketAddr>) -> anyhow::Result<Sipp> {
        let err_file = out_dir().join(format!("{}.errors.log", self.name));
        let _ = std::fs::remove_file(&err_file);
        // What SIPp prints before its error file opens (a port it cannot bind) goes here.
        let stderr_file = out_dir().join(format!("{}.stderr.log", self.name));
        let stderr = std::fs::File::create(&stderr_file)
            .with_context(|| format!("creating {}", stderr_file.display()))?;
        self.args.push("-error_file".into());
        self.args.push(err_file.display().to_string());
        if let Some(r) = remote {
            self.args.push(r.to_string());
        }
        let child = Command::new("sipp")
            .args(&self.args)
            .current_dir(out_dir())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .context("spawning sipp (is it installed? sip-tests/run-tests.sh installs it)")?;
        Ok(Sipp {
            child,
            name: self.name,
            err_file,
            stderr_file,
        })
    }

    /// Starts SIPp as a UAS and waits until it has bound its port (UDP, or a TCP
    /// listener): the moment it is ready for calls. Bounded to 10 s; a SIPp that exits
    /// first fails with what it printed.
    pub async fn spawn_bound(self) -> anyhow::Result<Sipp> {
        let (port, proto) = (self.port, self.proto);
        let mut sipp = self.spawn(None)?;
        for _ in 0..1000 {
            if is_bound(port, proto) {
                return Ok(sipp);
            }
            tokio::select! {
                status = sipp.child.wait() => bail!(
                    "sipp {} exited with {} before binding 127.0.0.1:{port}:\n{}",
                    sipp.name,
                    status?,
                    sipp.output()
                ),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        bail!(
            "sipp {} bound nothing on 127.0.0.1:{port} within 10 s:\n{}",
            sipp.name,
            sipp.output()
        )
    }
}

impl Sipp {
    /// Waits for SIPp to exit (bounded) and returns its status.
    pub async fn wait(self) -> anyhow::Result<ExitStatus> {
        self.wait_within(Duration::from_secs(40)).await
    }

    /// Like [`Sipp::wait`] with another bound (long runs).
    pub async fn wait_within(mut self, bound: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(s) => Ok(s?),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("sipp {} did not finish in {bound:?}", self.name)
            }
        }
    }

    /// Waits and fails with SIPp's error log unless it exited 0 (all calls successful).
    pub async fn expect_success(self) -> anyhow::Result<()> {
        self.expect_success_within(Duration::from_secs(40)).await
    }

    /// Like [`Sipp::expect_success`] with another bound.
    pub async fn expect_success_within(self, bound: Duration) -> anyhow::Result<()> {
        let name = self.name.clone();
        let (err_file, stderr_file) = (self.err_file.clone(), self.stderr_file.clone());
        let status = self.wait_within(bound).await?;
        if !status.success() {
            bail!(
                "sipp {name} failed with {status}:\n{}",
                output(&err_file, &stderr_file)
            );
        }
        Ok(())
    }

    /// What this SIPp printed (see [`output`]).
    fn output(&self) -> String {
        output(&self.err_file, &self.stderr_file)
    }
}

/// SIPp's error file, then the last 20 lines it printed to stderr.
fn output(err_file: &Path, stderr_file: &Path) -> String {
    let log = std::fs::read_to_string(err_file).unwrap_or_default();
    let stderr = std::fs::read_to_string(stderr_file).unwrap_or_default();
    let lines: Vec<&str> = stderr.lines().collect();
    format!(
        "{log}\n{}",
        lines[lines.len().saturating_sub(20)..].join("\n")
    )
}

/// Whether something has bound `port` (UDP) or listens on it (TCP), read from
/// /proc/net without touching the port (a probe bind could make SIPp's own bind fail).
fn is_bound(port: u16, proto: Proto) -> bool {
    let (files, listen_only): (&[&str], bool) = match proto {
        Proto::Udp => (&["/proc/net/udp", "/proc/net/udp6"], false),
        Proto::Tcp => (&["/proc/net/tcp", "/proc/net/tcp6"], true),
    };
    let want = format!(":{port:04X}");
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&want) && (!listen_only || cols[3] == "0A")
            })
        })
    })
}

/// Writes `caller.wav` (4 s of PCMU that SIPp's `rtp_stream` loops) into SIPp's working
/// directory, once per test process and atomically (a rename), since tests run in
/// parallel and a SIPp may be reading it.
pub fn caller_audio() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let dir = out_dir();
        let tmp = dir.join(format!("caller.wav.{}.tmp", std::process::id()));
        let tone: Vec<i16> = (0..32_000)
            .map(|i| ((i as f64 * 0.1).sin() * 8000.0) as i16)
            .collect();
        hotline_media::wav::write_wav(&tmp, hotline_media::wav::WavEncoding::Ulaw, &tone)
            .map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, dir.join("caller.wav")).map_err(|e| e.to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}
