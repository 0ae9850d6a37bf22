//! `[server]`: settings of the `hotline serve` process itself, read once at start (a
//! change made through the admin API applies at the next start).

use serde::Deserialize;
use toml::Spanned;

/// Most worker threads accepted; more than this is a typo, not a machine.
pub const MAX_THREADS: u16 = 256;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Worker threads of the runtime (default: one per CPU core). The relay's cost is
    /// the kernel's UDP work, done on the thread that makes the system calls, so one
    /// thread caps the relay at one core; the SIP core stays one task whatever the
    /// number. `1` runs everything on a single-thread runtime.
    pub threads: Option<Spanned<u16>>,
}

impl ServerSettings {
    /// The runtime's worker threads: the configured number, else the CPU cores.
    pub fn worker_threads(&self) -> usize {
        match &self.threads {
            Some(t) => usize::from(*t.get_ref()).max(1),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Offset (for the error's line and column) and message of an invalid setting.
    pub(crate) fn validate(&self) -> Result<(), (usize, String)> {
        match &self.threads {
            Some(t) if !(1..=MAX_THREADS).contains(t.get_ref()) => Err((
                t.span().start,
                format!(
                    "[server] threads = {} must be between 1 and {MAX_THREADS}",
                    t.get_ref()
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const BASE: &str = "[sip]\nudp = [\"127.0.0.1:5060\"]\n";

    #[test]
    fn threads_default_to_the_cores_and_are_bounded() {
        let cfg = Config::parse(Path::new("t.toml"), BASE).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(cfg.server.worker_threads(), cores);
        let one = Config::parse(
            Path::new("t.toml"),
            &format!("{BASE}[server]\nthreads = 1\n"),
        );
        assert_eq!(one.unwrap().server.worker_threads(), 1);
        let e = Config::parse(
            Path::new("t.toml"),
            &format!("{BASE}[server]\nthreads = 0\n"),
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (4, 11), "{e}");
        assert!(e.message.contains("between 1 and 256"), "{e}");
        let e = Config::parse(
            Path::new("t.toml"),
            &format!("{BASE}[server]\nthreds = 2\n"),
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
    }
}
