//! The unprivileged daemon: one thread per direction doing blocking I/O
//! (TUN -> UDP, UDP -> TUN), as cheap per packet as a plain copy loop, and
//! the main thread for timers, signals, the status socket, local discovery
//! and miredo-privproc. The sans-IO engine sits in between, behind a mutex.

use crate::status;
use libteredo::conf::miredo::MiredoConfig;
use libteredo::privsep::{self, Policy, Reply, Request, TeredoPrefix};
use libteredo::proto::client::Client;
use libteredo::proto::relay::Relay;
use libteredo::proto::stats::Stats;
use libteredo::proto::{Event, Output};
use libteredo::sys::batch::{enable_udp_gro, RecvBatch, SendBatch, GRO_SLOT};
use libteredo::sys::reader::ConfigReader;
use libteredo::sys::signals;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The largest datagram or packet we accept.
const BUF: usize = 65536;

pub enum EngineKind {
    Client(Box<Client>),
    Relay(Box<Relay>),
}

impl EngineKind {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            EngineKind::Client(c) => c.poll_timeout(),
            EngineKind::Relay(r) => r.poll_timeout(),
        }
    }

    pub fn stats(&self) -> &Stats {
        match self {
            EngineKind::Client(c) => c.stats(),
            EngineKind::Relay(r) => r.stats(),
        }
    }

    fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        to: SocketAddrV4,
        ecn: u8,
        b: &[u8],
        out: &mut Vec<Output>,
    ) {
        match self {
            EngineKind::Client(c) => c.handle_udp_ecn(now, from, to, ecn, b, out),
            EngineKind::Relay(r) => r.handle_udp_ecn(now, from, to, ecn, b, out),
        }
    }

    fn handle_tun(&mut self, now: Instant, b: &[u8], out: &mut Vec<Output>) {
        match self {
            EngineKind::Client(c) => c.handle_tun(now, b, out),
            EngineKind::Relay(r) => r.handle_tun(now, b, out),
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Output>) {
        match self {
            EngineKind::Client(c) => c.handle_timeout(now, out),
            EngineKind::Relay(r) => r.handle_timeout(now, out),
        }
    }

    /// Gives the engine back the buffers of packets it handed out: with
    /// them, its data paths allocate nothing per packet.
    fn recycle(&mut self, used: &mut Vec<Vec<u8>>) {
        match self {
            EngineKind::Client(c) => c.recycle(used),
            EngineKind::Relay(r) => r.recycle(used),
        }
    }
}

/// The daemon's descriptors, as set up by root.
pub struct Io {
    pub tun: tun_rs::SyncDevice,
    pub ifindex: u32,
    pub udp: UdpSocket,
    pub local: SocketAddrV4,
    pub discovery: Option<UdpSocket>,
    /// The addresses of the interfaces local discovery runs on.
    pub discovery_ifaces: Vec<std::net::Ipv4Addr>,
    /// The TUN device was opened with offloads (virtio-net headers).
    pub offload: bool,
    pub sigfd: SignalFd,
    pub status: UnixListener,
    pub privproc: Option<UnixStream>,
}

/// What the I/O threads and the main thread share.
struct Shared {
    engine: Mutex<EngineKind>,
    tun: tun_rs::SyncDevice,
    udp: UdpSocket,
    local: SocketAddrV4,
    /// Multicast (local discovery) goes out of each of these interfaces.
    discovery_ifaces: Vec<std::net::Ipv4Addr>,
    /// Bytes in front of a TUN packet for the virtio-net header (offloads).
    headroom: usize,
    /// Engine events for the main thread (privproc, logs).
    events: Mutex<Vec<Event>>,
    /// A fatal error in an I/O thread.
    fatal: Mutex<Option<String>>,
    /// Written to wake the main thread.
    wake_tx: UnixStream,
    /// When the main thread means to wake up next (ns after `base`).
    deadline: AtomicU64,
    base: Instant,
}

