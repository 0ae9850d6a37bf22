//! The in-kernel relay: a tc (TCX) ingress program (`bpf/relay.bpf.c`) on the
//! interfaces media arrives on forwards a bridged call's audio from one leg's peer to
//! the other's without the packet reaching Hotline, so a call costs a few hundred
//! nanoseconds of softirq per packet instead of two system calls and a wake-up.
//!
//! Hotline stays in charge: it hands the kernel one [`Flow`] per direction once both
//! legs are latched, with the rewrite its user-space relay would do ([`Forward`]), and
//! takes it back ([`KernelRelay::withdraw`], with what was forwarded) before anything
//! changes: hold, a new source, the end of the call. Any packet the kernel does not
//! match (another SSRC or payload type, DTMF events, RTCP, IPv6) reaches the leg's
//! socket as before. A recorded call's audio is copied by the kernel into a ring buffer
//! that one task empties into the calls' recorders every 20 ms ([`KernelRelay::tap`]).
//!
//! Needs CAP_BPF and CAP_NET_ADMIN (root) and a build with clang (see `build.rs`).

use std::collections::HashSet;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::Ebpf;
use aya::maps::{HashMap, MapData, MapError, RingBuf};
use aya::programs::{SchedClassifier, TcAttachType, tc};

use crate::error::{MediaError, Result};
use crate::g711::Law;
use crate::recorder::{Channel, RecorderTap};

/// The BPF object `build.rs` made (empty when clang was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/relay.bpf.o"));

/// `struct flow_key` in `bpf/relay.bpf.c`: addresses, ports and SSRC in network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FlowKey {
    local_ip: u32,
    remote_ip: u32,
    local_port: u16,
    remote_port: u16,
    ssrc: u32,
}

/// `struct flow_action` in `bpf/relay.bpf.c`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FlowAction {
    src_ip: u32,
    dst_ip: u32,
    src_port: u16,
    dst_port: u16,
    ssrc: u32,
    ts_offset: u32,
    seq_offset: u16,
    in_pt: u8,
    out_pt: u8,
    packets: u64,
    bytes: u64,
    last_ns: u64,
    last_ts: u32,
    last_seq: u16,
    pad: u16,
    tag: u32,
    tap_dropped: u32,
}

/// The most audio one tap record holds (`MAX_TAP` in `bpf/relay.bpf.c`).
const MAX_TAP: usize = 320;

/// The header of `struct tap_record` in `bpf/relay.bpf.c` (a recorded call's audio from
/// the kernel), followed by up to [`MAX_TAP`] bytes of payload.
#[repr(C)]
#[derive(Clone, Copy)]
struct TapHead {
    ns: u64,
    tag: u32,
    len: u16,
    pad: u16,
}

// SAFETY: both are plain `repr(C)` integers with no padding the kernel could leave
// uninitialised (checked by the size test below) and valid for any bit pattern.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowAction {}

fn ip(a: &SocketAddrV4) -> u32 {
    u32::from_ne_bytes(a.ip().octets())
}

fn port(a: &SocketAddrV4) -> u16 {
    a.port().to_be()
}

/// One direction of a bridged call: audio that arrives on our address `local` from the
/// peer `remote` with SSRC `ssrc` (the leg's latched source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Our leg's RTP address (as the peer sends to it).
    pub local: SocketAddrV4,
    /// The peer's latched RTP address.
    pub remote: SocketAddrV4,
    /// The peer's SSRC.
    pub ssrc: u32,
}

impl Flow {
    fn key(&self) -> FlowKey {
        FlowKey {
            local_ip: ip(&self.local),
            remote_ip: ip(&self.remote),
            local_port: port(&self.local),
            remote_port: port(&self.remote),
            ssrc: self.ssrc.to_be(),
        }
    }
}

