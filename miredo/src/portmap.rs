//! The client's port mapping with the home gateway (issue 16): a thread of
//! the unprivileged daemon drives libteredo's sans-IO [`PortMapper`] (PCP,
//! then NAT-PMP) over a UDP socket of its own, bound to the host's address
//! towards the Teredo server. The daemon tells it the path (gateway and
//! source address, from rtnetlink); a new path deletes the old mapping and
//! asks the new gateway, a path without a gateway (no NAT in front) asks
//! nothing. It reports what it holds in a [`MapStatus`] that the status
//! socket shows and the main loop hands to the client engine
//! (`Client::set_port_mapping`), waking it through `wake`.
//!
//! The main loop also tells it the endpoint the client's address embeds
//! (what the Teredo server sees): behind a NAT that gives each flow its own
//! port, the mapping is moved to that port, so that peers reach the
//! address through it (see miredo(8), PORT MAPPING).
//!
//! The gateway is on the LAN, which is not trusted: the mapper takes an
//! answer only from the gateway's address and port with the exact form it
//! asked for (see libteredo::proto::portmap). A gateway that answers
//! nothing or garbage costs one log line and a retry ten minutes later.

use libteredo::conf::miredo::PortMapping;
use libteredo::proto::portmap::{
    Config, Event, Mode, PortMapper, Protocol, Request, MAX_ANSWER, RETRY_LATER,
};
use libteredo::proto::Random;
use libteredo::sys::random::OsRandom;
use libteredo::sys::upnp::{self, Igd};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the thread looks at its commands while it waits for a
/// datagram.
const TICK: Duration = Duration::from_millis(100);
/// How long a shutdown waits for the gateway to confirm the deletion.
pub const DELETE_WAIT: Duration = Duration::from_secs(2);
/// How long after a failed UPnP renewal the IGD is asked again.
const UPNP_RETRY: Duration = Duration::from_secs(30);

/// Where the mapping stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// `PortMapping off`, or no gateway to ask (no NAT in front).
    Off,
    /// Asking (or renewing after a loss).
    Asking,
    Mapped,
    /// The gateway offers nothing (silent, refusing, or not speaking the
    /// protocols asked for); asked again later.
    Unavailable,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Off => "off",
            State::Asking => "asking",
            State::Mapped => "mapped",
            State::Unavailable => "unavailable",
        }
    }
}

/// What the status socket shows and the engine is told.
#[derive(Clone, Debug)]
pub struct MapStatus {
    pub state: State,
    pub gateway: Option<Ipv4Addr>,
    /// PCP, NAT-PMP or UPnP IGD.
    pub protocol: Option<&'static str>,
    pub external: Option<SocketAddrV4>,
    /// When the mapping lapses unless renewed.
    pub expires: Option<Instant>,
    /// Why there is none (the last refusal or silence).
    pub why: Option<String>,
    /// The external endpoint changed since the main loop last took it.
    changed: bool,
}

enum Cmd {
    /// The path to the server: its gateway and our source address.
    Path(Option<(Ipv4Addr, Ipv4Addr)>),
    /// The external endpoint wanted (the client's mapped endpoint).
    Want(Option<SocketAddrV4>),
    Stop,
}

/// The daemon's handle on the mapper thread.
pub struct Mapper {
    tx: Sender<Cmd>,
    status: Arc<Mutex<MapStatus>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    /// The last path given (unchanged paths are not sent again).
    path: Option<Option<(Ipv4Addr, Ipv4Addr)>>,
    /// The last wanted endpoint given.
    wanted: Option<SocketAddrV4>,
}

