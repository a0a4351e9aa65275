//! The unprivileged daemon: one thread per direction doing blocking I/O
//! (TUN -> UDP, UDP -> TUN), as cheap per packet as a plain copy loop, and
//! the main thread for timers, signals, the status socket, local discovery
//! and miredo-privproc. The sans-IO engine sits in between, behind a mutex.
//!
//! A client's main thread also follows the host's network: the server
//! names resolved through the reader process until they resolve
//! (`servers`), the path to the server through rtnetlink (`network`), and
//! sleep (libteredo::sys::sleep); it turns each into an engine input
//! (`Client::set_server_list`, `Client::path_changed`).

use crate::network::{self, Waiting, Watch};
use crate::portmap::Mapper;
use crate::servers::{Names, Outcome, ServerList};
use crate::status;
use libteredo::conf::miredo::MiredoConfig;
use libteredo::privsep::{self, Policy, Reply, Request, TeredoPrefix};
use libteredo::proto::client::{Client, ClientState};
use libteredo::proto::relay::Relay;
use libteredo::proto::stats::Stats;
use libteredo::proto::{Event, Output};
use libteredo::sys::batch::{RecvBatch, SendBatch};
use libteredo::sys::http::Exporter;
use libteredo::sys::netlink::{Monitor, Netlink};
use libteredo::sys::notify::{self as notify, Alive, Heartbeat, Notifier};
use libteredo::sys::reader::ConfigReader;
use libteredo::sys::signals;
use libteredo::sys::sleep::{self, WakeAlarm};
use libteredo::sys::socket::{self, enable_udp_gro, SendMeta, GRO_SLOT};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
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
    /// The metrics listener (`MetricsListen`), bound before privileges
    /// went.
    pub metrics: Option<Exporter>,
    pub privproc: Option<UnixStream>,
    /// A client's rtnetlink announcements and queries (opened by root;
    /// none when they could not be).
    pub monitor: Option<Monitor>,
    pub routes: Option<Netlink>,
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
    /// The I/O threads' signs of life, for the watchdog.
    tun_beat: Arc<Heartbeat>,
    udp_beat: Arc<Heartbeat>,
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
    ///
    /// Returns how the unicast UDP datagrams went (`None`: there were
    /// none): the first error, for a client that wants to know why its
    /// server does not answer.
    fn dispatch(&self, out: &mut Vec<Output>, io: &mut IoBufs) -> Option<io::Result<()>> {
        let mut events = false;
        let mut udp = None;
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
    metrics: Option<Exporter>,
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
    /// A client's server names and their resolution.
    names: Option<Names>,
    /// The addresses the server name gave last (logged when they change).
    resolved: Option<Vec<Ipv4Addr>>,
    /// A name that does not resolve was said in the log (once, until it
    /// resolves).
    unresolved_logged: bool,
    /// A client's watch on the path to its server.
    watch: Option<Watch>,
    /// The error of the last solicitation sent, if it failed (errno).
    send_errno: i32,
    /// What the log last said the client waits for.
    waiting_logged: Option<Waiting>,
    /// Wakes the main loop when the host wakes up.
    alarm: Option<WakeAlarm>,
    /// CLOCK_BOOTTIME - CLOCK_MONOTONIC at the last check.
    boot_offset: Duration,
    /// The servers were changed by a reload (said so in the log when the
    /// client starts using them).
    sighup_servers: bool,
    /// The service manager (sd_notify), if one listens.
    notify: Arc<Notifier>,
    /// The main thread's sign of life, for the watchdog.
    main_beat: Arc<Heartbeat>,
    /// The last `STATUS=` sent: its state key, its text, when.
    notified: Option<(String, String, Instant)>,
    /// A client's port mapping with its home gateway.
    mapper: Option<Mapper>,
}

