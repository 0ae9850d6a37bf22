//! A media port many legs share. With a socket per leg, every datagram costs the kernel
//! a wake-up and a read of its own, on a socket cold in the cache; with one socket, one
//! reader task takes up to 64 datagrams per `recvmmsg` and hands each to its leg's
//! inbox by the sender's address, and sessions send on the same socket. In
//! `webrtc_bridge` this takes about a third off the cost of moving a datagram
//! (phases `floor` and `floor_shared`, `SHARED_DISPATCH=2`).
//!
//! The price: a leg is known only by its remote RTP address from SDP, so a phone whose
//! media comes from another address (behind NAT) is not heard on it, and two legs with
//! one remote address cannot both be here. Such legs keep ports of their own
//! ([`SharedPort::bind_leg`] refuses the second). RTCP stays on a port of the leg's own
//! (a few packets a minute), which SDP must then name (`a=rtcp`, RFC 3605).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;

use crate::error::{MediaError, Result};
use crate::leg::MAX_PACKET;
use crate::ports::{BoundPorts, Fd, PortAllocator, RtpSocket};

/// Datagrams read per `recvmmsg`.
const BATCH: usize = 64;
/// Datagrams an inbox holds for a session that has not read them; more are dropped
/// (counted), as a full socket buffer would.
const INBOX_CAP: usize = 256;

/// One shared RTP socket and the reader that sorts its datagrams out to legs. Dropping
/// it stops the reader; legs already bound keep sending on the socket until they go.
#[derive(Debug)]
pub struct SharedPort {
    inner: Arc<Inner>,
    reader: JoinHandle<()>,
    /// Phones (by signalling address) whose media did not fit here (see
    /// [`SharedPort::note_misfit`]).
    misfits: Mutex<HashSet<SocketAddr>>,
}

#[derive(Debug)]
struct Inner {
    sock: std::net::UdpSocket,
    /// What the legs' sessions send, sent by the reader with `sendmmsg`: after the turn
    /// in which it woke them (so one system call carries many calls' datagrams), or when
    /// told (`flush`) by a session that sent on its own (music, a timer).
    out: Mutex<OutQueue>,
    flush: tokio::sync::Notify,
    routes: Mutex<HashMap<SocketAddr, Arc<Inbox>>>,
    /// Legs here per phone (by signalling address), for those reserved for one.
    devices: Mutex<HashSet<SocketAddr>>,
    /// Browser legs by our ICE username fragment: a connectivity check (STUN) naming one
    /// routes its sender's address to the leg (see [`RtpSocket::route_ice`]).
    ufrags: Mutex<HashMap<String, Arc<Inbox>>>,
    /// Datagrams handed to legs.
    routed: AtomicU64,
    /// Datagrams from addresses no leg has.
    unknown: AtomicU64,
    /// Datagrams dropped because their leg's inbox was full.
    overflow: AtomicU64,
    /// RTP dropped for carrying a second stream from one address (see [`StreamGuard`]).
    crossed: AtomicU64,
}

/// What a shared port has seen (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPortStats {
    /// Legs bound now.
    pub legs: usize,
    /// Datagrams handed to legs.
    pub routed: u64,
    /// Datagrams from addresses no leg has, dropped.
    pub unknown: u64,
    /// Datagrams dropped because their leg had not read its inbox.
    pub overflow: u64,
    /// RTP dropped because its address was already sending another stream (SSRC) to the
    /// leg: a peer sending several calls' media from one address (see [`StreamGuard`]).
    pub crossed: u64,
}

