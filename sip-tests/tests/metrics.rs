//! `/metrics` during a real call: a SIPp caller dials a queue, the ACD offers the call to
//! bob (a registered SIPp UAS echoing RTP), the legs are bridged for 4 s and the caller
//! hangs up. Scrapes of the CTI server's `/metrics` (and of the separate `[metrics] listen`)
//! show the call as it goes: the INVITE and its 200 counted by method and code, one active
//! call and bob on the call while it talks; afterwards no active call, bob ready again, the
//! BYE counted, relayed RTP packets, the queue's answered call, a screen-pop and a CDR
//! commit in their histograms; the leak gauges (tasks, fds, RSS, RTP ports in use) are
//! there, with ports held only while the call is up.

#[path = "http/mod.rs"]
mod http;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hotline_sip_tests::{Proto, SippBuilder, caller_audio, free_port, start_hotline_with};

async fn scrape(addr: SocketAddr) -> anyhow::Result<HashMap<String, f64>> {
    let r = http::get(addr, "/metrics", &[]).await?;
    if r.status != 200 {
        bail!("/metrics answered {}: {}", r.status, r.body);
    }
    let ct = r.header("content-type").unwrap_or_default();
    if !ct.starts_with("text/plain") {
        bail!("content type {ct:?}");
    }
    Ok(http::samples(&r.body))
}