fn lock(m: &Mutex<MapStatus>) -> MutexGuard<'_, MapStatus> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Mapper {
    /// Starts the thread; `port` is the Teredo service port to map. With
    /// `PortMapping off` there is no thread (`None`).
    pub fn start(
        setting: PortMapping,
        port: u16,
        lifetime: u32,
        wake: Box<dyn Fn() + Send>,
    ) -> Option<Mapper> {
        let mode = match setting {
            PortMapping::Off => return None,
            PortMapping::Auto => Some(Mode::Auto),
            PortMapping::Pcp => Some(Mode::Pcp),
            PortMapping::NatPmp => Some(Mode::NatPmp),
            PortMapping::Upnp => None,
        };
        let status = Arc::new(Mutex::new(MapStatus {
            state: State::Off,
            gateway: None,
            protocol: None,
            external: None,
            expires: None,
            why: None,
            changed: false,
        }));
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let st = Arc::clone(&status);
        let thread = std::thread::Builder::new()
            .name("miredo-portmap".into())
            .spawn(move || {
                let mut w = Worker {
                    setting,
                    mode,
                    port,
                    lifetime,
                    status: st,
                    wake,
                    current: None,
                    upnp: None,
                    upnp_next: None,
                    wanted: None,
                    upnp_refused: None,
                };
                w.run(&rx);
                let _ = done_tx.send(());
            });
        match thread {
            Ok(t) => Some(Mapper {
                tx,
                status,
                done,
                thread: Some(t),
                path: None,
                wanted: None,
            }),
            Err(e) => {
                log::error!("cannot start the port mapping thread: {e}; no port mapping");
                None
            }
        }
    }

    /// The path to the server: `Some((gateway, source))`, or `None` when
    /// there is no gateway (no route, or the server is on the link).
    pub fn set_path(&mut self, path: Option<(Ipv4Addr, Ipv4Addr)>) {
        if self.path == Some(path) {
            return;
        }
        self.path = Some(path);
        let _ = self.tx.send(Cmd::Path(path));
    }

    /// The external endpoint the client wants: the one its server sees
    /// (`None` while it is not qualified).
    pub fn set_wanted(&mut self, wanted: Option<SocketAddrV4>) {
        if self.wanted == wanted {
            return;
        }
        self.wanted = wanted;
        let _ = self.tx.send(Cmd::Want(wanted));
    }

    pub fn status(&self) -> MapStatus {
        lock(&self.status).clone()
    }

    /// The external endpoint to tell the engine, if it changed since the
    /// last call.
    pub fn take_change(&self) -> Option<Option<SocketAddrV4>> {
        let mut s = lock(&self.status);
        if !s.changed {
            return None;
        }
        s.changed = false;
        Some(s.external.filter(|_| s.state == State::Mapped))
    }

    /// Deletes the mapping and ends the thread, waiting at most
    /// [`DELETE_WAIT`] for the gateway (and a little for the thread).
    pub fn stop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
        match self
            .done
            .recv_timeout(DELETE_WAIT + Duration::from_millis(500))
        {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                log::warn!("the port mapping thread did not end in time");
            }
        }
    }
}

/// The mapper of one gateway (PCP and NAT-PMP), with its socket.
struct Current {
    gateway: Ipv4Addr,
    source: Ipv4Addr,
    /// None with `PortMapping upnp`.
    pcp: Option<(PortMapper, UdpSocket)>,
}

/// A UPnP IGD mapping held.
struct UpnpHeld {
    igd: Igd,
    external: SocketAddrV4,
    renew_at: Instant,
}

fn label(p: Protocol) -> &'static str {
    match p {
        Protocol::Pcp => "PCP",
        Protocol::NatPmp => "NAT-PMP",
    }
}

struct Worker {
    setting: PortMapping,
    /// PCP and NAT-PMP's mode (None: UPnP IGD only).
    mode: Option<Mode>,
    port: u16,
    lifetime: u32,
    status: Arc<Mutex<MapStatus>>,
    wake: Box<dyn Fn() + Send>,
    current: Option<Current>,
    upnp: Option<UpnpHeld>,
    /// When UPnP IGD may be tried (again).
    upnp_next: Option<Instant>,
    /// The external endpoint the client wants.
    wanted: Option<SocketAddrV4>,
    /// A wanted endpoint the UPnP IGD did not give.
    upnp_refused: Option<SocketAddrV4>,
}

