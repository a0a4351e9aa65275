//! miniupnpd, the UPnP IGD, NAT-PMP and PCP daemon most home routers run,
//! from Debian (packages `miniupnpd` and `miniupnpd-nftables`, 2.3.1 in
//! bookworm), started in the NAT namespace of a lab [`World`] in front of
//! its client: listening on the NAT's LAN interface, mapping on its WAN
//! interface.
//!
//! ```no_run
//! use teredo_lab::miniupnpd::{Miniupnpd, Options};
//! use teredo_lab::{NatKind, World};
//!
//! let w = World::build("portmap_example", &[NatKind::PortRestricted]);
//! let gw = Miniupnpd::start(&w, 1, &Options::all());
//! // ... `teredo-mire portmap` in w.client(1) maps UDP 3544 ...
//! assert!(gw.rules().contains("dnat ip to 192.168.1.2:3544"));
//! // dropping `gw` stops miniupnpd by its pid, before the world goes
//! ```
//!
//! What it takes, found by trying it (each point is done by
//! [`Miniupnpd::start`]):
//!
//! - **A WAN address outside the reserved ranges.** miniupnpd 2.3.1 maps
//!   nothing when its WAN interface's address is private or reserved
//!   (its log: "Reserved / private IP address ... on ext interface ...:
//!   Port forwarding is impossible"), and the lab's 198.18.0.0/15
//!   (RFC 2544 benchmarking) is in its list. The NAT's WAN side is moved
//!   to [`public_wan`] (11.0.N.1/24, the inet router taking 11.0.N.254)
//!   with [`World::set_nat_wan`]: 11.0.0.0/8 is in none of miniupnpd's
//!   ranges (its own tests call 11.250.42.12 public), and the lab's
//!   namespaces have no link to the machine's network, so the address
//!   never leaves them. The 198.18 address goes, so that the NAT's
//!   masquerade uses the public one too: keeping it and declaring the
//!   public one with `ext_ip=` would map one address while the client's
//!   outgoing datagrams leave from another, which no home router does.
//! - **The nftables tables of Debian's `/etc/miniupnpd/nft_init.sh`.** The
//!   nftables backend only adds rules to chains that exist: in table
//!   `inet filter`, chain `miniupnpd` (jumped to from a `forward` filter
//!   chain), `prerouting_miniupnpd` and `postrouting_miniupnpd` (jumped to
//!   from NAT chains). The script itself cannot serve: it sources the
//!   iptables variant's `miniupnpd_functions.sh`, which defines neither
//!   `$NFT` nor the table and chain names, and it writes a fixed file in
//!   /tmp. [`Miniupnpd::start`] makes the same tables in the NAT namespace
//!   only (and names them in miniupnpd.conf), with one change: the script's
//!   forward chain has policy drop and nothing but the jump, which would
//!   drop every datagram the NAT forwards, the client's own included. Here
//!   its policy is accept, as the lab's NATs have no filter: they filter by
//!   their mappings alone (a datagram that matches no flow and no DNAT is
//!   addressed to the NAT itself and never forwarded), so that a test with
//!   and without miniupnpd compares the mapping, not a firewall.
//! - **A pid file and a lease file of its own** in the world's directory
//!   (its default pid file, /var/run/miniupnpd.pid, would be shared by
//!   concurrent tests and a system instance). The lease file is
//!   miniupnpd's table of mappings on disk ([`Miniupnpd::leases`]).
//! - **NAT-PMP and PCP share one switch** (`enable_natpmp`; 2.3.1 has no
//!   option for PCP alone). A gateway that speaks only one of them
//!   ([`Options::pcp_only`], [`Options::natpmp_only`]) is made by an
//!   nftables rule in the NAT's input (table `inet lab_portmap`) that drops
//!   the other protocol's requests by their version byte (0 NAT-PMP, 2
//!   PCP), so that the gateway is silent to it, as some are.
//! - **`min_lifetime`** (default 120 s) is the least lifetime it gives a
//!   PCP mapping; [`Options::all`] sets 2 s so that a test sees several
//!   renewals in seconds.
//!
//! It runs in the foreground (`-d`, its log on stderr, in
//! `<label>.log`), spawned by the world as a process group of its own;
//! [`Miniupnpd`]'s drop stops it by its pid (SIGTERM, then SIGKILL),
//! during a panic too, and the world's teardown would kill it otherwise.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use crate::cmd::wait_until;
use crate::ns::Netns;
use crate::world::{Daemon, World};

