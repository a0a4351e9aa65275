//! Start-up as root (configuration, sockets), then the unprivileged loop
//! around the stateless server engine.

use crate::{instance, Cli};
use libteredo::addr::{is_global_unicast_v4, TEREDO_PORT};
use libteredo::conf::server::ServerConfig as ServerFile;
use libteredo::conf::LoadError;
use libteredo::metrics::lines::StatusLines;
use libteredo::privsep::TeredoPrefix;
use libteredo::proto::{Output, Server, ServerConfig, ServerCounters, Stats};
use libteredo::sys::batch::{RecvBatch, SendBatch};
use libteredo::sys::daemon::Startup;
use libteredo::sys::http::Exporter;
use libteredo::sys::notify::{
    self as notify, Alive, Heartbeat, Notifier, StatusLine, STATUS_EVERY,
};
use libteredo::sys::poll::PollSet;
use libteredo::sys::reader::ConfigReader;
use libteredo::sys::rundir::{SafeDir, StatusSocket};
use libteredo::sys::seccomp::{Role, Sandbox};
use libteredo::sys::{daemon, logging, pidfile, privileges, signals};
use libteredo::wire::ipv6::Ipv6Packet;
use nix::sys::signal::Signal;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The run directory (root's, shared with miredo); without -t we chroot
/// into its empty entry `empty`.
const RUN_DIR: &str = "/run/miredo";
/// Datagrams handled per socket and wake-up.
const BATCH: usize = 64;

fn joined(errs: Vec<libteredo::conf::ConfError>) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parses a configuration; a server name from the command line stands for
/// ServerBindAddress (and its successor for ServerBindAddress2), so the
/// file may leave them out, and its own are overridden.
fn parse(text: &str, path: &Path, server_name: Option<&str>) -> Result<ServerFile, String> {
    let Some(name) = server_name else {
        return ServerFile::parse(text, &path.to_string_lossy()).map_err(joined);
    };
    let a = libteredo::conf::resolve(name).map_err(|e| format!("{name}: {e}"))?;
    let b = libteredo::conf::next_ipv4(a)
        .ok_or_else(|| format!("{a} has no next address for the secondary"))?;
    // The file's own address lines become comments (line numbers stay
    // right); ours go last.
    let mut kept = String::new();
    for line in text.lines() {
        let first = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if first == "serverbindaddress" || first == "serverbindaddress2" {
            kept.push_str("#\n");
        } else {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept.push_str(&format!("ServerBindAddress {a}\nServerBindAddress2 {b}\n"));
    ServerFile::parse(&kept, &path.to_string_lossy()).map_err(joined)
}

fn load(path: &Path, server_name: Option<&str>) -> Result<ServerFile, String> {
    if server_name.is_none() {
        return match ServerFile::load(path) {
            Ok(c) => Ok(c),
            Err(LoadError::Invalid(errs)) => Err(joined(errs)),
            Err(e) => Err(e.to_string()),
        };
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, path, server_name)
}

fn engine_config(f: &ServerFile) -> ServerConfig {
    ServerConfig {
        primary: f.server_bind_address,
        secondary: f.server_bind_address2,
        prefix: f.prefix,
        mtu: f.interface_mtu,
    }
}

fn bind_one(addr: SocketAddrV4, reuse_port: bool) -> Result<UdpSocket, String> {
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    // Blocking: each socket has a thread that sleeps in recvmmsg.
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    if reuse_port {
        s.set_reuse_port(true)
            .map_err(|e| format!("SO_REUSEPORT on {addr}: {e}"))?;
    }
    s.bind(&addr.into())
        .map_err(|e| format!("cannot bind UDP {addr}: {e}"))?;
    Ok(s.into())
}

/// `n` sockets on `addr` that the kernel spreads the clients over
/// (SO_REUSEPORT hashes each source address and port to one of them), one
/// per worker thread. A plain bind first: another server already there
/// makes it fail, as it would without SO_REUSEPORT.
fn bind(addr: SocketAddrV4, n: usize) -> Result<Vec<UdpSocket>, String> {
    let plain = bind_one(addr, false)?;
    if n <= 1 {
        return Ok(vec![plain]);
    }
    drop(plain);
    (0..n).map(|_| bind_one(addr, true)).collect()
}

/// Worker threads per address: one per CPU, at most 4.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// A raw IPv6 socket that sends whole packets (IPPROTO_RAW implies the
/// header is included): the server's way to the native IPv6 Internet.
fn raw_ipv6() -> Result<Socket, String> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(255)))
        .map_err(|e| format!("raw IPv6 socket: {e}"))?;
    Ok(s)
}

