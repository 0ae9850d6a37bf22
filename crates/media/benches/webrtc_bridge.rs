//! N concurrent WebRTC↔RTP bridged calls on loopback, against the plain RTP↔RTP relay
//! in the same run. `webrtc`-crate peers play the browsers; plain UDP sockets play the
//! phones; everything talks at the real 50 packets/s per direction.
//!
//! Hotline's side (gateway tasks and media sessions) runs alone on one thread with a
//! current-thread runtime, so its CPU is that thread's CPU clock (user + system, from
//! `CLOCK_THREAD_CPUTIME_ID`), untouched by the peers' work in other threads.
//!
//! Each phase runs once per session tick (`TICKS`, default "0 10": per-datagram reads
//! and the default 10 ms tick) in the same run. Phones stamp each packet with its send
//! time, so the RTP phase also reports the one-way delay through Hotline (phone to
//! phone, median and p99): the tick's added delay is the difference between the rows.
//!
//! `SPREAD=1` gives each call its own phase in the 20 ms period (phones and browsers
//! send spread out, as real ones do) instead of one burst for all calls.
//!
//! `PHASES` picks the phases, run in this order for each tick (default "plain lean"):
//! `direct` (once, first: no relay, each phone sends straight to the other: what the
//! phones themselves cost), `kernel` (once: the in-kernel relay, [`KernelRelay`], on
//! `lo`; needs root and a build with clang; its work runs in the senders' softirq, so
//! Hotline's thread CPU says nothing of it),
//! `floor` (once, first: per call a task that only moves datagrams between two sockets,
//! the kernel's and tokio's cost per packet, under any relay on this machine),
//! `floor_shared` (once: one socket and one task for all calls, 64 datagrams per
//! `recvmmsg`/`sendmmsg`: the floor with a shared media port; `SHARED_DISPATCH=1` hands
//! each datagram to a task per call over a channel, as a shared port in front of per-call
//! sessions would, and sends what they queue with one `sendmmsg`; `=2` has each call's
//! task send its own datagrams, one `send_to` each),
//! `floor_uring` (once: a socket pair per call as in `floor`, but all calls' receives and
//! sends go through one io_uring, so one system call serves many calls' sockets;
//! `URING_MULTI=1` keeps each receive armed (multishot, buffers from a pool),
//! `URING_TICK=<ms>` reads every socket once per tick instead, with no wake-ups),
//! `plain` (RTP↔RTP), `shared` (RTP↔RTP, per datagram, every leg's RTP on one
//! [`SharedPort`]), `lean` (WebRTC↔RTP on the lean media path; `lean_legs` counts
//! the legs that were on it at the end), `lean_shared` (the same with the browser's
//! and the phone's legs on one [`SharedPort`]) and `full` (WebRTC↔RTP with the lean path off:
//! every packet through the peer connection, as before it), so `PHASES="plain lean
//! full"` compares all three in one run. Besides CPU per call, each phase reports
//! Hotline's CPU per packet it was sent (`cpu_us_per_packet`), which starved peers
//! (fewer packets sent) do not skew. RTP phases also report the whole process's CPU per
//! packet (`process_us_per_packet`: every thread, with the softirq work charged to them,
//! and `ksoftirqd`) and, after `direct` ran, what they cost over it (`over_direct`): the
//! figure that compares the kernel relay with the user-space ones.
//!
//! `[TICKS="0 10 20"] [SPREAD=1] [PHASES="plain lean full"] cargo bench -p hotline-media --bench webrtc_bridge -- [calls]
//! [seconds]` (default 50 calls, 20 s of media per phase). Prints one JSON line per phase.

mod counts;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/webrtc_common/mod.rs"]
mod webrtc_common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use counts::ThreadCounts;
use hotline_media::kernel::{Flow, Forward, KernelRelay};
use hotline_media::leg::LegTiming;
use hotline_media::session::{MediaLeg, SessionHandle, spawn_session_with_tick};
use hotline_media::shared::SharedPort;
use hotline_media::webrtc::{WebRtcLeg, WebRtcSettings};
use rtp_rs::{RtpPacketBuilder, Seq};
use support::pcmu_leg as leg_cfg;
use tokio::net::UdpSocket;
use tokio::runtime::Handle;
use webrtc_common::Browser;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU of the whole bench process (every thread: Hotline's, the phones', the browsers',
/// and the softirq work the kernel charges to them) plus the kernel's `ksoftirqd`
/// threads, where softirq work goes when it piles up. The only fair yardstick for the
/// in-kernel relay, whose work runs in the sender's softirq: phases are compared by
/// what they cost over `direct` (phones sending straight to each other).
fn process_cpu() -> Duration {
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_SELF is a constant.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime) + ksoftirqd_cpu()
}

fn ksoftirqd_cpu() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut ticks = 0u64;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("ksoftirqd/") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is the 3rd field, utime and stime the 14th
        // and 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse().ok())
            .collect();
        ticks += f.iter().sum::<u64>();
    }
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// µs of process CPU per packet sent in the `direct` phase, once it has run.
static DIRECT_US_PER_PACKET: std::sync::Mutex<Option<f64>> = std::sync::Mutex::new(None);

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Hotline's thread: a current-thread runtime whose handle the driver spawns onto, and
/// counters on that thread (see [`counts`]).
fn hotline_thread() -> (Handle, ThreadCounts) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("hotline".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            tx.send((rt.handle().clone(), tid)).expect("handle");
            rt.block_on(std::future::pending::<()>());
        })
        .expect("thread");
    let (h, tid) = rx.recv().expect("hotline runtime");
    (h, ThreadCounts::open(tid))
}

async fn cpu_of(h: &Handle) -> Duration {
    h.spawn(async { thread_cpu() }).await.expect("cpu")
}

struct Counts {
    to_hotline: AtomicU64,
    from_hotline: AtomicU64,
    /// One-way delays (µs) of stamped packets that came back to a phone.
    delays: std::sync::Mutex<Vec<u32>>,
}

