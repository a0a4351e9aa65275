//! Start-up, step three, running unprivileged: the daemon's control loop,
//! on the main thread, once root has opened everything
//! (`crate::opened_as_root`) and the privileges are gone
//! (`crate::dropping`). The packets go through the I/O threads
//! (`crate::io_threads`); this loop does the rest: timers, signals
//! (SIGHUP: `reload`), the status socket and the metrics listener (written
//! from a `crate::status::Snapshot`), local discovery and the engine's
//! events (`events`), miredo-privproc's requests
//! (`crate::privproc_client`), and, for a client, the host's network: the
//! server names resolved through the reader process until they resolve
//! (`resolving`), and the path to the server through rtnetlink and the
//! host's sleep (`path_watch`), each turned into an engine input
//! (`Client::set_server_list`, `Client::path_changed`).

mod events;
mod path_watch;
mod reload;
mod resolving;

use crate::engine::EngineKind;
use crate::io_threads::{lock, Shared, BUF};
use crate::iobufs::IoBufs;
use crate::network::{Waiting, Watch};
use crate::opened_as_root::Io;
use crate::portmap::Mapper;
use crate::privproc_client::PrivprocClient;
use crate::servers::Names;
use crate::status::{self, ClientSnapshot, EngineSnapshot, RelaySnapshot, ServerChange, Snapshot};
use libteredo::conf::miredo::MiredoConfig;
use libteredo::privsep::{Request, TeredoPrefix};
use libteredo::proto::Output;
use libteredo::proto::PeerClass;
use libteredo::sys::http::Exporter;
use libteredo::sys::notify::{self, Alive, Heartbeat, Notifier, StatusLine, STATUS_EVERY};
use libteredo::sys::poll::PollSet;
use libteredo::sys::reader::ConfigReader;
use libteredo::sys::signals;
use libteredo::sys::sleep::{self, WakeAlarm};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

pub struct Daemon {
    conf: MiredoConfig,
    sh: Arc<Shared>,
    ifindex: u32,
    discovery: Option<UdpSocket>,
    sigfd: SignalFd,
    status: UnixListener,
    metrics: Option<Exporter>,
    privproc: Option<PrivprocClient>,
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
    /// Why the next loss of the server is no loss at all (the list no
    /// longer has it): said instead of "stopped answering".
    leaving_because: Option<String>,
    /// The service manager (sd_notify), if one listens.
    notify: Arc<Notifier>,
    /// The main thread's sign of life, for the watchdog.
    main_beat: Arc<Heartbeat>,
    /// The last `STATUS=` sent.
    notified: StatusLine,
    /// A client's port mapping with its home gateway.
    mapper: Option<Mapper>,
    /// The pid file's keeper: dropped last (after the reader above), it
    /// lets the keeper remove the file, and reaps it.
    _pid_keeper: Option<libteredo::sys::pidfile::Keeper>,
}

