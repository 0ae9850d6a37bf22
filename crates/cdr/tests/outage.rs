//! A PostgreSQL outage under load: nothing recorded during it is lost.
//!
//! The store reaches the real server through a loopback TCP proxy the test controls; cutting
//! the proxy resets every connection and refuses new ones, like a server restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::answered;
use hotline_cdr::{CdrError, CdrWriter, QueueEvent, QueueEventKind, WriterConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards loopback connections to `target` while up; when cut, drops them all and
/// closes new ones at once.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let (up2, gen2) = (up.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection closed
                }
                let mut cut = gen2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_no_rows() {
    common::with_postgres(|db| async move {
        let url = db.location.clone();
        let target = {
            let rest = url.split_once('@').map(|(_, r)| r).unwrap_or(&url);
            let hostport = rest.split('/').next().unwrap();
            tokio::net::lookup_host(hostport)
                .await
                .unwrap()
                .next()
                .unwrap()
        };
        let proxy = Proxy::start(target).await;
        let proxied = url.replacen(&target.to_string(), &proxy.addr.to_string(), 1);
        assert_ne!(proxied, url, "URL must name host:port explicitly");

        let direct = db.open().await;
        let store = db.open_at(&proxied).await;
        let (sink, task) = CdrWriter::spawn_with(
            store,
            WriterConfig {
                record_timeout: Duration::from_millis(150),
                retry_min: Duration::from_millis(20),
                retry_max: Duration::from_millis(200),
                ..WriterConfig::default()
            },
        );
        let t0 = 1_700_000_000_000;
        sink.record(answered("before", t0)).await.unwrap();

        proxy.cut();
        // Calls keep ending during the outage: each record is reported as buffered.
        let during = 20;
        for i in 0..during {
            let err = sink
                .record(answered(&format!("during-{i}"), t0 + 1 + i))
                .await
                .unwrap_err();
            assert!(matches!(err, CdrError::NotYetDurable(_)), "{err}");
            sink.queue_event(QueueEvent {
                at: t0 + 1 + i,
                call_id: format!("during-{i}"),
                queue: "support".into(),
                agent: None,
                event: QueueEventKind::EnterQueue,
                data: i.to_string(),
            });
        }
        assert_eq!(
            direct.calls(t0, t0 + 1_000).await.unwrap().len(),
            1,
            "nothing written while the store is unreachable"
        );

        proxy.restore();
        tokio::time::timeout(Duration::from_secs(30), sink.flush())
            .await
            .expect("buffered rows written once the store is back")
            .unwrap();
        let calls = direct.calls(t0, t0 + 1_000).await.unwrap();
        assert_eq!(
            calls.len(),
            1 + during as usize,
            "every record arrived once"
        );
        let log = direct.queue_log(t0, t0 + 1_000).await.unwrap();
        let data: Vec<String> = log.iter().map(|e| e.data.clone()).collect();
        let expected: Vec<String> = (0..during).map(|i| i.to_string()).collect();
        assert_eq!(data, expected, "every queue event arrived once, in order");
        assert_eq!(sink.dropped_events(), 0);

        // And the writer is healthy afterwards.
        sink.record(answered("after", t0 + 500)).await.unwrap();
        drop(sink);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        direct.close().await;
    })
    .await;
}