/// What a [`Flow`]'s packets become: the user-space relay's rewrite, frozen while the
/// source does not change (see `leg::OutboundStream::map_relayed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// The other leg's RTP address (the source the other peer latched on).
    pub from: SocketAddrV4,
    /// The other leg's peer.
    pub to: SocketAddrV4,
    /// Our SSRC towards that peer.
    pub ssrc: u32,
    /// Added to each packet's sequence number.
    pub seq_offset: u16,
    /// Added to each packet's timestamp.
    pub ts_offset: u32,
    /// The audio payload type the flow's packets carry; others go to Hotline.
    pub in_pt: u8,
    /// The payload type the other peer expects for it.
    pub out_pt: u8,
    /// Non-zero: the call is recorded, and a copy of each packet's audio goes to the
    /// recorder registered with [`KernelRelay::tap`] under this tag.
    pub tag: u32,
}

/// What the kernel forwarded for a flow since it was handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowStats {
    /// Packets forwarded.
    pub packets: u64,
    /// RTP bytes (header and payload) forwarded.
    pub bytes: u64,
    /// When the last one was (None before the first).
    pub last_packet: Option<Instant>,
    /// The last one's sequence number as sent.
    pub last_seq: u16,
    /// The last one's timestamp as sent.
    pub last_ts: u32,
    /// Copies for the recorder lost because the kernel's tap buffer was full.
    pub tap_dropped: u32,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `Instant` of a kernel time stamp (bpf_ktime_get_ns is CLOCK_MONOTONIC, the clock
/// `Instant` reads).
fn instant_of(ns: u64) -> Instant {
    let ago = monotonic_ns().saturating_sub(ns);
    let now = Instant::now();
    now.checked_sub(Duration::from_nanos(ago)).unwrap_or(now)
}

impl FlowStats {
    fn from_action(a: &FlowAction) -> FlowStats {
        FlowStats {
            packets: a.packets,
            bytes: a.bytes,
            last_packet: (a.packets > 0).then(|| instant_of(a.last_ns)),
            last_seq: a.last_seq,
            last_ts: a.last_ts,
            tap_dropped: a.tap_dropped,
        }
    }
}

fn failed(what: &'static str, e: impl std::error::Error) -> MediaError {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    MediaError::KernelRelay { what, reason }
}

/// Refuses an interface that does not route: `bpf_fib_lookup` answers only for packets
/// from one with IPv4 forwarding on (else every packet would go to user space).
/// Loopback needs no lookup.
fn forwarding(name: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(_) => Err(MediaError::KernelRelay {
            what: "attach",
            reason: format!(
                "net.ipv4.conf.{name}.forwarding is off: the kernel forwards only from an interface that routes \
                 (sysctl -w net.ipv4.conf.{name}.forwarding=1; keep the firewall's FORWARD policy at DROP)"
            ),
        }),
        Err(e) => Err(MediaError::KernelRelay {
            what: "attach",
            reason: format!("no interface {name} ({path}: {e})"),
        }),
    }
}

/// The loaded program, attached to some interfaces, and its flow table. Dropping it
/// detaches the program (TCX links belong to this process: nothing is left behind if
/// it dies).
pub struct KernelRelay {
    table: Mutex<Table>,
    /// The kernel's copies of recorded calls' audio, and whose recorder each tag is.
    taps: Mutex<Taps>,
    next_tag: AtomicU32,
    /// Whether the task that reads `taps` every 20 ms runs.
    reading: AtomicBool,
    /// Packets forwarded by flows since taken back (see [`KernelRelayStats`]).
    forwarded: AtomicU64,
    _bpf: Ebpf,
}

/// The ring the kernel writes recorded calls' audio to, and the recorders by tag.
struct Taps {
    ring: RingBuf<MapData>,
    by_tag: std::collections::HashMap<u32, Tap>,
}

/// Where a tag's audio goes.
struct Tap {
    recorder: RecorderTap,
    channel: Channel,
    law: Law,
}

/// The kernel's flow table and which flows Hotline has put there.
struct Table {
    map: HashMap<MapData, FlowKey, FlowAction>,
    flows: HashSet<Flow>,
}

