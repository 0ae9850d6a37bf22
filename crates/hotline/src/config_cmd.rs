//! `hotline config ...`: configuration-file tools.

use std::path::PathBuf;

use clap::Subcommand;
use hotline::Config;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file: prints every error as file:line:column: what is
    /// wrong (exit status 1), or "ok" and a summary (exit status 0).
    Check { file: PathBuf },
}

/// Runs the command; `Ok(false)` means the file has errors (they are printed).
pub fn run(cmd: &ConfigCommand) -> anyhow::Result<bool> {
    match cmd {
        ConfigCommand::Check { file } => {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return Ok(false);
                }
            };
            match Config::check(file, &text) {
                Ok(cfg) => {
                    for w in cfg.deprecations() {
                        eprintln!("warning: {}: {w}", file.display());
                    }
                    println!("ok: {}: {}", file.display(), cfg.summary());
                    Ok(true)
                }
                Err(errs) => {
                    for e in &errs {
                        eprintln!("{e}");
                    }
                    eprintln!("{} error(s)", errs.len());
                    Ok(false)
                }
            }
        }
    }
}
