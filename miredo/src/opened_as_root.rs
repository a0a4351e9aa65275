//! Start-up, step one, opened as root: everything miredo does with
//! privileges, in order. Read the configuration, bind the status socket
//! and the metrics listener, open the TUN device and the UDP sockets,
//! configure a relay's interface (its 2001::/32 route), prepare the
//! chroot, detach, fork the configuration reader (it becomes the daemon's
//! user), open rtnetlink, block the signals, write the pid file, build the
//! engine (a client's first solicitation leaves now), and start
//! miredo-privproc (`crate::privproc_client`). What was opened
//! ([`Opened`]) goes to `crate::dropping`, which drops every privilege for
//! good.

use crate::engine::EngineKind;
use crate::privproc_client::{self, PrivprocClient};
use crate::servers::Names;
use crate::{Cli, DEFAULT_CONFIG, DEFAULT_PIDFILE};
use libteredo::conf::miredo::{LocalDiscovery, MiredoConfig};
use libteredo::conf::LoadError;
use libteredo::privsep::TeredoPrefix;
use libteredo::proto::DiscoveryConfig;
use libteredo::proto::Output;
use libteredo::proto::{Client, ClientConfig};
use libteredo::proto::{ForwarderConfig, Relay};
use libteredo::sys::daemon::Startup;
use libteredo::sys::http::Exporter;
use libteredo::sys::netlink::{Monitor, Netlink};
use libteredo::sys::notify::Notifier;
use libteredo::sys::privileges::Target;
use libteredo::sys::random::OsRandom;
use libteredo::sys::reader::ConfigReader;
use libteredo::sys::rundir::{SafeDir, StatusSocket};
use libteredo::sys::socket;
use libteredo::sys::{daemon, logging, pidfile, privileges, signals};
use nix::sys::signalfd::SignalFd;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What root opened and made, for the drop and the unprivileged daemon.
pub struct Opened {
    pub conf: MiredoConfig,
    /// The server named on the command line.
    pub cli_server: Option<String>,
    /// A client's server names.
    pub names: Option<Names>,
    pub engine: EngineKind,
    /// What the engine asked for before the daemon existed (a client's
    /// first solicitation went already).
    pub early: Vec<Output>,
    pub reader: Option<ConfigReader>,
    /// Whom the daemon becomes, and its chroot.
    pub target: Target,
    pub root: SafeDir,
    pub io: Io,
    /// The service manager, if one listens.
    pub notify: Notifier,
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
    pub privproc: Option<PrivprocClient>,
    /// A client's rtnetlink announcements and queries (opened by root;
    /// none when they could not be).
    pub monitor: Option<Monitor>,
    pub routes: Option<Netlink>,
    /// The pid file's keeper (dropped last: see pidfile::Keeper).
    pub pid_keeper: Option<pidfile::Keeper>,
}

/// Configures a relay's interface: the Teredo prefix routed to it, MTU, up.
pub fn configure_relay_interface(ifindex: u32, prefix: u32, mtu: u16) -> io::Result<()> {
    let mut nl = libteredo::sys::netlink::Netlink::open()?;
    nl.relay_up(ifindex, prefix, mtu)
}

/// Whether the host forwards IPv6 (a relay needs it).
const IPV6_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

/// Why the TUN interface could not be made, with what to do about it.
fn tun_error(name: &str, e: &std::io::Error) -> String {
    let next = match e.raw_os_error() {
        Some(nix::libc::EBUSY) => format!(
            ": the interface {name} exists and is in use; another miredo may be running with it (stop it, or give this one another InterfaceName)"
        ),
        Some(nix::libc::EINVAL) => format!(
            ": an interface named {name} exists and is not a TUN device (ip link show {name}); give miredo another InterfaceName"
        ),
        Some(nix::libc::EPERM) | Some(nix::libc::EACCES) => {
            ": creating a TUN device needs root (CAP_NET_ADMIN)".to_string()
        }
        Some(nix::libc::ENOENT) | Some(nix::libc::ENODEV) => {
            ": no /dev/net/tun (load the tun module: modprobe tun)".to_string()
        }
        _ => String::new(),
    };
    format!("cannot create the TUN interface {name}: {e}{next}")
}