/// The relay's totals, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelRelayStats {
    /// Directions the kernel forwards now.
    pub flows: usize,
    /// Packets the kernel forwarded for directions since taken back (a call's count is
    /// added when its flows end or change).
    pub forwarded: u64,
}

impl std::fmt::Debug for KernelRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelRelay").finish_non_exhaustive()
    }
}

impl KernelRelay {
    /// Whether this build has the BPF object (clang was there at build time).
    pub fn built() -> bool {
        !OBJECT.is_empty()
    }

    /// Loads the program and attaches it to the ingress of each named interface (the
    /// ones media arrives on; `lo` for peers on this host).
    pub fn attach(interfaces: &[&str]) -> Result<KernelRelay> {
        if !Self::built() {
            return Err(MediaError::KernelRelay {
                what: "load",
                reason: "this build has no BPF object (clang was missing when it was built)".into(),
            });
        }
        for name in interfaces.iter().filter(|n| **n != "lo") {
            forwarding(name)?;
        }
        let mut bpf = Ebpf::load(OBJECT).map_err(|e| failed("load", e))?;
        let prog: &mut SchedClassifier = bpf
            .program_mut("relay")
            .ok_or(MediaError::KernelRelay {
                what: "load",
                reason: "no program named relay in the object".into(),
            })?
            .try_into()
            .map_err(|e| failed("load", e))?;
        prog.load().map_err(|e| failed("verify", e))?;
        for name in interfaces {
            if prog.attach(name, TcAttachType::Ingress).is_err() {
                // Kernels before 6.6 have no TCX: the netlink way needs a clsact qdisc.
                let _ = tc::qdisc_add_clsact(name);
                prog.attach(name, TcAttachType::Ingress)
                    .map_err(|e| failed("attach", e))?;
            }
        }
        let map = bpf.take_map("FLOWS").ok_or(MediaError::KernelRelay {
            what: "load",
            reason: "no map named FLOWS in the object".into(),
        })?;
        let map = HashMap::try_from(map).map_err(|e| failed("load", e))?;
        let ring = bpf.take_map("TAPS").ok_or(MediaError::KernelRelay {
            what: "load",
            reason: "no map named TAPS in the object".into(),
        })?;
        let ring = RingBuf::try_from(ring).map_err(|e| failed("load", e))?;
        Ok(KernelRelay {
            table: Mutex::new(Table {
                map,
                flows: HashSet::new(),
            }),
            taps: Mutex::new(Taps {
                ring,
                by_tag: std::collections::HashMap::new(),
            }),
            next_tag: AtomicU32::new(1),
            reading: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            _bpf: bpf,
        })
    }

    /// Hands one direction to the kernel (replacing what it had for that flow).
    pub fn offload(&self, flow: Flow, fwd: Forward) -> Result<()> {
        let action = FlowAction {
            src_ip: ip(&fwd.from),
            dst_ip: ip(&fwd.to),
            src_port: port(&fwd.from),
            dst_port: port(&fwd.to),
            ssrc: fwd.ssrc.to_be(),
            ts_offset: fwd.ts_offset,
            seq_offset: fwd.seq_offset,
            in_pt: fwd.in_pt,
            out_pt: fwd.out_pt,
            tag: fwd.tag,
            ..FlowAction::default()
        };
        let mut t = self.table();
        t.map
            .insert(flow.key(), action, 0)
            .map_err(|e| failed("offload", e))?;
        t.flows.insert(flow);
        Ok(())
    }

    /// Totals (see [`KernelRelayStats`]).
    pub fn totals(&self) -> KernelRelayStats {
        KernelRelayStats {
            flows: self.table().flows.len(),
            forwarded: self.forwarded.load(Ordering::Relaxed),
        }
    }