impl Inner {
    fn routes(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Inbox>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ufrags(&self) -> MutexGuard<'_, HashMap<String, Arc<Inbox>>> {
        self.ufrags.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn devices(&self) -> MutexGuard<'_, HashSet<SocketAddr>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn out(&self) -> MutexGuard<'_, OutQueue> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends everything queued, 64 datagrams per `sendmmsg`. `spare` is the empty queue
    /// swapped in, so sessions queue again while this one is sent.
    fn flush(&self, spare: &mut OutQueue) {
        std::mem::swap(spare, &mut *self.out());
        let fd = self.sock.as_raw_fd();
        for chunk in spare.items.chunks(BATCH) {
            // SAFETY: all-zero bytes are valid iovecs and mmsghdrs; set below.
            let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (k, (at, len, name)) in chunk.iter().enumerate() {
                let (at, len) = (*at, *len);
                iov[k].iov_base = spare.data[at..].as_ptr() as *mut libc::c_void;
                iov[k].iov_len = len;
                let h = &mut hdrs[k].msg_hdr;
                h.msg_name = name.as_ptr().cast_mut().cast();
                h.msg_namelen = name.len();
                h.msg_iov = &mut iov[k];
                h.msg_iovlen = 1;
            }
            let mut sent = 0;
            while sent < chunk.len() {
                // SAFETY: the headers point into `spare` and `iov`, alive for the call
                // with their true lengths; the kernel only reads them.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        hdrs[sent..].as_mut_ptr(),
                        (chunk.len() - sent) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                // One that fails (a full buffer, an unreachable address) is dropped, as
                // a network would; the rest still go.
                sent += if r > 0 { r as usize } else { 1 };
            }
        }
        spare.clear();
    }
}

/// Datagrams queued for the reader to send: their bytes back to back, and where each is
/// (its offset, length and destination, already in the form `sendmmsg` takes). Both
/// vectors keep their room between flushes, so queueing allocates nothing once warm.
#[derive(Debug, Default)]
struct OutQueue {
    data: Vec<u8>,
    items: Vec<(usize, usize, socket2::SockAddr)>,
}

impl OutQueue {
    /// Most datagrams held for the reader (≈ 24 MB at most); more are dropped (a reader
    /// that stopped, at runtime shutdown).
    const CAP: usize = 16_384;

    fn push(&mut self, d: &[u8], dest: SocketAddr) {
        if self.items.len() < Self::CAP {
            self.items.push((self.data.len(), d.len(), dest.into()));
            self.data.extend_from_slice(d);
        }
    }

    fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }
}

impl SharedPort {
    /// Binds the shared socket on `addr` and starts its reader on the current runtime.
    pub async fn bind(addr: SocketAddr) -> Result<SharedPort> {
        let sock = std::net::UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        size_receive_buffer(&sock);
        let inner = Arc::new(Inner {
            sock,
            routes: Mutex::new(HashMap::new()),
            devices: Mutex::new(HashSet::new()),
            ufrags: Mutex::new(HashMap::new()),
            out: Mutex::new(OutQueue::default()),
            flush: tokio::sync::Notify::new(),
            routed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
            crossed: AtomicU64::new(0),
        });
        let fd = Fd(inner.sock.as_raw_fd());
        // SAFETY: `fd` is the socket's open descriptor; the reader task owns both the
        // registration and a reference to the socket, and drops the registration first.
        let reg = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let reader = tokio::spawn(read(Arc::clone(&inner), reg));
        Ok(SharedPort {
            inner,
            reader,
            misfits: Mutex::new(HashSet::new()),
        })
    }

    /// Remembers that a phone, known by the address its signalling comes from, answered
    /// with a media address this port cannot take (behind NAT, or one another leg has),
    /// so later offers to it go straight to a port pair instead of being moved there.
    pub fn note_misfit(&self, device: SocketAddr) {
        let mut m = self.misfits.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: forgetting only costs a phone one more move.
        if m.len() >= 4096 {
            m.clear();
        }
        m.insert(device);
    }

    /// Whether [`SharedPort::note_misfit`] has named this phone.
    pub fn is_misfit(&self, device: SocketAddr) -> bool {
        let m = self.misfits.lock().unwrap_or_else(|e| e.into_inner());
        m.contains(&device)
    }