impl Counts {
    fn new() -> Arc<Counts> {
        Arc::new(Counts {
            to_hotline: AtomicU64::new(0),
            from_hotline: AtomicU64::new(0),
            delays: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Median and p99 one-way delay in ms.
    fn delay_ms(&self) -> (f64, f64) {
        let mut d = std::mem::take(&mut *self.delays.lock().expect("delays"));
        d.sort_unstable();
        let at = |p: f64| {
            d.get(((d.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        (at(0.5), at(0.99))
    }
}

/// The bench's clock origin: phones stamp packets with µs since it.
fn origin() -> Instant {
    static O: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *O.get_or_init(Instant::now)
}

/// Whether each call's packets get their own phase within the 20 ms period (`SPREAD=1`),
/// as real phones' do, instead of one burst for all calls every 20 ms (the default).
fn spread() -> bool {
    std::env::var("SPREAD").is_ok_and(|v| v == "1")
}

/// The send offset of call `i` of `n` within the 20 ms period.
fn phase(i: usize, n: usize) -> Duration {
    if spread() {
        Duration::from_micros(20_000 * i as u64 / n.max(1) as u64)
    } else {
        Duration::ZERO
    }
}

/// Phones: one socket per call, all paced by one 20 ms ticker (each call at its phase,
/// see [`spread`]); counts what comes back and, for packets carrying a phone's stamp,
/// how long they took.
fn run_phones(
    phones: Vec<(Arc<UdpSocket>, SocketAddr)>,
    counts: Arc<Counts>,
    until: Instant,
) -> tokio::task::JoinHandle<()> {
    for (sock, _) in &phones {
        let sock = Arc::clone(sock);
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await
            {
                counts.from_hotline.fetch_add(1, Ordering::Relaxed);
                // The stamp is in the payload's first 8 bytes, after a 12-byte header.
                if n >= 20 && buf[12..14] == STAMP_MAGIC {
                    let mut b = [0u8; 8];
                    b[2..].copy_from_slice(&buf[14..20]);
                    let sent = u64::from_be_bytes(b);
                    let now = origin().elapsed().as_micros() as u64;
                    let d = now.saturating_sub(sent).min(u32::MAX as u64) as u32;
                    counts.delays.lock().expect("delays").push(d);
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut payload = [0xD5u8; 160];
        let mut seq = 0u16;
        let n = phones.len();
        while Instant::now() < until {
            tick.tick().await;
            let period = Instant::now();
            for (i, (sock, to)) in phones.iter().enumerate() {
                let at = period + phase(i, n);
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                let sent = origin().elapsed().as_micros() as u64;
                payload[..2].copy_from_slice(&STAMP_MAGIC);
                payload[2..8].copy_from_slice(&sent.to_be_bytes()[2..]);
                let pkt = RtpPacketBuilder::new()
                    .payload_type(0)
                    .ssrc(0x1000 + i as u32)
                    .sequence(Seq::from(seq))
                    .timestamp(seq as u32 * 160)
                    .payload(&payload)
                    .build()
                    .expect("rtp");
                if sock.send_to(&pkt, to).await.is_ok() {
                    counts.to_hotline.fetch_add(1, Ordering::Relaxed);
                }
            }
            seq = seq.wrapping_add(1);
        }
    })
}

/// Marks a payload that carries a send time (µs since [`origin`], 48 bits).
const STAMP_MAGIC: [u8; 2] = [0x5A, 0xA5];

async fn webrtc_phase(
    h: &Handle,
    tc: &ThreadCounts,
    calls: usize,
    secs: u64,
    tick: Duration,
    lean: bool,
    shared: bool,
) {
    let shared_port = match shared {
        true => Some(Arc::new(
            h.spawn(async { SharedPort::bind(SocketAddr::new(LO, 0)).await })
                .await
                .expect("join")
                .expect("shared port"),
        )),
        false => None,
    };
    // Room to spare: the range starts among the ephemeral ports, where the phones' and
    // the browsers' sockets (bound to port 0) land too and block pairs (with 2 pairs per
    // call + 50, a 400-call phase ran out of pairs).
    let alloc = support::port_range((calls as u16) * 5 + 200);
    let settings = WebRtcSettings {
        lean,
        ..WebRtcSettings::new(LO)
    };
    let mut stats = Vec::with_capacity(calls);
    let mut setup = Vec::with_capacity(calls);
    let mut offer_cost = Vec::with_capacity(calls);
    let mut browsers = Vec::with_capacity(calls);
    let mut sessions: Vec<SessionHandle> = Vec::with_capacity(calls);
    let mut phones = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t0 = Instant::now();
        let (a2, s2, sp) = (alloc.clone(), settings.clone(), shared_port.clone());
        let (leg, offer) = h
            .spawn(async move { WebRtcLeg::offer_on(&a2, &s2, sp.as_deref()).await })
            .await
            .expect("join")
            .expect("offer");
        offer_cost.push(t0.elapsed());
        stats.push(leg.stats());
        let (mut browser, answer) = Browser::answer(&offer).await;
        let phone = Arc::new(UdpSocket::bind((LO, 0)).await.expect("phone"));
        let phone_addr = phone.local_addr().expect("addr");
        let (a2, sp) = (alloc.clone(), shared_port.clone());
        let (session, a_addr) = h
            .spawn(async move {
                let b = leg
                    .connect(Some(&answer), LegTiming::default())
                    .await
                    .expect("connect");
                let ports = match &sp {
                    Some(sp) => sp.bind_leg(phone_addr, &a2, LO).await.expect("shared leg"),
                    None => a2.bind(LO).await.expect("ports"),
                };
                let a_addr = ports.rtp.local_addr().expect("addr");
                let a = MediaLeg::new(ports, leg_cfg(phone_addr), LegTiming::default());
                let (ev, mut evrx) = tokio::sync::mpsc::channel(64);
                tokio::spawn(async move { while evrx.recv().await.is_some() {} });
                let s = spawn_session_with_tick(a, ev, tick);
                s.attach(b).await.expect("attach");
                s.bridge().await.expect("bridge");
                (s, a_addr)
            })
            .await
            .expect("join");
        browser.connected().await;
        setup.push(t0.elapsed());
        sessions.push(session);
        phones.push((phone, a_addr));
        browsers.push(browser);
    }
    setup.sort();
    offer_cost.sort();

    // Media: phones and browsers talk for `secs`; Hotline's CPU over that window.
    let counts = Counts::new();
    let from_browser_rx = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    // On stderr, for profilers that start counting here (`callgrind_control -z`).
    eprintln!("webrtc_bridge: media starts");
    let cpu0 = cpu_of(h).await;
    let counts0 = tc.snapshot();
    let phones_task = run_phones(phones, Arc::clone(&counts), until);
    let mut rxs = Vec::new();
    let mut tracks = Vec::new();
    for b in browsers.iter_mut() {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        rxs.push(std::mem::replace(&mut b.rtp, rx));
        drop(tx);
        tracks.push((Arc::clone(&b.track), b.ssrc));
    }
    for mut rx in rxs {
        let c = Arc::clone(&from_browser_rx);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                c.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let browser_sent = Arc::new(AtomicU64::new(0));
    let bs = Arc::clone(&browser_sent);
    let browsers_task = tokio::spawn(async move {
        use webrtc::media_stream::track_local::TrackLocal;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut seq = 0u16;
        let n = tracks.len();
        while Instant::now() < until {
            tick.tick().await;
            let period = Instant::now();
            for (i, (track, ssrc)) in tracks.iter().enumerate() {
                // Half a period after the phone of the same call.
                let at = period + phase(i, n) + phase(n / 2, n);
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                let pkt = rtc::rtp::Packet {
                    header: rtc::rtp::Header {
                        version: 2,
                        payload_type: 0,
                        sequence_number: seq,
                        timestamp: seq as u32 * 160,
                        ssrc: *ssrc,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::from_static(&[0x55; 160]),
                };
                if track.write_rtp(pkt).await.is_ok() {
                    bs.fetch_add(1, Ordering::Relaxed);
                }
            }
            seq = seq.wrapping_add(1);
        }
    });
    phones_task.await.expect("phones");
    browsers_task.await.expect("browsers");
    let cpu1 = cpu_of(h).await;
    let counts1 = tc.snapshot();
    let wall = start.elapsed();
    // Let the last packets land before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = (cpu1 - cpu0).as_secs_f64();
    let per_call_pct = cpu / wall.as_secs_f64() / calls as f64 * 100.0;
    let to_h = counts.to_hotline.load(Ordering::Relaxed);
    let b_sent = browser_sent.load(Ordering::Relaxed);
    let b_rx = from_browser_rx.load(Ordering::Relaxed);
    let p_rx = counts.from_hotline.load(Ordering::Relaxed);
    let lean_legs = stats.iter().filter(|s| s.lean()).count();
    let per_packet_us = cpu * 1e6 / (to_h + b_sent).max(1) as f64;
    let per_packet = counts0.per_packet_json(&counts1, to_h + b_sent);
    println!(
        "{{\"phase\":\"webrtc_rtp\",\"path\":\"{}\",\"lean_legs\":{lean_legs},\"tick_ms\":{},\"calls\":{calls},\"seconds\":{:.1},\"setup_ms_median\":{:.2},\"setup_ms_p99\":{:.2},\"offer_ms_median\":{:.3},\"hotline_cpu_s\":{cpu:.3},\"cpu_pct_of_core_per_call\":{per_call_pct:.4},\"cpu_us_per_packet\":{per_packet_us:.2},\"per_packet\":{per_packet},\"phone_to_browser\":{{\"sent\":{to_h},\"received\":{b_rx}}},\"browser_to_phone\":{{\"sent\":{b_sent},\"received\":{p_rx}}},\"spread\":{},\"loadavg\":\"{}\"}}",
        match (lean, shared) {
            (true, true) => "lean_shared_port",
            (true, false) => "lean",
            (false, _) => "full",
        },
        tick.as_millis(),
        wall.as_secs_f64(),
        pct(&setup, 0.5),
        pct(&setup, 0.99),
        pct(&offer_cost, 0.5),
        spread(),
        load_average()
    );
    if let Some(p) = &shared_port {
        eprintln!("webrtc_bridge: shared port {:?}", p.stats());
    }
    for s in sessions {
        let h2 = h.clone();
        let _ = h2
            .spawn(async move {
                if let Ok((a, b)) = s.stop().await {
                    drop(a);
                    if let Some(b) = b {
                        b.release().await;
                    }
                }
            })
            .await;
    }
    for b in browsers {
        b.close().await;
    }
}

/// Which relay a plain phase runs: Hotline's sessions, or one of the floors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Floor {
    No,
    Pairs,
    Shared,
    Uring,
    /// Hotline's sessions, every leg's RTP on one [`SharedPort`].
    HotlineShared,
    /// No relay: each phone sends straight to the other (what the phones cost).
    Direct,
    /// Hotline's two legs per call are bound sockets the in-kernel relay forwards for
    /// ([`KernelRelay`]): nothing reaches them.
    Kernel,
}

/// What relays one call (or, for the shared floor, all of them), stopped at the end.
enum Relay {
    Session(SessionHandle),
    Task(tokio::task::JoinHandle<()>),
    /// A call's sockets for the io_uring floor, handed to its one task once all are made.
    Pair(UringPair),
    /// A call's legs in the kernel relay: sockets kept bound, flows taken back at the end.
    Kernel([std::net::UdpSocket; 2], [Flow; 2]),
}

/// An address for calls whose Hotline side is the shared floor socket (set later).
const LO_ANY: SocketAddr = SocketAddr::new(LO, 0);

/// Datagrams per `recvmmsg`/`sendmmsg` in the shared floors.
const SHARED_B: usize = 64;
/// Room per datagram in the shared floors' buffers.
const SHARED_LEN: usize = 1500;

/// One `recvmmsg` of up to [`SHARED_B`] datagrams from `sock` into `SHARED_LEN`-byte slots
/// from `base`, each sender's port into `ports` and length into `lens`; how many came. A
/// short batch means the queue ran dry: tokio's readiness is cleared.
///
/// # Safety
/// `base` must point at `SHARED_B * SHARED_LEN` writable bytes.
unsafe fn recv_many(
    sock: &UdpSocket,
    base: *mut u8,
    ports: &mut [u16; SHARED_B],
    lens: &mut [usize; SHARED_B],
) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero bytes are valid `sockaddr_storage`s, iovecs and mmsghdrs; every
    // field the kernel reads is set below.
    let mut from: [libc::sockaddr_storage; SHARED_B] = unsafe { std::mem::zeroed() };
    let mut iov: [libc::iovec; SHARED_B] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; SHARED_B] = unsafe { std::mem::zeroed() };
    for i in 0..SHARED_B {
        // SAFETY: slot i lies within the caller's buffer.
        iov[i].iov_base = unsafe { base.add(i * SHARED_LEN) }.cast();
        iov[i].iov_len = SHARED_LEN;
        hdrs[i].msg_hdr.msg_name = (&mut from[i] as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen =
            std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &mut iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut n = 0usize;
    let _ = sock.try_io(tokio::io::Interest::READABLE, || {
        // SAFETY: the headers point into the caller's buffer, `from` and `iov`, alive and
        // exclusively borrowed for the call, with their true sizes.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                SHARED_B as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        n = r as usize;
        if n < SHARED_B {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    for i in 0..n {
        // SAFETY: the kernel wrote an AF_INET address (the phones are on 127.0.0.1).
        let sin =
            unsafe { &*(&from[i] as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
        ports[i] = u16::from_be(sin.sin_port);
        lens[i] = hdrs[i].msg_len as usize;
    }
    n
}

/// The floor with one socket for all calls: a single task reads up to 64 datagrams per
/// `recvmmsg` and sends them on with one `sendmmsg`, each to the other phone of its call
/// (by the sender's port). What relaying would cost with many calls' datagrams per
/// system call (a shared media port) instead of a socket pair per call.
async fn shared_floor_relay(sock: UdpSocket, routes: HashMap<u16, SocketAddr>) {
    match std::env::var("SHARED_DISPATCH").as_deref() {
        Ok("1") => return shared_dispatch_floor_relay(sock, routes, false).await,
        Ok("2") => return shared_dispatch_floor_relay(sock, routes, true).await,
        _ => {}
    }
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    let routes: HashMap<u16, socket2::SockAddr> =
        routes.into_iter().map(|(k, v)| (k, v.into())).collect();
    let mut bufs = vec![[0u8; SHARED_LEN]; SHARED_B];
    let (mut ports, mut lens) = ([0u16; SHARED_B], [0usize; SHARED_B]);
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        // SAFETY: `bufs` holds SHARED_B slots of SHARED_LEN bytes.
        let n = unsafe { recv_many(&sock, bufs.as_mut_ptr().cast(), &mut ports, &mut lens) };
        // SAFETY: all-zero bytes are valid iovecs and mmsghdrs; set below.
        let mut iov: [libc::iovec; SHARED_B] = unsafe { std::mem::zeroed() };
        let mut out: [libc::mmsghdr; SHARED_B] = unsafe { std::mem::zeroed() };
        let mut k = 0;
        for i in 0..n {
            let Some(dest) = routes.get(&ports[i]) else {
                continue;
            };
            iov[k].iov_base = bufs[i].as_mut_ptr().cast();
            iov[k].iov_len = lens[i];
            out[k].msg_hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
            out[k].msg_hdr.msg_namelen = dest.len();
            out[k].msg_hdr.msg_iov = &mut iov[k];
            out[k].msg_hdr.msg_iovlen = 1;
            k += 1;
        }
        if k > 0 {
            // SAFETY: the headers point into `bufs`, `iov` and `routes`, alive here.
            unsafe { libc::sendmmsg(fd, out.as_mut_ptr(), k as u32, 0) };
        }
    }
}

/// A socket pair for one call of the io_uring floor: the socket facing phone a and its
/// address, the one facing phone b and its address.
type UringPair = (
    std::net::UdpSocket,
    SocketAddr,
    std::net::UdpSocket,
    SocketAddr,
);

/// The io_uring floors' sockets: socket i faces phone `dests[i]`, and a datagram received
/// on i leaves on i ^ 1. The destinations are leaked: requests in flight point at them,
/// and the phase ends by aborting the task.
struct UringSockets {
    /// Kept open for the ring's requests.
    _socks: Vec<std::net::UdpSocket>,
    dests: &'static [socket2::SockAddr],
    fds: &'static [std::os::fd::RawFd],
}

fn uring_sockets(pairs: Vec<UringPair>) -> UringSockets {
    use std::os::fd::AsRawFd;
    let mut socks = Vec::with_capacity(pairs.len() * 2);
    let mut dests: Vec<socket2::SockAddr> = Vec::with_capacity(pairs.len() * 2);
    for (x, a, y, b) in pairs {
        socks.push(x);
        dests.push(a.into());
        socks.push(y);
        dests.push(b.into());
    }
    let fds: Vec<_> = socks.iter().map(|s| s.as_raw_fd()).collect();
    UringSockets {
        _socks: socks,
        dests: Box::leak(dests.into_boxed_slice()),
        fds: Box::leak(fds.into_boxed_slice()),
    }
}

/// A send's header and vector, kept (leaked) while the send is in flight.
struct SendHdr {
    iov: libc::iovec,
    msg: libc::msghdr,
}

// SAFETY: a header points into its own slot, a leaked buffer and a leaked destination;
// only the relay task that owns it reads or writes it.
unsafe impl Send for SendHdr {}

impl SendHdr {
    fn new() -> Self {
        // SAFETY: all-zero bytes are a valid iovec and msghdr; `to` sets what is read.
        unsafe { std::mem::zeroed() }
    }

    /// Points the header at `len` bytes from `buf`, for `dest`.
    fn to(&mut self, buf: *mut u8, len: usize, dest: &socket2::SockAddr) -> *const libc::msghdr {
        self.iov.iov_base = buf.cast();
        self.iov.iov_len = len;
        self.msg.msg_name = dest.as_ptr() as *mut libc::c_void;
        self.msg.msg_namelen = dest.len();
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        &self.msg
    }
}

/// A socket's receive buffer and send header in the io_uring floors.
struct Slot {
    buf: [u8; 1500],
    hdr: SendHdr,
}

impl Slot {
    /// `n` slots, leaked (see [`UringSockets`]).
    fn leak(n: usize) -> &'static mut [Slot] {
        Box::leak(
            (0..n)
                .map(|_| Slot {
                    buf: [0; 1500],
                    hdr: SendHdr::new(),
                })
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    }
}

/// The ring's descriptor, readable when completions are waiting.
struct RingFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for RingFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// Registers the ring's descriptor with tokio. The caller drops the result before the ring.
fn ring_readiness(ring: &io_uring::IoUring) -> tokio::io::unix::AsyncFd<RingFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: the ring's fd stays open while the registration lives (dropped first).
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            RingFd(ring.as_raw_fd()),
            tokio::io::Interest::READABLE,
        )
    }
    .expect("ring fd")
}

/// Runs a ring until it fails: submits `pending` (what the completions asked for), hands
/// each completion to `complete`, which pushes the next requests, and waits on the ring's
/// descriptor when nothing is left to do.
///
/// # Safety
/// Every entry `pending` and `complete` push must point at memory that outlives the ring
/// (leaked slots and destinations).
async unsafe fn drive_ring(
    mut ring: io_uring::IoUring,
    mut pending: Vec<io_uring::squeue::Entry>,
    mut complete: impl FnMut(io_uring::cqueue::Entry, &mut Vec<io_uring::squeue::Entry>),
) {
    let afd = ring_readiness(&ring);
    loop {
        let mut got = 0usize;
        {
            let (submitter, mut sq, mut cq) = ring.split();
            loop {
                // Queue what the last completions asked for, as much as the ring takes.
                while let Some(e) = pending.pop() {
                    // SAFETY: the caller's promise: entries point at leaked memory.
                    if unsafe { sq.push(&e) }.is_err() {
                        pending.push(e);
                        break;
                    }
                }
                sq.sync();
                if !sq.is_empty() && submitter.submit().is_err() {
                    return;
                }
                sq.sync();
                cq.sync();
                if cq.is_empty() {
                    break;
                }
                for cqe in &mut cq {
                    got += 1;
                    complete(cqe, &mut pending);
                }
            }
        }
        if got > 0 {
            // Let the runtime's other tasks (the CPU probe) in between busy rounds.
            tokio::task::consume_budget().await;
            continue;
        }
        let Ok(mut g) = afd.readable().await else {
            return;
        };
        let empty = {
            let mut cq = ring.completion();
            cq.sync();
            cq.is_empty()
        };
        if empty {
            g.clear_ready();
        }
    }
}

/// The floor with io_uring: a socket pair per call as in `floor` (so latching behind NAT
/// would be as it is), but one ring for all calls. Every socket has a receive in flight;
/// each datagram received goes out on the other socket of its call, and that socket's
/// receive is armed again when the send completes. One `io_uring_enter` submits a wake's
/// worth of receives and sends for all calls; completions are read from shared memory.
async fn uring_floor_relay(pairs: Vec<UringPair>) {
    use io_uring::{IoUring, opcode, types};

    let UringSockets { _socks, dests, fds } = uring_sockets(pairs);
    let n = fds.len();
    let slots = Slot::leak(n);
    let entries = (n as u32).next_power_of_two().clamp(64, 32768);
    let ring = IoUring::new(entries).expect("io_uring");
    let recv = move |slots: &mut [Slot], i: usize| {
        opcode::Recv::new(types::Fd(fds[i]), slots[i].buf.as_mut_ptr(), 1500)
            .build()
            .user_data((i as u64) << 1)
    };
    let pending = (0..n).map(|i| recv(slots, i)).collect();
    let complete = move |cqe: io_uring::cqueue::Entry, pending: &mut Vec<_>| {
        let (i, is_send) = ((cqe.user_data() >> 1) as usize, cqe.user_data() & 1 == 1);
        if is_send || cqe.result() <= 0 {
            pending.push(recv(slots, i));
            return;
        }
        let j = i ^ 1;
        let s = &mut slots[i];
        let msg = s
            .hdr
            .to(s.buf.as_mut_ptr(), cqe.result() as usize, &dests[j]);
        pending.push(
            opcode::SendMsg::new(types::Fd(fds[j]), msg)
                .build()
                .user_data(((i as u64) << 1) | 1),
        );
    };
    // SAFETY: every request points into the leaked slots and destinations.
    unsafe { drive_ring(ring, pending, complete) }.await;
}

/// The io_uring floor with multishot receives (`URING_MULTI=1`): each socket's receive
/// stays armed in the kernel and takes a buffer from a pool the ring was given; a
/// datagram's buffer goes back to the pool when its send completes.
async fn uring_multi_floor_relay(pairs: Vec<UringPair>) {
    use io_uring::{IoUring, cqueue, opcode, squeue, types};

    const LEN: usize = 1500;
    const RECV: u64 = 0;
    const SEND: u64 = 1;
    let UringSockets { _socks, dests, fds } = uring_sockets(pairs);
    let n = fds.len();
    let nbufs = (n * 4).clamp(256, 32768);
    let pool: &'static mut [u8] = Box::leak(vec![0u8; nbufs * LEN].into_boxed_slice());
    let pool_ptr = pool.as_mut_ptr() as usize;
    // A send header per pool buffer.
    let slots: &'static mut [SendHdr] = Box::leak(
        (0..nbufs)
            .map(|_| SendHdr::new())
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let entries = ((n + nbufs) as u32).next_power_of_two().clamp(64, 32768);
    let ring = IoUring::new(entries).expect("io_uring");
    let provide = |bid: usize, count: usize| {
        opcode::ProvideBuffers::new(
            (pool_ptr + bid * LEN) as *mut u8,
            LEN as i32,
            count as u16,
            0,
            bid as u16,
        )
        .build()
        .flags(squeue::Flags::SKIP_SUCCESS)
        .user_data(u64::MAX)
    };
    let recv = |i: usize| {
        opcode::RecvMulti::new(types::Fd(fds[i]), 0)
            .build()
            .user_data(((i as u64) << 1) | RECV)
    };
    let mut pending: Vec<squeue::Entry> = (0..n).map(recv).collect();
    pending.push(provide(0, nbufs));
    let complete = move |cqe: cqueue::Entry, pending: &mut Vec<squeue::Entry>| {
        let ud = cqe.user_data();
        if ud == u64::MAX {
            return;
        }
        let idx = (ud >> 1) as usize;
        if ud & 1 == SEND {
            pending.push(provide(idx, 1));
            return;
        }
        if !cqueue::more(cqe.flags()) {
            pending.push(recv(idx));
        }
        let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
            return;
        };
        let bid = bid as usize;
        if cqe.result() <= 0 {
            pending.push(provide(bid, 1));
            return;
        }
        let j = idx ^ 1;
        let buf = (pool_ptr + bid * LEN) as *mut u8;
        let msg = slots[bid].to(buf, cqe.result() as usize, &dests[j]);
        pending.push(
            opcode::SendMsg::new(types::Fd(fds[j]), msg)
                .build()
                .user_data(((bid as u64) << 1) | SEND),
        );
    };
    // SAFETY: every request points into the leaked pool, headers and destinations.
    unsafe { drive_ring(ring, pending, complete) }.await;
}

/// The io_uring floor on a tick (`URING_TICK=<ms>`): the sockets are in no reactor, so
/// a datagram's arrival wakes nobody; every tick one `io_uring_enter` tries a receive
/// (`MSG_DONTWAIT`) on every socket, and one more sends what came; sockets that gave a
/// datagram are read again until a round brings nothing.
async fn uring_tick_floor_relay(pairs: Vec<UringPair>, tick: Duration) {
    use io_uring::{IoUring, opcode, types};

    let UringSockets { _socks, dests, fds } = uring_sockets(pairs);
    let n = fds.len();
    let slots = Slot::leak(n);
    let entries = (n as u32).next_power_of_two().clamp(64, 32768);
    let mut ring = IoUring::new(entries).expect("io_uring");
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut want: Vec<usize> = Vec::with_capacity(n);
    let mut sends: Vec<(usize, usize)> = Vec::with_capacity(n);
    loop {
        interval.tick().await;
        want.clear();
        want.extend(0..n);
        while !want.is_empty() {
            // One round: a receive on every socket wanted, all completing at once.
            sends.clear();
            for chunk in want.chunks(entries as usize) {
                {
                    let mut sq = ring.submission();
                    for &i in chunk {
                        let e =
                            opcode::Recv::new(types::Fd(fds[i]), slots[i].buf.as_mut_ptr(), 1500)
                                .flags(libc::MSG_DONTWAIT)
                                .build()
                                .user_data(i as u64);
                        // SAFETY: the buffer is leaked; the chunk fits the ring.
                        let _ = unsafe { sq.push(&e) };
                    }
                }
                if ring.submit_and_wait(chunk.len()).is_err() {
                    return;
                }
                for cqe in ring.completion() {
                    if cqe.result() > 0 {
                        sends.push((cqe.user_data() as usize, cqe.result() as usize));
                    }
                }
            }
            want.clear();
            for chunk in sends.chunks(entries as usize) {
                {
                    let mut sq = ring.submission();
                    for &(i, len) in chunk {
                        let j = i ^ 1;
                        let s = &mut slots[i];
                        let msg = s.hdr.to(s.buf.as_mut_ptr(), len, &dests[j]);
                        let e = opcode::SendMsg::new(types::Fd(fds[j]), msg)
                            .build()
                            .user_data(i as u64);
                        // SAFETY: as above.
                        let _ = unsafe { sq.push(&e) };
                    }
                }
                if ring.submit_and_wait(chunk.len()).is_err() {
                    return;
                }
                ring.completion().for_each(drop);
                want.extend(chunk.iter().map(|&(i, _)| i));
            }
        }
    }
}

/// The shared-socket floor with a task per call (`SHARED_DISPATCH=1`): the reader hands
/// each datagram (a slice of its batch buffer, no copy) to its call's task over a
/// channel, as a shared media port in front of per-call sessions would; the call tasks
/// queue what they send, and the reader sends it all with `sendmmsg` once they have run.
/// With `direct` (`SHARED_DISPATCH=2`) each call task sends its datagrams itself, one
/// `send_to` each on the shared socket, and the reader sends nothing.
async fn shared_dispatch_floor_relay(
    sock: UdpSocket,
    routes: HashMap<u16, SocketAddr>,
    direct: bool,
) {
    use bytes::{Bytes, BytesMut};
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;
    const B: usize = SHARED_B;
    type Out = Arc<Mutex<Vec<(Bytes, u16)>>>;
    let sock = Arc::new(sock);
    let fd = sock.as_raw_fd();
    let dest: HashMap<u16, socket2::SockAddr> =
        routes.iter().map(|(&k, &v)| (k, v.into())).collect();
    let out: Out = Arc::new(Mutex::new(Vec::new()));
    // One task per call, found by either phone's port.
    let mut calls: HashMap<u16, tokio::sync::mpsc::UnboundedSender<(Bytes, u16)>> = HashMap::new();
    let mut tasks = Vec::new();
    for (&a, b) in &routes {
        if calls.contains_key(&a) {
            continue;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Bytes, u16)>();
        let out = Arc::clone(&out);
        let (sock, to) = (
            Arc::clone(&sock),
            [(a, *b), (b.port(), SocketAddr::new(LO, a))],
        );
        tasks.push(tokio::spawn(async move {
            let mut relayed = 0u64;
            if direct {
                while let Some((d, port)) = rx.recv().await {
                    let dest = if to[0].0 == port { to[0].1 } else { to[1].1 };
                    let _ = sock.try_send_to(&d, dest);
                    relayed += 1;
                }
                return relayed;
            }
            while let Some(d) = rx.recv().await {
                let mut q = out.lock().expect("out");
                q.push(d);
                relayed += 1;
                while let Ok(d) = rx.try_recv() {
                    q.push(d);
                    relayed += 1;
                }
            }
            relayed
        }));
        calls.insert(b.port(), tx.clone());
        calls.insert(a, tx);
    }
    struct AbortAll(Vec<tokio::task::JoinHandle<u64>>);
    impl Drop for AbortAll {
        fn drop(&mut self) {
            self.0.iter().for_each(|t| t.abort());
        }
    }
    let _tasks = AbortAll(tasks);
    let (mut ports, mut lens) = ([0u16; SHARED_B], [0usize; SHARED_B]);
    let mut sending: Vec<(Bytes, u16)> = Vec::new();
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        // No raw pointer lives across the await below.
        let got = {
            let mut batch = BytesMut::with_capacity(SHARED_B * SHARED_LEN);
            // SAFETY: the batch's capacity is SHARED_B slots of SHARED_LEN bytes.
            let n = unsafe { recv_many(&sock, batch.as_mut_ptr(), &mut ports, &mut lens) };
            // SAFETY: the kernel wrote the first n slots; only their datagrams are read.
            unsafe { batch.set_len(n * SHARED_LEN) };
            let batch = batch.freeze();
            for i in 0..n {
                if let Some(tx) = calls.get(&ports[i]) {
                    let at = i * SHARED_LEN;
                    let _ = tx.send((batch.slice(at..at + lens[i]), ports[i]));
                }
            }
            n > 0
        };
        if !got {
            continue;
        }
        // Let the woken call tasks run, then send what they queued.
        tokio::task::yield_now().await;
        std::mem::swap(&mut sending, &mut *out.lock().expect("out"));
        for chunk in sending.chunks(B) {
            let mut oiov: [libc::iovec; B] = unsafe { std::mem::zeroed() };
            let mut ohdr: [libc::mmsghdr; B] = unsafe { std::mem::zeroed() };
            let mut k = 0;
            for (b, port) in chunk {
                let Some(d) = dest.get(port) else { continue };
                oiov[k].iov_base = b.as_ptr() as *mut libc::c_void;
                oiov[k].iov_len = b.len();
                ohdr[k].msg_hdr.msg_name = d.as_ptr() as *mut libc::c_void;
                ohdr[k].msg_hdr.msg_namelen = d.len();
                ohdr[k].msg_hdr.msg_iov = &mut oiov[k];
                ohdr[k].msg_hdr.msg_iovlen = 1;
                k += 1;
            }
            // SAFETY: the headers point into `sending`'s buffers and `dest`, alive here.
            unsafe { libc::sendmmsg(fd, ohdr.as_mut_ptr(), k as u32, 0) };
        }
        sending.clear();
    }
}

async fn plain_phase(
    h: &Handle,
    tc: &ThreadCounts,
    calls: usize,
    secs: u64,
    tick: Duration,
    floor: Floor,
) {
    let alloc = support::port_range((calls as u16) * 4 + 200);
    let shared_port = if floor == Floor::HotlineShared {
        let p = h
            .spawn(async { SharedPort::bind(SocketAddr::new(LO, 0)).await })
            .await
            .expect("join")
            .expect("shared port");
        Some(Arc::new(p))
    } else {
        None
    };
    let kernel = (floor == Floor::Kernel).then(|| {
        Arc::new(KernelRelay::attach(&["lo"]).unwrap_or_else(|e| {
            panic!("the kernel phase needs root (CAP_BPF, CAP_NET_ADMIN) and clang: {e}")
        }))
    });
    let mut sessions = Vec::with_capacity(calls);
    let mut phones = Vec::with_capacity(calls * 2);
    let mut setup = Vec::with_capacity(calls);
    for call in 0..calls {
        let pa = Arc::new(UdpSocket::bind((LO, 0)).await.expect("phone"));
        let pb = Arc::new(UdpSocket::bind((LO, 0)).await.expect("agent"));
        let (aa, ab) = (pa.local_addr().expect("a"), pb.local_addr().expect("b"));
        let a2 = alloc.clone();
        let sp = shared_port.clone();
        let t0 = Instant::now();
        let kr = kernel.clone();
        let (s, a_addr, b_addr) = h
            .spawn(async move {
                if floor == Floor::Shared {
                    return (None, LO_ANY, LO_ANY);
                }
                if floor == Floor::Direct {
                    return (None, ab, aa);
                }
                if let Some(kr) = kr {
                    // Phone i of run_phones sends with SSRC 0x1000 + i; a call's phones
                    // are 2·call and 2·call + 1.
                    let x = std::net::UdpSocket::bind((LO, 0)).expect("leg a");
                    let y = std::net::UdpSocket::bind((LO, 0)).expect("leg b");
                    let (xa, ya) = (x.local_addr().expect("a"), y.local_addr().expect("b"));
                    let v4 = |a: SocketAddr| match a {
                        SocketAddr::V4(a) => a,
                        SocketAddr::V6(_) => unreachable!("loopback v4"),
                    };
                    let ssrc = 0x1000 + 2 * call as u32;
                    let flows = [
                        Flow {
                            local: v4(xa),
                            remote: v4(aa),
                            ssrc,
                        },
                        Flow {
                            local: v4(ya),
                            remote: v4(ab),
                            ssrc: ssrc + 1,
                        },
                    ];
                    let forwards = [(ya, ab), (xa, aa)];
                    for (flow, (from, to)) in flows.iter().zip(forwards) {
                        let fwd = Forward {
                            from: v4(from),
                            to: v4(to),
                            ssrc: rand::random(),
                            seq_offset: rand::random(),
                            ts_offset: rand::random(),
                            in_pt: 0,
                            out_pt: 0,
                            tag: 0,
                        };
                        kr.offload(*flow, fwd).expect("offload");
                    }
                    return (Some(Relay::Kernel([x, y], flows)), xa, ya);
                }
                if floor == Floor::Uring {
                    let x = std::net::UdpSocket::bind((LO, 0)).expect("floor a");
                    let y = std::net::UdpSocket::bind((LO, 0)).expect("floor b");
                    let (xa, ya) = (x.local_addr().expect("a"), y.local_addr().expect("b"));
                    return (Some(Relay::Pair((x, aa, y, ab))), xa, ya);
                }
                if floor == Floor::Pairs {
                    let x = UdpSocket::bind((LO, 0)).await.expect("floor a");
                    let y = UdpSocket::bind((LO, 0)).await.expect("floor b");
                    let (xa, ya) = (x.local_addr().expect("a"), y.local_addr().expect("b"));
                    let count = Arc::new(AtomicU64::new(0));
                    let t = tokio::spawn(support::copy_datagrams(x, y, aa, ab, count));
                    return (Some(Relay::Task(t)), xa, ya);
                }
                let (pa, pb) = match &sp {
                    Some(sp) => (
                        sp.bind_leg(aa, &a2, LO).await.expect("shared leg"),
                        sp.bind_leg(ab, &a2, LO).await.expect("shared leg"),
                    ),
                    None => (
                        a2.bind(LO).await.expect("ports"),
                        a2.bind(LO).await.expect("ports"),
                    ),
                };
                let (x, y) = (
                    pa.rtp.local_addr().expect("a"),
                    pb.rtp.local_addr().expect("b"),
                );
                let (ev, mut evrx) = tokio::sync::mpsc::channel(64);
                tokio::spawn(async move { while evrx.recv().await.is_some() {} });
                let a = MediaLeg::new(pa, leg_cfg(aa), LegTiming::default());
                let s = spawn_session_with_tick(a, ev, tick);
                s.attach(MediaLeg::new(pb, leg_cfg(ab), LegTiming::default()))
                    .await
                    .expect("attach");
                s.bridge().await.expect("bridge");
                (Some(Relay::Session(s)), x, y)
            })
            .await
            .expect("join");
        setup.push(t0.elapsed());
        sessions.extend(s);
        phones.push((pa, a_addr));
        phones.push((pb, b_addr));
    }
    if floor == Floor::Shared {
        // Every phone sends to the one shared socket; it knows the calls by port.
        let mut routes = HashMap::new();
        for pair in phones.chunks(2) {
            let (a, b) = (
                pair[0].0.local_addr().expect("a"),
                pair[1].0.local_addr().expect("b"),
            );
            routes.insert(a.port(), b);
            routes.insert(b.port(), a);
        }
        let (relay, addr) = h
            .spawn(async move {
                let sock = UdpSocket::bind((LO, 0)).await.expect("shared");
                // Room for a burst of every phone's packet at once: SO_RCVBUFFORCE
                // (root) passes net.core.rmem_max, SO_RCVBUF is capped by it.
                let size: libc::c_int = 16 << 20;
                let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
                for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
                    // SAFETY: `size` is a valid c_int for the option's length.
                    let r = unsafe {
                        libc::setsockopt(
                            fd,
                            libc::SOL_SOCKET,
                            opt,
                            (&size as *const libc::c_int).cast(),
                            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                        )
                    };
                    if r == 0 {
                        break;
                    }
                }
                let addr = sock.local_addr().expect("shared addr");
                (tokio::spawn(shared_floor_relay(sock, routes)), addr)
            })
            .await
            .expect("join");
        for p in &mut phones {
            p.1 = addr;
        }
        sessions.push(Relay::Task(relay));
    }
    if floor == Floor::Uring {
        let pairs = sessions
            .drain(..)
            .filter_map(|r| match r {
                Relay::Pair(p) => Some(p),
                _ => None,
            })
            .collect();
        sessions.push(Relay::Task(
            if let Some(ms) = std::env::var("URING_TICK")
                .ok()
                .and_then(|t| t.parse().ok())
                .filter(|&t| t > 0)
            {
                h.spawn(uring_tick_floor_relay(pairs, Duration::from_millis(ms)))
            } else if std::env::var("URING_MULTI").is_ok_and(|v| v == "1") {
                h.spawn(uring_multi_floor_relay(pairs))
            } else {
                h.spawn(uring_floor_relay(pairs))
            },
        ));
    }
    setup.sort();
    let counts = Counts::new();
    let start = Instant::now();
    eprintln!("webrtc_bridge: media starts");
    let cpu0 = cpu_of(h).await;
    let process0 = process_cpu();
    let counts0 = tc.snapshot();
    run_phones(
        phones,
        Arc::clone(&counts),
        start + Duration::from_secs(secs),
    )
    .await
    .expect("phones");
    let cpu1 = cpu_of(h).await;
    let process1 = process_cpu();
    let counts1 = tc.snapshot();
    let wall = start.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cpu = (cpu1 - cpu0).as_secs_f64();
    let (delay_median, delay_p99) = counts.delay_ms();
    let sent = counts.to_hotline.load(Ordering::Relaxed);
    let per_packet = counts0.per_packet_json(&counts1, sent);
    let process_us = (process1 - process0).as_secs_f64() * 1e6 / sent.max(1) as f64;
    if floor == Floor::Direct {
        *DIRECT_US_PER_PACKET.lock().expect("direct") = Some(process_us);
    }
    // What relaying costs over the phones talking directly, per packet and per call
    // (100 packets/s a call: 50 each way).
    let over_direct = match *DIRECT_US_PER_PACKET.lock().expect("direct") {
        Some(d) if floor != Floor::Direct => {
            let us = process_us - d;
            format!(
                "{{\"us_per_packet\":{us:.2},\"cpu_pct_of_core_per_call\":{:.4}}}",
                us * 100.0 / 1e6 * 100.0
            )
        }
        _ => "null".into(),
    };
    println!(
        "{{\"phase\":\"{}\",\"tick_ms\":{},\"calls\":{calls},\"seconds\":{:.1},\"setup_ms_median\":{:.3},\"setup_ms_p99\":{:.3},\"hotline_cpu_s\":{cpu:.3},\"cpu_pct_of_core_per_call\":{:.4},\"cpu_us_per_packet\":{:.2},\"process_us_per_packet\":{process_us:.2},\"over_direct\":{over_direct},\"per_packet\":{per_packet},\"sent\":{sent},\"received\":{},\"one_way_ms_median\":{delay_median:.2},\"one_way_ms_p99\":{delay_p99:.2},\"spread\":{},\"loadavg\":\"{}\"}}",
        match floor {
            Floor::Pairs => "floor_rtp_relay",
            Floor::Shared => "floor_shared_socket",
            Floor::Uring => "floor_uring",
            Floor::HotlineShared => "rtp_rtp_shared_port",
            Floor::No => "rtp_rtp",
            Floor::Direct => "direct",
            Floor::Kernel => "kernel_relay",
        },
        tick.as_millis(),
        wall.as_secs_f64(),
        pct(&setup, 0.5),
        pct(&setup, 0.99),
        cpu / wall.as_secs_f64() / calls as f64 * 100.0,
        cpu * 1e6 / sent.max(1) as f64,
        counts.from_hotline.load(Ordering::Relaxed),
        spread(),
        load_average()
    );
    if let Some(p) = &shared_port {
        eprintln!("webrtc_bridge: shared port {:?}", p.stats());
    }
    for s in sessions {
        match s {
            Relay::Session(s) => drop(h.spawn(async move { drop(s.stop().await) }).await),
            Relay::Task(t) => t.abort(),
            Relay::Pair(_) => {}
            Relay::Kernel(legs, flows) => {
                for f in &flows {
                    let k = kernel.as_ref().expect("kernel relay");
                    k.withdraw(f).expect("withdraw");
                }
                drop(legs);
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let calls = nums.first().copied().unwrap_or(50) as usize;
    let secs = nums.get(1).copied().unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (h, tc) = hotline_thread();
    let ticks: Vec<Duration> = std::env::var("TICKS")
        .unwrap_or_else(|_| "0 10".into())
        .split([' ', ','])
        .filter_map(|t| t.parse().ok())
        .map(Duration::from_millis)
        .collect();
    let phases = std::env::var("PHASES").unwrap_or_else(|_| "plain lean".into());
    let phases: Vec<&str> = phases.split([' ', ',']).collect();
    rt.block_on(async {
        if phases.contains(&"direct") {
            plain_phase(&h, &tc, calls, secs, Duration::ZERO, Floor::Direct).await;
        }
        if phases.contains(&"kernel") {
            plain_phase(&h, &tc, calls, secs, Duration::ZERO, Floor::Kernel).await;
        }
        if phases.contains(&"floor") {
            plain_phase(&h, &tc, calls, secs, Duration::ZERO, Floor::Pairs).await;
        }
        if phases.contains(&"floor_shared") {
            plain_phase(&h, &tc, calls, secs, Duration::ZERO, Floor::Shared).await;
        }
        if phases.contains(&"floor_uring") {
            plain_phase(&h, &tc, calls, secs, Duration::ZERO, Floor::Uring).await;
        }
        for &tick in ticks.iter().filter(|_| phases.contains(&"plain")) {
            plain_phase(&h, &tc, calls, secs, tick, Floor::No).await;
        }
        if phases.contains(&"shared") {
            plain_phase(&h, &tc, calls, secs, Duration::ZERO, Floor::HotlineShared).await;
        }
        for &tick in &ticks {
            if phases.contains(&"lean") {
                webrtc_phase(&h, &tc, calls, secs, tick, true, false).await;
            }
            if phases.contains(&"lean_shared") {
                webrtc_phase(&h, &tc, calls, secs, tick, true, true).await;
            }
            if phases.contains(&"full") {
                webrtc_phase(&h, &tc, calls, secs, tick, false, false).await;
            }
        }
    });
}
