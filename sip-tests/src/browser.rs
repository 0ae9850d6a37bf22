//! What the headless-Chromium tests share: their script folder (with playwright-core
//! installed) and the lines their scripts print to say how far they got.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use tokio::io::{BufReader, Lines};
use tokio::process::ChildStdout;

/// `sip-tests/<name>` (e.g. `browser-wall`), or the error that says how to install
/// playwright-core there.
pub fn browser_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    if !dir.join("node_modules/playwright-core").exists() {
        bail!(
            "playwright-core missing: run `npm ci` in {} (sip-tests/run-tests.sh does)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Waits for the browser script to print `want` (its stderr is inherited, so a failure
/// explains itself in the test output).
pub async fn expect_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    want: &str,
) -> anyhow::Result<()> {
    match tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        Ok(Ok(Some(l))) if l.trim() == want => Ok(()),
        Ok(Ok(Some(l))) => bail!("browser said {l:?}, expected {want}"),
        Ok(Ok(None)) => bail!("the browser script ended before {want}"),
        Ok(Err(e)) => bail!("reading the browser script: {e}"),
        Err(_) => bail!("no {want} from the browser within 60 s"),
    }
}