fn v(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

/// Scrapes until `cond` holds (bounded): the figures are read when the scrape happens.
async fn scrape_until(
    addr: SocketAddr,
    what: &str,
    cond: impl Fn(&HashMap<String, f64>) -> bool,
) -> anyhow::Result<HashMap<String, f64>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = scrape(addr).await?;
        if cond(&m) {
            return Ok(m);
        }
        if Instant::now() > deadline {
            let mut keys: Vec<_> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            keys.sort();
            bail!("never saw {what}; last scrape:\n{}", keys.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_a_queued_call() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hotline-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("cdr.sqlite");
    let _ = std::fs::remove_file(&db);
    let media = hotline_sip_tests::media(200);
    let cfg = format!(
        "{media}record = false\n\
         [[numbers]]\nnumber = \"4700\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [cti]\nlisten = \"127.0.0.1:0\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [store]\nurl = \"sqlite://{}\"\n",
        db.display()
    );
    let h = start_hotline_with(&cfg).await?;
    let server = Proto::Udp.server_addr(&h);
    let cti = h.cti.as_ref().context("cti")?.local_addr();
    let own = h.metrics.as_ref().context("[metrics] listen")?.0;

    let before = scrape(cti).await?;
    // The separate listener renders the same registry.
    let other = scrape(own).await?;
    assert!(
        other.contains_key("hotline_agents{state=\"ready\"}"),
        "{other:?}"
    );
    assert_eq!(v(&before, "hotline_calls_active"), 0.0);
    assert_eq!(v(&before, "hotline_agents{state=\"ready\"}"), 1.0);
    assert_eq!(v(&before, "hotline_queue_waiting{queue=\"support\"}"), 0.0);
    // Leak gauges: present, no RTP port held while idle.
    assert_eq!(
        before.get("hotline_rtp_ports_in_use"),
        Some(&0.0),
        "{before:?}"
    );
    for g in [
        "hotline_tasks_alive",
        "hotline_open_fds",
        "hotline_resident_memory_bytes",
    ] {
        assert!(v(&before, g) > 0.0, "{g}: {before:?}");
    }

    let port = free_port();
    SippBuilder::new(
        "metrics-bob-register",
        "register_once.xml",
        Proto::Udp,
        port,
    )
    .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
    .spawn(Some(server))?
    .expect_success()
    .await?;
    let bob = SippBuilder::new("metrics-bob-uas", "uas_call.xml", Proto::Udp, port)
        .args(["-s", "bob", "-rtp_echo"])
        .spawn_bound()
        .await?;
    let registered = scrape(cti).await?;
    let reg_key = "hotline_sip_requests_total{direction=\"in\",method=\"REGISTER\"}";
    assert!(
        v(&registered, reg_key) >= v(&before, reg_key) + 2.0,
        "challenge and retry"
    );

    caller_audio()?;
    let caller = SippBuilder::new(
        "metrics-caller",
        "uac_call_audio_long.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4700", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-d", "4000",
    ])
    .spawn(Some(server))?;

    // While the call talks.
    let talking = scrape_until(cti, "an active call with bob on it", |m| {
        v(m, "hotline_calls_active") == 1.0 && v(m, "hotline_agents{state=\"on_call\"}") == 1.0
    })
    .await?;
    let inv_in = "hotline_sip_requests_total{direction=\"in\",method=\"INVITE\"}";
    let inv_out = "hotline_sip_requests_total{direction=\"out\",method=\"INVITE\"}";
    let ok_out = "hotline_sip_responses_total{direction=\"out\",code=\"200\"}";
    let ok_in = "hotline_sip_responses_total{direction=\"in\",code=\"200\"}";
    assert!(
        v(&talking, inv_in) >= v(&registered, inv_in) + 2.0,
        "caller's INVITE and its authenticated retry: {} → {}",
        v(&registered, inv_in),
        v(&talking, inv_in)
    );
    assert!(
        v(&talking, inv_out) >= v(&registered, inv_out) + 1.0,
        "INVITE to bob"
    );
    let sip_lines = |m: &HashMap<String, f64>| {
        let mut l: Vec<_> = m
            .iter()
            .filter(|(k, _)| k.starts_with("hotline_sip_re"))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        l.sort();
        l.join("\n")
    };
    assert!(
        v(&talking, ok_in) >= v(&registered, ok_in) + 1.0,
        "bob's 200:\n{}\n---\n{}",
        sip_lines(&registered),
        sip_lines(&talking)
    );
    assert!(
        v(&talking, ok_out) >= v(&registered, ok_out) + 1.0,
        "200 to the caller"
    );
    // The caller's and bob's legs each hold a port pair.
    assert!(
        v(&talking, "hotline_rtp_ports_in_use") >= 2.0,
        "ports while talking: {}",
        v(&talking, "hotline_rtp_ports_in_use")
    );
    assert_eq!(v(&talking, "hotline_agents{state=\"ready\"}"), 0.0);
    assert_eq!(v(&talking, "hotline_calls_total"), 1.0);
    assert_eq!(
        v(&talking, "hotline_queue_answered_total{queue=\"support\"}"),
        1.0
    );
    assert_eq!(v(&talking, "hotline_queue_waiting{queue=\"support\"}"), 0.0);
    assert!(
        v(
            &talking,
            "hotline_screen_pop_seconds_count{result=\"delivered\"}"
        ) >= 1.0,
        "the offer went through the CTI server"
    );

    caller.expect_success().await?;
    bob.expect_success().await?;
    let after = scrape_until(cti, "the call ended and its RTP counted", |m| {
        v(m, "hotline_calls_active") == 0.0
            && v(m, "hotline_rtp_packets_received_total") > 0.0
            && v(m, "hotline_rtp_ports_in_use") == 0.0
    })
    .await?;
    let bye_in = "hotline_sip_requests_total{direction=\"in\",method=\"BYE\"}";
    let bye_out = "hotline_sip_requests_total{direction=\"out\",method=\"BYE\"}";
    assert!(
        v(&after, bye_in) >= v(&talking, bye_in) + 1.0,
        "caller's BYE"
    );
    assert!(
        v(&after, bye_out) >= v(&talking, bye_out) + 1.0,
        "BYE to bob"
    );
    // 4 s of caller audio at 50 packets/s, echoed by bob: both legs receive.
    let rx = v(&after, "hotline_rtp_packets_received_total");
    assert!(rx >= 200.0, "RTP packets received on the legs: {rx}");
    assert!(v(&after, "hotline_rtp_packets_sent_total") >= 200.0);
    assert!(v(&after, "hotline_rtp_packets_lost_total") < rx * 0.05);
    assert!(
        v(&after, "hotline_cdr_write_seconds_count{result=\"ok\"}") >= 1.0,
        "the CDR commit is timed"
    );
    assert!(
        v(&after, "hotline_sip_messages_received_total")
            > v(&before, "hotline_sip_messages_received_total")
    );
    // bob is in wrap-up or ready again, no longer on the call.
    assert_eq!(v(&after, "hotline_agents{state=\"on_call\"}"), 0.0);
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
