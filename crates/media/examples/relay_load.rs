//! Loopback load run: N concurrent bridged G.711 calls, 50 packets/s each way, relayed
//! by Hotline's media sessions; reports the relay process's CPU per call (% of one
//! core) and memory per call. A child process (this binary with `--generator`) plays
//! both phones of every call, so its CPU is measured apart.
//!
//! `cargo run --release -p hotline-media --example relay_load -- [calls] [seconds]`
//! prints one machine-readable line: `relay_load calls=.. cpu_pct_per_call=.. ...`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hotline_media::leg::{LegConfig, LegTiming};
use hotline_media::ports::{BoundPorts, PortAllocator};
use hotline_media::sdp::{Codec, Direction};
use hotline_media::session::{MediaLeg, spawn_session};
use rtp_rs::{RtpPacketBuilder, Seq};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const PHONE_BASE: u16 = 50_000;
const WARMUP: Duration = Duration::from_secs(3);

/// utime + stime of a process in clock ticks (USER_HZ = 100 on Linux).
fn cpu_ticks(pid: &str) -> u64 {
    let (u, s) = cpu_split(pid);
    u + s
}

/// (utime, stime) in clock ticks.
fn cpu_split(pid: &str) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get(14), get(15))
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cfg(remote: SocketAddr) -> LegConfig {
    LegConfig {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
        remote_rtp: Some(remote),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        ptime: 20,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--generator") {
        let calls: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100);
        let secs: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(10);
        generator(calls, secs);
        return;
    }
    let calls: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(200);
    let secs: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(15);
    // RELAY_WORKERS=0 runs the relay on a current-thread runtime (one core, no work
    // stealing); otherwise a multi-thread runtime with that many workers (default 2).
    let workers: usize = std::env::var("RELAY_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(relay(calls, secs));
}