/// Debian's miniupnpd (the nftables build, package `miniupnpd-nftables`).
pub const BINARY: &str = "/usr/sbin/miniupnpd";
/// The port miniupnpd answers NAT-PMP and PCP on.
pub const PCP_PORT: u16 = 5351;

/// A need of `lab_tests!`: Debian's miniupnpd installed, nftables build.
pub fn unavailable() -> Option<String> {
    if !Path::new(BINARY).is_file() {
        return Some(format!(
            "{BINARY} is not installed (apt-get install miniupnpd miniupnpd-nftables)"
        ));
    }
    let out = Command::new(BINARY).arg("--version").output();
    let text = match out {
        Ok(o) => {
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
        }
        Err(e) => return Some(format!("cannot run {BINARY} --version: {e}")),
    };
    if !text.contains("nftables") {
        return Some(format!(
            "{BINARY} is not the nftables build ({}); apt-get install miniupnpd-nftables",
            text.trim()
        ));
    }
    None
}

/// The public WAN address NAT `n` gets for miniupnpd, and the inet
/// router's address on the same link (its gateway): 11.0.N.1 and
/// 11.0.N.254, /24.
pub fn public_wan(n: usize) -> (Ipv4Addr, Ipv4Addr) {
    let n = u8::try_from(n).expect("a NAT site number fits a byte");
    (Ipv4Addr::new(11, 0, n, 1), Ipv4Addr::new(11, 0, n, 254))
}

/// What miniupnpd offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// UPnP IGD (SSDP and HTTP/SOAP on the LAN).
    pub upnp: bool,
    /// NAT-PMP (RFC 6886).
    pub natpmp: bool,
    /// PCP (RFC 6887).
    pub pcp: bool,
    /// The least lifetime it gives a PCP mapping (seconds).
    pub min_lifetime: u32,
    /// The most.
    pub max_lifetime: u32,
}

impl Options {
    /// UPnP IGD, NAT-PMP and PCP; lifetimes from 2 s to a day.
    pub fn all() -> Options {
        Options {
            upnp: true,
            natpmp: true,
            pcp: true,
            min_lifetime: 2,
            max_lifetime: 86_400,
        }
    }
    /// PCP only (NAT-PMP requests dropped before miniupnpd).
    pub fn pcp_only() -> Options {
        Options {
            upnp: false,
            natpmp: false,
            ..Options::all()
        }
    }
    /// NAT-PMP only (PCP requests dropped before miniupnpd).
    pub fn natpmp_only() -> Options {
        Options {
            upnp: false,
            pcp: false,
            ..Options::all()
        }
    }
    /// UPnP IGD only.
    pub fn upnp_only() -> Options {
        Options {
            natpmp: false,
            pcp: false,
            ..Options::all()
        }
    }
}

/// The tables Debian's nft_init.sh makes, the forward policy accept (see
/// the module's documentation).
const TABLES: &str = "table inet filter {
    chain forward {
        type filter hook forward priority 0; policy accept;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
";

/// miniupnpd running in NAT `n` of a world; stopped when dropped.
pub struct Miniupnpd<'w> {
    world: &'w World,
    n: usize,
    daemon: Daemon,
    stopped: Option<Option<ExitStatus>>,
    /// Its configuration file.
    pub conf: PathBuf,
    /// Its pid file.
    pub pid_file: PathBuf,
    /// Its lease file (its table of mappings).
    pub lease_file: PathBuf,
    /// The NAT's LAN interface, where it listens.
    pub lan_if: String,
    /// The NAT's WAN interface, where it maps.
    pub wan_if: String,
    external: Ipv4Addr,
}