/// The whole start-up, then the server until it stops. Detached, the
/// process that was started exits with start-up's result.
pub fn run(cli: Cli, notify: Notifier) -> Result<(), String> {
    let mut startup = Startup::foreground();
    match start(cli, notify, &mut startup) {
        Ok(running) => {
            startup.succeeded();
            let result = running.run();
            log::info!("stopped");
            result
        }
        Err(e) => {
            startup.failed(&e);
            Err(e)
        }
    }
}

/// The server once set up: its worker threads run; the main thread waits
/// for signals and status requests.
struct Running {
    sh: Arc<Shared>,
    sigfd: nix::sys::signalfd::SignalFd,
    status: UnixListener,
    /// The metrics listener (`MetricsListen`).
    metrics: Option<Exporter>,
    reader: ConfigReader,
    path: std::path::PathBuf,
    server_name: Option<String>,
    file: ServerFile,
    notify: Arc<Notifier>,
    main_beat: Arc<Heartbeat>,
    started: Instant,
    /// The last `STATUS=` sent.
    notified: StatusLine,
    /// The pid file's keeper: dropped last, it lets the keeper remove the
    /// file, and reaps it.
    _pid_keeper: Option<pidfile::Keeper>,
}

impl Running {
    /// Runs until SIGINT, SIGTERM or SIGQUIT.
    fn run(mut self) -> Result<(), String> {
        let _alive = Alive(Arc::clone(&self.main_beat));
        if let Some(period) = self.notify.watchdog() {
            let mut hearts = vec![("main".to_string(), Arc::clone(&self.main_beat))];
            for (i, b) in self.sh.beats.iter().enumerate() {
                hearts.push((format!("worker {i}"), Arc::clone(b)));
            }
            notify::spawn_watchdog(Arc::clone(&self.notify), period, hearts)
                .map_err(|e| format!("cannot start the watchdog thread: {e}"))?;
        }
        self.notify.ready();
        self.notify_status(true);
        loop {
            let timeout = self.notify.enabled().then_some(STATUS_EVERY);
            let (sig_r, status_r, metrics_r) = {
                let mut set = PollSet::new();
                let sig = set.add(self.sigfd.as_fd());
                let status = set.add(self.status.as_fd());
                let metrics = set.add_some(self.metrics.as_ref().map(|m| m.as_fd()));
                match set.wait(timeout, &self.main_beat) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => return Err(format!("poll: {e}")),
                }
                (set.ready(sig), set.ready(status), set.ready_some(metrics))
            };
            if sig_r {
                for sig in signals::drain(&self.sigfd) {
                    match sig {
                        Signal::SIGHUP => {
                            self.notify.reloading();
                            let new = reload(
                                &self.file,
                                &mut self.reader,
                                &self.path,
                                self.server_name.as_deref(),
                            );
                            if let Some(new) = new {
                                let mut c = lock(&self.sh.config);
                                *c = (engine_config(&new), c.1 + 1);
                                self.file = new;
                            }
                            self.notify.ready();
                            self.notify_status(true);
                        }
                        Signal::SIGINT | Signal::SIGTERM | Signal::SIGQUIT => {
                            log::info!("{sig}: stopping");
                            self.notify.stopping();
                            return Ok(());
                        }
                        _ => {}
                    }
                }
            }
            if status_r {
                libteredo::sys::status::answer(&self.status, || self.render());
            }
            if metrics_r {
                if let Some(m) = &self.metrics {
                    m.accept(|| self.render());
                }
            }
            self.notify_status(false);
        }
    }

    /// The workers' counters, added up.
    fn totals(&self) -> (Stats, ServerCounters) {
        let mut stats = Stats::default();
        let mut counters = ServerCounters::default();
        for t in &self.sh.tallies {
            let t = lock(t);
            stats.add(&t.0);
            counters.add(&t.1);
        }
        (stats, counters)
    }

    /// The status page: `key: value` lines, as miredo's (read by
    /// `teredo-mire status --server`).
    fn render(&self) -> String {
        let (stats, c) = self.totals();
        let f = &self.file;
        let mut l = StatusLines::new();
        l.line("mode", "server");
        l.line("state", "serving");
        l.line("uptime", format!("{}s", self.started.elapsed().as_secs()));
        l.line("server-address", f.server_bind_address);
        l.line("server-address2", f.server_bind_address2);
        l.line("prefix", TeredoPrefix(f.prefix));
        l.line("mtu", f.interface_mtu);
        l.line("workers", self.sh.tallies.len());
        l.line("rs-received", c.rs_received);
        l.line("ra-sent", c.ra_sent);
        l.line("relayed-to-clients", c.relayed_to_clients);
        l.line("relayed-to-native", c.relayed_to_native);
        l.udp(&stats);
        l.drops(&stats);
        l.finish()
    }

    /// Tells the service manager what the server did: at once when `now`,
    /// else when the counts moved and the last status is a few seconds
    /// old.
    fn notify_status(&mut self, now: bool) {
        if !self.notify.enabled() {
            return;
        }
        let (stats, c) = self.totals();
        let text = format!(
            "Serving on {} and {}: {} router solicitations received, {} advertisements sent, {} packets relayed to clients, {} to native IPv6, {} dropped",
            self.file.server_bind_address,
            self.file.server_bind_address2,
            c.rs_received,
            c.ra_sent,
            c.relayed_to_clients,
            c.relayed_to_native,
            stats.total_drops()
        );
        // One state, serving: only the counts move.
        self.notified
            .offer(&self.notify, now, "serving".into(), text);
    }
}