    /// The shared socket's address (the port every leg here puts in its SDP).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.sock.local_addr()
    }

    /// Ports for a leg whose phone sends its RTP from `remote`: RTP on this shared port,
    /// RTCP on the odd port of a pair from `ports` (bound on `ip`). Fails with
    /// [`MediaError::SharedAddressTaken`] when another leg here has that remote address,
    /// and leaves nothing behind.
    pub async fn bind_leg(
        &self,
        remote: SocketAddr,
        ports: &PortAllocator,
        ip: IpAddr,
    ) -> Result<BoundPorts> {
        let mut b = self.reserve_leg(ports, ip, None).await?;
        b.rtp.route(remote)?;
        Ok(b)
    }

    /// Ports for a leg whose remote address is not known yet (our offer to a phone):
    /// RTP on this shared port, RTCP on a pair's odd port. It hears nothing until
    /// [`RtpSocket::route`] names the address its answer gives. With `device` (the
    /// phone's signalling address), one leg per phone at a time: a phone that answers
    /// several calls at once may give one media address for all (SIPp's echo does), so
    /// a second is refused ([`MediaError::SharedAddressTaken`]) and takes a pair.
    pub async fn reserve_leg(
        &self,
        ports: &PortAllocator,
        ip: IpAddr,
        device: Option<SocketAddr>,
    ) -> Result<BoundPorts> {
        if let Some(d) = device
            && !self.inner.devices().insert(d)
        {
            return Err(MediaError::SharedAddressTaken(d));
        }
        let leg = SharedLeg {
            port: Arc::clone(&self.inner),
            remote: None,
            device,
            ufrag: None,
            inbox: Arc::new(Inbox::default()),
        };
        // The device's place goes again if anything below fails (`leg` drops).
        let sock = self.inner.sock.try_clone()?;
        let (rtcp, pair) = ports.bind_rtcp(ip).await?;
        Ok(BoundPorts {
            rtp: RtpSocket::shared(sock, leg),
            rtcp,
            pair,
        })
    }

    /// What the port has seen so far.
    pub fn stats(&self) -> SharedPortStats {
        SharedPortStats {
            legs: self.inner.routes().len(),
            routed: self.inner.routed.load(Ordering::Relaxed),
            unknown: self.inner.unknown.load(Ordering::Relaxed),
            overflow: self.inner.overflow.load(Ordering::Relaxed),
            crossed: self.inner.crossed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for SharedPort {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A leg's place on a shared port: its route (removed when this drops) and its inbox.
#[derive(Debug)]
pub(crate) struct SharedLeg {
    port: Arc<Inner>,
    /// The address the leg hears (none yet: an offer not answered).
    remote: Option<SocketAddr>,
    /// The phone it was reserved for ([`SharedPort::reserve_leg`]).
    device: Option<SocketAddr>,
    /// A browser leg's ICE username fragment ([`SharedLeg::route_ice`]): its routes are
    /// the addresses its connectivity checks came from.
    ufrag: Option<String>,
    inbox: Arc<Inbox>,
}

impl SharedLeg {
    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// Queues datagrams for the reader to send on the shared socket with other calls'
    /// (`each` hands over every datagram and its destination), and makes sure it will;
    /// the reader is told only when something was queued.
    pub(crate) fn send(&self, each: impl FnOnce(&mut dyn FnMut(&[u8], SocketAddr))) {
        let mut queued = false;
        {
            let mut out = self.port.out();
            each(&mut |d, dest| {
                out.push(d, dest);
                queued = true;
            });
        }
        if queued {
            self.port.flush.notify_one();
        }
    }

    /// Routes datagrams from `remote` to this leg from now on (an answer's or a
    /// re-INVITE's SDP), instead of any address before. `false`, and the old route
    /// kept, when another leg has that address.
    pub(crate) fn reroute(&mut self, remote: SocketAddr) -> bool {
        if self.remote == Some(remote) {
            return true;
        }
        let mut routes = self.port.routes();
        if routes.contains_key(&remote) {
            return false;
        }
        if let Some(old) = self.remote {
            remove_own(&mut routes, old, &self.inbox);
        }
        routes.insert(remote, Arc::clone(&self.inbox));
        self.remote = Some(remote);
        true
    }

    /// Makes this a browser leg known by our ICE username fragment: each address a
    /// connectivity check naming it comes from is routed here (a browser's media comes
    /// from whichever candidate ICE picks, not from an address SDP gives). A new
    /// fragment (ICE restart) replaces the old; addresses already routed stay. `false`
    /// when another leg has the fragment.
    pub(crate) fn route_ice(&mut self, ufrag: &str) -> bool {
        let mut ufrags = self.port.ufrags();
        match ufrags.get(ufrag) {
            Some(i) if Arc::ptr_eq(i, &self.inbox) => return true,
            Some(_) => return false,
            None => {}
        }
        if let Some(old) = self.ufrag.take()
            && ufrags
                .get(&old)
                .is_some_and(|i| Arc::ptr_eq(i, &self.inbox))
        {
            ufrags.remove(&old);
        }
        ufrags.insert(ufrag.to_owned(), Arc::clone(&self.inbox));
        self.ufrag = Some(ufrag.to_owned());
        true
    }
}

/// Removes the route of `remote` if it is still `inbox`'s.
fn remove_own(
    routes: &mut HashMap<SocketAddr, Arc<Inbox>>,
    remote: SocketAddr,
    inbox: &Arc<Inbox>,
) {
    if routes.get(&remote).is_some_and(|i| Arc::ptr_eq(i, inbox)) {
        routes.remove(&remote);
    }
}

impl Drop for SharedLeg {
    fn drop(&mut self) {
        if let Some(old) = self.remote {
            remove_own(&mut self.port.routes(), old, &self.inbox);
        }
        if let Some(d) = self.device {
            self.port.devices().remove(&d);
        }
        if let Some(u) = self.ufrag.take() {
            {
                let mut ufrags = self.port.ufrags();
                if ufrags.get(&u).is_some_and(|i| Arc::ptr_eq(i, &self.inbox)) {
                    ufrags.remove(&u);
                }
            }
            // Its routes are wherever its checks came from: one pass over the table,
            // only for a browser leg that was heard.
            if self.inbox.ice_routes.load(Ordering::Relaxed) > 0 {
                self.port
                    .routes()
                    .retain(|_, i| !Arc::ptr_eq(i, &self.inbox));
            }
        }
    }
}

/// What became of a datagram handed to an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Queued,
    /// The inbox was full.
    Full,
    /// A second stream from the leg's address (see [`StreamGuard`]).
    Crossed,
}

/// Datagrams for one leg, waiting for its session, and the session's waker.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    q: Mutex<Queue>,
    /// Addresses routed here by connectivity checks (a browser leg's), at most
    /// [`MAX_ICE_ROUTES`]: checks from anywhere naming the fragment cannot grow the
    /// table without bound.
    ice_routes: AtomicUsize,
}

/// Addresses a browser leg may be heard from (its candidates, a restart's new ones).
const MAX_ICE_ROUTES: usize = 16;

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(Bytes, SocketAddr)>,
    waker: Option<Waker>,
    guard: StreamGuard,
}