impl Daemon {
    /// Lets miredo-privproc go, and waits for it to have deleted the
    /// interface (see [`PrivprocClient::release`]): the interface is gone
    /// when we are.
    pub fn release_privproc(&mut self) {
        if let Some(p) = self.privproc.take() {
            p.release();
        }
    }

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
        let sh = Arc::new(Shared::new(
            engine,
            io.tun,
            io.udp,
            io.local,
            io.discovery_ifaces,
            io.offload,
            wake_tx,
        )?);
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
            ifindex: io.ifindex,
            discovery: io.discovery,
            sigfd: io.sigfd,
            status: io.status,
            metrics: io.metrics,
            privproc: io.privproc,
            wake_rx,
            reader,
            started: sh.base,
            qualified_at: None,
            server_change: None,
            cli_server,
            iobufs: IoBufs::new(sh.headroom),
            sh,
            names,
            resolved: None,
            unresolved_logged: false,
            watch,
            send_errno: 0,
            waiting_logged: None,
            alarm,
            boot_offset: sleep::offset(),
            sighup_servers: false,
            leaving_because: None,
            notify: Arc::new(notify),
            main_beat: Arc::default(),
            notified: StatusLine::default(),
            mapper: None,
            _pid_keeper: io.pid_keeper,
        })
    }

    /// Carries out what the engine asked for before the daemon existed
    /// (see `opened_as_root`); its events are acted on when `run` starts.
    pub fn dispatch_early(&mut self, mut out: Vec<Output>) {
        self.sh.dispatch(&mut out, &mut self.iobufs);
    }

    /// Runs until SIGINT or SIGTERM (Ok) or a fatal error.
    pub fn run(&mut self) -> Result<(), String> {
        Shared::start(&self.sh)?;
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
                self.sh.local.port(),
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
            let timeout_ms = match wake_at {
                Some(t) => {
                    let d = t.saturating_duration_since(Instant::now());
                    // Round up: waking a millisecond early would spin.
                    d.as_micros().div_ceil(1000).min(u128::from(most)) as u16
                }
                None => most,
            };
            let deadline = next.map_or(u64::MAX, |t| {
                t.saturating_duration_since(self.sh.base)
                    .as_nanos()
                    .min(u128::from(u64::MAX - 1)) as u64
            });
            self.sh.deadline.store(deadline, Ordering::Relaxed);
            let (sig_r, status_r, wake_r, disc_r, priv_r, reader_r, mon_r, alarm_r, metrics_r) = {
                let mut set = PollSet::new();
                let sig = set.add(self.sigfd.as_fd());
                let status = set.add(self.status.as_fd());
                let wake = set.add(self.wake_rx.as_fd());
                let disc = set.add_some(self.discovery.as_ref().map(|d| d.as_fd()));
                let privproc = set.add_some(self.privproc.as_ref().map(PrivprocClient::fd));
                // The reader only speaks when asked: a client's answers
                // about names (a relay asks it nothing between reloads).
                let reader = set.add_some(
                    self.reader
                        .as_ref()
                        .filter(|_| self.names.is_some())
                        .map(ConfigReader::fd),
                );
                let mon = set.add_some(
                    self.watch
                        .as_ref()
                        .and_then(|w| w.monitor.as_ref())
                        .map(|m| m.as_fd()),
                );
                let alarm = set.add_some(self.alarm.as_ref().map(|a| a.as_fd()));
                let metrics = set.add_some(self.metrics.as_ref().map(|m| m.as_fd()));
                let timeout = Duration::from_millis(u64::from(timeout_ms));
                match set.wait(Some(timeout), &self.main_beat) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return Err(format!("poll: {e}")),
                }
                (
                    set.ready(sig),
                    set.ready(status),
                    set.ready(wake),
                    set.ready_some(disc),
                    set.ready_some(privproc),
                    set.ready_some(reader),
                    set.ready_some(mon),
                    set.ready_some(alarm),
                    set.ready_some(metrics),
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
            if status_r || metrics_r {
                // A mapping the mapper got while we polled reaches the
                // engine first: the page says "mapped" from the mapper and
                // "in use" from the engine, and must not say one without
                // the other.
                self.port_mapping();
            }
            if status_r {
                libteredo::sys::status::answer(&self.status, || self.status_page());
            }
            if metrics_r {
                self.answer_metrics();
            }
            self.notify_status(false);
        }
    }

    /// What the daemon is and does now, for the status page and the
    /// service manager (`e`: the engine, locked).
    fn snapshot(&self, e: &EngineKind) -> Snapshot {
        let peers = match e {
            EngineKind::Client(c) => c.peers(),
            EngineKind::Relay(r) => r.peers(),
        };
        let engine = match e {
            EngineKind::Client(c) => {
                let cfg = c.config();
                EngineSnapshot::Client(Box::new(ClientSnapshot {
                    state: c.state(),
                    has_server: c.has_server(),
                    waiting: self.waiting_for(e),
                    server: cfg.server,
                    server2: cfg.server2,
                    server_name: Some(self.conf.server_addresses.join(", "))
                        .filter(|n| !n.is_empty()),
                    qualification: c.qualification(),
                    nat: c.nat(),
                    port_mapping: self.mapper.as_ref().map(Mapper::status),
                    port_mapping_in_use: c.port_mapping_in_use(),
                    candidates: c.candidates().to_vec(),
                    hunting: c.hunting(),
                    server_change: self.server_change,
                    qualified_after: self.qualified_at,
                    peers: c.peer_count(),
                }))
            }
            EngineKind::Relay(r) => EngineSnapshot::Relay(RelaySnapshot {
                prefix: TeredoPrefix(self.conf.prefix),
                mtu: self.conf.interface_mtu,
                peers: r.peers().len(),
            }),
        };
        Snapshot {
            interface: self.conf.interface_name.clone(),
            mode: self.conf.relay_type.as_str(),
            uptime: self.started.elapsed(),
            local: self.sh.local,
            engine,
            stats: e.stats().clone(),
            peers_trusted: peers.count(PeerClass::Trusted),
            peers_held: peers.count(PeerClass::Held),
            peers_evicted: peers.evicted(),
            queued_bytes: peers.queued_bytes(),
        }
    }

    /// The status page, now.
    fn status_page(&self) -> String {
        let e = lock(&self.sh.engine);
        status::render(&self.snapshot(&e))
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
            status::one_line(&self.snapshot(&e))
        };
        self.notified.offer(&self.notify, now, key, text);
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

    /// Asks miredo-privproc (crate::privproc_client), if there is one.
    fn ask_privproc(&mut self, req: Request) {
        if let Some(p) = self.privproc.as_mut() {
            p.ask(req);
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
            self.ask_privproc(Request::Down {
                ifindex: self.ifindex,
            });
        }
    }

    /// Scrapes: the status lines go to the listener's worker, which
    /// reads the request and converts them (libteredo::sys::http).
    fn answer_metrics(&self) {
        if let Some(m) = &self.metrics {
            m.accept(|| self.status_page());
        }
    }

    /// The Teredo service port.
    fn local(&self) -> SocketAddrV4 {
        self.sh.local
    }
}