/// Where status sockets live: `/run/miredo/IFACE.status`. A directory of
/// root's (mode 0755): nobody else can put anything in it. Without -t,
/// miredo chroots into its entry `chroot`, empty but for copies of the
/// resolver's files. (Host names are resolved by the configuration reader,
/// outside the chroot, so that the resolver's files of the moment apply.)
pub const STATUS_DIR: &str = "/run/miredo";

/// Binds the status socket, unless another live daemon answers on it: two
/// daemons whose interfaces have the same name in different network
/// namespaces see the same `/run/miredo`, and the second must not take
/// the first one's socket.
/// Until start-up succeeded, a failure removes it again (a refused start
/// leaves nothing in /run: see [`StatusSocket`]).
fn bind_status(run_dir: &SafeDir, cli: &Cli, iface: &str) -> Result<StatusSocket, String> {
    StatusSocket::bind(
        run_dir,
        cli.status_socket.as_deref(),
        &format!("{iface}.status"),
        "another miredo answers on this status socket (perhaps in another network namespace, with an interface of the same name): not starting; give this one another InterfaceName, or another --status-socket",
    )
}

/// The configuration as loaded, with where it came from.
pub struct Loaded {
    pub conf: MiredoConfig,
    /// The file, if one was read (None: built-in defaults).
    pub path: Option<PathBuf>,
}

/// Reads the configuration: an explicit -c must exist; the default file may
/// be absent, and then the built-in defaults apply.
pub fn load_config(cli: &Cli) -> Result<Loaded, String> {
    let (path, explicit) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    match MiredoConfig::load(&path) {
        Ok(conf) => Ok(Loaded {
            conf,
            path: Some(path),
        }),
        Err(LoadError::Unreadable { ref source, .. })
            if !explicit && source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(Loaded {
                conf: MiredoConfig::default(),
                path: None,
            })
        }
        Err(LoadError::Invalid(errs)) => Err(errs
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")),
        Err(e) => Err(e.to_string()),
    }
}

/// The forwarding settings for a mode.
fn forwarder_config(conf: &MiredoConfig) -> ForwarderConfig {
    use libteredo::conf::miredo::RelayType;
    ForwarderConfig {
        prefix: conf.prefix,
        // A relay on a public address sends no direct bubbles (RFC 4380
        // 5.4.1); one behind a NAT (restricted) must.
        direct_bubbles: !matches!(conf.relay_type, RelayType::Cone),
        peer_capacity: conf.max_peers as usize,
        total_queue_bytes: conf.max_queued_bytes as usize,
        new_peers_per_source_per_second: conf.peer_rate_limit,
        new_peers_per_second: conf.global_peer_rate_limit,
        bubble_replies_per_second: conf.bubble_rate_limit,
        icmp_per_second: conf.icmp_rate_limit,
        ..ForwarderConfig::default()
    }
}

/// Builds the client's discovery settings: the subnets of the discovery
/// interfaces are the only places discovery bubbles may come from.
pub fn discovery_config(conf: &MiredoConfig, ifaces: &[DiscoveryIface]) -> Option<DiscoveryConfig> {
    match conf.local_discovery {
        LocalDiscovery::Disabled => None,
        LocalDiscovery::Enabled | LocalDiscovery::Forced => Some(DiscoveryConfig {
            local_nets: ifaces.iter().map(|i| (i.addr, i.prefix_len)).collect(),
            any_mapped: matches!(conf.local_discovery, LocalDiscovery::Forced),
        }),
    }
}