/// One RTP stream at a time per leg. A per-leg socket hears only what is sent to its
/// port; on the shared port a leg hears whatever its address sends, so a peer that sends
/// several calls' media from one address (not symmetric RTP) would mix them into one
/// call. A second SSRC is taken only once the current one has been silent for
/// [`StreamGuard::SWITCH_AFTER`] (a phone restarting its stream, a transfer behind an
/// SBC); until then its packets are dropped and counted.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StreamGuard {
    current: Option<(u32, Instant)>,
}

impl StreamGuard {
    /// How long the current stream must be silent before another SSRC replaces it.
    pub(crate) const SWITCH_AFTER: Duration = Duration::from_millis(500);

    /// Whether a datagram may go to the leg: anything that is not RTP (the session
    /// judges it), the current stream, or a new one once the current is silent.
    pub(crate) fn admit(&mut self, d: &[u8], now: Instant) -> bool {
        let Some(ssrc) = rtp_ssrc(d) else {
            return true;
        };
        match self.current {
            Some((s, last))
                if s != ssrc && now.saturating_duration_since(last) < Self::SWITCH_AFTER =>
            {
                false
            }
            _ => {
                self.current = Some((ssrc, now));
                true
            }
        }
    }
}

/// The SSRC of an RTP packet (version 2, and not RTCP muxed on the port).
fn rtp_ssrc(d: &[u8]) -> Option<u32> {
    // RTCP's packet types 200–204 fill the whole second byte (RFC 5761 §4).
    if d.len() < 12 || d[0] >> 6 != 2 || (200..=204).contains(&d[1]) {
        return None;
    }
    Some(u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a datagram, or says why not. Wakes the session.
    fn push(&self, d: Bytes, src: SocketAddr, now: Instant) -> Push {
        let waker = {
            let mut q = self.lock();
            if !q.guard.admit(&d, now) {
                return Push::Crossed;
            }
            if q.items.len() >= INBOX_CAP {
                return Push::Full;
            }
            q.items.push_back((d, src));
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Push::Queued
    }

    /// Whether datagrams wait; if none, the session is woken by the next one.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> bool {
        let mut q = self.lock();
        if !q.items.is_empty() {
            return true;
        }
        match &q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.waker = Some(cx.waker().clone()),
        }
        false
    }

    /// Hands up to `max` waiting datagrams to `f`, oldest first; `true` if more wait.
    pub(crate) fn take(&self, max: usize, mut f: impl FnMut(&[u8], SocketAddr)) -> bool {
        let mut q = self.lock();
        for _ in 0..max {
            let Some((d, src)) = q.items.pop_front() else {
                return false;
            };
            f(&d, src);
        }
        !q.items.is_empty()
    }
}

