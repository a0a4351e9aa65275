//! The unprivileged event loop: the TUN device, the Teredo UDP socket, the
//! discovery socket, signals, the status socket and miredo-privproc, around
//! one sans-IO engine.

use crate::status;
use libteredo::conf::miredo::MiredoConfig;
use libteredo::privsep::{self, Reply, Request};
use libteredo::proto::client::Client;
use libteredo::proto::relay::Relay;
use libteredo::proto::stats::Stats;
use libteredo::proto::{Event, Output};
use libteredo::sys::signals;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Packets handled per wake-up and per source before looking at the others.
const BATCH: usize = 64;
/// The largest datagram or packet we accept.
const BUF: usize = 65536;

pub enum EngineKind {
    Client(Box<Client>),
    Relay(Box<Relay>),
}

/// The daemon's descriptors.
pub struct Io {
    pub tun: tun_rs::SyncDevice,
    pub ifindex: u32,
    pub udp: UdpSocket,
    pub local: SocketAddrV4,
    pub discovery: Option<UdpSocket>,
    pub sigfd: SignalFd,
    pub status: UnixListener,
    pub privproc: Option<UnixStream>,
}

pub struct Daemon {
    conf: MiredoConfig,
    engine: EngineKind,
    io: Io,
    /// The configuration's directory, file name and full path (for SIGHUP).
    conf_dir: Option<(OwnedFd, OsString, PathBuf)>,
    out: Vec<Output>,
    started: Instant,
    qualified_at: Option<Duration>,
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

/// Sends a datagram whose IPv4 header carries `ecn` (RFC 9601: the inner
/// ECN field copied out), per packet, without changing the socket.
fn send_with_ecn(sock: &UdpSocket, payload: &[u8], to: SocketAddrV4, ecn: u8) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrIn};
    if ecn == 0 {
        return sock.send_to(payload, to);
    }
    let tos = i32::from(ecn & 0b11);
    let addr = SockaddrIn::from(to);
    sendmsg(
        sock.as_raw_fd(),
        &[io::IoSlice::new(payload)],
        &[ControlMessage::Ipv4Tos(&(tos as u8))],
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
        conf_dir: Option<(OwnedFd, OsString, PathBuf)>,
    ) -> Self {
        Daemon {
            conf,
            engine,
            io,
            conf_dir,
            out: Vec::with_capacity(64),
            started: Instant::now(),
            qualified_at: None,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.engine {
            EngineKind::Client(c) => c.poll_timeout(),
            EngineKind::Relay(r) => r.poll_timeout(),
        }
    }

    pub fn stats(&self) -> &Stats {
        match &self.engine {
            EngineKind::Client(c) => c.stats(),
            EngineKind::Relay(r) => r.stats(),
        }
    }

    /// Runs until SIGINT or SIGTERM (Ok) or a fatal error.
    pub fn run(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; BUF];
        // Start the engine's timers (the client solicits at once).
        self.timeouts(Instant::now())?;
        loop {
            let timeout = match self.poll_timeout() {
                Some(t) => {
                    let d = t.saturating_duration_since(Instant::now());
                    // Round up: waking a millisecond early would spin.
                    let ms = d.as_micros().div_ceil(1000).min(60_000) as u16;
                    PollTimeout::from(ms)
                }
                None => PollTimeout::from(60_000u16),
            };
            let (tun_r, udp_r, disc_r, sig_r, status_r, priv_r) = {
                let mut fds = vec![
                    PollFd::new(self.io.tun.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.io.udp.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.io.sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.io.status.as_fd(), PollFlags::POLLIN),
                ];
                if let Some(d) = &self.io.discovery {
                    fds.push(PollFd::new(d.as_fd(), PollFlags::POLLIN));
                }
                let priv_idx = self.io.privproc.as_ref().map(|p| {
                    fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let disc_idx = self.io.discovery.as_ref().map(|_| 4);
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(format!("poll: {e}")),
                }
                let ready = |i: usize| fds[i].revents().is_some_and(|r| !r.is_empty());
                (
                    ready(0),
                    ready(1),
                    disc_idx.is_some_and(ready),
                    ready(2),
                    ready(3),
                    priv_idx.is_some_and(ready),
                )
            };
            if sig_r {
                for s in signals::drain(&self.io.sigfd) {
                    match s {
                        Signal::SIGHUP => self.reload(),
                        Signal::SIGINT | Signal::SIGTERM => {
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
            if udp_r {
                self.read_udp(&mut buf, false)?;
            }
            if disc_r {
                self.read_udp(&mut buf, true)?;
            }
            if tun_r {
                self.read_tun(&mut buf)?;
            }
            if status_r {
                self.answer_status();
            }
            self.timeouts(Instant::now())?;
        }
    }

    fn timeouts(&mut self, now: Instant) -> Result<(), String> {
        if self.poll_timeout().is_some_and(|t| t <= now) {
            let mut out = std::mem::take(&mut self.out);
            match &mut self.engine {
                EngineKind::Client(c) => c.handle_timeout(now, &mut out),
                EngineKind::Relay(r) => r.handle_timeout(now, &mut out),
            }
            self.flush(&mut out)?;
            self.out = out;
        }
        Ok(())
    }

    fn read_udp(&mut self, buf: &mut [u8], discovery: bool) -> Result<(), String> {
        for _ in 0..BATCH {
            let sock = if discovery {
                match &self.io.discovery {
                    Some(s) => s,
                    None => return Ok(()),
                }
            } else {
                &self.io.udp
            };
            let (n, from, ecn) = match recv_with_ecn(sock, buf) {
                Ok(x) => x,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors from earlier sends surface here: not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(format!("UDP receive: {e}")),
            };
            let Some(from) = from else { continue };
            let to = if discovery {
                SocketAddrV4::new(
                    libteredo::addr::DISCOVERY_ADDR,
                    libteredo::addr::TEREDO_PORT,
                )
            } else {
                self.io.local
            };
            let now = Instant::now();
            let mut out = std::mem::take(&mut self.out);
            match &mut self.engine {
                EngineKind::Client(c) => c.handle_udp_ecn(now, from, to, ecn, &buf[..n], &mut out),
                EngineKind::Relay(r) => r.handle_udp_ecn(now, from, to, ecn, &buf[..n], &mut out),
            }
            self.flush(&mut out)?;
            self.out = out;
        }
        Ok(())
    }

    fn read_tun(&mut self, buf: &mut [u8]) -> Result<(), String> {
        for _ in 0..BATCH {
            let n = match self.io.tun.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("TUN receive: {e}")),
            };
            let now = Instant::now();
            let mut out = std::mem::take(&mut self.out);
            match &mut self.engine {
                EngineKind::Client(c) => c.handle_tun(now, &buf[..n], &mut out),
                EngineKind::Relay(r) => r.handle_tun(now, &buf[..n], &mut out),
            }
            self.flush(&mut out)?;
            self.out = out;
        }
        Ok(())
    }

    /// Carries out what the engine asked for.
    fn flush(&mut self, out: &mut Vec<Output>) -> Result<(), String> {
        for o in out.drain(..) {
            match o {
                Output::Udp(t) => match send_with_ecn(&self.io.udp, &t.payload, t.to, t.ecn) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        log::debug!("UDP send buffer full: dropped a datagram to {}", t.to)
                    }
                    Err(e) => log::debug!("UDP send to {}: {e}", t.to),
                },
                Output::Tun(p) => {
                    if let Err(e) = self.io.tun.send(&p) {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            log::debug!("TUN send: {e}");
                        }
                    }
                }
                Output::Event(e) => self.event(e)?,
            }
        }
        Ok(())
    }

    fn event(&mut self, e: Event) -> Result<(), String> {
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
                    Some(o) => log::info!("new Teredo address {addr} (was {o}): the NAT mapping changed to {mapped}"),
                    None => log::info!(
                        "qualified: Teredo address {addr}, mapped {mapped}, MTU {mtu}, NAT {nat}, after {:.0} ms",
                        self.started.elapsed().as_secs_f64() * 1000.0
                    ),
                }
                self.privproc(Request::Up {
                    ifindex: self.io.ifindex,
                    address: addr,
                    mtu,
                })
            }
            Event::ServerLost { old } => {
                log::warn!(
                    "the Teredo server stopped answering: {old} withdrawn, qualifying again"
                );
                self.privproc(Request::Down {
                    ifindex: self.io.ifindex,
                })
            }
            Event::NatObserved(nat) => {
                log::info!("NAT behaviour observed: {nat}");
                Ok(())
            }
        }
    }

    /// Sends a request to miredo-privproc and waits for its answer.
    fn privproc(&mut self, req: Request) -> Result<(), String> {
        let Some(p) = self.io.privproc.as_mut() else {
            return Ok(());
        };
        let _ = p.set_read_timeout(Some(Duration::from_secs(10)));
        privsep::write_frame(p, &req).map_err(|e| format!("miredo-privproc: {e}"))?;
        match privsep::read_frame::<_, Reply>(p) {
            Ok(Reply::Ok) => Ok(()),
            Ok(Reply::Refused(why)) => Err(format!("miredo-privproc refused {req:?}: {why}")),
            Ok(other) => {
                log::warn!("miredo-privproc could not apply {req:?}: {other:?}");
                Ok(())
            }
            Err(e) => Err(format!("miredo-privproc: {e}")),
        }
    }

    /// SIGINT/SIGTERM: take the address down before leaving (privproc
    /// destroys the interface when our end of the socket closes).
    fn shutdown(&mut self) {
        if let EngineKind::Client(c) = &self.engine {
            if c.qualification().is_some() {
                let _ = self.privproc(Request::Down {
                    ifindex: self.io.ifindex,
                });
            }
        }
    }

    fn answer_status(&mut self) {
        for _ in 0..16 {
            match self.io.status.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
                    let text = status::render(self);
                    let _ = s.write_all(text.as_bytes());
                }
                Err(_) => return,
            }
        }
    }

    /// SIGHUP: read the file again; apply what needs no privilege.
    fn reload(&mut self) {
        let Some((dir, name, path)) = &self.conf_dir else {
            log::info!("SIGHUP: running on built-in defaults, nothing to reload");
            return;
        };
        let path = path.clone();
        let text = match nix::fcntl::openat(
            dir,
            name.as_os_str(),
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => {
                let mut f = std::fs::File::from(fd);
                let mut s = String::new();
                match f.read_to_string(&mut s) {
                    Ok(_) => s,
                    Err(e) => {
                        log::error!(
                            "SIGHUP: cannot read {}: {e}; keeping the running configuration",
                            path.display()
                        );
                        return;
                    }
                }
            }
            Err(e) => {
                log::error!(
                    "SIGHUP: cannot open {}: {e}; keeping the running configuration",
                    path.display()
                );
                return;
            }
        };
        let new = match MiredoConfig::parse(&text, &path.to_string_lossy()) {
            Ok(c) => c,
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
        if let EngineKind::Client(c) = &mut self.engine {
            if new.server_address != applied.server_address
                || new.server_address2 != applied.server_address2
            {
                match new.resolve_servers() {
                    Ok(Some((s1, s2))) => {
                        let mut out = std::mem::take(&mut self.out);
                        c.set_servers(Instant::now(), s1, s2, &mut out);
                        applied.server_address = new.server_address.clone();
                        applied.server_address2 = new.server_address2.clone();
                        log::info!("SIGHUP: Teredo server now {s1} (secondary {s2})");
                        if let Err(e) = self.flush(&mut out) {
                            log::error!("{e}");
                        }
                        self.out = out;
                    }
                    Ok(None) => log::error!("SIGHUP: no Teredo server: keeping the running one"),
                    Err(e) => log::error!(
                        "SIGHUP: cannot resolve the new server: {e}; keeping the running one"
                    ),
                }
            }
        }
        self.conf = applied;
        log::info!("SIGHUP: configuration {} reloaded", path.display());
    }

    // Accessors for the status page.

    pub fn conf(&self) -> &MiredoConfig {
        &self.conf
    }

    pub fn engine(&self) -> &EngineKind {
        &self.engine
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.io.local
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn qualified_after(&self) -> Option<Duration> {
        self.qualified_at
    }
}