/// Packets closer together than this mean load: the TUN queue is drained
/// before sending (see `tun_loop`).
const DRAIN_GAP: Duration = Duration::from_micros(20);
/// At most this many packets from the TUN device per send batch.
const DRAIN_PACKETS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn wake(&self) {
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Carries out what the engine asked for (engine lock released): UDP
    /// datagrams in one sendmmsg batch, packets for the TUN device in one
    /// batch (coalesced into GRO super-packets when the device has
    /// offloads), events to the main thread.
    fn dispatch(&self, out: &mut Vec<Output>, io: &mut IoBufs) {
        let mut events = false;
        for o in out.drain(..) {
            match o {
                Output::Udp(t) if t.to.ip().is_multicast() => {
                    // A discovery bubble: once per discovery interface.
                    let sock = socket2::SockRef::from(&self.udp);
                    for a in &self.discovery_ifaces {
                        let _ = sock.set_multicast_if_v4(a);
                        if let Err(e) = self.udp.send_to(&t.payload, t.to) {
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
        }
        self.send_tun(io);
        if events {
            self.wake();
        }
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
        loop {
            let mut taken = 0usize;
            let mut next;
            loop {
                let n = match self.tun.recv_multiple(&mut orig, &mut bufs, &mut sizes, 0) {
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
            // One clock reading per batch: for the engine and for the gap.
            let mut now = match rb.recv_up_to(self.udp.as_fd(), max) {
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

/// Packets for the TUN device written (coalesced) together at most: 64
/// full-sized TCP segments already make more than one 64 KiB super-packet.
const TUN_BATCH: usize = 64;
/// What a packet buffer holds for the TUN device with offloads: the GRO
/// layer coalesces a run of segments into the first one's buffer only as
/// far as that buffer has room (it never reallocates), so room for the
/// largest super-packet (IPv6 payload length is 16 bits) beside the
/// virtio-net header lets a run grow to the full size.
const GRO_ROOM: usize = 65_536 + 2 * tun_rs::VIRTIO_NET_HDR_LEN;

/// A thread's output buffers, kept between batches.
struct IoBufs {
    udp: SendBatch,
    tun: Vec<Vec<u8>>,
    /// With offloads: `GRO_ROOM` buffers, written and reused (no allocation
    /// per packet; the pages a buffer never needed are never touched).
    spare: Vec<Vec<u8>>,
    /// Made at the first packet for the TUN device: it preallocates about
    /// a megabyte, which a thread that starts up (before the client's first
    /// router advertisement can be read) should not wait for.
    gro: Option<tun_rs::GROTable>,
    /// Room for the virtio-net header in front of TUN packets.
    headroom: usize,
    /// Packets the engine handed out, copied or written: given back to it
    /// at the next batch (`EngineKind::recycle`).
    used: Vec<Vec<u8>>,
}

impl IoBufs {
    fn new(headroom: usize) -> Self {
        IoBufs {
            udp: SendBatch::new(),
            tun: Vec::with_capacity(TUN_BATCH),
            spare: Vec::new(),
            gro: None,
            headroom,
            used: Vec::new(),
        }
    }

    /// Queues a packet for the TUN device (with offloads) in a buffer the
    /// GRO layer can coalesce the packets that follow it into.
    fn push_gro(&mut self, p: &[u8]) {
        let mut b = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GRO_ROOM));
        b.clear();
        b.resize(self.headroom, 0);
        b.extend_from_slice(p);
        self.tun.push(b);
    }

    /// Keeps a packet buffer of the engine's for it to take back, up to
    /// two batches' worth (a batch from the TUN device can end with a
    /// super-packet's segments; the main thread's buffers are given back
    /// with its timers, and need be no more).
    fn give_back(&mut self, b: Vec<u8>) {
        if self.used.len() < 2 * TUN_BATCH {
            self.used.push(b);
        }
    }

    /// Takes back the buffers of packets written, so that the next batch
    /// gets them in the same order: the first packet of a run (the one its
    /// run is coalesced into, up to 64 KiB) lands in the same buffer each
    /// time, and the others touch a page or two of theirs. Handed out in
    /// any order, every buffer would in turn grow its 64 KiB of resident
    /// memory.
    fn recycle(&mut self) {
        if self.headroom == 0 {
            // The engine's own buffers, written as they were.
            while let Some(b) = self.tun.pop() {
                self.give_back(b);
            }
            return;
        }
        let room = TUN_BATCH.saturating_sub(self.spare.len());
        let keep = self.tun.len().min(room);
        self.spare.extend(self.tun.drain(..keep).rev());
        self.tun.clear();
    }
}

/// The last move to another server: (from, to, when).
pub type ServerChange = (
    std::net::Ipv4Addr,
    std::net::Ipv4Addr,
    std::time::SystemTime,
);

pub struct Daemon {
    conf: MiredoConfig,
    sh: Arc<Shared>,
    ifindex: u32,
    discovery: Option<UdpSocket>,
    sigfd: SignalFd,
    status: UnixListener,
    privproc: Option<UnixStream>,
    wake_rx: UnixStream,
    /// The process that rereads the configuration file on SIGHUP (none
    /// when running on built-in defaults).
    reader: Option<ConfigReader>,
    started: Instant,
    qualified_at: Option<Duration>,
    /// The last move to another server of the list: from, to, when.
    server_change: Option<ServerChange>,
    /// The server named on the command line: it overrides ServerAddress at
    /// every reload too.
    cli_server: Option<String>,
    /// The main thread's output buffers.
    iobufs: IoBufs,
}

/// Receives a datagram with the ECN field of its IPv4 header (RFC 9601:
/// congestion marked on the way must reach the inner packet).
fn recv_with_ecn(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, Option<SocketAddrV4>, u8)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrIn};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(libc_int);
    let msg = recvmsg::<SockaddrIn>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    let tos = msg
        .cmsgs()
        .ok()
        .and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::Ipv4Tos(t) => Some(t),
                _ => None,
            })
        })
        .unwrap_or(0);
    let from = msg.address.map(|a| SocketAddrV4::new(a.ip(), a.port()));
    Ok((msg.bytes, from, tos & 0b11))
}

#[allow(non_camel_case_types)]
type libc_int = i32;

/// Sends the unicast datagrams of `out` on `sock` at once, leaving the
/// rest (multicast bubbles, packets for the TUN device, events) for
/// `Daemon::dispatch_early`: for a client's first solicitation, sent before
/// the daemon exists (see `setup::run`).
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
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn};
    if ecn == 0 && ttl.is_none() {
        return sock.send_to(payload, to);
    }
    let tos = ecn & 0b11;
    let ttl = ttl.map(i32::from);
    let addr = SockaddrIn::from(to);
    let mut cmsgs = Vec::with_capacity(2);
    if tos != 0 {
        cmsgs.push(ControlMessage::Ipv4Tos(&tos));
    }
    if let Some(t) = &ttl {
        cmsgs.push(ControlMessage::Ipv4Ttl(t));
    }
    sendmsg(
        sock.as_raw_fd(),
        &[io::IoSlice::new(payload)],
        &cmsgs,
        MsgFlags::empty(),
        Some(&addr),
    )
    .map_err(io::Error::from)
}