fn start(cli: Cli, notify: Notifier, startup: &mut Startup) -> Result<Running, String> {
    // Like the C tool: a name on the command line is the primary address.
    let file = load(&cli.config, cli.server_name.as_deref())?;
    logging::init(
        "miredo-server",
        file.syslog_facility.as_str(),
        cli.foreground,
        cli.verbose,
    );
    // Connected already (in main, before any chroot): only said here.
    notify.log_setup();
    for w in &file.warnings {
        log::warn!("{w}");
    }
    for a in [file.server_bind_address, file.server_bind_address2] {
        if !is_global_unicast_v4(a) {
            return Err(format!(
                "{a} is not a global unicast IPv4 address: a Teredo server must be reachable from the whole IPv4 Internet (RFC 4380 5.3)"
            ));
        }
    }
    let (target, warning) = privileges::lookup_user(cli.user.as_deref(), privileges::SERVER_USER)
        .map_err(|e| e.to_string())?;
    if let Some(w) = warning {
        log::warn!("{w}");
    }
    let run_dir =
        SafeDir::ensure(Path::new(RUN_DIR), 0o755).map_err(|e| format!("run directory: {e}"))?;
    let metrics = Exporter::configured(file.metrics_listen).map_err(|e| e.to_string())?;
    let n = workers();
    let primary = bind(SocketAddrV4::new(file.server_bind_address, TEREDO_PORT), n)?;
    let secondary = bind(SocketAddrV4::new(file.server_bind_address2, TEREDO_PORT), n)?;
    let raw = match raw_ipv6() {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("{e}: echo requests from clients will not be forwarded to native IPv6");
            None
        }
    };
    let root = match &cli.chrootdir {
        Some(d) => privileges::open_chroot(d).map_err(|e| e.to_string())?,
        None => privileges::prepare_empty(&run_dir).map_err(|e| format!("chroot: {e}"))?,
    };
    // The status socket once everything above, which can refuse a start
    // (addresses, sockets, directories), went well; until the server runs
    // as its user, a failure removes it again (see StatusSocket). Its
    // default name and the pid file's carry the primary address, so that
    // servers on other addresses of the host have their own
    // (instance.rs).
    let default_instance = instance::is_default(&cli.config, cli.server_name.as_deref());
    let in_use = if cli.status_socket.is_some() {
        "another miredo-server answers on this status socket (perhaps in another network namespace): not starting; give this one another --status-socket"
    } else {
        "another miredo-server answers on this status socket (one with the same primary address, perhaps in another network namespace): not starting; give this one another --status-socket"
    };
    let status = StatusSocket::bind(
        &run_dir,
        cli.status_socket.as_deref(),
        &instance::status_name(default_instance, file.server_bind_address),
        in_use,
    )?;
    drop(run_dir);
    // Relative paths mean the directory we were started in: made absolute
    // before detaching moves to /.
    let config_path = std::path::absolute(&cli.config).unwrap_or_else(|_| cli.config.clone());
    let pidfile = cli
        .pidfile
        .clone()
        .unwrap_or_else(|| instance::pidfile(default_instance, file.server_bind_address));
    let pid_path = std::path::absolute(&pidfile).unwrap_or(pidfile);
    if !cli.foreground {
        notify.warn_detaching();
        *startup = daemon::daemonize("miredo-server").map_err(|e| format!("cannot detach: {e}"))?;
    }
    // SIGHUP's way to the configuration file: a reader process outside the
    // chroot, as our user but not traceable by us (the server keeps no
    // directory that leads out of its chroot).
    let reader = ConfigReader::spawn(&config_path, &target)
        .map_err(|e| format!("configuration reader: {e}"))?;
    let sigfd = signals::block_and_watch().map_err(|e| format!("signals: {e}"))?;
    // Removed when we end by its keeper (libteredo::sys::pidfile::keep):
    // the server itself cannot.
    let pid_keeper = pidfile::write_and_keep(&pid_path)
        .map_err(|e| format!("pid file {}: {e}", pid_path.display()))?;
    // The processes the server may signal: its reader, and the keeper
    // (killed if it does not end by itself).
    let children: Vec<i32> = std::iter::once(reader.pid().as_raw())
        .chain(pid_keeper.as_ref().map(pidfile::Keeper::pid))
        .collect();
    let sandbox = Sandbox::with_children(Role::Server, &children)
        .map_err(|e| format!("cannot build the system call filter: {e}"))?;
    // Past this point the socket cannot be removed (not root, not in the
    // run directory): it stays if what follows fails, and the next start
    // replaces it.
    let status = status.keep()?;
    privileges::drop_for_good(&target, root).map_err(|e| e.to_string())?;
    // From here on, only the system calls on the list: before any thread
    // starts and before any datagram is read.
    sandbox
        .enter()
        .map_err(|e| format!("cannot enter the system call filter: {e}"))?;
    log::info!(
        "serving on {}:{TEREDO_PORT} and {}:{TEREDO_PORT}, prefix {}, MTU {}; running as {}, no capabilities",
        file.server_bind_address,
        file.server_bind_address2,
        TeredoPrefix(file.prefix),
        file.interface_mtu,
        target.name
    );

    let sh = Arc::new(Shared {
        config: Mutex::new((engine_config(&file), 0)),
        primary,
        secondary,
        raw,
        secondary_addr: file.server_bind_address2,
        tallies: (0..2 * n).map(|_| Mutex::default()).collect(),
        beats: (0..2 * n).map(|_| Arc::default()).collect(),
    });
    for second in [false, true] {
        let local = SocketAddrV4::new(
            if second {
                file.server_bind_address2
            } else {
                file.server_bind_address
            },
            TEREDO_PORT,
        );
        for i in 0..n {
            let sh = Arc::clone(&sh);
            let slot = usize::from(second) * n + i;
            std::thread::Builder::new()
                .name(format!("miredo-server-{local}-{i}"))
                .spawn(move || {
                    let _alive = Alive(Arc::clone(&sh.beats[slot]));
                    sh.serve(second, i, slot, local)
                })
                .map_err(|e| format!("cannot start a thread: {e}"))?;
        }
    }
    Ok(Running {
        sh,
        sigfd,
        status,
        metrics,
        reader,
        path: cli.config.clone(),
        server_name: cli.server_name.clone(),
        file,
        notify: Arc::new(notify),
        main_beat: Arc::default(),
        started: Instant::now(),
        notified: StatusLine::default(),
        _pid_keeper: pid_keeper,
    })
}

