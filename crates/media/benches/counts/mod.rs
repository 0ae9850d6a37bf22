//! Load-independent counts of one thread over a stretch of a bench: its context switches
//! (voluntary ones are sleeps, i.e. wake-ups; from `/proc`) and, where the kernel lets
//! us open tracepoint counters (root or `perf_event_paranoid` ≤ 1, tracefs mounted), its
//! system calls by kind. CPU time on a shared machine moves with the load; these do not.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER0` (64 bytes), which every kernel
/// accepts; the `libc` crate does not define it.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// Bit 0 `disabled`, bit 5 `exclude_kernel`, ...: all clear (counting from open).
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `PERF_EVENT_IOC_SET_FILTER`, `_IOW('$', 6, char *)`.
const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;

/// What is counted: a name for the output, the tracepoint and an optional filter.
const EVENTS: &[(&str, &str, Option<&str>)] = &[
    ("syscalls", "raw_syscalls/sys_enter", None),
    ("epoll_wait", "syscalls/sys_enter_epoll_wait", None),
    // A wait that returned nothing: its timeout (a timer) ended it.
    (
        "epoll_timed_out",
        "syscalls/sys_exit_epoll_wait",
        Some("ret == 0"),
    ),
    ("recvmmsg", "syscalls/sys_enter_recvmmsg", None),
    (
        "recvmmsg_empty",
        "syscalls/sys_exit_recvmmsg",
        Some("ret < 0"),
    ),
    ("recvfrom", "syscalls/sys_enter_recvfrom", None),
    (
        "recvfrom_empty",
        "syscalls/sys_exit_recvfrom",
        Some("ret < 0"),
    ),
    ("sendto", "syscalls/sys_enter_sendto", None),
    ("sendmmsg", "syscalls/sys_enter_sendmmsg", None),
    // tokio's own wake-up of its driver (an eventfd), e.g. a timer set earlier than the
    // driver's next wake-up.
    ("write", "syscalls/sys_enter_write", None),
];

fn tracepoint_id(path: &str) -> Option<u64> {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .find_map(|root| std::fs::read_to_string(format!("{root}/{path}/id")).ok())
    .and_then(|s| s.trim().parse().ok())
}

fn open_counter(tid: i32, path: &str, filter: Option<&str>) -> Option<OwnedFd> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: tracepoint_id(path)?,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it claims; the kernel only
    // reads it. The returned descriptor, if any, is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid,
            -1i32,
            -1i32,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor from perf_event_open, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if let Some(f) = filter {
        let c = std::ffi::CString::new(f).ok()?;
        // SAFETY: `c` is a NUL-terminated string alive for the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_FILTER, c.as_ptr()) } != 0 {
            return None;
        }
    }
    Some(fd)
}

fn read_counter(fd: &OwnedFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if n == 8 { v } else { 0 }
}

/// Counters opened on one thread.
pub struct ThreadCounts {
    tid: i32,
    events: Vec<(&'static str, OwnedFd)>,
}

/// The counts at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    voluntary: u64,
    involuntary: u64,
    events: Vec<(&'static str, u64)>,
}

impl ThreadCounts {
    /// Opens what can be opened on thread `tid` (context switches are always read).
    pub fn open(tid: i32) -> ThreadCounts {
        let events = EVENTS
            .iter()
            .filter_map(|(name, path, filter)| Some((*name, open_counter(tid, path, *filter)?)))
            .collect();
        ThreadCounts { tid, events }
    }

    pub fn snapshot(&self) -> Snapshot {
        let status = std::fs::read_to_string(format!("/proc/self/task/{}/status", self.tid))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Snapshot {
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
            events: self
                .events
                .iter()
                .map(|(n, fd)| (*n, read_counter(fd)))
                .collect(),
        }
    }
}

impl Snapshot {
    /// What happened between `self` and the later `after`, per packet, as a JSON object:
    /// `wakeups` (voluntary context switches: the thread slept and was woken),
    /// `preempted` (involuntary ones) and each system call counter.
    pub fn per_packet_json(&self, after: &Snapshot, packets: u64) -> String {
        let p = packets.max(1) as f64;
        let mut fields = vec![
            format!(
                "\"wakeups\":{:.3}",
                after.voluntary.saturating_sub(self.voluntary) as f64 / p
            ),
            format!(
                "\"preempted\":{:.3}",
                after.involuntary.saturating_sub(self.involuntary) as f64 / p
            ),
        ];
        for ((name, a), (_, b)) in self.events.iter().zip(&after.events) {
            fields.push(format!("\"{name}\":{:.3}", b.saturating_sub(*a) as f64 / p));
        }
        format!("{{{}}}", fields.join(","))
    }
}
