//! RTP/RTCP port allocation from a configured range: even port for RTP, the next odd
//! one for RTCP (RFC 3550 §11). Pairs go back to the pool when the [`PortPair`] drops,
//! so a call that ends any way at all cannot leak ports.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;

use crate::error::{MediaError, Result};

#[derive(Debug)]
struct Pool {
    free: VecDeque<u16>,
    in_use: usize,
}

/// Hands out even/odd port pairs from `first..=last`. Cheap to clone (shared pool).
#[derive(Debug, Clone)]
pub struct PortAllocator {
    pool: Arc<Mutex<Pool>>,
    first: u16,
    last: u16,
}

impl PortAllocator {
    /// A pool over `first..=last`; an odd `first` is rounded up. Fails if no pair fits.
    pub fn new(first: u16, last: u16) -> Result<Self> {
        let start = first
            .checked_add(first % 2)
            .ok_or(MediaError::InvalidPortRange { first, last })?;
        if start == 0 || last <= start {
            return Err(MediaError::InvalidPortRange { first, last });
        }
        let mut free = VecDeque::new();
        let mut p = start;
        while p < last {
            free.push_back(p);
            match p.checked_add(2) {
                Some(n) => p = n,
                None => break,
            }
        }
        Ok(PortAllocator {
            pool: Arc::new(Mutex::new(Pool { free, in_use: 0 })),
            first,
            last,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        // A panic while holding this lock cannot leave the pool inconsistent (every
        // critical section is a single push/pop), so poisoning is safe to ignore.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the least recently used free pair.
    pub fn allocate(&self) -> Result<PortPair> {
        let mut pool = self.lock();
        let rtp = pool.free.pop_front().ok_or(MediaError::PortsExhausted {
            first: self.first,
            last: self.last,
        })?;
        pool.in_use += 1;
        Ok(PortPair {
            rtp,
            pool: Arc::clone(&self.pool),
        })
    }

    /// Pairs currently handed out (for metrics and leak tests).
    pub fn in_use(&self) -> usize {
        self.lock().in_use
    }

    /// Pairs currently free.
    pub fn available(&self) -> usize {
        self.lock().free.len()
    }

    /// Allocates a pair and binds UDP sockets on `ip`; pairs whose ports are taken by
    /// another process are skipped (and returned to the pool).
    pub async fn bind(&self, ip: IpAddr) -> Result<BoundPorts> {
        let attempts = self.available().max(1);
        let mut last_err = None;
        for _ in 0..attempts {
            let pair = self.allocate()?;
            let rtp = match RtpSocket::bind(SocketAddr::new(ip, pair.rtp())) {
                Ok(s) => s,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            match UdpSocket::bind(SocketAddr::new(ip, pair.rtcp())).await {
                Ok(rtcp) => return Ok(BoundPorts { rtp, rtcp, pair }),
                Err(e) => last_err = Some(e),
            }
        }
        Err(match last_err {
            Some(e) => MediaError::Io(e),
            None => MediaError::PortsExhausted {
                first: self.first,
                last: self.last,
            },
        })
    }
}

/// An allocated pair; returns itself to the pool on drop.
#[derive(Debug)]
pub struct PortPair {
    rtp: u16,
    pool: Arc<Mutex<Pool>>,
}

impl PortPair {
    /// The even RTP port.
    pub fn rtp(&self) -> u16 {
        self.rtp
    }
    /// The odd RTCP port.
    pub fn rtcp(&self) -> u16 {
        self.rtp + 1
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.in_use -= 1;
        // To the back: a just-freed port is reused last, so late packets of an old
        // call are unlikely to reach a new one.
        pool.free.push_back(self.rtp);
    }
}

/// Sockets bound on an allocated pair; the ports are released when this drops.
#[derive(Debug)]
pub struct BoundPorts {
    /// RTP socket (even port).
    pub rtp: RtpSocket,
    /// RTCP socket (odd port).
    pub rtcp: UdpSocket,
    /// Declared last so the sockets close before the ports go back to the pool.
    pub pair: PortPair,
}

/// A leg's RTP socket: a plain nonblocking socket, registered with tokio's reactor only
/// while a per-datagram session reads it. A registered socket makes every datagram wake
/// the reactor's thread; a tick-driven session reads it on its timer instead, so an
/// unregistered one costs no wake-up at all between ticks.
#[derive(Debug)]
pub struct RtpSocket {
    /// Declared first: deregistered before the socket closes.
    reg: Option<AsyncFd<Fd>>,
    sock: std::net::UdpSocket,
}

/// The socket's descriptor, borrowed by the registration (the socket owns it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Whether RTP sockets carry the kernel's receive time (`HOTLINE_MEDIA_RTP_WAIT=1`), so
/// each session logs how long its datagrams waited in the socket before being read: the
/// delay its reads add, comparable between per-datagram and tick mode. Off by default
/// (timestamping every datagram costs the kernel a little on every socket).
pub(crate) fn rtp_wait_measured() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("HOTLINE_MEDIA_RTP_WAIT").is_ok_and(|v| v.trim() == "1"))
}

impl RtpSocket {
    /// Binds a nonblocking, unregistered socket on `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let sock = std::net::UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        let sock = RtpSocket { reg: None, sock };
        if rtp_wait_measured() {
            sock.timestamp_arrivals()?;
        }
        Ok(sock)
    }

    /// Has the kernel stamp each datagram's arrival (`SO_TIMESTAMPNS`), for the wait
    /// measured by [`rtp_wait_measured`].
    pub(crate) fn timestamp_arrivals(&self) -> io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: the socket is open and `on` a live c_int of the size given.
        let r = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Registers the socket for read readiness with the current runtime's reactor (a
    /// per-datagram session), or deregisters it (`false`: a tick-driven session, or a
    /// leg between sessions). Registering must run inside a runtime (tokio panics
    /// otherwise; sessions call it from their task); on failure the socket stays
    /// unregistered and the error is returned.
    pub(crate) fn set_registered(&mut self, on: bool) -> io::Result<()> {
        match (on, self.reg.is_some()) {
            (true, false) => {
                let fd = Fd(self.sock.as_raw_fd());
                // SAFETY: `fd` is `self.sock`'s open descriptor; the socket is never
                // replaced, and `reg` is declared before it, so the registration is
                // dropped (deregistered) before the socket closes the descriptor.
                let reg = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
                self.reg = Some(reg.map_err(|e| e.into_parts().1)?);
            }
            (false, true) => self.reg = None,
            _ => {}
        }
        Ok(())
    }

    /// The reactor registration, if any (see [`RtpSocket::set_registered`]).
    pub(crate) fn registration(&self) -> Option<&AsyncFd<Fd>> {
        self.reg.as_ref()
    }

    /// Whether the socket is registered with a reactor.
    pub fn is_registered(&self) -> bool {
        self.reg.is_some()
    }
}

impl std::ops::Deref for RtpSocket {
    type Target = std::net::UdpSocket;
    fn deref(&self) -> &std::net::UdpSocket {
        &self.sock
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn hands_out_even_odd_pairs_and_exhausts() {
        let a = PortAllocator::new(30001, 30008).unwrap();
        // 30002, 30004, 30006 fit (30008 would need 30009).
        assert_eq!(a.available(), 3);
        let p: Vec<_> = (0..3).map(|_| a.allocate().unwrap()).collect();
        for pair in &p {
            assert_eq!(pair.rtp() % 2, 0);
            assert_eq!(pair.rtcp(), pair.rtp() + 1);
            assert!(pair.rtp() >= 30001 && pair.rtcp() <= 30008);
        }
        assert!(matches!(
            a.allocate(),
            Err(MediaError::PortsExhausted { .. })
        ));
        assert_eq!(a.in_use(), 3);
    }

    #[test]
    fn dropped_pairs_return_and_nothing_leaks() {
        let a = PortAllocator::new(31000, 31099).unwrap();
        let total = a.available();
        for _ in 0..10 {
            let held: Vec<_> = (0..total).map(|_| a.allocate().unwrap()).collect();
            assert_eq!(a.available(), 0);
            drop(held);
            assert_eq!(a.available(), total);
            assert_eq!(a.in_use(), 0);
        }
        // Freed ports go to the back of the queue.
        let first = a.allocate().unwrap().rtp();
        let second = a.allocate().unwrap();
        assert_ne!(first, second.rtp());
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        assert!(PortAllocator::new(100, 100).is_err());
        assert!(PortAllocator::new(101, 102).is_err());
        assert!(PortAllocator::new(0, 10).is_err());
        assert!(PortAllocator::new(65535, 65535).is_err());
        assert!(PortAllocator::new(65534, 65535).is_ok());
    }

    #[tokio::test]
    async fn bind_skips_taken_ports_and_releases_on_drop() {
        let a = PortAllocator::new(32100, 32109).unwrap();
        let squatter = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 32100)).unwrap();
        let b = a.bind(Ipv4Addr::LOCALHOST.into()).await.unwrap();
        assert_ne!(b.pair.rtp(), 32100);
        assert_eq!(b.rtp.local_addr().unwrap().port(), b.pair.rtp());
        assert_eq!(b.rtcp.local_addr().unwrap().port(), b.pair.rtp() + 1);
        assert_eq!(a.in_use(), 1);
        drop(b);
        assert_eq!(a.in_use(), 0);
        drop(squatter);
    }
}