async fn relay(calls: usize, secs: u64) {
    let alloc = PortAllocator::new(20_000, 20_000 + (calls as u16) * 4 + 200).expect("range");
    let rss0 = rss_kb();
    let (ev_tx, mut ev_rx) = mpsc::channel(1024);
    tokio::spawn(async move { while ev_rx.recv().await.is_some() {} });
    let mut sessions = Vec::with_capacity(calls);
    let mut mapping = String::new();
    // RELAY_MODE=bare: the reference floor on the same machine — a plain tokio task per
    // call copying datagrams between two sockets with no parsing, latching or stats.
    let bare = std::env::var("RELAY_MODE").is_ok_and(|m| m == "bare");
    let bare_count = Arc::new(AtomicU64::new(0));
    let mut bare_tasks = Vec::new();
    for i in 0..calls {
        let pa = SocketAddr::from((LO, PHONE_BASE + 2 * i as u16));
        let pb = SocketAddr::from((LO, PHONE_BASE + 2 * i as u16 + 1));
        let ports_a = alloc.bind(LO.into()).await.expect("bind");
        let ports_b = alloc.bind(LO.into()).await.expect("bind");
        mapping.push_str(&format!("{} {}\n", ports_a.pair.rtp(), ports_b.pair.rtp()));
        if bare {
            let c = Arc::clone(&bare_count);
            bare_tasks.push(tokio::spawn(bare_relay(ports_a, ports_b, pa, pb, c)));
            continue;
        }
        let a = MediaLeg::new(ports_a, cfg(pa), LegTiming::default());
        let b = MediaLeg::new(ports_b, cfg(pb), LegTiming::default());
        let s = spawn_session(a, ev_tx.clone());
        s.attach(b).await.expect("attach");
        s.bridge().await.expect("bridge");
        sessions.push(s);
    }
    let exe = std::env::current_exe().expect("exe");
    let mut child = Command::new(exe)
        .args([
            "--generator",
            &calls.to_string(),
            &(secs + WARMUP.as_secs()).to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("generator");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(mapping.as_bytes())
        .expect("mapping");
    let gen_pid = child.id().to_string();
    tokio::time::sleep(WARMUP).await;
    let (c0, g0, t0) = (cpu_ticks("self"), cpu_ticks(&gen_pid), Instant::now());
    let split0 = cpu_split("self");
    let s0: Vec<_> = futures_stats(&sessions).await;
    let b0 = bare_count.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (c1, g1, el) = (
        cpu_ticks("self"),
        cpu_ticks(&gen_pid),
        t0.elapsed().as_secs_f64(),
    );
    let split1 = cpu_split("self");
    let s1: Vec<_> = futures_stats(&sessions).await;
    let b1 = bare_count.load(Ordering::Relaxed);
    let rss1 = rss_kb();
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let _ = BufReader::new(out).read_line(&mut line);
    let _ = child.wait();
    let relayed: u64 = s1.iter().zip(&s0).map(|(a, b)| a - b).sum::<u64>() + (b1 - b0);
    let cpu_pct = (c1 - c0) as f64 / el; // ticks/s = % of one core
    let gen_pct = (g1 - g0) as f64 / el;
    let (u, s) = (split1.0 - split0.0, split1.1 - split0.1);
    println!(
        "relay_load mode={} calls={calls} secs={el:.1} relayed_pps={:.0} relay_cpu_pct={cpu_pct:.2} (user {:.2} sys {:.2}) cpu_pct_per_call={:.4} \
         rss_delta_kb={} mem_kb_per_call={:.1} generator_cpu_pct={gen_pct:.2} generator: {}",
        if bare { "bare" } else { "hotline" },
        relayed as f64 / el,
        u as f64 / el,
        s as f64 / el,
        cpu_pct / calls as f64,
        rss1.saturating_sub(rss0),
        rss1.saturating_sub(rss0) as f64 / calls as f64,
        line.trim()
    );
    drop(sessions);
    for t in bare_tasks {
        t.abort();
    }
}

/// The reference floor on the same ports the sessions would have (the mapping sent to
/// the generator is the same): [`support::copy_datagrams`] on tokio sockets of them.
async fn bare_relay(
    a: BoundPorts,
    b: BoundPorts,
    pa: SocketAddr,
    pb: SocketAddr,
    count: Arc<AtomicU64>,
) {
    // Registered with tokio like any socket of a per-datagram copier.
    let tokio_socket =
        |p: &BoundPorts| UdpSocket::from_std(p.rtp.try_clone().expect("dup")).expect("register");
    let (ra, rb) = (tokio_socket(&a), tokio_socket(&b));
    support::copy_datagrams(ra, rb, pa, pb, count).await;
}

/// Packets relayed per call so far (tx on both legs).
async fn futures_stats(sessions: &[hotline_media::SessionHandle]) -> Vec<u64> {
    let mut v = Vec::with_capacity(sessions.len());
    for s in sessions {
        let st = s.stats().await.expect("stats");
        v.push(st.a.tx_packets + st.b.map_or(0, |b| b.tx_packets));
    }
    v
}

fn generator(calls: usize, secs: u64) {
    let mut ports = Vec::with_capacity(calls);
    for line in std::io::stdin().lock().lines().take(calls) {
        let line = line.expect("mapping line");
        let mut it = line
            .split_whitespace()
            .map(|p| p.parse::<u16>().expect("port"));
        ports.push((it.next().expect("a"), it.next().expect("b")));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let received = Arc::new(AtomicU64::new(0));
        let mut socks = Vec::with_capacity(calls * 2);
        for (i, (pa, pb)) in ports.iter().enumerate() {
            for (k, hp) in [(0u16, *pa), (1, *pb)] {
                let s = Arc::new(UdpSocket::bind((LO, PHONE_BASE + 2 * i as u16 + k)).await.expect("phone bind"));
                let r = Arc::clone(&s);
                let cnt = Arc::clone(&received);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1500];
                    while let Ok((n, _)) = r.recv_from(&mut buf).await {
                        // Count RTP only: our RTCP lands on the other phone's port.
                        if n >= 12 && buf[1] & 0x7F == 0 {
                            cnt.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                socks.push((s, SocketAddr::from((LO, hp))));
            }
        }
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let end = Instant::now() + Duration::from_secs(secs);
        let mut seq: u16 = 0;
        let mut sent = 0u64;
        let mut pkt = RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(7)
            .sequence(Seq::from(0))
            .timestamp(0)
            .payload(&[0x55; 160])
            .build()
            .expect("pkt");
        let mut sent_measured = 0u64;
        let mut recv_at_warm = 0u64;
        let warm_end = Instant::now() + WARMUP;
        let mut warm_done = false;
        while Instant::now() < end {
            tick.tick().await;
            if !warm_done && Instant::now() >= warm_end {
                warm_done = true;
                recv_at_warm = received.load(Ordering::Relaxed);
            }
            seq = seq.wrapping_add(1);
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            pkt[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
            for (s, dest) in &socks {
                if s.try_send_to(&pkt, *dest).is_ok() {
                    sent += 1;
                    if warm_done {
                        sent_measured += 1;
                    }
                }
            }
        }
        // Let the last packets arrive before counting (bounded).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let total = received.load(Ordering::Relaxed);
        let rec = total - recv_at_warm;
        // Every packet a phone sends comes back to the other phone of its call.
        let loss = 1.0 - total as f64 / sent.max(1) as f64;
        println!(
            "sent={sent} received={total} measured_sent={sent_measured} measured_received={rec} loss_pct={:.3}",
            loss * 100.0
        );
    });
}