/// What the socket threads share: the sockets, and the engine settings
/// with a generation number bumped at each reload.
struct Shared {
    config: Mutex<(ServerConfig, u64)>,
    /// One socket per worker on each address (SO_REUSEPORT).
    primary: Vec<UdpSocket>,
    secondary: Vec<UdpSocket>,
    raw: Option<Socket>,
    secondary_addr: std::net::Ipv4Addr,
    /// Each worker's counters (primary workers first), copied after each
    /// batch; the main thread adds them up for the status.
    tallies: Vec<Mutex<(Stats, ServerCounters)>>,
    /// Each worker's sign of life, for the watchdog.
    beats: Vec<Arc<Heartbeat>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// One socket's loop: batches in, a stateless engine of its own, batches
    /// out (the answer to a cone-bit solicitation leaves from the other
    /// address, hence two outgoing batches).
    fn serve(&self, second: bool, i: usize, slot: usize, local: SocketAddrV4) {
        let (primary, secondary) = (&self.primary[i], &self.secondary[i]);
        let sock = if second { secondary } else { primary };
        let (cfg, mut generation) = lock(&self.config).clone();
        let mut engine = Server::new(cfg);
        let mut rb = RecvBatch::new(BATCH, 2048);
        let mut via_primary = SendBatch::new();
        let mut via_secondary = SendBatch::new();
        let mut out = Vec::with_capacity(BATCH);
        let beat = &self.beats[slot];
        loop {
            beat.wait();
            let got = rb.recv(sock.as_fd());
            beat.beat();
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors of earlier sends surface here; anything
                    // else is worth a pause rather than a busy loop.
                    log::debug!("receive on {local}: {e}");
                    if e.kind() != io::ErrorKind::ConnectionRefused {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    continue;
                }
            };
            {
                let c = lock(&self.config);
                if c.1 != generation {
                    generation = c.1;
                    // A reload: the new settings, the same counters.
                    let (stats, counters) = (std::mem::take(&mut engine.stats), engine.counters);
                    engine = Server::new(c.0.clone());
                    engine.stats = stats;
                    engine.counters = counters;
                }
            }
            let now = Instant::now();
            for i in 0..n {
                let Some((bytes, Some(from), _)) = rb.get(i) else {
                    continue;
                };
                engine.handle_udp(now, from, local, bytes, &mut out);
            }
            for o in out.drain(..) {
                match o {
                    Output::Udp(t) => match t.from {
                        Some(f) if *f.ip() == self.secondary_addr => {
                            via_secondary.push(t.to, &t.payload, t.ecn)
                        }
                        _ => via_primary.push(t.to, &t.payload, t.ecn),
                    },
                    Output::Tun(p) => self.to_native(&p),
                    Output::Event(_) => {}
                }
            }
            if let Err(e) = via_primary.flush(primary.as_fd()) {
                log::debug!("send: {e}");
            }
            if let Err(e) = via_secondary.flush(secondary.as_fd()) {
                log::debug!("send: {e}");
            }
            let mut t = lock(&self.tallies[slot]);
            t.0.clone_from(&engine.stats);
            t.1 = engine.counters;
        }
    }

    /// An echo request from a client's connectivity test, to native IPv6.
    fn to_native(&self, p: &[u8]) {
        let (Some(raw), Ok(ip)) = (&self.raw, Ipv6Packet::new_checked(p)) else {
            return;
        };
        let dst = SockAddr::from(SocketAddrV6::new(ip.dst_addr(), 0, 0, 0));
        if let Err(e) = raw.send_to(p, &dst) {
            log::debug!("raw IPv6 send to {}: {e}", ip.dst_addr());
        }
    }
}