impl<'w> Miniupnpd<'w> {
    /// Gives NAT `n` its public WAN address (unless it has one), makes the
    /// nftables tables miniupnpd needs, writes its configuration, starts it
    /// and waits (at most 5 s) until it serves what `opts` asks. Panics,
    /// with its log, when it does not.
    pub fn start(world: &'w World, n: usize, opts: &Options) -> Miniupnpd<'w> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let label = format!("miniupnpd{n}-{}", COUNT.fetch_add(1, Ordering::Relaxed));
        let nat = world.nat(n);
        let prefix = world.prefix();
        let wan_if = format!("{prefix}n{n}-i");
        // World::add_lan_client makes the LAN side a bridge.
        let bridge = format!("{prefix}br{n}");
        let lan_if = if nat.has_iface(&bridge) {
            bridge
        } else {
            format!("{prefix}n{n}-c")
        };
        let (public, gateway) = public_wan(n);
        if world.nat_wan_v4(n) != public {
            world
                .set_nat_wan(n, public, gateway, 24)
                .unwrap_or_else(|e| panic!("cannot give NAT {n} a public address: {e}"));
        }
        if nat
            .run(&["nft", "list", "table", "inet", "filter"])
            .is_err()
        {
            nat.nft(TABLES)
                .unwrap_or_else(|e| panic!("cannot make miniupnpd's tables: {e}"));
        }
        // A gateway that speaks one of NAT-PMP and PCP: the other's
        // requests are dropped by version (0 NAT-PMP, 2 PCP).
        let _ = nat.nft("delete table inet lab_portmap");
        let drop_version = match (opts.natpmp, opts.pcp) {
            (true, false) => Some(2),
            (false, true) => Some(0),
            _ => None,
        };
        if let Some(v) = drop_version {
            nat.nft(&format!(
                "table inet lab_portmap {{\n\
                 chain input {{\n\
                 type filter hook input priority 0; policy accept;\n\
                 iifname {lan_if} udp dport {PCP_PORT} @th,64,8 {v} drop\n\
                 }}\n\
                 }}\n"
            ))
            .unwrap_or_else(|e| panic!("cannot filter NAT-PMP or PCP: {e}"));
        }
        let dir = world.dir();
        let pid_file = dir.join(format!("{label}.pid"));
        let lease_file = dir.join(format!("{label}.leases"));
        let yes = |b: bool| if b { "yes" } else { "no" };
        let lan = world.client_v4(n).octets();
        let config = format!(
            "# Written by teredo_lab::miniupnpd for NAT {n} of {prefix}.\n\
             ext_ifname={wan_if}\n\
             listening_ip={lan_if}\n\
             http_port=0\n\
             ipv6_disable=yes\n\
             enable_upnp={}\n\
             enable_natpmp={}\n\
             min_lifetime={}\n\
             max_lifetime={}\n\
             lease_file={}\n\
             upnp_table_name=filter\n\
             upnp_nat_table_name=filter\n\
             upnp_forward_chain=miniupnpd\n\
             upnp_nat_chain=prerouting_miniupnpd\n\
             upnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             system_uptime=no\n\
             secure_mode=yes\n\
             uuid=3d3cec3a-8cf0-11e0-98ee-00000000000{n}\n\
             allow 1024-65535 {}.{}.{}.0/24 1024-65535\n\
             deny 0-65535 0.0.0.0/0 0-65535\n",
            yes(opts.upnp),
            yes(opts.natpmp || opts.pcp),
            opts.min_lifetime,
            opts.max_lifetime,
            lease_file.display(),
            lan[0],
            lan[1],
            lan[2],
        );
        let conf = world.write_file(&format!("{label}.conf"), &config);
        let conf_s = conf.display().to_string();
        let pid_s = pid_file.display().to_string();
        let daemon = world.spawn(nat, &label, &[BINARY, "-d", "-f", &conf_s, "-P", &pid_s]);
        let mut m = Miniupnpd {
            world,
            n,
            daemon,
            stopped: None,
            conf,
            pid_file,
            lease_file,
            lan_if,
            wan_if,
            external: public,
        };
        let want_pcp = opts.natpmp || opts.pcp;
        let ready = wait_until(Duration::from_secs(5), || {
            let log = m.log();
            !world.is_running(&m.daemon)
                || (log.contains("Port forwarding is impossible")
                    || ((!want_pcp || log.contains("Listening for NAT-PMP/PCP traffic"))
                        && (!opts.upnp || log.contains("HTTP listening on port"))
                        && m.pid_from_file().is_some()))
        });
        let log = m.log();
        if !ready || !world.is_running(&m.daemon) || log.contains("Port forwarding is impossible") {
            m.stop();
            panic!(
                "miniupnpd in NAT {n} did not start as asked ({opts:?}):\n{}",
                m.log()
            );
        }
        assert_eq!(
            m.pid_from_file(),
            Some(m.daemon.pid),
            "miniupnpd's pid file names another process"
        );
        if want_pcp {
            let listening = wait_until(Duration::from_secs(2), || nat.udp_listening(PCP_PORT));
            assert!(listening, "miniupnpd does not listen on UDP {PCP_PORT}");
        }
        m
    }