/// Counts in the service manager's status line are refreshed at most this
/// often (a change of state is sent at once).
const STATUS_EVERY: Duration = Duration::from_secs(5);

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
    let meta = SendMeta {
        ecn,
        ttl,
        segment_size: None,
    };
    socket::send(sock.as_fd(), to, payload, &meta)
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
        names: Option<Names>,
        notify: Notifier,
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
            tun_beat: Arc::default(),
            udp_beat: Arc::default(),
        });
        let watch = names
            .as_ref()
            .map(|_| Watch::new(io.monitor, io.routes, io.ifindex));
        // A timer descriptor needs no privilege; without one, a sleep is
        // still noticed at the next timer.
        let alarm = match WakeAlarm::new() {
            Ok(a) => Some(a),
            Err(e) => {
                log::warn!("no wake-up alarm ({e}): a sleep is noticed at the next timer only");
                None
            }
        };
        Ok(Daemon {
            conf,
            sh,
            ifindex: io.ifindex,
            discovery: io.discovery,
            sigfd: io.sigfd,
            status: io.status,
            metrics: io.metrics,
            privproc: io.privproc,
            wake_rx,
            reader,
            started: base,
            qualified_at: None,
            server_change: None,
            cli_server,
            iobufs: IoBufs::new(headroom),
            names,
            resolved: None,
            unresolved_logged: false,
            watch,
            send_errno: 0,
            waiting_logged: None,
            alarm,
            boot_offset: sleep::offset(),
            sighup_servers: false,
            notify: Arc::new(notify),
            main_beat: Arc::default(),
            notified: None,
            mapper: None,
        })
    }

    /// Carries out what the engine asked for before the daemon existed
    /// (see `setup::run`); its events are acted on when `run` starts.
    pub fn dispatch_early(&mut self, mut out: Vec<Output>) {
        self.sh.dispatch(&mut out, &mut self.iobufs);
    }

    /// Runs until SIGINT or SIGTERM (Ok) or a fatal error.
    pub fn run(&mut self) -> Result<(), String> {
        for (name, f, beat) in [
            (
                "tun",
                Shared::tun_loop as fn(&Shared),
                Arc::clone(&self.sh.tun_beat),
            ),
            ("udp", Shared::udp_loop, Arc::clone(&self.sh.udp_beat)),
        ] {
            let sh = Arc::clone(&self.sh);
            std::thread::Builder::new()
                .name(format!("miredo-{name}"))
                .spawn(move || {
                    let _alive = Alive(beat);
                    f(&sh)
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
        }
        let _alive = Alive(Arc::clone(&self.main_beat));
        if let Some(period) = self.notify.watchdog() {
            notify::spawn_watchdog(
                Arc::clone(&self.notify),
                period,
                vec![
                    ("main".into(), Arc::clone(&self.main_beat)),
                    ("TUN".into(), Arc::clone(&self.sh.tun_beat)),
                    ("UDP".into(), Arc::clone(&self.sh.udp_beat)),
                ],
            )
            .map_err(|e| format!("cannot start the watchdog thread: {e}"))?;
        }
        // Running: a client that cannot reach its server yet runs too (it
        // waits, and says why in its status).
        self.notify.ready();
        self.notify_status(true);
        // The path to the server at start: the baseline of its changes.
        if let Some(w) = self.watch.as_mut() {
            w.check_by(Instant::now());
        }
        if self.client().is_some() && self.watch.is_some() {
            let sh = Arc::clone(&self.sh);
            self.mapper = Mapper::start(
                self.conf.port_mapping,
                self.local().port(),
                self.conf.port_mapping_lifetime,
                Box::new(move || sh.wake()),
            );
        }
        let mut buf = vec![0u8; BUF];
        loop {
            let now = Instant::now();
            self.check_sleep(now);
            self.poll_names(now);
            if self
                .watch
                .as_ref()
                .and_then(Watch::due)
                .is_some_and(|t| t <= now)
            {
                self.check_path(now);
            }
            self.port_mapping();
            self.timeouts();
            self.events();
            self.log_waiting();
            if let Some(why) = lock(&self.sh.fatal).take() {
                return Err(why);
            }
            let next = lock(&self.sh.engine).poll_timeout();
            // Our own timers: the next try of a name, the next path lookup.
            let ours = [
                self.names.as_ref().and_then(Names::due),
                self.watch.as_ref().and_then(Watch::due),
            ]
            .into_iter()
            .flatten()
            .min();
            let wake_at = match (next, ours) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // With a service manager listening, counts in its status line
            // are refreshed every few seconds.
            let most = if self.notify.enabled() {
                STATUS_EVERY.as_millis() as u16
            } else {
                60_000
            };
            let timeout = match wake_at {
                Some(t) => {
                    let d = t.saturating_duration_since(Instant::now());
                    // Round up: waking a millisecond early would spin.
                    PollTimeout::from(d.as_micros().div_ceil(1000).min(u128::from(most)) as u16)
                }
                None => PollTimeout::from(most),
            };
            let deadline = next.map_or(u64::MAX, |t| {
                t.saturating_duration_since(self.sh.base)
                    .as_nanos()
                    .min(u128::from(u64::MAX - 1)) as u64
            });
            self.sh.deadline.store(deadline, Ordering::Relaxed);
            let (sig_r, status_r, wake_r, disc_r, priv_r, reader_r, mon_r, alarm_r, metrics_r) = {
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
                // The reader only speaks when asked: a client's answers
                // about names (a relay asks it nothing between reloads).
                let reader_idx = self
                    .reader
                    .as_ref()
                    .filter(|_| self.names.is_some())
                    .map(|r| {
                        fds.push(PollFd::new(r.fd(), PollFlags::POLLIN));
                        fds.len() - 1
                    });
                let mon_idx = self
                    .watch
                    .as_ref()
                    .and_then(|w| w.monitor.as_ref())
                    .map(|m| {
                        fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                        fds.len() - 1
                    });
                let alarm_idx = self.alarm.as_ref().map(|a| {
                    fds.push(PollFd::new(a.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let metrics_idx = self.metrics.as_ref().map(|m| {
                    fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                self.main_beat.wait();
                let polled = poll(&mut fds, timeout);
                self.main_beat.beat();
                match polled {
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
                    reader_idx.is_some_and(ready),
                    mon_idx.is_some_and(ready),
                    alarm_idx.is_some_and(ready),
                    metrics_idx.is_some_and(ready),
                )
            };
            if alarm_r {
                if let Some(a) = &self.alarm {
                    // The clock jumped: a sleep, or a clock set (the next
                    // iteration's check_sleep tells them apart).
                    a.acknowledge();
                }
            }
            if mon_r {
                self.announcements();
            }
            if reader_r {
                self.read_answers(true);
            }
            if wake_r {
                while matches!((&self.wake_rx).read(&mut buf), Ok(n) if n > 0) {}
            }
            if sig_r {
                for s in signals::drain(&self.sigfd) {
                    match s {
                        Signal::SIGHUP => {
                            self.notify.reloading();
                            self.reload();
                            self.notify.ready();
                            self.notify_status(true);
                        }
                        Signal::SIGINT | Signal::SIGTERM | Signal::SIGQUIT => {
                            log::info!("{s}: stopping");
                            self.notify.stopping();
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
            if metrics_r {
                self.answer_metrics();
            }
            self.notify_status(false);
        }
    }

    /// Tells the service manager what we are doing: at once when the state
    /// changed (or `now`), else when the counts moved and the last status
    /// is a few seconds old.
    fn notify_status(&mut self, now: bool) {
        if !self.notify.enabled() {
            return;
        }
        let (key, text) = {
            let e = lock(&self.sh.engine);
            status::one_line(self, &e)
        };
        let due = match &self.notified {
            None => true,
            Some((k, t, when)) => {
                now || *k != key || (*t != text && when.elapsed() >= STATUS_EVERY)
            }
        };
        if due {
            self.notify.status(&text);
            self.notified = Some((key, text, Instant::now()));
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
        if let Some(sent) = self.sh.dispatch(&mut out, &mut self.iobufs) {
            self.note_send(now, sent);
        }
    }

    /// How the main thread's last datagrams went (a client's solicitations
    /// leave from here): a new error asks the routing table why.
    fn note_send(&mut self, now: Instant, sent: io::Result<()>) {
        let errno = match sent {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(0),
        };
        if errno != self.send_errno {
            self.send_errno = errno;
            if errno != 0 {
                if let Some(w) = self.watch.as_mut() {
                    w.check_by(now);
                }
            }
        }
    }

    /// The client's engine, if this is a client.
    fn client(&self) -> Option<MutexGuard<'_, EngineKind>> {
        let e = lock(&self.sh.engine);
        matches!(&*e, EngineKind::Client(_)).then_some(e)
    }

    /// The server the client uses, if it has one.
    fn current_server(&self) -> Option<Ipv4Addr> {
        match &*self.client()? {
            EngineKind::Client(c) if c.has_server() => Some(c.config().server),
            _ => None,
        }
    }

    /// Tells the client its path changed (or the host slept): a fresh
    /// solicitation at once.
    fn path_changed(&mut self, now: Instant) {
        if let Some(mut e) = self.client() {
            if let EngineKind::Client(c) = &mut *e {
                c.path_changed(now);
            }
        }
        self.sh.wake();
    }

    /// Notices that the host slept since the last check (the boot clock
    /// ran on while the monotonic one stood still).
    fn check_sleep(&mut self, now: Instant) {
        let off = sleep::offset();
        let slept = sleep::slept(self.boot_offset, off, sleep::MIN_SLEEP);
        self.boot_offset = off;
        let Some(d) = slept else { return };
        if self.client().is_none() {
            // A relay: nothing to requalify.
            log::info!("the host slept for {} s", d.as_secs());
            return;
        }
        if self.current_server().is_some() {
            log::info!(
                "the host slept for {} s: soliciting the Teredo server at once (the NAT has most likely forgotten us)",
                d.as_secs()
            );
            self.path_changed(now);
        } else {
            log::info!("the host slept for {} s", d.as_secs());
        }
        if let Some(n) = self.names.as_mut() {
            n.network_changed(now);
        }
        if let Some(w) = self.watch.as_mut() {
            w.check_by(now);
        }
    }

    /// Reads the kernel's announcements; a change that may matter makes a
    /// lookup due shortly (and a name that does not resolve is tried again
    /// then).
    fn announcements(&mut self) {
        let now = Instant::now();
        let Some(w) = self.watch.as_mut() else { return };
        if w.announcements(now) {
            log::debug!("network announcements: the path to the server is looked up again");
        }
    }

    /// Looks up the path to the server; a change makes the client solicit
    /// it at once.
    fn check_path(&mut self, now: Instant) {
        let server = self.current_server();
        let Some(w) = self.watch.as_mut() else { return };
        let Some(server) = server else {
            // No server yet: the network changed, the name may resolve now.
            w.skip();
            if let Some(n) = self.names.as_mut() {
                n.network_changed(now);
            }
            return;
        };
        let checked = w.check(server);
        if let Some(m) = self.mapper.as_mut() {
            match checked.reach {
                network::Reach::Via(libteredo::sys::netlink::Path {
                    gateway: Some(g),
                    src: Some(s),
                    running: true,
                    ..
                }) => m.set_path(Some((g, s))),
                network::Reach::Unknown => {}
                _ => m.set_path(None),
            }
        }
        let Some(what) = checked.change else { return };
        if network::usable(&checked.reach) {
            log::info!(
                "the path to the Teredo server {server} changed ({what}): soliciting it at once"
            );
            // Our local endpoint follows the source address of the path.
            if let network::Reach::Via(libteredo::sys::netlink::Path { src: Some(ip), .. }) =
                checked.reach
            {
                let port = self.local().port();
                if let Some(mut e) = self.client() {
                    if let EngineKind::Client(c) = &mut *e {
                        c.set_local(Some(SocketAddrV4::new(ip, port)));
                    }
                }
            }
            self.path_changed(now);
        } else {
            log::info!("the path to the Teredo server {server} changed ({what})");
        }
    }

    /// Sends the names due to the reader, and acts on a round that ended
    /// without it.
    fn poll_names(&mut self, now: Instant) {
        let Some(n) = self.names.as_mut() else { return };
        let (send, outcome) = n.poll(now);
        for name in send {
            let sent = match self.reader.as_mut() {
                Some(r) => r.resolve(&name).map_err(|e| e.to_string()),
                None => Err("the configuration reader is gone".into()),
            };
            if let Err(e) = sent {
                log::error!("cannot resolve {name}: {e}");
                self.reader_lost();
                return;
            }
        }
        if let Some(o) = outcome {
            self.resolved(now, o);
        }
    }

    /// Reads the reader's answers about names.
    fn read_answers(&mut self, readable: bool) {
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        match r.answers(readable) {
            Ok(answers) => {
                let now = Instant::now();
                for a in answers {
                    let out = self.names.as_mut().and_then(|n| n.answer(now, &a));
                    if let Some(o) = out {
                        self.resolved(now, o);
                    }
                }
            }
            Err(e) => {
                log::error!("configuration reader: {e}");
                self.reader_lost();
            }
        }
    }

    /// The reader died or broke its protocol: no more names, no more
    /// reloads (the daemon runs on with what it has).
    fn reader_lost(&mut self) {
        if self.reader.take().is_some() {
            log::error!(
                "the configuration reader is gone: host names can no longer be resolved, nor the configuration reread; restart miredo"
            );
        }
        // Nothing will answer: no more tries (literals need no answer).
        if !self.names.as_ref().is_some_and(Names::literal) {
            self.names = None;
        }
    }

    /// A round of resolution ended.
    fn resolved(&mut self, now: Instant, o: Outcome) {
        let name = self
            .names
            .as_ref()
            .map_or_else(String::new, |n| n.primary().to_string());
        match o {
            Outcome::Resolved(list, addrs) => {
                self.unresolved_logged = false;
                if self.resolved.as_ref() != Some(&addrs) {
                    if name.parse::<Ipv4Addr>().is_err() {
                        let list_s: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                        log::info!("ServerAddress {name} resolves to {}", list_s.join(", "));
                    }
                    self.resolved = Some(addrs);
                }
                self.apply_servers(now, list);
            }
            Outcome::Failed(why) => {
                if std::mem::replace(&mut self.unresolved_logged, true) {
                    return;
                }
                if let Some(server) = self.current_server() {
                    // The servers known are used: nothing is waited for.
                    let again = self.names.as_ref().and_then(Names::due).is_some();
                    log::warn!(
                        "ServerAddress {name} does not resolve ({why}): keeping the Teredo server {server}{}",
                        if again { "; trying again" } else { "" }
                    );
                } else {
                    self.waiting_logged = Some(Waiting::NameUnresolved);
                    log::warn!(
                        "waiting: the Teredo server name does not resolve ({why}); trying again in {} s, then less and less often (at most every {} s), and at once when the network changes",
                        self.names
                            .as_ref()
                            .and_then(Names::due)
                            .map_or(0, |t| t.saturating_duration_since(now).as_secs()),
                        crate::servers::MAX_RETRY.as_secs()
                    );
                }
            }
        }
    }

    /// Gives the client the servers a name resolved to. The server in use
    /// stays first if the name still gives it (no requalification).
    fn apply_servers(&mut self, now: Instant, list: ServerList) {
        let mut out = Vec::new();
        let mut started = false;
        // A reload's new servers: said so once, whatever happens to them.
        let sighup = std::mem::take(&mut self.sighup_servers);
        {
            let Some(mut e) = self.client() else { return };
            let EngineKind::Client(c) = &mut *e else {
                return;
            };
            let list = if c.has_server() {
                list.starting_with(c.config().server)
            } else {
                list
            };
            let current: Vec<(Ipv4Addr, Ipv4Addr)> = c.servers().collect();
            if c.has_server() && current == list.pairs() {
                return;
            }
            let first = !c.has_server();
            let others: Vec<String> = list.fallbacks.iter().map(|f| f.0.to_string()).collect();
            let changed = c.has_server() && c.config().server != list.server;
            c.set_server_list(
                now,
                list.server,
                list.server2,
                list.fallbacks.clone(),
                &mut out,
            );
            if first || changed {
                let then = if others.is_empty() {
                    String::new()
                } else {
                    format!(", then {}", others.join(", "))
                };
                if sighup {
                    log::info!(
                        "SIGHUP: Teredo server now {} (secondary {}){then}",
                        list.server,
                        list.server2
                    );
                } else {
                    log::info!(
                        "Teredo server {} (secondary address {}){then}",
                        list.server,
                        list.server2
                    );
                }
                started = true;
            } else if !others.is_empty() {
                log::info!(
                    "Teredo servers after {}: {}",
                    list.server,
                    others.join(", ")
                );
            }
        }
        self.sh.dispatch(&mut out, &mut self.iobufs);
        if started {
            // A lookup for the new server: the baseline its changes are
            // measured from.
            if let Some(w) = self.watch.as_mut() {
                w.check_by(now);
            }
            self.sh.wake();
        }
    }

    /// What the client waits for, for the status page (`None`: a relay, or
    /// qualified).
    pub fn waiting_for(&self, e: &EngineKind) -> Option<Waiting> {
        let EngineKind::Client(c) = e else {
            return None;
        };
        let reach = self
            .watch
            .as_ref()
            .map_or(network::Reach::Unknown, Watch::reach);
        network::waiting_for(
            c.has_server(),
            c.qualification().is_some(),
            reach,
            self.send_errno,
        )
    }

    /// Says once in the log what the client waits for when it changes (a
    /// server that does not answer only once a round of solicitations
    /// failed; a name that does not resolve is said where it fails).
    fn log_waiting(&mut self) {
        let (now_waiting, offline, server) = {
            let e = lock(&self.sh.engine);
            let EngineKind::Client(c) = &*e else { return };
            (
                self.waiting_for(&e),
                c.state() == ClientState::Offline,
                c.config().server,
            )
        };
        match now_waiting {
            None => self.waiting_logged = None,
            Some(Waiting::NameUnresolved) => {}
            Some(Waiting::NoAnswer) if !offline => {}
            Some(w) if Some(w) != self.waiting_logged => {
                self.waiting_logged = Some(w);
                match w {
                    Waiting::NoRoute => log::warn!("waiting: no route to the Teredo server {server}; soliciting it again as soon as the network changes"),
                    Waiting::NoAddress => log::warn!("waiting: no IPv4 address to reach the Teredo server {server} from; soliciting it again as soon as the network changes"),
                    _ => log::warn!("waiting: no answer from the Teredo server {server}; trying again"),
                }
            }
            Some(_) => {}
        }
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
            // The ECN field of the outer IPv4 header (RFC 9601: congestion
            // marked on the way must reach the inner packet).
            let (n, from, ecn) = match socket::recv(sock.as_fd(), buf) {
                Ok((n, from, meta)) => (n, from, meta.tos & 0b11),
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
                // The endpoint the address embeds: the mapping's place.
                if let Some(m) = self.mapper.as_mut() {
                    m.set_wanted(Some(mapped));
                }
            }
            Event::ServerLost { old } => {
                log::warn!(
                    "the Teredo server stopped answering: {old} withdrawn, qualifying again"
                );
                self.privproc(Request::Down {
                    ifindex: self.ifindex,
                });
                if let Some(m) = self.mapper.as_mut() {
                    m.set_wanted(None);
                }
                // The name may give other servers now.
                if let Some(n) = self.names.as_mut() {
                    n.refresh(Instant::now());
                }
            }
            Event::NatObserved(nat) => log::info!("NAT behaviour observed: {nat}"),
            Event::ServerChanged { from, to } => {
                log::warn!(
                    "the Teredo server {from} did not answer {} solicitations: moving to {to}, the next address of the server's name",
                    libteredo::proto::client::RS_ATTEMPTS
                );
                self.server_change = Some((from, to, std::time::SystemTime::now()));
                // The path to the new server: the baseline of its changes.
                if let Some(w) = self.watch.as_mut() {
                    w.check_by(Instant::now());
                }
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

    /// Hands the engine the port mapping the mapper thread got (or lost).
    /// (The mapper learns the endpoint to ask for from the engine's
    /// Qualified and ServerLost events.)
    fn port_mapping(&mut self) {
        let Some(change) = self.mapper.as_ref().and_then(Mapper::take_change) else {
            return;
        };
        if let Some(mut e) = self.client() {
            if let EngineKind::Client(c) = &mut *e {
                c.set_port_mapping(change);
            }
        }
    }

    /// The port mapper, if the client runs one.
    pub fn mapper(&self) -> Option<&Mapper> {
        self.mapper.as_ref()
    }

    /// SIGINT/SIGTERM: take the address down before leaving (privproc
    /// destroys the interface when our end of the socket closes), and
    /// delete the port mapping.
    fn shutdown(&mut self) {
        if let Some(mut m) = self.mapper.take() {
            m.stop();
        }
        let qualified =
            matches!(&*lock(&self.sh.engine), EngineKind::Client(c) if c.qualification().is_some());
        if qualified {
            self.privproc(Request::Down {
                ifindex: self.ifindex,
            });
        }
    }

    /// Scrapes: the status lines go to the listener's worker, which
    /// reads the request and converts them (libteredo::sys::http).
    fn answer_metrics(&self) {
        if let Some(m) = &self.metrics {
            m.accept(|| {
                let e = lock(&self.sh.engine);
                status::render(self, &e)
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
            log::info!("SIGHUP: nothing to reload (built-in defaults, or the configuration reader is gone)");
            return;
        };
        let Some(path) = reader.path().map(std::path::Path::to_path_buf) else {
            log::info!("SIGHUP: running on built-in defaults, nothing to reload");
            // The server name is resolved again all the same.
            if let Some(n) = self.names.as_mut() {
                n.refresh(Instant::now());
            }
            return;
        };
        let text = reader.read();
        // Answers about names that came before the file's.
        self.read_answers(false);
        let text = match text {
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
        if new.metrics_listen != old.metrics_listen {
            restart.push("MetricsListen");
        }
        for d in &restart {
            log::warn!("SIGHUP: {d} changed: that needs privileges, restart miredo to apply it; the old value stays");
        }
        if new.port_mapping != old.port_mapping
            || new.port_mapping_lifetime != old.port_mapping_lifetime
        {
            log::warn!("SIGHUP: PortMapping or PortMappingLifetime changed: they are read at start, restart miredo to apply them; the old values stay");
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
        let now = Instant::now();
        let mut start_names = false;
        if self.client().is_some() {
            let changed = new.server_address != applied.server_address
                || new.server_address2 != applied.server_address2;
            match &new.server_address {
                None => log::error!("SIGHUP: no Teredo server: keeping the running one"),
                Some(name) if changed => {
                    // The running server stays until the new name resolves
                    // (at once for an address).
                    let names = Names::new(name, new.server_address2.as_deref(), now);
                    if names.literal() && names.literal_list().is_none() {
                        log::error!(
                            "SIGHUP: {name} has no next address; set ServerAddress2: keeping the running server"
                        );
                    } else {
                        if !names.literal() {
                            log::info!("SIGHUP: Teredo server name now {name}: the running server stays until it resolves");
                        }
                        applied.server_address = new.server_address.clone();
                        applied.server_address2 = new.server_address2.clone();
                        self.names = Some(names);
                        self.resolved = None;
                        self.unresolved_logged = false;
                        self.sighup_servers = true;
                        start_names = true;
                    }
                }
                Some(_) => {
                    // The same name: resolved again (its servers may have
                    // changed).
                    if let Some(n) = self.names.as_mut() {
                        n.refresh(now);
                    }
                }
            }
        }
        self.conf = applied;
        if start_names {
            self.poll_names(now);
        }
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