    /// What the kernel forwarded for `flow` so far (None if it does not have it).
    pub fn stats(&self, flow: &Flow) -> Result<Option<FlowStats>> {
        match self.table().map.get(&flow.key(), 0) {
            Ok(a) => Ok(Some(FlowStats::from_action(&a))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(failed("read", e)),
        }
    }

    /// Takes `flow` back: its packets reach the leg's socket again. Returns what the
    /// kernel forwarded (None if it did not have the flow).
    pub fn withdraw(&self, flow: &Flow) -> Result<Option<FlowStats>> {
        let mut t = self.table();
        let key = flow.key();
        let stats = match t.map.get(&key, 0) {
            Ok(a) => FlowStats::from_action(&a),
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(e) => return Err(failed("read", e)),
        };
        match t.map.remove(&key) {
            Ok(()) | Err(MapError::KeyNotFound) => {
                t.flows.remove(flow);
                self.forwarded.fetch_add(stats.packets, Ordering::Relaxed);
                Ok(Some(stats))
            }
            Err(e) => Err(failed("withdraw", e)),
        }
    }

    /// A tag for [`Forward::tag`], unique in this process (never 0).
    pub fn new_tag(&self) -> u32 {
        loop {
            let t = self.next_tag.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }

    /// Sends the kernel's copies of the audio tagged `tag` to `recorder` (as `channel`,
    /// in `law`) from now on. Starts the reader (a task of the current tokio runtime
    /// that empties the kernel's buffer every 20 ms) if it is not running.
    pub fn tap(self: &Arc<Self>, tag: u32, recorder: RecorderTap, channel: Channel, law: Law) {
        self.taps().by_tag.insert(
            tag,
            Tap {
                recorder,
                channel,
                law,
            },
        );
        if !self.reading.swap(true, Ordering::AcqRel) {
            let relay = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(r) = relay.upgrade() else { return };
                    r.read_taps();
                }
            });
        }
    }

    /// Stops sending `tag`'s audio to its recorder, after handing it what the kernel
    /// has already copied (so a recording loses nothing when its call's direction is
    /// taken back).
    pub fn untap(&self, tag: u32) {
        self.read_taps();
        self.taps().by_tag.remove(&tag);
    }

    /// Hands every copy waiting in the kernel's buffer to its recorder.
    fn read_taps(&self) {
        let mut t = self.taps();
        let Taps { ring, by_tag } = &mut *t;
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<TapHead>() {
                continue;
            }
            // SAFETY: the kernel wrote a `struct tap_record` (checked long enough for
            // its header above); read unaligned, it is plain integers and bytes.
            let head = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<TapHead>()) };
            let len = (head.len as usize).min(MAX_TAP);
            let start = std::mem::size_of::<TapHead>();
            let Some(payload) = item.get(start..start + len) else {
                continue;
            };
            if let Some(tap) = by_tag.get(&head.tag) {
                tap.recorder
                    .push(tap.channel, tap.law, payload, instant_of(head.ns));
            }
        }
    }

    fn taps(&self) -> std::sync::MutexGuard<'_, Taps> {
        self.taps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_match_the_programs_structs() {
        // struct flow_key and struct flow_action in bpf/relay.bpf.c, with no padding.
        assert_eq!(std::mem::size_of::<FlowKey>(), 16);
        assert_eq!(std::mem::size_of::<FlowAction>(), 64);
        assert_eq!(std::mem::offset_of!(FlowAction, tag), 56);
        assert_eq!(std::mem::size_of::<TapHead>(), 16);
        assert_eq!(std::mem::offset_of!(FlowAction, packets), 24);
        assert_eq!(std::mem::offset_of!(FlowAction, last_seq), 52);
    }

    #[test]
    fn keys_are_in_network_order() {
        let f = Flow {
            local: "127.0.0.1:4000".parse().unwrap(),
            remote: "10.1.2.3:5004".parse().unwrap(),
            ssrc: 0x0102_0304,
        };
        let k = f.key();
        assert_eq!(k.local_ip.to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(k.remote_ip.to_ne_bytes(), [10, 1, 2, 3]);
        assert_eq!(k.local_port.to_ne_bytes(), 4000u16.to_be_bytes());
        assert_eq!(k.ssrc.to_ne_bytes(), [1, 2, 3, 4]);
    }
}
