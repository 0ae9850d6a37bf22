//! The `[store]` wiring: the CDR store and its writer at startup, flushed at shutdown.

use std::time::Duration;

use anyhow::Context;
use hotline_cdr::{CdrSink, CdrStore, CdrWriter, MemoryCdrs, StoreOptions};
use tokio::task::JoinHandle;

use crate::config::StoreSettings;

/// How long shutdown waits for buffered CDRs to be committed (the store may be down).
const FLUSH_BOUND: Duration = Duration::from_secs(10);

/// The running CDR writer: hand [`Cdr::sink`] to call control.
pub struct Cdr {
    pub sink: CdrSink,
    /// Present with `url = "memory"`: the rows, for tests.
    pub memory: Option<MemoryCdrs>,
    store: Option<CdrStore>,
    writer: Option<JoinHandle<()>>,
}

impl Cdr {
    /// Opens the store, settles calls a previous run left in progress (crash, kill) as
    /// interrupted, and starts the writer.
    pub async fn open(settings: &StoreSettings) -> anyhow::Result<Cdr> {
        let url = settings.url.get_ref();
        if url == "memory" {
            tracing::warn!("[store] url = \"memory\": CDRs are not persisted");
            let (sink, memory) = CdrSink::memory();
            return Ok(Cdr {
                sink,
                memory: Some(memory),
                store: None,
                writer: None,
            });
        }
        let store = CdrStore::open(url, &StoreOptions::default())
            .await
            .with_context(|| format!("opening the CDR store {}", redact(url)))?;
        let interrupted = store
            .mark_interrupted()
            .await
            .context("settling calls left in progress")?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "calls in progress when Hotline last stopped are recorded as interrupted"
            );
        }
        let durability = store.durability().await.unwrap_or_else(|e| e.to_string());
        tracing::info!(backend = store.backend(), %durability, "CDR store open");
        let (sink, writer) = CdrWriter::spawn(store.clone());
        Ok(Cdr {
            sink,
            memory: None,
            store: Some(store),
            writer: Some(writer),
        })
    }

    /// The store behind the writer (none with `url = "memory"`), for reports.
    pub fn store(&self) -> Option<CdrStore> {
        self.store.clone()
    }

    /// Commits what is buffered (bounded wait) and closes the store.
    pub async fn close(self) {
        match tokio::time::timeout(FLUSH_BOUND, self.sink.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "flushing CDRs"),
            Err(_) => tracing::error!(
                "CDR store unavailable: records still buffered at shutdown are lost"
            ),
        }
        // Call control has stopped: everything it sent is in (or lost with) the flush above.
        if let Some(w) = self.writer {
            w.abort();
        }
        if let Some(s) = self.store {
            s.close().await;
        }
    }
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(
            super::redact("postgres://hotline:s3cret@db:5432/hotline"),
            "postgres://hotline:***@db:5432/hotline"
        );
        assert_eq!(
            super::redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(super::redact("sqlite://data/h.db"), "sqlite://data/h.db");
    }
}