impl Worker {
    fn run(&mut self, rx: &Receiver<Cmd>) {
        let mut buf = vec![0u8; MAX_ANSWER + 1];
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Path(p)) => self.new_path(p),
                    Ok(Cmd::Want(w)) => self.want(w),
                    Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
                        self.shutdown(&mut buf);
                        return;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            let Some(c) = self.current.as_mut() else {
                match rx.recv() {
                    Ok(Cmd::Path(p)) => self.new_path(p),
                    Ok(Cmd::Want(w)) => self.want(w),
                    Ok(Cmd::Stop) | Err(_) => return,
                }
                continue;
            };
            let mut events = Vec::new();
            if let Some((mapper, sock)) = c.pcp.as_mut() {
                let now = Instant::now();
                let mut out = Vec::new();
                if mapper.poll_timeout().is_some_and(|t| t <= now) {
                    mapper.handle_timeout(now, &mut out, &mut events);
                }
                let wait = mapper
                    .poll_timeout()
                    .map_or(TICK, |t| t.saturating_duration_since(now).min(TICK))
                    .max(Duration::from_millis(1));
                send(sock, &out);
                out.clear();
                let _ = sock.set_read_timeout(Some(wait));
                match sock.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(from))) => {
                        let now = Instant::now();
                        mapper.handle_udp(now, from, &buf[..n], &mut out, &mut events);
                        send(sock, &out);
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        // An ICMP error (the gateway's port unreachable)
                        // shows up here: the mapper's retries and silence
                        // handle it.
                        log::debug!("port mapping socket: {e}");
                    }
                }
            } else {
                match rx.recv_timeout(TICK) {
                    Ok(Cmd::Path(p)) => self.new_path(p),
                    Ok(Cmd::Want(w)) => self.want(w),
                    Ok(Cmd::Stop) | Err(RecvTimeoutError::Disconnected) => {
                        self.shutdown(&mut buf);
                        return;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            for e in events {
                self.event(e);
            }
            self.upnp_step();
        }
    }

    /// The client wants `w`: PCP and NAT-PMP move the mapping there (see
    /// `PortMapper::want`); UPnP IGD does at its next step.
    fn want(&mut self, w: Option<SocketAddrV4>) {
        self.wanted = w;
        if let Some((mapper, sock)) = self.current.as_mut().and_then(|c| c.pcp.as_mut()) {
            let mut out = Vec::new();
            mapper.want(w, Instant::now(), &mut out);
            if !out.is_empty() {
                log::info!(
                    "port mapping: moving the mapping to the port the server sees, {}",
                    w.map_or_else(String::new, |w| w.to_string())
                );
            }
            send(sock, &out);
        }
    }

    /// Whether UPnP IGD is to be asked: it was chosen, or auto found no
    /// PCP or NAT-PMP gateway.
    fn upnp_wanted(&self) -> bool {
        match self.setting {
            PortMapping::Upnp => true,
            PortMapping::Auto => self.status().state == State::Unavailable,
            _ => false,
        }
    }

    /// UPnP IGD: a mapping asked for when wanted and due, renewed at half
    /// its lifetime. Blocking (bounded) exchanges.
    fn upnp_step(&mut self) {
        let Some(c) = self.current.as_ref() else {
            return;
        };
        let (gateway, source) = (c.gateway, c.source);
        let internal = SocketAddrV4::new(source, self.port);
        let now = Instant::now();
        self.upnp_move(internal);
        if let Some(h) = self.upnp.as_mut() {
            if now < h.renew_at {
                return;
            }
            match upnp::add(&h.igd, h.external.port(), internal, self.lifetime) {
                Ok(lease) => {
                    h.renew_at = now + renew_after(lease);
                    let expires = (lease != 0).then(|| now + Duration::from_secs(lease.into()));
                    self.set(|s| s.expires = expires);
                }
                Err(e) => {
                    log::warn!(
                        "port mapping: the UPnP IGD {gateway} did not renew the mapping: {e}"
                    );
                    self.upnp = None;
                    self.upnp_next = Some(now + UPNP_RETRY);
                    self.set(|s| {
                        s.changed = true;
                        s.state = State::Asking;
                        s.external = None;
                        s.expires = None;
                        s.why = Some(e.to_string());
                    });
                }
            }
            return;
        }
        if !self.upnp_wanted() || self.upnp_next.is_some_and(|t| now < t) {
            return;
        }
        self.upnp_next = Some(now + RETRY_LATER);
        let (wanted, refused, lifetime) = (self.wanted, self.upnp_refused, self.lifetime);
        let mut newly_refused = None;
        let got = upnp::discover(gateway, source).and_then(|igd| {
            let ip = upnp::external_ip(&igd)?;
            // The port the server sees if it is on this gateway, else ours.
            if let Some(w) = wanted.filter(|w| *w.ip() == ip && Some(*w) != refused) {
                match upnp::add(&igd, w.port(), internal, lifetime) {
                    Ok(lease) => return Ok((igd, w, lease)),
                    Err(e) => {
                        log::info!("port mapping: the UPnP IGD {gateway} did not map {w}: {e}");
                        newly_refused = Some(w);
                    }
                }
            }
            let lease = upnp::add(&igd, self.port, internal, lifetime)?;
            Ok((igd, SocketAddrV4::new(ip, self.port), lease))
        });
        if newly_refused.is_some() {
            self.upnp_refused = newly_refused;
        }
        match got {
            Ok((igd, external, lease)) => {
                log::info!(
                    "port mapping: {gateway} maps {external} to our UDP port {} (UPnP IGD, {})",
                    self.port,
                    if lease == 0 {
                        "permanent".to_string()
                    } else {
                        format!("{lease} s")
                    }
                );
                let now = Instant::now();
                self.upnp = Some(UpnpHeld {
                    igd,
                    external,
                    renew_at: now + renew_after(lease),
                });
                self.set(|s| {
                    s.changed = true;
                    s.state = State::Mapped;
                    s.protocol = Some("UPnP IGD");
                    s.external = Some(external);
                    s.expires = (lease != 0).then(|| now + Duration::from_secs(lease.into()));
                    s.why = None;
                });
            }
            Err(e) => {
                let why = match (self.setting, self.status().why) {
                    (PortMapping::Auto, Some(before)) => format!("{before}; UPnP IGD: {e}"),
                    _ => e.to_string(),
                };
                log::info!("port mapping: none ({why}); asked again later");
                self.set(|s| {
                    s.state = State::Unavailable;
                    s.why = Some(why);
                });
            }
        }
    }

    /// Moves the UPnP IGD mapping held to the endpoint the client wants,
    /// when it is another port of the same external address and the IGD
    /// has not refused it: the wanted port is added first, then the old
    /// one deleted (an IGD maps each external port on its own, unlike PCP
    /// and NAT-PMP's one mapping per internal port).
    fn upnp_move(&mut self, internal: SocketAddrV4) {
        let Some(h) = self.upnp.as_ref() else { return };
        let Some(w) = self.wanted else { return };
        if h.external == w || h.external.ip() != w.ip() || self.upnp_refused == Some(w) {
            return;
        }
        match upnp::add(&h.igd, w.port(), internal, self.lifetime) {
            Ok(lease) => {
                let _ = upnp::delete(&h.igd, h.external.port());
                log::info!(
                    "port mapping: moved the UPnP IGD mapping from {} to {w}, the endpoint the server sees",
                    h.external
                );
                let now = Instant::now();
                if let Some(h) = self.upnp.as_mut() {
                    h.external = w;
                    h.renew_at = now + renew_after(lease);
                }
                self.set(|s| {
                    s.changed = true;
                    s.external = Some(w);
                    s.expires = (lease != 0).then(|| now + Duration::from_secs(lease.into()));
                });
            }
            Err(e) => {
                log::info!(
                    "port mapping: the UPnP IGD did not map {w} to {internal}: {e}; keeping {}",
                    h.external
                );
                self.upnp_refused = Some(w);
            }
        }
    }

    /// A new path: the old gateway's mapping is deleted (one request, not
    /// waited for), the new gateway asked.
    fn new_path(&mut self, path: Option<(Ipv4Addr, Ipv4Addr)>) {
        if let Some(mut old) = self.current.take() {
            if path.is_some_and(|(g, s)| g == old.gateway && s == old.source) {
                self.current = Some(old);
                return;
            }
            if let Some((mut mapper, sock)) = old.pcp.take() {
                let mut out = Vec::new();
                let held = mapper.mapping().is_some();
                mapper.stop(Instant::now(), &mut out);
                send(&sock, &out);
                if held {
                    log::info!(
                        "port mapping: the path changed; the mapping on {} deleted",
                        old.gateway
                    );
                }
            }
            if let Some(h) = self.upnp.take() {
                let _ = upnp::delete(&h.igd, h.external.port());
                log::info!(
                    "port mapping: the path changed; the UPnP mapping on {} deleted",
                    old.gateway
                );
            }
        }
        self.upnp_next = None;
        self.upnp_refused = None;
        let Some((gateway, source)) = path else {
            self.set(|s| {
                let had = s.external.is_some();
                *s = MapStatus {
                    state: State::Off,
                    gateway: None,
                    protocol: None,
                    external: None,
                    expires: None,
                    why: Some("no gateway on the path to the server".into()),
                    changed: had || s.changed,
                };
            });
            return;
        };
        let pcp = match self.mode {
            None => None,
            Some(mode) => match UdpSocket::bind(SocketAddrV4::new(source, 0)) {
                Ok(sock) => {
                    let mut nonce = [0u8; 12];
                    OsRandom.fill(&mut nonce);
                    let cfg = Config {
                        mode,
                        gateway,
                        internal: SocketAddrV4::new(source, self.port),
                        lifetime: self.lifetime,
                    };
                    let now = Instant::now();
                    let mut mapper = PortMapper::new(cfg, nonce, now);
                    // No mapping yet: this only sets what the first
                    // request suggests.
                    mapper.want(self.wanted, now, &mut Vec::new());
                    Some((mapper, sock))
                }
                Err(e) => {
                    log::warn!(
                        "port mapping: cannot open a socket on {source}: {e}; no port mapping"
                    );
                    return;
                }
            },
        };
        log::debug!(
            "port mapping: asking {gateway} for UDP {source}:{}",
            self.port
        );
        self.set(|s| {
            let had = s.external.is_some();
            *s = MapStatus {
                state: State::Asking,
                gateway: Some(gateway),
                protocol: None,
                external: None,
                expires: None,
                why: None,
                changed: had || s.changed,
            };
        });
        self.current = Some(Current {
            gateway,
            source,
            pcp,
        });
    }

    fn event(&mut self, e: Event) {
        let gw = self.current.as_ref().map(|c| c.gateway);
        let gw = gw.map_or("the gateway".to_string(), |g| g.to_string());
        match e {
            Event::Mapped {
                protocol,
                external,
                lifetime,
            } => {
                let protocol = label(protocol);
                let s = self.status();
                if s.external != Some(external) || s.protocol != Some(protocol) {
                    log::info!(
                        "port mapping: {gw} maps {external} to our UDP port {} ({protocol}, {} s)",
                        self.port,
                        lifetime.as_secs()
                    );
                }
                self.set(|s| {
                    s.changed |= s.external != Some(external) || s.state != State::Mapped;
                    s.state = State::Mapped;
                    s.protocol = Some(protocol);
                    s.external = Some(external);
                    s.expires = Some(Instant::now() + lifetime);
                    s.why = None;
                });
            }
            Event::Lost { why } if self.upnp.is_some() => {
                log::debug!("port mapping: {why} (the UPnP IGD mapping stays)");
            }
            Event::Unavailable { why } if self.upnp.is_some() => {
                log::debug!("port mapping: {why} (the UPnP IGD mapping stays)");
            }
            Event::Lost { why } => {
                log::warn!("port mapping: the mapping on {gw} is gone: {why}");
                self.set(|s| {
                    s.changed |= s.external.is_some();
                    s.state = State::Asking;
                    s.external = None;
                    s.expires = None;
                    s.why = Some(why);
                });
            }
            Event::Unavailable { why } => {
                // Said once until a mapping comes (the mapper asks again
                // every ten minutes); in auto, UPnP IGD is tried next and
                // says it for both.
                if self.status().state != State::Unavailable && self.setting != PortMapping::Auto {
                    log::info!("port mapping: none ({why}); asked again later");
                }
                self.set(|s| {
                    s.changed |= s.external.is_some();
                    s.state = State::Unavailable;
                    s.protocol = None;
                    s.external = None;
                    s.expires = None;
                    s.why = Some(why);
                });
            }
        }
    }

    /// Deletes the mapping, waiting at most [`DELETE_WAIT`] for the
    /// gateway's answer.
    fn shutdown(&mut self, buf: &mut [u8]) {
        let Some(c) = self.current.take() else {
            return;
        };
        if let Some(h) = self.upnp.take() {
            match upnp::delete(&h.igd, h.external.port()) {
                Ok(()) => log::info!("port mapping: deleted on {} (UPnP IGD)", c.gateway),
                Err(e) => log::info!(
                    "port mapping: the UPnP IGD {} did not delete the mapping: {e}",
                    c.gateway
                ),
            }
        }
        let Some((mut mapper, sock)) = c.pcp else {
            return;
        };
        if mapper.mapping().is_none() {
            return;
        }
        let start = Instant::now();
        let mut out = Vec::new();
        let mut events = Vec::new();
        mapper.stop(start, &mut out);
        send(&sock, &out);
        while let Some(t) = mapper.poll_timeout() {
            let now = Instant::now();
            if now >= start + DELETE_WAIT {
                log::info!("port mapping: {} did not confirm the deletion", c.gateway);
                return;
            }
            out.clear();
            if t <= now {
                mapper.handle_timeout(now, &mut out, &mut events);
                send(&sock, &out);
                continue;
            }
            let wait = t.min(start + DELETE_WAIT).saturating_duration_since(now);
            let _ = sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
            if let Ok((n, SocketAddr::V4(from))) = sock.recv_from(buf) {
                mapper.handle_udp(Instant::now(), from, &buf[..n], &mut out, &mut events);
            }
        }
        log::info!("port mapping: deleted on {}", c.gateway);
    }

    fn status(&self) -> MapStatus {
        lock(&self.status).clone()
    }

    fn set(&self, f: impl FnOnce(&mut MapStatus)) {
        let changed = {
            let mut s = lock(&self.status);
            f(&mut s);
            s.changed
        };
        if changed {
            (self.wake)();
        }
    }
}

/// When to renew a UPnP lease of `lease` seconds: at half of it (a
/// permanent one is added again every half hour, in case the device
/// forgot it).
fn renew_after(lease: u32) -> Duration {
    match lease {
        0 => Duration::from_secs(1800),
        l => Duration::from_secs(u64::from(l).div_ceil(2)),
    }
}

fn send(sock: &UdpSocket, out: &[Request]) {
    for r in out {
        if let Err(e) = sock.send_to(&r.payload, r.to) {
            log::debug!("port mapping: sending to {}: {e}", r.to);
        }
    }
}
