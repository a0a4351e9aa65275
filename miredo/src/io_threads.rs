//! The daemon's I/O threads: one per direction doing blocking I/O (TUN ->
//! engine -> UDP, UDP -> engine -> TUN), as cheap per packet as a plain
//! copy loop, batched under load (recvmmsg, sendmmsg with UDP GSO and
//! GRO, TUN offloads). The sans-IO engine sits behind a mutex in
//! [`Shared`], which the control loop (`running`) shares: it gets the
//! engine's events and a wake-up when the engine wants a timer earlier
//! than the one it sleeps on, and an I/O thread that fails for good tells
//! it why. Every datagram leaves through libteredo::sys::socket (one at a
//! time) or sys::batch, whose control messages (ECN, TTL, GSO) are built
//! in one place.

use crate::engine::EngineKind;
use crate::iobufs::{IoBufs, TUN_BATCH};
use libteredo::proto::{Event, Output};
use libteredo::sys::batch::RecvBatch;
use libteredo::sys::notify::{Alive, Heartbeat};
use libteredo::sys::socket::{self, enable_udp_gro, SendMeta, GRO_SLOT};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The largest datagram or packet we accept.
pub const BUF: usize = 65536;

/// What the I/O threads and the main thread share.
pub struct Shared {
    pub engine: Mutex<EngineKind>,
    tun: tun_rs::SyncDevice,
    udp: UdpSocket,
    pub local: SocketAddrV4,
    /// Multicast (local discovery) goes out of each of these interfaces.
    discovery_ifaces: Vec<std::net::Ipv4Addr>,
    /// Bytes in front of a TUN packet for the virtio-net header (offloads).
    pub headroom: usize,
    /// Engine events for the main thread (privproc, logs).
    pub events: Mutex<Vec<Event>>,
    /// A fatal error in an I/O thread.
    pub fatal: Mutex<Option<String>>,
    /// Written to wake the main thread.
    wake_tx: UnixStream,
    /// When the main thread means to wake up next (ns after `base`).
    pub deadline: AtomicU64,
    pub base: Instant,
    /// The I/O threads' signs of life, for the watchdog.
    pub tun_beat: Arc<Heartbeat>,
    pub udp_beat: Arc<Heartbeat>,
}

/// Packets closer together than this mean load: the TUN queue is drained
/// before sending (see `tun_loop`).
const DRAIN_GAP: Duration = Duration::from_micros(20);
/// At most this many packets from the TUN device per send batch.
const DRAIN_PACKETS: usize = 64;