/// Configures a relay's interface: the Teredo prefix routed to it, MTU, up.
pub fn configure_relay_interface(ifindex: u32, prefix: u32, mtu: u16) -> io::Result<()> {
    let mut nl = libteredo::sys::netlink::Netlink::open()?;
    nl.relay_up(ifindex, prefix, mtu)
}

impl Daemon {
    pub fn new(
        conf: MiredoConfig,
        engine: EngineKind,
        io: Io,
        reader: Option<ConfigReader>,
        cli_server: Option<String>,
    ) -> io::Result<Self> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        // The I/O threads block in their reads.
        io.tun.set_nonblocking(false)?;
        io.udp.set_nonblocking(false)?;
        let base = Instant::now();
        let headroom = if io.offload {
            tun_rs::VIRTIO_NET_HDR_LEN
        } else {
            0
        };
        let sh = Arc::new(Shared {
            engine: Mutex::new(engine),
            tun: io.tun,
            udp: io.udp,
            local: io.local,
            discovery_ifaces: io.discovery_ifaces,
            headroom,
            events: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
            wake_tx,
            deadline: AtomicU64::new(0),
            base,
        });
        Ok(Daemon {
            conf,
            sh,
            ifindex: io.ifindex,
            discovery: io.discovery,
            sigfd: io.sigfd,
            status: io.status,
            privproc: io.privproc,
            wake_rx,
            reader,
            started: base,
            qualified_at: None,
            server_change: None,
            cli_server,
            iobufs: IoBufs::new(headroom),
        })
    }

    /// Carries out what the engine asked for before the daemon existed
    /// (see `setup::run`); its events are acted on when `run` starts.
    pub fn dispatch_early(&mut self, mut out: Vec<Output>) {
        self.sh.dispatch(&mut out, &mut self.iobufs);
    }

    /// Runs until SIGINT or SIGTERM (Ok) or a fatal error.
    pub fn run(&mut self) -> Result<(), String> {
        for (name, f) in [
            ("tun", Shared::tun_loop as fn(&Shared)),
            ("udp", Shared::udp_loop),
        ] {
            let sh = Arc::clone(&self.sh);
            std::thread::Builder::new()
                .name(format!("miredo-{name}"))
                .spawn(move || f(&sh))
                .map_err(|e| format!("cannot start a thread: {e}"))?;
        }
        let mut buf = vec![0u8; BUF];
        loop {
            self.timeouts();
            self.events();
            if let Some(why) = lock(&self.sh.fatal).take() {
                return Err(why);
            }
            let next = lock(&self.sh.engine).poll_timeout();
            let timeout = match next {
                Some(t) => {
                    let d = t.saturating_duration_since(Instant::now());
                    // Round up: waking a millisecond early would spin.
                    PollTimeout::from(d.as_micros().div_ceil(1000).min(60_000) as u16)
                }
                None => PollTimeout::from(60_000u16),
            };
            let deadline = next.map_or(u64::MAX, |t| {
                t.saturating_duration_since(self.sh.base)
                    .as_nanos()
                    .min(u128::from(u64::MAX - 1)) as u64
            });
            self.sh.deadline.store(deadline, Ordering::Relaxed);
            let (sig_r, status_r, wake_r, disc_r, priv_r) = {
                let mut fds = vec![
                    PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.status.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
                ];
                let disc_idx = self.discovery.as_ref().map(|d| {
                    fds.push(PollFd::new(d.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let priv_idx = self.privproc.as_ref().map(|p| {
                    fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("poll: {e}")),
                }
                let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
                (
                    ready(0),
                    ready(1),
                    ready(2),
                    disc_idx.is_some_and(ready),
                    priv_idx.is_some_and(ready),
                )
            };
            if wake_r {
                while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
            }
            if sig_r {
                for s in signals::drain(&self.sigfd) {
                    match s {
                        Signal::SIGHUP => self.reload(),
                        Signal::SIGINT | Signal::SIGTERM | Signal::SIGQUIT => {
                            log::info!("{s}: stopping");
                            self.shutdown();
                            return Ok(());
                        }
                        _ => {}
                    }
                }
            }
            if priv_r {
                // privproc only speaks when asked: readable means it died.
                log::error!(
                    "miredo-privproc exited: stopping (the interface cannot be managed without it)"
                );
                return Err("miredo-privproc exited".into());
            }
            if disc_r {
                self.read_discovery(&mut buf);
            }
            if status_r {
                self.answer_status();
            }
        }
    }

    fn timeouts(&mut self) {
        let now = Instant::now();
        let mut out = Vec::new();
        {
            let mut e = lock(&self.sh.engine);
            e.recycle(&mut self.iobufs.used);
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now, &mut out);
            }
        }
        self.sh.dispatch(&mut out, &mut self.iobufs);
    }

    /// Acts on what the engine reported.
    fn events(&mut self) {
        let events = std::mem::take(&mut *lock(&self.sh.events));
        for e in events {
            self.event(e);
        }
    }

    fn read_discovery(&mut self, buf: &mut [u8]) {
        for _ in 0..16 {
            let Some(sock) = &self.discovery else { return };
            let (n, from, ecn) = match recv_with_ecn(sock, buf) {
                Ok(x) => x,
                Err(_) => return,
            };
            let Some(from) = from else { continue };
            let to = SocketAddrV4::new(
                libteredo::addr::DISCOVERY_ADDR,
                libteredo::addr::TEREDO_PORT,
            );
            let mut out = Vec::new();
            lock(&self.sh.engine).handle_udp(Instant::now(), from, to, ecn, &buf[..n], &mut out);
            self.sh.dispatch(&mut out, &mut self.iobufs);
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Qualified {
                addr,
                old,
                mapped,
                mtu,
                nat,
            } => {
                if self.qualified_at.is_none() {
                    self.qualified_at = Some(self.started.elapsed());
                }
                match old {
                    Some(o) => log::info!("new Teredo address {addr} (was {o}): mapped {mapped}, MTU {mtu}"),
                    None => log::info!(
                        "qualified: Teredo address {addr}, mapped {mapped}, MTU {mtu}, NAT {nat}, after {:.0} ms",
                        self.started.elapsed().as_secs_f64() * 1000.0
                    ),
                }
                self.privproc(Request::Up {
                    ifindex: self.ifindex,
                    address: addr,
                    mtu,
                });
            }
            Event::ServerLost { old } => {
                log::warn!(
                    "the Teredo server stopped answering: {old} withdrawn, qualifying again"
                );
                self.privproc(Request::Down {
                    ifindex: self.ifindex,
                });
            }
            Event::NatObserved(nat) => log::info!("NAT behaviour observed: {nat}"),
            Event::ServerChanged { from, to } => {
                log::warn!(
                    "the Teredo server {from} did not answer {} solicitations: moving to {to}, the next address of the server's name",
                    libteredo::proto::client::RS_ATTEMPTS
                );
                self.server_change = Some((from, to, std::time::SystemTime::now()));
            }
        }
    }

    /// Sends a request to miredo-privproc and waits for its answer. The
    /// request is first checked against the same rules privproc applies:
    /// one that breaks them is not sent (the engine refuses what the
    /// network could make it ask, so only a bug gets here), and nothing the
    /// helper answers stops the daemon by itself (if privproc itself goes,
    /// the main loop sees it).
    fn privproc(&mut self, req: Request) {
        let Some(p) = self.privproc.as_mut() else {
            return;
        };
        let policy = Policy {
            ifindex: self.ifindex,
            prefix: TeredoPrefix(self.conf.prefix),
        };
        if let Err(why) = policy.check(&req) {
            log::error!("not asking miredo-privproc for {req:?}: {why}");
            return;
        }
        let _ = p.set_read_timeout(Some(Duration::from_secs(10)));
        if let Err(e) = privsep::write_frame(p, &req) {
            log::error!("miredo-privproc: {e}");
            return;
        }
        match privsep::read_frame::<_, Reply>(p) {
            Ok(Reply::Ok) => {}
            Ok(Reply::Refused(why)) => log::error!("miredo-privproc refused {req:?}: {why}"),
            Ok(Reply::Failed(why)) => {
                log::warn!("miredo-privproc could not apply {req:?}: {why}")
            }
            Err(e) => log::error!("miredo-privproc: {e}"),
        }
    }

    /// SIGINT/SIGTERM: take the address down before leaving (privproc
    /// destroys the interface when our end of the socket closes).
    fn shutdown(&mut self) {
        let qualified =
            matches!(&*lock(&self.sh.engine), EngineKind::Client(c) if c.qualification().is_some());
        if qualified {
            self.privproc(Request::Down {
                ifindex: self.ifindex,
            });
        }
    }

    fn answer_status(&mut self) {
        for _ in 0..16 {
            match self.status.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                    let text = {
                        let e = lock(&self.sh.engine);
                        status::render(self, &e)
                    };
                    let _ = s.write_all(text.as_bytes());
                }
                Err(_) => return,
            }
        }
    }
    /// SIGHUP: read the file again (through the reader process); apply
    /// what needs no privilege.
    fn reload(&mut self) {
        let Some(reader) = self.reader.as_mut() else {
            log::info!("SIGHUP: running on built-in defaults, nothing to reload");
            return;
        };
        let Some(path) = reader.path().map(std::path::Path::to_path_buf) else {
            log::info!("SIGHUP: running on built-in defaults, nothing to reload");
            return;
        };
        let text = match reader.read() {
            Ok(t) => t,
            Err(e) => {
                log::error!("SIGHUP: {e}; keeping the running configuration");
                return;
            }
        };
        let new = match MiredoConfig::parse(&text, &path.to_string_lossy()) {
            Ok(mut c) => {
                if let Some(name) = &self.cli_server {
                    c.server_address = Some(name.clone());
                    c.server_address_is_default = false;
                    c.server_address2 = None;
                }
                c
            }
            Err(errs) => {
                for e in errs {
                    log::error!("SIGHUP: {e}");
                }
                log::error!(
                    "SIGHUP: {} is invalid; keeping the running configuration",
                    path.display()
                );
                return;
            }
        };
        let old = &self.conf;
        let mut restart = Vec::new();
        if new.interface_name != old.interface_name {
            restart.push("InterfaceName");
        }
        if new.bind_address != old.bind_address {
            restart.push("BindAddress");
        }
        if new.bind_port != old.bind_port {
            restart.push("BindPort");
        }
        if new.relay_type != old.relay_type {
            restart.push("RelayType");
        }
        if new.prefix != old.prefix {
            restart.push("Prefix");
        }
        if new.interface_mtu != old.interface_mtu && !old.relay_type.is_client() {
            restart.push("InterfaceMTU");
        }
        if new.local_discovery != old.local_discovery {
            restart.push("LocalDiscovery");
        }
        for d in &restart {
            log::warn!("SIGHUP: {d} changed: that needs privileges, restart miredo to apply it; the old value stays");
        }
        let mut applied = self.conf.clone();
        if new.syslog_facility != applied.syslog_facility {
            libteredo::sys::logging::set_facility(new.syslog_facility.as_str());
            applied.syslog_facility = new.syslog_facility;
            log::info!(
                "SIGHUP: syslog facility now {}",
                new.syslog_facility.as_str()
            );
        }
        let mut engine = lock(&self.sh.engine);
        if let EngineKind::Client(c) = &mut *engine {
            if new.server_address != applied.server_address
                || new.server_address2 != applied.server_address2
            {
                match new.resolve_servers() {
                    Ok(Some((s1, s2))) => {
                        let mut out = Vec::new();
                        c.set_servers(Instant::now(), s1, s2, &mut out);
                        applied.server_address = new.server_address.clone();
                        applied.server_address2 = new.server_address2.clone();
                        log::info!("SIGHUP: Teredo server now {s1} (secondary {s2})");
                        drop(engine);
                        self.sh.dispatch(&mut out, &mut self.iobufs);
                        self.conf = applied;
                        log::info!("SIGHUP: configuration {} reloaded", path.display());
                        return;
                    }
                    Ok(None) => log::error!("SIGHUP: no Teredo server: keeping the running one"),
                    Err(e) => log::error!(
                        "SIGHUP: cannot resolve the new server: {e}; keeping the running one"
                    ),
                }
            }
        }
        drop(engine);
        self.conf = applied;
        log::info!("SIGHUP: configuration {} reloaded", path.display());
    }

    // Accessors for the status page.

    pub fn conf(&self) -> &MiredoConfig {
        &self.conf
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.sh.local
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn qualified_after(&self) -> Option<Duration> {
        self.qualified_at
    }

    /// The last move to another server of the list.
    pub fn server_change(&self) -> Option<ServerChange> {
        self.server_change
    }
}