    /// The NAT's public address, which miniupnpd maps on.
    pub fn external(&self) -> Ipv4Addr {
        self.external
    }

    /// The NAT's namespace.
    pub fn nat(&self) -> &Netns {
        self.world.nat(self.n)
    }

    /// The process.
    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    /// The pid its pid file names, if it has written one.
    pub fn pid_from_file(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.world.log_of(&self.daemon)
    }

    /// Its rules: `nft list table inet filter` in the NAT namespace.
    pub fn rules(&self) -> String {
        self.nat()
            .run(&["nft", "list", "table", "inet", "filter"])
            .unwrap_or_else(|e| format!("(cannot list: {e})"))
    }

    /// The NAT namespace's whole ruleset (`nft list ruleset`).
    pub fn ruleset(&self) -> String {
        self.nat()
            .run(&["nft", "list", "ruleset"])
            .unwrap_or_else(|e| format!("(cannot list: {e})"))
    }

    /// Whether its rules send UDP to public port `external_port` to
    /// `internal` (the DNAT rule of a mapping).
    pub fn maps_udp(&self, external_port: u16, internal: SocketAddrV4) -> bool {
        self.rules().lines().any(|l| {
            l.contains("@nh,72,8 0x11")
                && l.contains(&format!("th dport {external_port} "))
                && l.contains(&format!("dnat ip to {internal}"))
        })
    }

    /// Its table of mappings as its lease file has it, one a line
    /// (`UDP:<external port>:<internal address>:<internal port>:<expiry>:<description>`).
    pub fn leases(&self) -> Vec<String> {
        std::fs::read_to_string(&self.lease_file)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Stops it by its pid (SIGTERM, SIGKILL after 3 s); its exit status if
    /// it exited by itself. Idempotent.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.stopped {
            return s;
        }
        let s = self.world.stop(&self.daemon, Duration::from_secs(3));
        self.stopped = Some(s);
        s
    }
}

impl Drop for Miniupnpd<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A UDP socket bound to `bind` inside namespace `ns` (opened on a thread
/// that joined it; the socket stays there), for tests that send or
/// receive as a host of the lab.
pub fn udp_socket_in(ns: &Netns, bind: SocketAddrV4) -> std::io::Result<UdpSocket> {
    let path = PathBuf::from("/run/netns").join(ns.name());
    thread::spawn(move || {
        let fd = File::open(&path)?;
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        UdpSocket::bind(bind)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}