/// A lock that a panicking thread did not poison for the others.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// What the threads share, around `engine`; the I/O threads block in
    /// their reads from now on. `wake_tx` wakes the control loop.
    pub fn new(
        engine: EngineKind,
        tun: tun_rs::SyncDevice,
        udp: UdpSocket,
        local: SocketAddrV4,
        discovery_ifaces: Vec<std::net::Ipv4Addr>,
        offload: bool,
        wake_tx: UnixStream,
    ) -> io::Result<Shared> {
        tun.set_nonblocking(false)?;
        udp.set_nonblocking(false)?;
        let headroom = if offload {
            tun_rs::VIRTIO_NET_HDR_LEN
        } else {
            0
        };
        Ok(Shared {
            engine: Mutex::new(engine),
            tun,
            udp,
            local,
            discovery_ifaces,
            headroom,
            events: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
            wake_tx,
            deadline: AtomicU64::new(0),
            base: Instant::now(),
            tun_beat: Arc::default(),
            udp_beat: Arc::default(),
        })
    }

    /// Starts the two I/O threads, each with its heartbeat.
    pub fn start(sh: &Arc<Shared>) -> Result<(), String> {
        for (name, f, beat) in [
            (
                "tun",
                Shared::tun_loop as fn(&Shared),
                Arc::clone(&sh.tun_beat),
            ),
            ("udp", Shared::udp_loop, Arc::clone(&sh.udp_beat)),
        ] {
            let sh = Arc::clone(sh);
            std::thread::Builder::new()
                .name(format!("miredo-{name}"))
                .spawn(move || {
                    let _alive = Alive(beat);
                    f(&sh)
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
        }
        Ok(())
    }

    /// Wakes the control loop.
    pub fn wake(&self) {
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Carries out what the engine asked for (engine lock released): UDP
    /// datagrams in one sendmmsg batch, packets for the TUN device in one
    /// batch (coalesced into GRO super-packets when the device has
    /// offloads), events to the main thread.
    ///
    /// Returns how the unicast UDP datagrams went (`None`: there were
    /// none): the first error, for a client that wants to know why its
    /// server does not answer.
    pub fn dispatch(&self, out: &mut Vec<Output>, io: &mut IoBufs) -> Option<io::Result<()>> {
        let mut events = false;
        let mut udp = None;
        for o in out.drain(..) {
            match o {
                Output::Udp(t) if t.to.ip().is_multicast() => {
                    // A discovery bubble: once per discovery interface,
                    // with no control message (it stays on the link).
                    let sock = socket2::SockRef::from(&self.udp);
                    for a in &self.discovery_ifaces {
                        let _ = sock.set_multicast_if_v4(a);
                        let plain = SendMeta::default();
                        if let Err(e) = socket::send(self.udp.as_fd(), t.to, &t.payload, &plain) {
                            log::debug!("discovery bubble via {a}: {e}");
                        }
                    }
                }
                Output::Udp(t) if t.ttl.is_some() => {
                    // Rare (first bubbles): a message of its own.
                    if let Err(e) = send_with(&self.udp, &t.payload, t.to, t.ecn, t.ttl) {
                        log::debug!("UDP send to {}: {e}", t.to);
                    }
                }
                Output::Udp(t) => {
                    io.udp.push(t.to, &t.payload, t.ecn);
                    io.give_back(t.payload);
                    udp = Some(Ok(()));
                }
                Output::Tun(p) if io.headroom == 0 => io.tun.push(p),
                Output::Tun(p) => {
                    io.push_gro(&p);
                    io.give_back(p);
                    if io.tun.len() >= TUN_BATCH {
                        self.send_tun(io);
                    }
                }
                Output::Event(e) => {
                    lock(&self.events).push(e);
                    events = true;
                }
            }
        }
        if let Err(e) = io.udp.flush(self.udp.as_fd()) {
            log::debug!("UDP send: {e}");
            udp = Some(Err(e));
        }
        self.send_tun(io);
        if events {
            self.wake();
        }
        udp
    }

    /// Writes the packets gathered for the TUN device; with offloads, runs
    /// of one TCP or UDP flow leave coalesced into super-packets.
    fn send_tun(&self, io: &mut IoBufs) {
        if io.tun.is_empty() {
            return;
        }
        if io.tun.len() == 1 {
            // Nothing to coalesce (the usual case below saturation): one
            // write, without resetting and filling the GRO tables. With
            // offloads the buffer starts with the all-zero virtio-net
            // header `push_gro` put there, which is what the GRO layer
            // writes in front of a packet it does not merge.
            if let Err(e) = self.tun.send(&io.tun[0]) {
                log::debug!("TUN send: {e}");
            }
            io.recycle();
            return;
        }
        let gro = io.gro.get_or_insert_with(Default::default);
        if let Err(e) = self.tun.send_multiple(gro, &mut io.tun, io.headroom) {
            log::debug!("TUN send: {e}");
        }
        io.recycle();
    }

    /// Wakes the main thread if the engine now wants a timer earlier than
    /// the one the main thread sleeps on.
    fn check_deadline(&self, next: Option<Instant>) {
        if let Some(t) = next {
            let ns = t
                .saturating_duration_since(self.base)
                .as_nanos()
                .min(u128::from(u64::MAX - 1)) as u64;
            if ns < self.deadline.load(Ordering::Relaxed) {
                self.deadline.store(ns, Ordering::Relaxed);
                self.wake();
            }
        }
    }

    fn die(&self, why: String) {
        *lock(&self.fatal) = Some(why);
        self.wake();
    }

    /// TUN -> engine -> UDP. A blocking read brings one packet, or, with
    /// offloads, a TCP super-packet the device cuts into MTU-sized ones.
    /// Under load (packets less than `DRAIN_GAP` apart) the queue is
    /// drained, up to `DRAIN_PACKETS`, before anything is sent: what the
    /// engine makes of it leaves in one sendmmsg, runs to one peer as UDP
    /// GSO messages. At a low rate a packet costs one read, as before: the
    /// readiness check only runs when packets come close together.
    fn tun_loop(&self) {
        let mut io = IoBufs::new(self.headroom);
        let mut orig = vec![0u8; tun_rs::VIRTIO_NET_HDR_LEN + BUF];
        // One zeroed allocation (8 MiB: the kernel maps it lazily, so only
        // the pages packets are written to cost memory) cut into the slots a
        // TCP super-packet's segments go to.
        let mut area = vec![0u8; tun_rs::IDEAL_BATCH_SIZE * BUF];
        let mut bufs: Vec<&mut [u8]> = area.chunks_mut(BUF).collect();
        let mut sizes = vec![0usize; bufs.len()];
        let mut out = Vec::with_capacity(tun_rs::IDEAL_BATCH_SIZE);
        let mut last = Instant::now();
        let beat = &self.tun_beat;
        loop {
            let mut taken = 0usize;
            let mut next;
            loop {
                beat.wait();
                let got = self.tun.recv_multiple(&mut orig, &mut bufs, &mut sizes, 0);
                beat.beat();
                let n = match got {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e)
                        if e.kind() == io::ErrorKind::Other
                            || e.kind() == io::ErrorKind::InvalidData =>
                    {
                        // A packet the offload layer could not cut: dropped.
                        log::debug!("TUN receive: {e}");
                        0
                    }
                    Err(e) => return self.die(format!("TUN receive: {e}")),
                };
                // With offloads (headroom for the virtio-net header)
                // tun-rs completed the checksum and may have left a zero
                // that UDP/IPv6 forbids: mended before the engine lock,
                // which the UDP thread waits for.
                if self.headroom > 0 {
                    for (b, &len) in bufs.iter_mut().zip(&sizes).take(n) {
                        let len = len.min(b.len());
                        libteredo::wire::checksum::repair_zero_udp6(&mut b[..len]);
                    }
                }
                let now = Instant::now();
                {
                    let mut e = lock(&self.engine);
                    e.recycle(&mut io.used);
                    for (b, &len) in bufs.iter().zip(&sizes).take(n) {
                        e.handle_tun(now, &b[..len.min(b.len())], &mut out);
                    }
                    next = e.poll_timeout();
                }
                taken += n.max(1);
                let busy = now.duration_since(last) < DRAIN_GAP;
                last = now;
                if !busy || taken >= DRAIN_PACKETS || !self.tun_readable() {
                    break;
                }
            }
            self.dispatch(&mut out, &mut io);
            self.check_deadline(next);
        }
    }

    /// Whether a read of the TUN device would return at once.
    fn tun_readable(&self) -> bool {
        let mut fds = [PollFd::new(self.tun.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// UDP -> engine -> TUN: recvmmsg batches; with UDP GRO, a run of
    /// datagrams from one peer (sent with GSO, or merged by the network
    /// card) arrives as one message.
    fn udp_loop(&self) {
        let mut io = IoBufs::new(self.headroom);
        let mut rb = match enable_udp_gro(self.udp.as_fd()) {
            Ok(()) => RecvBatch::new(16, GRO_SLOT),
            Err(e) => {
                log::debug!("UDP GRO: {e}");
                RecvBatch::new(64, BUF)
            }
        };
        let mut out = Vec::with_capacity(64);
        // As in `tun_loop`: a datagram that follows the last one closely
        // (or a batch of several) means load, and the next call takes what
        // is queued; otherwise it asks for one message, which spares the
        // kernel a look for a second that is not there.
        let mut busy = false;
        let mut last = Instant::now();
        loop {
            let max = if busy { usize::MAX } else { 1 };
            self.udp_beat.wait();
            let got = rb.recv_up_to(self.udp.as_fd(), max);
            self.udp_beat.beat();
            // One clock reading per batch: for the engine and for the gap.
            let mut now = match got {
                Ok(n) => {
                    let now = Instant::now();
                    busy = n > 1 || now.saturating_duration_since(last) < DRAIN_GAP;
                    last = now;
                    now
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here: not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return self.die(format!("UDP receive: {e}")),
            };
            // With UDP GRO a batch can hold a thousand datagrams: they go
            // through the engine `TUN_BATCH` at a time, so that what it
            // makes of them is sent and its buffers come back (to be used
            // again for the next ones) before it makes more.
            let mut datagrams = rb.datagrams();
            loop {
                let mut n = 0;
                let next = {
                    let mut e = lock(&self.engine);
                    e.recycle(&mut io.used);
                    for (bytes, from, tos) in datagrams.by_ref() {
                        if let Some(from) = from {
                            e.handle_udp(now, from, self.local, tos & 0b11, bytes, &mut out);
                        }
                        n += 1;
                        if n == TUN_BATCH {
                            break;
                        }
                    }
                    e.poll_timeout()
                };
                self.dispatch(&mut out, &mut io);
                self.check_deadline(next);
                if n < TUN_BATCH {
                    break;
                }
                now = Instant::now();
            }
        }
    }
}

/// Sends the unicast datagrams of `out` on `sock` at once, leaving the
/// rest (multicast bubbles, packets for the TUN device, events) for
/// `Daemon::dispatch_early`: for a client's first solicitation, sent before
/// the daemon exists (see `opened_as_root`).
pub fn send_unicast_now(sock: &UdpSocket, out: &mut Vec<Output>) {
    out.retain(|o| match o {
        Output::Udp(t) if !t.to.ip().is_multicast() => {
            if let Err(e) = send_with(sock, &t.payload, t.to, t.ecn, t.ttl) {
                log::debug!("UDP send to {}: {e}", t.to);
            }
            false
        }
        _ => true,
    });
}

/// Sends a datagram whose IPv4 header carries `ecn` (RFC 9601: the inner
/// ECN field copied out) and, when given, the time to live `ttl` (a direct
/// bubble that must only open our own NAT), per packet, without changing
/// the socket.
fn send_with(
    sock: &UdpSocket,
    payload: &[u8],
    to: SocketAddrV4,
    ecn: u8,
    ttl: Option<u8>,
) -> io::Result<usize> {
    let meta = SendMeta {
        ecn,
        ttl,
        segment_size: None,
    };
    socket::send(sock.as_fd(), to, payload, &meta)
}