/// SIGHUP: the prefix, MTU and syslog facility change at once; the
/// addresses need the privilege to bind, so a change there waits for a
/// restart. Returns the configuration now in force, if it changed.
fn reload(
    file: &ServerFile,
    reader: &mut ConfigReader,
    path: &Path,
    server_name: Option<&str>,
) -> Option<ServerFile> {
    let text = match reader.read() {
        Ok(t) => t,
        Err(e) => {
            log::error!("SIGHUP: {e}; keeping the running configuration");
            return None;
        }
    };
    let new = match parse(&text, path, server_name) {
        Ok(c) => c,
        Err(errs) => {
            for e in errs.lines() {
                log::error!("SIGHUP: {e}");
            }
            log::error!(
                "SIGHUP: {} is invalid; keeping the running configuration",
                path.display()
            );
            return None;
        }
    };
    if new.server_bind_address != file.server_bind_address
        || new.server_bind_address2 != file.server_bind_address2
    {
        log::warn!("SIGHUP: ServerBindAddress changed: that needs privileges, restart miredo-server to apply it; the old addresses stay");
    }
    if new.metrics_listen != file.metrics_listen {
        log::warn!("SIGHUP: MetricsListen changed: restart miredo-server to apply it; the old listener stays");
    }
    // What the file says that is worth a word (an MTU other than 1280
    // with the standard prefix...), as miredo-checkconf says it.
    for w in &new.warnings {
        log::warn!("SIGHUP: {w}");
    }
    let mut applied = file.clone();
    let mut changed = Vec::new();
    if new.prefix != applied.prefix {
        changed.push(format!(
            "Prefix {} -> {}",
            TeredoPrefix(applied.prefix),
            TeredoPrefix(new.prefix)
        ));
        applied.prefix = new.prefix;
    }
    if new.interface_mtu != applied.interface_mtu {
        changed.push(format!(
            "InterfaceMTU {} -> {}",
            applied.interface_mtu, new.interface_mtu
        ));
        applied.interface_mtu = new.interface_mtu;
    }
    if new.syslog_facility != applied.syslog_facility {
        logging::set_facility(new.syslog_facility.as_str());
        changed.push(format!(
            "SyslogFacility {} -> {}",
            applied.syslog_facility.as_str(),
            new.syslog_facility.as_str()
        ));
        applied.syslog_facility = new.syslog_facility;
    }
    if changed.is_empty() {
        log::info!(
            "SIGHUP: configuration {} reloaded: nothing changed that applies at once",
            path.display()
        );
    } else {
        log::info!(
            "SIGHUP: configuration {} reloaded: {}",
            path.display(),
            changed.join(", ")
        );
    }
    Some(applied)
}