/// Opens the Teredo UDP socket.
fn bind_udp(addr: SocketAddrV4) -> Result<UdpSocket, String> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("UDP socket: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    // Multicast (local discovery) stays on the link and is not looped back.
    let _ = s.set_multicast_ttl_v4(1);
    let _ = s.set_multicast_loop_v4(false);
    // The outer ECN field of every datagram comes with it (RFC 9601).
    socket::receive_tos(s.as_fd()).map_err(|e| format!("IP_RECVTOS: {e}"))?;
    // Big buffers: bursts of tunnelled packets must not be dropped here.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())
        .map_err(|e| format!("cannot bind UDP {addr}: {e}"))?;
    Ok(s.into())
}

/// Opens the local discovery socket: 224.0.0.253:3544, shared with other
/// clients on the host, joined on every discovery interface.
fn bind_discovery(ifaces: &[DiscoveryIface]) -> Result<UdpSocket, String> {
    let group = libteredo::addr::DISCOVERY_ADDR;
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    s.set_reuse_address(true).map_err(|e| e.to_string())?;
    s.set_reuse_port(true).map_err(|e| e.to_string())?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    let _ = socket::receive_tos(s.as_fd());
    let addr = SocketAddrV4::new(group, libteredo::addr::TEREDO_PORT);
    s.bind(&addr.into())
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    for i in ifaces {
        s.join_multicast_v4(&group, &i.addr)
            .map_err(|e| format!("cannot join {group} on {} ({}): {e}", i.name, i.addr))?;
    }
    Ok(s.into())
}