/// The reader: a batch of datagrams per wake-up, each to its leg's inbox.
async fn read(inner: Arc<Inner>, reg: AsyncFd<Fd>) {
    let mut from: Vec<libc::sockaddr_storage> =
        // SAFETY: all-zero bytes are a valid `sockaddr_storage` (family AF_UNSPEC).
        vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut lens = [0usize; BATCH];
    // Read into one reusable buffer; each batch's datagrams are then copied into one
    // allocation of their own size, which the inboxes' slices share (a stalled leg pins
    // its batches' few kilobytes, not a 96 KB receive buffer each).
    let mut slots: Box<[[u8; MAX_PACKET]; BATCH]> = Box::new([[0; MAX_PACKET]; BATCH]);
    let mut spare = OutQueue::default();
    loop {
        let mut guard = tokio::select! {
            biased;
            r = reg.readable() => match r {
                Ok(g) => g,
                Err(_) => return,
            },
            () = inner.flush.notified() => {
                inner.flush(&mut spare);
                continue;
            }
        };
        let mut got = 0;
        // A short batch reports `WouldBlock` so tokio clears the readiness (a datagram
        // arriving after the call sets it again, so none is missed); a full one keeps
        // it and the loop comes straight back. Errors (ICMP reports of earlier sends)
        // are not fatal.
        let _ = guard.try_io(|fd| {
            got = recv_batch(fd.as_raw_fd(), &mut slots, &mut from, &mut lens)?;
            if got < BATCH {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        if got == 0 {
            continue;
        }
        drop(guard);
        let mut batch = BytesMut::with_capacity(lens[..got].iter().sum());
        for (slot, &len) in slots.iter().zip(&lens).take(got) {
            batch.extend_from_slice(&slot[..len]);
        }
        dispatch(
            &inner,
            batch.freeze(),
            &from[..got],
            &lens[..got],
            Instant::now(),
        );
        // Let the sessions just woken run, then send what they queued in one go (those
        // that run later, on another worker, notify and are sent on the next turn).
        tokio::task::yield_now().await;
        inner.flush(&mut spare);
    }
}

/// Hands the batch's datagrams (back to back in `batch`, `lens` long, from `from`) to
/// their legs' inboxes, counting the rest.
fn dispatch(
    inner: &Inner,
    batch: Bytes,
    from: &[libc::sockaddr_storage],
    lens: &[usize],
    now: Instant,
) {
    let mut routes = inner.routes();
    let mut routed = 0;
    let mut at = 0;
    for (addr, &len) in from.iter().zip(lens) {
        let d = batch.slice(at..at + len);
        at += len;
        let Some(src) = crate::session::socket_addr(addr).filter(|_| len > 0) else {
            continue;
        };
        let mut push = |inbox: &Inbox, d: Bytes| match inbox.push(d, src, now) {
            Push::Queued => routed += 1,
            Push::Full => _ = inner.overflow.fetch_add(1, Ordering::Relaxed),
            Push::Crossed => _ = inner.crossed.fetch_add(1, Ordering::Relaxed),
        };
        match routes.get(&src) {
            Some(inbox) => push(inbox, d),
            // A browser's connectivity check from a new address names its leg.
            None => match ice_ufrag(&d).and_then(|u| inner.ufrags().get(u).cloned()) {
                Some(inbox)
                    if inbox.ice_routes.fetch_add(1, Ordering::Relaxed) < MAX_ICE_ROUTES =>
                {
                    push(&inbox, d);
                    routes.insert(src, inbox);
                }
                Some(_) => _ = inner.unknown.fetch_add(1, Ordering::Relaxed),
                None => _ = inner.unknown.fetch_add(1, Ordering::Relaxed),
            },
        }
    }
    inner.routed.fetch_add(routed, Ordering::Relaxed);
}

/// Room for a burst of every leg's datagram at once: at 1,000 calls sending on the same
/// 20 ms grid, 2,000 datagrams arrive together. `SO_RCVBUFFORCE` (root or
/// CAP_NET_ADMIN) passes `net.core.rmem_max`; without it the buffer is what that
/// allows, and a small one is worth a warning (Debian's default allows 208 KB).
fn size_receive_buffer(sock: &std::net::UdpSocket) {
    const WANT: libc::c_int = 8 << 20;
    // SAFETY: the socket is open and `WANT` a live c_int of the size given.
    let forced = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&WANT as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    let s = socket2::SockRef::from(sock);
    if !forced {
        let _ = s.set_recv_buffer_size(WANT as usize);
    }
    match s.recv_buffer_size() {
        Ok(n) if n < (4 << 20) => tracing::warn!(
            bytes = n,
            "shared RTP port: small receive buffer (bursts of many calls' packets may be dropped); raise net.core.rmem_max to 8388608 or run with CAP_NET_ADMIN"
        ),
        Ok(n) => tracing::debug!(bytes = n, "shared RTP port receive buffer"),
        Err(_) => {}
    }
}

/// Our ICE username fragment in a STUN Binding request (RFC 8489): its USERNAME is
/// "recipient's fragment:sender's fragment" (RFC 8445 §7.2.2), so the part before the
/// colon is ours. Read in place rather than with `rtc`'s STUN decoder, which copies the
/// message: this runs for every datagram from an address no leg has.
fn ice_ufrag(d: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
    const USERNAME: u16 = 0x0006;
    if d.len() < 20 || d[..2] != BINDING_REQUEST || d[4..8] != MAGIC {
        return None;
    }
    let end = d
        .len()
        .min(20 + usize::from(u16::from_be_bytes([d[2], d[3]])));
    let mut at = 20;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([d[at], d[at + 1]]);
        let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
        let value = d
            .get(at + 4..at + 4 + len)
            .filter(|_| at + 4 + len <= end)?;
        if kind == USERNAME {
            let user = std::str::from_utf8(value).ok()?;
            return user.split(':').next().filter(|u| !u.is_empty());
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// One `recvmmsg` into `slots`, a datagram each: how many came, their lengths in `lens`
/// (0 for one truncated) and senders in `from`.
fn recv_batch(
    fd: std::os::fd::RawFd,
    slots: &mut [[u8; MAX_PACKET]; BATCH],
    from: &mut [libc::sockaddr_storage],
    lens: &mut [usize; BATCH],
) -> io::Result<usize> {
    // SAFETY: all-zero bytes are valid iovecs and mmsghdrs; every field the kernel reads
    // is set below.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..BATCH {
        iov[i].iov_base = slots[i].as_mut_ptr().cast();
        iov[i].iov_len = MAX_PACKET;
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut from[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: the headers point into `slots`, `from` and `iov`, alive and exclusively
    // borrowed for the call, with their true sizes.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            BATCH as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for i in 0..n {
        // A truncated datagram (over MAX_PACKET) is no RTP we relay: length 0, skipped.
        lens[i] = if hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            0
        } else {
            hdrs[i].msg_len as usize
        };
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waker_count() -> (Waker, Arc<AtomicU64>) {
        struct Count(Arc<AtomicU64>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let n = Arc::new(AtomicU64::new(0));
        (Waker::from(Arc::new(Count(Arc::clone(&n)))), n)
    }

    /// A STUN Binding request with `attrs` (type, value) after its header.
    fn binding(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (t, v) in attrs {
            body.extend_from_slice(&t.to_be_bytes());
            body.extend_from_slice(&(v.len() as u16).to_be_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_connectivity_check_names_our_ice_fragment() {
        // PRIORITY first (4 bytes), then a USERNAME whose length needs padding.
        let m = binding(&[(0x0024, &[0, 0, 0, 1]), (0x0006, b"ours:theirs")]);
        assert_eq!(ice_ufrag(&m), Some("ours"));
        let mut response = m.clone();
        response[..2].copy_from_slice(&[0x01, 0x01]);
        assert_eq!(ice_ufrag(&response), None, "a Binding success response");
        assert_eq!(ice_ufrag(&m[..m.len() - 4]), None, "USERNAME cut short");
        assert_eq!(
            ice_ufrag(&binding(&[(0x0024, &[0; 4])])),
            None,
            "no USERNAME"
        );
        assert_eq!(ice_ufrag(&binding(&[(0x0006, b":theirs")])), None);
        let mut rtp = m.clone();
        rtp[0] = 0x80;
        assert_eq!(ice_ufrag(&rtp), None, "not STUN");
    }

    #[test]
    fn an_inbox_wakes_its_reader_keeps_order_and_drops_past_its_cap() {
        let inbox = Inbox::default();
        let src: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let (w, woken) = waker_count();
        let mut cx = Context::from_waker(&w);
        assert!(!inbox.poll_ready(&mut cx), "empty");
        let now = Instant::now();
        assert_eq!(inbox.push(Bytes::from_static(b"a"), src, now), Push::Queued);
        assert_eq!(
            woken.load(Ordering::Relaxed),
            1,
            "the waiting session is woken"
        );
        assert_eq!(inbox.push(Bytes::from_static(b"b"), src, now), Push::Queued);
        assert_eq!(woken.load(Ordering::Relaxed), 1, "once: nobody waits now");
        assert!(inbox.poll_ready(&mut cx));
        let mut got = Vec::new();
        assert!(inbox.take(1, |d, _| got.push(d.to_vec())), "one more waits");
        assert!(!inbox.take(8, |d, _| got.push(d.to_vec())));
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
        for _ in 0..INBOX_CAP {
            assert_eq!(inbox.push(Bytes::from_static(b"x"), src, now), Push::Queued);
        }
        assert_eq!(inbox.push(Bytes::from_static(b"y"), src, now), Push::Full);
        let mut n = 0;
        while inbox.take(64, |_, _| n += 1) {}
        assert_eq!(n, INBOX_CAP);
    }

    fn rtp(ssrc: u32, pt: u8) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    #[test]
    fn one_stream_at_a_time_a_second_only_after_the_first_is_silent() {
        let mut g = StreamGuard::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(g.admit(&rtp(1, 0), t0), "the first stream");
        assert!(
            !g.admit(&rtp(2, 0), ms(20)),
            "another call's stream from the address"
        );
        assert!(g.admit(&rtp(1, 0), ms(400)), "the first goes on");
        assert!(!g.admit(&rtp(2, 8), ms(899)), "still alive 499 ms ago");
        assert!(
            g.admit(&rtp(2, 0), ms(900)),
            "silent 500 ms: the new stream takes over"
        );
        assert!(
            !g.admit(&rtp(1, 0), ms(920)),
            "and the old one is now the stranger"
        );
        assert!(
            g.admit(&rtp(2, 101), ms(940)),
            "telephone-event of the current stream"
        );
        assert!(
            g.admit(b"not rtp", ms(941)),
            "not RTP: the session judges it"
        );
        let mut rr = rtp(9, 201);
        rr[1] = 201; // an RTCP receiver report muxed on the port
        assert!(g.admit(&rr, ms(942)), "RTCP is no stream");
    }
}