#[cfg(test)]
mod gro_tests {
    //! The TUN write path with offloads: packets of one TCP flow must leave
    //! coalesced (that is what `IoBufs::push_gro`'s buffers are for), and
    //! whatever a peer puts in its packets must neither panic the GRO
    //! layer nor make it reallocate.
    use super::*;
    use libteredo::wire::checksum;
    use proptest::prelude::*;
    use std::net::Ipv6Addr;

    const HEADROOM: usize = tun_rs::VIRTIO_NET_HDR_LEN;
    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0, 0x4136, 0xe378, 0x8000, 0x63bf, 0x3fff, 0xfdd2);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);

    /// A TCP/IPv6 segment from `SRC` to `DST` with a correct checksum.
    fn segment(src_port: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&src_port.to_be_bytes());
        tcp.extend_from_slice(&5001u16.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&1u32.to_be_bytes()); // ack
        tcp.extend_from_slice(&[5 << 4, flags]);
        tcp.extend_from_slice(&65535u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(payload);
        let c = checksum::upper_layer(&SRC, &DST, 6, &tcp);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut p = Vec::with_capacity(40 + tcp.len());
        p.extend_from_slice(&[0x60, 0, 0, 0]);
        p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        p.extend_from_slice(&[6, 64]);
        p.extend_from_slice(&SRC.octets());
        p.extend_from_slice(&DST.octets());
        p.extend_from_slice(&tcp);
        p
    }

    const ACK: u8 = 0x10;

    #[test]
    fn a_tcp_run_leaves_as_one_super_packet() {
        let mut io = IoBufs::new(HEADROOM);
        let seg = 1220;
        let mut data = Vec::new();
        for i in 0..40u32 {
            let payload: Vec<u8> = (0..seg).map(|k| (i as usize * 7 + k) as u8).collect();
            io.push_gro(&segment(40000, 1000 + i * seg as u32, ACK, &payload));
            data.extend_from_slice(&payload);
        }
        let mut gro = tun_rs::GROTable::default();
        gro.apply_gro(&mut io.tun, HEADROOM, true).unwrap();
        let head = &io.tun[0];
        // The virtio-net header: a TCPv6 super-packet cut at `seg`.
        assert_eq!(head[1], 4, "gso_type: {:?}", &head[..HEADROOM]);
        assert_eq!(usize::from(u16::from_ne_bytes([head[4], head[5]])), seg);
        let pkt = &head[HEADROOM..];
        assert_eq!(pkt.len(), 40 + 20 + data.len());
        assert_eq!(
            usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
            20 + data.len()
        );
        assert_eq!(&pkt[60..], &data[..], "payload bytes in order");
    }

    #[test]
    fn a_tcp_run_in_tight_buffers_is_not_coalesced() {
        // The control: buffers with 16 bytes to spare, what the engine's
        // packets had before, are written one by one.
        let mut bufs: Vec<Vec<u8>> = (0..8u32)
            .map(|i| {
                let p = segment(40000, 1000 + i * 1220, ACK, &[i as u8; 1220]);
                let mut b = Vec::with_capacity(p.len() + 16);
                b.resize(HEADROOM, 0);
                b.extend_from_slice(&p);
                b
            })
            .collect();
        let mut gro = tun_rs::GROTable::default();
        gro.apply_gro(&mut bufs, HEADROOM, true).unwrap();
        assert_eq!(bufs[0].len(), HEADROOM + 40 + 20 + 1220);
        assert_eq!(bufs[0][1], 0, "no GSO type");
    }

    /// One packet of a generated batch: a segment of one of two flows,
    /// then damaged.
    #[derive(Debug, Clone)]
    struct Case {
        flow: bool,
        seq_step: u32,
        len: usize,
        flags: u8,
        cut: Option<usize>,
        flip: Option<(usize, u8)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            any::<bool>(),
            prop_oneof![Just(1220u32), Just(0u32), 0u32..3000],
            prop_oneof![Just(1220usize), 0usize..1400],
            prop_oneof![Just(ACK), Just(ACK | 0x08), any::<u8>()],
            proptest::option::weighted(0.2, 0usize..1500),
            proptest::option::weighted(0.3, (0usize..1500, any::<u8>())),
        )
            .prop_map(|(flow, seq_step, len, flags, cut, flip)| Case {
                flow,
                seq_step,
                len,
                flags,
                cut,
                flip,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn damaged_runs_neither_panic_nor_reallocate(cases in proptest::collection::vec(case(), 1..TUN_BATCH)) {
            let mut io = IoBufs::new(HEADROOM);
            let mut seq = [7u32, 900_000u32];
            for c in &cases {
                let s = &mut seq[usize::from(c.flow)];
                let mut p = segment(if c.flow { 40001 } else { 40000 }, *s, c.flags, &vec![0x5a; c.len]);
                *s = s.wrapping_add(c.seq_step);
                if let Some((at, x)) = c.flip {
                    let at = at % p.len();
                    p[at] ^= x.max(1);
                }
                if let Some(n) = c.cut {
                    p.truncate(n.max(1));
                }
                io.push_gro(&p);
            }
            let caps: Vec<usize> = io.tun.iter().map(Vec::capacity).collect();
            let mut gro = tun_rs::GROTable::default();
            let _ = gro.apply_gro(&mut io.tun, HEADROOM, true);
            for (b, cap) in io.tun.iter().zip(caps) {
                prop_assert_eq!(b.capacity(), cap);
                prop_assert!(b.len() <= GRO_ROOM);
            }
        }
    }
}