/// Everything miredo does as root, in order, up to the drop: detached (see
/// [`daemon::daemonize`]) unless in the foreground, `startup` says how it
/// went to the process that was started.
pub fn open(cli: Cli, notify: Notifier, startup: &mut Startup) -> Result<Opened, String> {
    let mut loaded = load_config(&cli)?;
    if !nix::unistd::geteuid().is_root() {
        // The configuration is checked for anyone; then this is said
        // before anything fails on it (the run directory, the TUN device)
        // with an error that does not say why.
        return Err("must be started as root: it creates its interface and binds its sockets as root, then drops every privilege for good (miredo(8), SECURITY); try sudo".into());
    }
    let conf = &mut loaded.conf;
    if let Some(name) = &cli.server_name {
        if !conf.relay_type.is_client() {
            return Err(format!(
                "a server name ({name}) is only meaningful in client mode, not with RelayType {}",
                conf.relay_type.as_str()
            ));
        }
        conf.server_addresses = vec![name.clone()];
        conf.server_address_is_default = false;
        conf.server_address2 = None;
    }
    logging::init(
        "miredo",
        conf.syslog_facility.as_str(),
        cli.foreground,
        cli.verbose,
    );
    // Connected already (in main, before any chroot): only said here.
    notify.log_setup();
    match &loaded.path {
        Some(p) => log::info!("starting with configuration {}", p.display()),
        None => log::info!(
            "{DEFAULT_CONFIG} is absent: running on built-in defaults (client mode, interface {}, server {})",
            conf.interface_name,
            conf.server_addresses.join(", ")
        ),
    }
    for w in &conf.warnings {
        log::warn!("{w}");
    }
    let conf = loaded.conf.clone();
    // The helper's path, made absolute now: detaching moves to /.
    let privproc_path = cli
        .privproc
        .clone()
        .unwrap_or_else(|| PathBuf::from(privproc_client::PRIVPROC));
    let privproc_path = std::path::absolute(&privproc_path).unwrap_or(privproc_path);
    let (target, warning) = privileges::lookup_user(cli.user.as_deref(), privileges::DAEMON_USER)
        .map_err(|e| e.to_string())?;
    if let Some(w) = warning {
        log::warn!("{w}");
    }
    // miredo-privproc: another user (the configuration reader runs as
    // ours, so that no process of ours but privproc runs as its user).
    let (helper, warning) =
        privileges::lookup_user(None, privileges::PRIVPROC_USER).map_err(|e| e.to_string())?;
    if let Some(w) = warning {
        log::warn!("{w}");
    }
    if helper.uid == target.uid {
        log::warn!(
            "miredo-privproc runs as {} (uid {}), the daemon's own user: create the system user {} so that they are apart",
            helper.name,
            helper.uid,
            privileges::PRIVPROC_USER
        );
    }

    // A client's servers: an address is used at once; a name is resolved
    // by the configuration reader once the daemon runs, and again until it
    // resolves (the host may have booted before its network).
    let client = conf.relay_type.is_client();
    let names = if client {
        if conf.server_addresses.is_empty() {
            return Err("no Teredo server configured".into());
        }
        let names = Names::new(
            &conf.server_addresses,
            conf.server_address2.as_deref(),
            Instant::now(),
        );
        if names.literal() && names.literal_list().is_none() {
            return Err(format!(
                "{} has no next address: set ServerAddress2",
                names.primary()
            ));
        }
        Some(names)
    } else {
        None
    };
    let servers = names.as_ref().and_then(Names::literal_list);
    if let Some(l) = &servers {
        log::info!(
            "Teredo server {}, secondary address {}",
            l.server,
            l.server2
        );
    }

    // The run directory and the status socket first: a daemon that would
    // take another's socket stops before it touches anything.
    let run_dir =
        SafeDir::ensure(Path::new(STATUS_DIR), 0o755).map_err(|e| format!("run directory: {e}"))?;
    let status = bind_status(&run_dir, &cli, &conf.interface_name)?;
    let metrics = Exporter::configured(conf.metrics_listen).map_err(|e| e.to_string())?;

    let mtu = if client { 1280 } else { conf.interface_mtu };
    // Offloads (virtio-net headers): TCP super-packets come in whole and
    // are cut in one read; packets to the host go out coalesced. Without
    // kernel support, a plain device.
    // A client's interface stays down until it qualifies (as the C
    // miredo's): up, the kernel would give an interface that carries
    // nothing a link-local address and routes. miredo-privproc brings it
    // up with the address, and down again when the server is lost.
    let tun = tun_rs::DeviceBuilder::new()
        .name(conf.interface_name.as_str())
        .mtu(mtu)
        .offload(true)
        .enable(!client)
        .build_sync()
        .or_else(|_| {
            tun_rs::DeviceBuilder::new()
                .name(conf.interface_name.as_str())
                .mtu(mtu)
                .enable(!client)
                .build_sync()
        })
        .map_err(|e| tun_error(&conf.interface_name, &e))?;
    let offload = tun.tcp_gso();
    tun.set_nonblocking(true).map_err(|e| e.to_string())?;
    let ifindex = tun.if_index().map_err(|e| e.to_string())?;

    let bind = SocketAddrV4::new(conf.bind_address, conf.bind_port);
    let udp = bind_udp(bind)?;
    let local = match udp.local_addr() {
        Ok(std::net::SocketAddr::V4(a)) => a,
        _ => bind,
    };
    log::info!("Teredo service port {local}");
    let mut disc_ifaces = Vec::new();
    let discovery = if client && !matches!(conf.local_discovery, LocalDiscovery::Disabled) {
        match discovery_interfaces(&conf).and_then(|ifs| {
            if ifs.is_empty() {
                return Err("no interface qualifies (up, multicast, and a non-global IPv4 address unless forced)".into());
            }
            let s = bind_discovery(&ifs)?;
            disc_ifaces = ifs;
            Ok(s)
        }) {
            Ok(s) => {
                let names: Vec<String> = disc_ifaces.iter().map(|i| format!("{} ({}/{})", i.name, i.addr, i.prefix_len)).collect();
                log::info!("local discovery on {}", names.join(", "));
                Some(s)
            }
            Err(e) => {
                log::warn!("local discovery disabled: {e}");
                None
            }
        }
    } else {
        None
    };

    if !conf.relay_type.is_client() {
        configure_relay_interface(ifindex, conf.prefix, conf.interface_mtu)
            .map_err(|e| format!("cannot configure {}: {e}", conf.interface_name))?;
        log::info!(
            "relay interface {} up, routing {}, MTU {}",
            conf.interface_name,
            TeredoPrefix(conf.prefix),
            conf.interface_mtu
        );
        // A relay forwards between its interface and the IPv6 network: the
        // kernel does that only with forwarding on.
        if std::fs::read_to_string(IPV6_FORWARDING).is_ok_and(|v| v.trim() == "0") {
            log::warn!(
                "IPv6 forwarding is off ({IPV6_FORWARDING} is 0): the kernel will not pass packets between {} and the IPv6 network, so this relay relays nothing; turn it on with sysctl -w net.ipv6.conf.all.forwarding=1 (and in /etc/sysctl.d to keep it)",
                conf.interface_name
            );
        }
    }
    // The chroot: root's, made through descriptors (libteredo::sys::rundir),
    // whatever an earlier version or another user left there.
    let root = match &cli.chrootdir {
        Some(d) => privileges::open_chroot(d).map_err(|e| e.to_string())?,
        None => privileges::prepare_chroot(&run_dir).map_err(|e| format!("chroot: {e}"))?,
    };
    drop(run_dir);

    // Relative paths mean the directory miredo was started in: made
    // absolute before detaching moves to /.
    let conf_path = loaded
        .path
        .as_ref()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()));
    let pid_path = cli
        .pidfile
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PIDFILE));
    let pid_path = std::path::absolute(&pid_path).unwrap_or(pid_path);
    if !cli.foreground {
        notify.warn_detaching();
        *startup = daemon::daemonize("miredo").map_err(|e| format!("cannot detach: {e}"))?;
    }
    // SIGHUP's way to the configuration file, and a client's way to the
    // resolver: a reader process outside the chroot (the daemon keeps no
    // directory that leads out of it).
    let reader = if conf_path.is_some() || client {
        Some(
            ConfigReader::spawn_for(conf_path.as_deref(), &target)
                .map_err(|e| format!("configuration reader: {e}"))?,
        )
    } else {
        None
    };
    // A client follows its host's network through rtnetlink (no privilege
    // needed, but opened here with the rest); without it, it still works,
    // noticing changes at the next refresh.
    let (monitor, routes) = if client {
        let m = Monitor::open()
            .map_err(|e| log::warn!("no rtnetlink announcements ({e}): network changes are noticed at the next refresh only"))
            .ok();
        let r = Netlink::open_for_queries()
            .map_err(|e| log::warn!("no rtnetlink queries ({e})"))
            .ok();
        (m, r)
    } else {
        (None, None)
    };
    let sigfd = signals::block_and_watch().map_err(|e| format!("signals: {e}"))?;
    // Removed when we end by its keeper (libteredo::sys::pidfile::keep):
    // the daemon itself cannot.
    let pid_keeper = pidfile::write_and_keep(&pid_path)
        .map_err(|e| format!("pid file {}: {e}", pid_path.display()))?;

    let now = Instant::now();
    let mut engine = match client {
        true => {
            // No server yet (0.0.0.0) for a name: the client waits.
            let (s1, s2, fallbacks) = match &servers {
                Some(l) => (l.server, l.server2, l.fallbacks.clone()),
                None => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED, Vec::new()),
            };
            let mut cc = ClientConfig::new(s1);
            cc.server2 = s2;
            cc.fallbacks = fallbacks;
            cc.forwarder = forwarder_config(&conf);
            // The prefix miredo-privproc accepts (--prefix): the engine
            // refuses an RA for any other, so the network cannot make us
            // ask for an address the helper would refuse.
            cc.allowed_prefix = conf.prefix;
            cc.discovery = discovery
                .as_ref()
                .and(discovery_config(&conf, &disc_ifaces));
            // Where a peer behind our NAT reaches us (RFC 6081 hairpinning),
            // and our port (a port-preserving NAT keeps it).
            let ip = servers
                .as_ref()
                .and_then(|_| local_ip_towards(s1))
                .unwrap_or(*local.ip());
            cc.local = Some(SocketAddrV4::new(ip, local.port()));
            EngineKind::Client(Box::new(Client::new(cc, Box::new(OsRandom), now)))
        }
        false => {
            let mut rng = OsRandom;
            EngineKind::Relay(Box::new(Relay::new(
                &forwarder_config(&conf),
                &mut rng,
                now,
            )))
        }
    };
    // A client's first router solicitation leaves now, a few milliseconds
    // before it would once the helper is started and privileges dropped:
    // the answer waits in the socket until the unprivileged daemon reads
    // it, and nothing received is acted on before.
    let mut early = Vec::new();
    if let EngineKind::Client(c) = &mut engine {
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now, &mut early);
        }
    }
    crate::io_threads::send_unicast_now(&udp, &mut early);

    // miredo-privproc: the only process that keeps a privilege. A
    // relay's takes no request: it deletes the interface when we end.
    let privproc = Some(privproc_client::spawn(
        &cli,
        &privproc_path,
        &conf,
        &helper,
        ifindex,
    )?);

    Ok(Opened {
        conf,
        cli_server: cli.server_name.clone(),
        names,
        engine,
        early,
        reader,
        target,
        root,
        notify,
        io: Io {
            discovery_ifaces: disc_ifaces.iter().map(|i| i.addr).collect(),
            offload,
            tun,
            ifindex,
            udp,
            local,
            discovery,
            sigfd,
            // Every step that could refuse the start is behind us.
            status: status.keep()?,
            metrics,
            privproc,
            monitor,
            routes,
            pid_keeper,
        },
    })
}

/// An interface local discovery runs on.
#[derive(Clone, Debug)]
pub struct DiscoveryIface {
    pub name: String,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// The interfaces local discovery runs on (RFC 4380 5.2.8): up,
/// multicast-capable, not loopback, with an IPv4 address that is not
/// global unless LocalDiscovery is `forced`, and whose name matches
/// DiscoveryInterfaces when given. DiscoveryNetmask replaces their
/// netmasks.
pub fn discovery_interfaces(conf: &MiredoConfig) -> Result<Vec<DiscoveryIface>, String> {
    use nix::net::if_::InterfaceFlags;
    let pattern = match &conf.discovery_interfaces {
        Some(p) => Some(
            regex::Regex::new(p.as_str())
                .map_err(|e| format!("DiscoveryInterfaces {}: {e}", p.as_str()))?,
        ),
        None => None,
    };
    let forced = matches!(conf.local_discovery, LocalDiscovery::Forced);
    let mut v = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs().map_err(|e| format!("getifaddrs: {e}"))? {
        let f = ifa.flags;
        if !f.contains(InterfaceFlags::IFF_UP)
            || !f.contains(InterfaceFlags::IFF_MULTICAST)
            || f.contains(InterfaceFlags::IFF_LOOPBACK)
        {
            continue;
        }
        let Some(addr) = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in())
            .map(|a| a.ip())
        else {
            continue;
        };
        if !forced && libteredo::addr::is_global_unicast_v4(addr) {
            continue;
        }
        if pattern
            .as_ref()
            .is_some_and(|p| !p.is_match(&ifa.interface_name))
        {
            continue;
        }
        let mask = conf
            .discovery_netmask
            .or_else(|| {
                ifa.netmask
                    .as_ref()
                    .and_then(|m| m.as_sockaddr_in())
                    .map(|m| m.ip())
            })
            .unwrap_or(Ipv4Addr::new(255, 255, 255, 255));
        v.push(DiscoveryIface {
            name: ifa.interface_name.clone(),
            addr,
            prefix_len: u32::from(mask).leading_ones() as u8,
        });
    }
    Ok(v)
}

/// Our IPv4 address on the way to `server` (what a peer behind our NAT
/// would reach us at), as the kernel's routing picks it.
fn local_ip_towards(server: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect(SocketAddrV4::new(server, libteredo::addr::TEREDO_PORT))
        .ok()?;
    match s.local_addr().ok()? {
        std::net::SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}
