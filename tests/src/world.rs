//! A Teredo world in network namespaces, torn down whatever happens.
//!
//! ```text
//!   srv 198.18.1.1+.2 ─┐             ┌─ relay 198.18.2.1 (core routes 2001::/32 here)
//!   2001:db8:1::1      ├── inet ─────┤
//!   v6h 2001:db8:9::1 ─┘  router     ├─ natN WAN 198.18.(2+N).1 ── cliN 192.168.N.2
//!                       (IPv4+IPv6)  └─ ...  (one per NatKind given)
//! ```

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::cmd::{self, kill_group, wait_for, wait_timeout, wait_until};
use crate::impls::Impl;
use crate::nat::{self, NatKind, NatReboot};
use crate::ns::{teredo_addr_of, Netns};

/// The Teredo server's primary address (its secondary is the next one).
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The Teredo server's secondary address.
pub const SERVER2_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The relay's IPv4 address.
pub const RELAY_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
/// The server host's native IPv6 address.
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The relay host's native IPv6 address.
pub const RELAY_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
/// The native IPv6 host.
pub const NATIVE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1);
/// The name every daemon of a world gives its tunnel (`InterfaceName`).
pub const TEREDO_IFACE: &str = "teredo";
/// The most NAT sites a world may have.
pub const MAX_NATS: u8 = 8;

/// A daemon (or any long-running process) spawned in a world. Cheap to
/// clone; the world owns the process itself.
#[derive(Debug, Clone)]
pub struct Daemon {
    /// The name used for its log and config files.
    pub label: String,
    /// Its pid, which is also its process group.
    pub pid: u32,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// When it was spawned.
    pub started: Instant,
}

struct Proc {
    daemon: Daemon,
    ns: String,
    argv: Vec<String>,
    child: Child,
    exited: Option<ExitStatus>,
}

struct NatSite {
    kind: NatKind,
    nat: Netns,
    client: Netns,
    wan_if: String,
    /// The WAN address now, and the count of reboots asking for a new port.
    state: Mutex<(Ipv4Addr, u16)>,
}

/// A lab world: namespaces, links, NATs, and the processes spawned in it.
/// Dropping it kills every process (by process group) and deletes every
/// namespace; when dropped during a panic it prints every process's log.
pub struct World {
    test: String,
    prefix: String,
    dir: PathBuf,
    created: Vec<String>,
    inet: Netns,
    srv: Netns,
    relay: Netns,
    v6h: Netns,
    sites: Vec<NatSite>,
    procs: Mutex<Vec<Proc>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A short prefix, unique per test, process and call, that leaves room for
/// a role suffix within the kernel's 15-byte names.
fn make_prefix(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut h = DefaultHasher::new();
    test.hash(&mut h);
    std::process::id().hash(&mut h);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .hash(&mut h);
    let abbrev: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(2)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("t{abbrev:x<2}{:05x}", h.finish() & 0xf_ffff)
}

/// The namespaces whose names start with `prefix` (for checking teardown).
pub fn leftover_namespaces(prefix: &str) -> Vec<String> {
    cmd::host(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

impl World {
    /// Builds a world for test `test` with one NAT site per entry of
    /// `nats` (site N = 1, 2, ...: NAT `natN`, client `cliN`). Panics, after
    /// tearing down what it had built, when the lab cannot be set up.
    pub fn build(test: &str, nats: &[NatKind]) -> World {
        assert!(
            nats.len() <= usize::from(MAX_NATS),
            "at most {MAX_NATS} NAT sites"
        );
        let mut prefix = make_prefix(test);
        for _ in 0..8 {
            if leftover_namespaces(&prefix).is_empty() {
                break;
            }
            prefix = make_prefix(test);
        }
        let dir = std::env::temp_dir().join(format!("teredo-lab-{prefix}"));
        let ns = |role: &str| Netns::new(format!("{prefix}{role}"));
        let sites = nats
            .iter()
            .enumerate()
            .map(|(i, &kind)| {
                let n = i + 1;
                NatSite {
                    kind,
                    nat: ns(&format!("nat{n}")),
                    client: ns(&format!("cli{n}")),
                    wan_if: format!("{prefix}n{n}-i"),
                    state: Mutex::new((Ipv4Addr::new(198, 18, 2 + n as u8, 1), 0)),
                }
            })
            .collect();
        let mut world = World {
            test: test.to_string(),
            inet: ns("inet"),
            srv: ns("srv"),
            relay: ns("relay"),
            v6h: ns("v6h"),
            prefix: prefix.clone(),
            dir,
            created: Vec::new(),
            sites,
            procs: Mutex::new(Vec::new()),
        };
        let start = Instant::now();
        if let Err(e) = world.setup() {
            panic!("lab setup of {test} ({prefix}) failed: {e}");
        }
        crate::report(
            test,
            &format!(
                "world {prefix} up in {:?} (logs in {})",
                start.elapsed(),
                world.dir.display()
            ),
        );
        world
    }

    fn setup(&mut self) -> Result<(), String> {
        fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        // Daemons drop privileges and may read their config again on SIGHUP.
        let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755));

        let mut all = vec![
            self.inet.clone(),
            self.srv.clone(),
            self.relay.clone(),
            self.v6h.clone(),
        ];
        for s in &self.sites {
            all.push(s.nat.clone());
            all.push(s.client.clone());
        }
        for ns in &all {
            self.make_namespace(ns)?;
        }

        let (inet, srv, relay, v6h) = (&self.inet, &self.srv, &self.relay, &self.v6h);
        inet.run(&[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ])?;

        // Server: two consecutive addresses (RFC 4380 5.2.1 needs both).
        self.link(inet, "i-s", srv, "s-i")?;
        let (i_s, s_i) = (self.ifname("i-s"), self.ifname("s-i"));
        inet.ip(&format!("addr add 198.18.1.254/24 dev {i_s}"))?;
        srv.ip(&format!("addr add {SERVER_V4}/24 dev {s_i}"))?;
        srv.ip(&format!("addr add {SERVER2_V4}/24 dev {s_i}"))?;
        srv.ip("route add default via 198.18.1.254")?;
        inet.ip(&format!("-6 addr add 2001:db8:1::fe/64 dev {i_s} nodad"))?;
        srv.ip(&format!("-6 addr add {SERVER_V6}/64 dev {s_i} nodad"))?;
        srv.ip("-6 route add default via 2001:db8:1::fe")?;

        // Relay: the IPv6 core routes the Teredo prefix to it.
        self.link(inet, "i-r", relay, "r-i")?;
        let (i_r, r_i) = (self.ifname("i-r"), self.ifname("r-i"));
        inet.ip(&format!("addr add 198.18.2.254/24 dev {i_r}"))?;
        relay.ip(&format!("addr add {RELAY_V4}/24 dev {r_i}"))?;
        relay.ip("route add default via 198.18.2.254")?;
        inet.ip(&format!("-6 addr add 2001:db8:2::fe/64 dev {i_r} nodad"))?;
        relay.ip(&format!("-6 addr add {RELAY_V6}/64 dev {r_i} nodad"))?;
        relay.ip("-6 route add default via 2001:db8:2::fe")?;
        inet.ip(&format!("-6 route add 2001::/32 via {RELAY_V6}"))?;
        relay.sysctl("net.ipv6.conf.all.forwarding", "1")?;

        // Native IPv6 host.
        self.link(inet, "i-h", v6h, "h-i")?;
        let (i_h, h_i) = (self.ifname("i-h"), self.ifname("h-i"));
        inet.ip(&format!("-6 addr add 2001:db8:9::fe/64 dev {i_h} nodad"))?;
        v6h.ip(&format!("-6 addr add {NATIVE_V6}/64 dev {h_i} nodad"))?;
        v6h.ip("-6 route add default via 2001:db8:9::fe")?;

        // NAT sites.
        for (i, site) in self.sites.iter().enumerate() {
            let n = i + 1;
            let (i_n, n_i) = (format!("i-n{n}"), format!("n{n}-i"));
            let (n_c, c_n) = (format!("n{n}-c"), format!("c{n}-n"));
            self.link(inet, &i_n, &site.nat, &n_i)?;
            self.link(&site.nat, &n_c, &site.client, &c_n)?;
            let wan_net = 2 + n;
            inet.ip(&format!(
                "addr add 198.18.{wan_net}.254/24 dev {}",
                self.ifname(&i_n)
            ))?;
            let wan = lock(&site.state).0;
            site.nat
                .ip(&format!("addr add {wan}/24 dev {}", site.wan_if))?;
            site.nat
                .ip(&format!("route add default via 198.18.{wan_net}.254"))?;
            site.nat.ip(&format!(
                "addr add 192.168.{n}.1/24 dev {}",
                self.ifname(&n_c)
            ))?;
            site.client.ip(&format!(
                "addr add 192.168.{n}.2/24 dev {}",
                self.ifname(&c_n)
            ))?;
            site.client
                .ip(&format!("route add default via 192.168.{n}.1"))?;
            site.nat.sysctl("net.ipv4.ip_forward", "1")?;
            site.nat.nft(&nat::ruleset(
                site.kind,
                &site.wan_if,
                wan,
                Self::client_v4_of(n),
                0,
            ))?;
        }
        Ok(())
    }

    /// Adds a second client host on the LAN of NAT site `n`: the NAT's LAN
    /// side becomes a bridge, the new host `cliNb` gets 192.168.N.3 on it.
    /// Two clients behind one NAT (hairpinning, local discovery).
    pub fn add_lan_client(&mut self, n: usize) -> Result<Netns, String> {
        let nat = self.site(n).nat.clone();
        let ns = Netns::new(format!("{}cli{n}b", self.prefix));
        cmd::host(&["ip", "netns", "add", ns.name()])?;
        self.created.push(ns.name().to_string());
        ns.ip("link set lo up")?;
        let br = self.ifname(&format!("br{n}"));
        let n_c = self.ifname(&format!("n{n}-c"));
        nat.ip(&format!("link add {br} type bridge"))?;
        nat.ip(&format!("link set {br} up"))?;
        nat.ip(&format!("addr del 192.168.{n}.1/24 dev {n_c}"))?;
        nat.ip(&format!("link set {n_c} master {br}"))?;
        nat.ip(&format!("addr add 192.168.{n}.1/24 dev {br}"))?;
        self.link(&nat, &format!("n{n}-b"), &ns, &format!("b{n}-n"))?;
        nat.ip(&format!(
            "link set {} master {br}",
            self.ifname(&format!("n{n}-b"))
        ))?;
        ns.ip(&format!(
            "addr add 192.168.{n}.3/24 dev {}",
            self.ifname(&format!("b{n}-n"))
        ))?;
        ns.ip(&format!("route add default via 192.168.{n}.1"))?;
        Ok(ns)
    }

    /// Adds a namespace `PREFIX<role>` (loopback up, no DAD), deleted with
    /// the world: for worlds built on this one (a relay farm).
    pub fn add_namespace(&mut self, role: &str) -> Result<Netns, String> {
        let ns = Netns::new(format!("{}{role}", self.prefix));
        self.make_namespace(&ns)?;
        Ok(ns)
    }

    /// Creates `ns` (deleted with the world), loopback up, no DAD.
    fn make_namespace(&mut self, ns: &Netns) -> Result<(), String> {
        cmd::host(&["ip", "netns", "add", ns.name()])?;
        self.created.push(ns.name().to_string());
        ns.ip("link set lo up")?;
        ns.run(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ])?;
        Ok(())
    }

    /// The name of the world's interface `suffix` (`PREFIX<suffix>`).
    pub fn ifname(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Links `a` and `b` with a veth pair, `PREFIX<a_if>` in `a` and
    /// `PREFIX<b_if>` in `b`, both up.
    pub fn link(&self, a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<(), String> {
        let (a_if, b_if) = (self.ifname(a_if), self.ifname(b_if));
        cmd::host(&[
            "ip",
            "link",
            "add",
            &a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &b_if,
            "netns",
            b.name(),
        ])?;
        a.ip(&format!("link set {a_if} up"))?;
        b.ip(&format!("link set {b_if} up"))?;
        Ok(())
    }

    fn client_v4_of(n: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, n as u8, 2)
    }

    fn site(&self, n: usize) -> &NatSite {
        match n.checked_sub(1).and_then(|i| self.sites.get(i)) {
            Some(s) => s,
            None => panic!("world {} has no NAT site {n}", self.prefix),
        }
    }

    /// The test name given to [`World::build`].
    pub fn test_name(&self) -> &str {
        &self.test
    }
    /// The prefix of every namespace and interface name of this world.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The directory of configs, logs and captures (removed when the test
    /// passes, kept when it fails).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The IPv4 Internet and IPv6 core router.
    pub fn inet(&self) -> &Netns {
        &self.inet
    }
    /// The Teredo server host (198.18.1.1 and .2).
    pub fn srv(&self) -> &Netns {
        &self.srv
    }
    /// The Teredo relay host (198.18.2.1).
    pub fn relay(&self) -> &Netns {
        &self.relay
    }
    /// The native IPv6 host ([`NATIVE_V6`]).
    pub fn v6h(&self) -> &Netns {
        &self.v6h
    }
    /// The NAT router of site `n` (1-based).
    pub fn nat(&self, n: usize) -> &Netns {
        &self.site(n).nat
    }
    /// The client host behind NAT `n` (1-based), 192.168.N.2.
    pub fn client(&self, n: usize) -> &Netns {
        &self.site(n).client
    }
    /// The kind NAT `n` was built with.
    pub fn nat_kind(&self, n: usize) -> NatKind {
        self.site(n).kind
    }
    /// The LAN address of client `n`.
    pub fn client_v4(&self, n: usize) -> Ipv4Addr {
        let _ = self.site(n);
        Self::client_v4_of(n)
    }
    /// The current public (WAN) address of NAT `n`.
    pub fn nat_wan_v4(&self, n: usize) -> Ipv4Addr {
        lock(&self.site(n).state).0
    }
    /// The current mapped port of a full cone NAT `n`; `None` for the
    /// dynamic kinds.
    pub fn nat_mapped_port(&self, n: usize) -> Option<u16> {
        let site = self.site(n);
        nat::static_mapped_port(site.kind, lock(&site.state).1)
    }

    /// Reboots NAT `n`: every flow is forgotten, and the mapping changes as
    /// `how` says.
    pub fn nat_reboot(&self, n: usize, how: NatReboot) -> Result<(), String> {
        let site = self.site(n);
        let mut state = lock(&site.state);
        match how {
            NatReboot::KeepMapping => {}
            NatReboot::NewPort => state.1 += 1,
            NatReboot::NewAddress => {
                let (old, wan_net) = (state.0, 2 + n);
                let next = Ipv4Addr::new(198, 18, wan_net as u8, old.octets()[3] % 250 + 1);
                site.nat.ip(&format!("addr flush dev {}", site.wan_if))?;
                site.nat
                    .ip(&format!("addr add {next}/24 dev {}", site.wan_if))?;
                site.nat
                    .ip(&format!("route replace default via 198.18.{wan_net}.254"))?;
                state.0 = next;
            }
        }
        Self::renat(site, n, &state, "flush ruleset")
    }

    /// Makes NAT `n`'s rules again for its state (WAN address, port
    /// numbering) after `clear` (an nft command) and forgets every flow.
    fn renat(site: &NatSite, n: usize, state: &(Ipv4Addr, u16), clear: &str) -> Result<(), String> {
        site.nat.nft(clear)?;
        site.nat.nft(&nat::ruleset(
            site.kind,
            &site.wan_if,
            state.0,
            Self::client_v4_of(n),
            state.1,
        ))?;
        site.nat.run(&["conntrack", "-F"]).map(|_| ())
    }

    /// Moves the WAN side of NAT `n` to `wan`/`prefix_len`, its default
    /// route to `gateway` (which the inet router takes on its link to the
    /// NAT, with the route to the new subnet); the address in 198.18.0.0/15
    /// is removed, so the NAT's masquerade uses the new one. For a NAT that
    /// must look public: miniupnpd refuses to map behind an address of a
    /// reserved range ([`crate::miniupnpd`]). The lab has no link to the
    /// machine's network, so a public address stays inside it. Every flow
    /// is forgotten, the NAT's rules (table `ip nat` only) are made again
    /// for the new address, and [`World::nat_wan_v4`] returns it.
    pub fn set_nat_wan(
        &self,
        n: usize,
        wan: Ipv4Addr,
        gateway: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), String> {
        let site = self.site(n);
        let mut state = lock(&site.state);
        self.inet.ip(&format!(
            "addr replace {gateway}/{prefix_len} dev {}",
            self.ifname(&format!("i-n{n}"))
        ))?;
        site.nat.ip(&format!("addr flush dev {}", site.wan_if))?;
        site.nat
            .ip(&format!("addr add {wan}/{prefix_len} dev {}", site.wan_if))?;
        site.nat
            .ip(&format!("route replace default via {gateway}"))?;
        state.0 = wan;
        Self::renat(site, n, &state, "delete table ip nat")
    }

    /// The NAT's flow table (`conntrack -L`), for reports.
    pub fn nat_flows(&self, n: usize) -> String {
        let out = self.nat(n).exec(&["conntrack", "-L"], cmd::CMD_TIMEOUT);
        out.stdout
    }

    /// Writes `contents` to `name` in the world's directory.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        if let Err(e) = fs::write(&path, contents) {
            panic!("cannot write {}: {e}", path.display());
        }
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o644));
        path
    }

    /// A directory of root's, mode 0755, reached through directories of
    /// root's only (`/run/teredo-lab-PREFIX`), made at the first call and
    /// removed with the world: for what miredo-privproc runs (client
    /// hooks), which it refuses anywhere another user could change it, as
    /// under /tmp.
    pub fn trusted_dir(&self) -> PathBuf {
        let d = PathBuf::from(format!("/run/teredo-lab-{}", self.prefix));
        if let Err(e) = fs::create_dir_all(&d) {
            panic!("cannot make {}: {e}", d.display());
        }
        let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o755));
        d
    }

    /// Writes an executable script `name` (mode 0755) in
    /// [`World::trusted_dir`]: a client hook miredo-privproc accepts.
    pub fn write_hook(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.trusted_dir().join(name);
        if let Err(e) = fs::write(&path, contents) {
            panic!("cannot write {}: {e}", path.display());
        }
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o755));
        path
    }

    /// Makes an empty file `name` in [`World::trusted_dir`] that anyone may
    /// write (mode 0666): a log for a hook, which runs as miredo-privproc's
    /// unprivileged user.
    pub fn shared_log(&self, name: &str) -> PathBuf {
        let path = self.trusted_dir().join(name);
        if let Err(e) = fs::write(&path, "") {
            panic!("cannot write {}: {e}", path.display());
        }
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o666));
        path
    }

    /// Spawns `argv` in `ns` as a process group of its own, its stdout and
    /// stderr going to `<label>.log`. It lives until [`World::stop`] or the
    /// world's end.
    pub fn spawn<S: AsRef<str>>(&self, ns: &Netns, label: &str, argv: &[S]) -> Daemon {
        let argv: Vec<String> = argv.iter().map(|s| s.as_ref().to_string()).collect();
        let log = self.dir.join(format!("{label}.log"));
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup {}: {e}", log.display()));
        let started = Instant::now();
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {label} ({}): {e}", argv.join(" ")));
        let daemon = Daemon {
            label: label.to_string(),
            pid: child.id(),
            log,
            started,
        };
        lock(&self.procs).push(Proc {
            daemon: daemon.clone(),
            ns: ns.name().to_string(),
            argv,
            child,
            exited: None,
        });
        daemon
    }

    /// Writes `config` to `<label>.conf` and spawns
    /// `program -f -c <label>.conf -p <label>.pid EXTRA...` in `ns`
    /// (the command line both implementations share; our miredo also gets
    /// `--privproc` naming the helper built beside it).
    pub fn spawn_daemon(
        &self,
        ns: &Netns,
        label: &str,
        program: &Path,
        config: &str,
        extra: &[&str],
    ) -> Daemon {
        self.spawn_daemon_with_env(ns, label, program, config, extra, &[])
    }

    /// Like [`World::spawn_daemon`], the daemon started with `env`
    /// (`NAME=value`) added to its environment: through env(1), which
    /// executes the daemon in its place (the pid stays the daemon's).
    pub fn spawn_daemon_with_env(
        &self,
        ns: &Netns,
        label: &str,
        program: &Path,
        config: &str,
        extra: &[&str],
        env: &[&str],
    ) -> Daemon {
        let conf = self.write_file(&format!("{label}.conf"), config);
        let pid = self.dir.join(format!("{label}.pid"));
        let mut argv: Vec<String> = Vec::new();
        if !env.is_empty() {
            argv.push("env".into());
            argv.extend(env.iter().map(|e| e.to_string()));
        }
        argv.extend([
            program.display().to_string(),
            "-f".into(),
            "-c".into(),
            conf.display().to_string(),
            "-p".into(),
            pid.display().to_string(),
        ]);
        // Our miredo starts the miredo-privproc built beside it (the one it
        // would start otherwise is installed, at a path fixed at build time).
        if program == crate::Impl::Ours.miredo() {
            argv.push("--privproc".into());
            argv.push(
                crate::Impl::Ours
                    .path("miredo-privproc")
                    .display()
                    .to_string(),
            );
            // Every world's daemons call their interface `teredo`, in
            // namespaces of their own but with one /run/miredo: ours refuses
            // to start over a status socket another live miredo answers on
            // (miredo(8), STATUS), so each gets its own, beside its hook.
            // Those named with unique_iface keep /run/miredo/IFACE.status.
            if interface_name(config) == TEREDO_IFACE {
                argv.push("--status-socket".into());
                argv.push(
                    self.trusted_dir()
                        .join(format!("{label}.status"))
                        .display()
                        .to_string(),
                );
            }
        }
        // Our miredo-server serves a status socket too, one per world
        // (/run/miredo/miredo-server.sock is shared by every namespace).
        if program == crate::Impl::Ours.miredo_server() {
            argv.push("--status-socket".into());
            argv.push(self.server_status_socket(label).display().to_string());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(ns, label, &argv)
    }

    /// Where our miredo-server started as `label` (by
    /// [`World::spawn_daemon`]) serves its status.
    pub fn server_status_socket(&self, label: &str) -> PathBuf {
        self.trusted_dir().join(format!("{label}.status"))
    }

    /// Where our miredo started by [`World::spawn_daemon`] serves its
    /// status: a socket of its own when its interface is `teredo` (every
    /// world's clients share that name), else `/run/miredo/IFACE.status`.
    pub fn status_socket_of(&self, daemon: &Daemon, iface: &str) -> PathBuf {
        if iface == TEREDO_IFACE {
            self.trusted_dir().join(format!("{}.status", daemon.label))
        } else {
            PathBuf::from(format!("/run/miredo/{iface}.status"))
        }
    }

    /// Starts `imp`'s miredo-server on 198.18.1.1 and .2 and waits (at most
    /// 5 s) until it listens on UDP 3544; panics otherwise.
    pub fn start_server(&self, imp: Impl) -> Daemon {
        self.start_server_labeled(imp, &format!("server-{}", imp.tag()))
    }

    /// Like [`World::start_server`], with its log and config files named
    /// after `label` (for a world that runs several servers in turn).
    pub fn start_server_labeled(&self, imp: Impl, label: &str) -> Daemon {
        let config = format!("ServerBindAddress {SERVER_V4}\nServerBindAddress2 {SERVER2_V4}\n");
        let d = self.spawn_daemon(&self.srv, label, &imp.miredo_server(), &config, &[]);
        let ready = wait_until(Duration::from_secs(5), || self.srv.udp_listening(3544));
        assert!(ready, "{label} does not listen on UDP 3544 after 5 s");
        d
    }

    /// Starts `imp`'s miredo as a relay (`RelayType relay_type`: `cone` or
    /// `restricted`) and waits (at most 5 s) until its 2001::/32 route is
    /// up; panics otherwise.
    pub fn start_relay(&self, imp: Impl, relay_type: &str) -> Daemon {
        self.start_relay_labeled(imp, relay_type, &format!("relay-{}", imp.tag()))
    }

    /// Like [`World::start_relay`], with its files named after `label`.
    pub fn start_relay_labeled(&self, imp: Impl, relay_type: &str, label: &str) -> Daemon {
        let config = format!("RelayType {relay_type}\nInterfaceName {TEREDO_IFACE}\n");
        let d = self.spawn_daemon(&self.relay, label, &imp.miredo(), &config, &[]);
        let ready = wait_until(Duration::from_secs(5), || {
            !self
                .relay
                .routes6(&format!("2001::/32 dev {TEREDO_IFACE}"))
                .is_empty()
        });
        assert!(ready, "{label} has no 2001::/32 route after 5 s");
        d
    }

    /// Starts `imp`'s miredo as the client of site `n`, using the server at
    /// 198.18.1.1; `extra_config` lines are appended to its miredo.conf
    /// (e.g. `BindPort 3545` behind a full cone NAT). Does not wait.
    pub fn start_client(&self, n: usize, imp: Impl, extra_config: &str) -> Daemon {
        self.start_client_labeled(n, imp, extra_config, &format!("client{n}-{}", imp.tag()))
    }

    /// Like [`World::start_client`], with its files named after `label`.
    pub fn start_client_labeled(
        &self,
        n: usize,
        imp: Impl,
        extra_config: &str,
        label: &str,
    ) -> Daemon {
        let mut config =
            format!("RelayType client\nServerAddress {SERVER_V4}\nInterfaceName {TEREDO_IFACE}\n");
        if let NatKind::FullCone { client_port, .. } = self.nat_kind(n) {
            if !extra_config.to_ascii_lowercase().contains("bindport") {
                config += &format!("BindPort {client_port}\n");
            }
        }
        config += extra_config;
        let client = self.client(n).clone();
        self.spawn_daemon(&client, label, &imp.miredo(), &config, &[])
    }

    /// Waits (at most `timeout`) until client `n` has a Teredo address on
    /// its tunnel; returns it and the time since `daemon` was spawned.
    pub fn wait_qualified(
        &self,
        daemon: &Daemon,
        n: usize,
        timeout: Duration,
    ) -> Option<(Ipv6Addr, Duration)> {
        let client = self.client(n);
        wait_for(timeout, || teredo_addr_of(client, TEREDO_IFACE))
            .map(|a| (a, daemon.started.elapsed()))
    }

    /// Starts tcpdump on `iface` in `ns`, writing `<label>.pcap` in the
    /// world's directory (kept when the test fails).
    pub fn capture(&self, ns: &Netns, iface: &str, label: &str) -> Daemon {
        let pcap = self.dir.join(format!("{label}.pcap"));
        let pcap = pcap.display().to_string();
        self.spawn_tcpdump(ns, label, &["-U", "-n", "-i", iface, "-w", &pcap])
    }

    /// Starts `tcpdump ARGS...` in `ns` (its output in `<label>.log`) and
    /// returns once it captures: when it says `listening on` (on standard
    /// error, whether it prints or writes a file). Panics with its log when
    /// it does not within 5 s, since a capture that missed the start would
    /// make the test's counts wrong.
    pub fn spawn_tcpdump(&self, ns: &Netns, label: &str, args: &[&str]) -> Daemon {
        let mut argv = vec!["tcpdump"];
        argv.extend_from_slice(args);
        let d = self.spawn(ns, label, &argv);
        let listening = wait_until(Duration::from_secs(5), || {
            self.log_of(&d).contains("listening on")
        });
        assert!(
            listening,
            "{label}: tcpdump did not start capturing within 5 s:\n{}",
            self.log_of(&d)
        );
        d
    }

    /// Whether `daemon` is still running.
    pub fn is_running(&self, daemon: &Daemon) -> bool {
        let mut procs = lock(&self.procs);
        match procs.iter_mut().find(|p| p.daemon.pid == daemon.pid) {
            Some(p) => {
                if p.exited.is_none() {
                    p.exited = p.child.try_wait().ok().flatten();
                }
                p.exited.is_none()
            }
            None => false,
        }
    }

    /// Sends `signal` (`HUP`, `USR1`, ...) to `daemon` only (not its group).
    pub fn signal(&self, daemon: &Daemon, signal: &str) {
        let _ = cmd::host(&["kill", "-s", signal, &daemon.pid.to_string()]);
    }

    /// Stops `daemon` with SIGTERM, waiting at most `timeout` before
    /// SIGKILL of its whole group; returns its exit status if it exited in
    /// time by itself.
    pub fn stop(&self, daemon: &Daemon, timeout: Duration) -> Option<ExitStatus> {
        let mut procs = lock(&self.procs);
        let p = procs.iter_mut().find(|p| p.daemon.pid == daemon.pid)?;
        if let Some(s) = p.exited {
            return Some(s);
        }
        kill_group(p.daemon.pid, "TERM");
        let status = wait_timeout(&mut p.child, timeout);
        kill_group(p.daemon.pid, "KILL");
        if status.is_none() {
            let _ = p.child.wait();
        }
        p.exited = status;
        status
    }

    /// Everything `daemon` wrote to stdout and stderr so far.
    pub fn log_of(&self, daemon: &Daemon) -> String {
        fs::read(&daemon.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn teardown(&mut self) {
        let mut procs = lock(&self.procs);
        for p in procs.iter_mut().filter(|p| p.exited.is_none()) {
            kill_group(p.daemon.pid, "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in procs.iter_mut().filter(|p| p.exited.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            p.exited = wait_timeout(&mut p.child, left);
        }
        // Also reaps what a leader left behind in its group.
        for p in procs.iter_mut() {
            kill_group(p.daemon.pid, "KILL");
            if p.exited.is_none() {
                let _ = p.child.wait();
            }
        }
        drop(procs);
        for name in self.created.drain(..).rev() {
            let _ = cmd::host(&["ip", "netns", "del", &name]);
        }
        let _ = fs::remove_dir_all(format!("/run/teredo-lab-{}", self.prefix));
    }

    fn print_logs(&self) {
        eprintln!(
            "==== lab {} ({}) failed; files kept in {} ====",
            self.test,
            self.prefix,
            self.dir.display()
        );
        for p in lock(&self.procs).iter() {
            let status = match p.exited {
                Some(s) => s.to_string(),
                None => "killed by the teardown".to_string(),
            };
            eprintln!(
                "---- {} in {} [{}] ({status}) ----",
                p.daemon.label,
                p.ns,
                p.argv.join(" ")
            );
            let text = fs::read(&p.daemon.log)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| format!("(no log: {e})"));
            eprintln!("{}", text.trim_end());
        }
        eprintln!("==== end of lab {} logs ====", self.prefix);
    }
}

/// The `InterfaceName` of a miredo.conf (`teredo` when it has none).
fn interface_name(config: &str) -> &str {
    config
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some(k), Some(v)) if k.eq_ignore_ascii_case("InterfaceName") => Some(v),
                _ => None,
            }
        })
        .next_back()
        .unwrap_or(TEREDO_IFACE)
}

impl Drop for World {
    fn drop(&mut self) {
        let start = Instant::now();
        self.teardown();
        if thread::panicking() {
            self.print_logs();
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
        crate::report(
            &self.test,
            &format!("world {} down in {:?}", self.prefix, start.elapsed()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_of_configs() {
        assert_eq!(interface_name("RelayType cone\n"), "teredo");
        assert_eq!(interface_name("interfacename tr1\nRelayType cone\n"), "tr1");
        assert_eq!(interface_name("InterfaceName teredo\n"), "teredo");
    }

    #[test]
    fn prefixes_fit_interface_names() {
        let a = make_prefix("c_reference_port_restricted");
        let b = make_prefix("c_reference_port_restricted");
        assert_ne!(a, b);
        assert_eq!(a.len(), 8);
        assert!(a.starts_with("tcr"));
        for role in ["relay", "nat8", "cli8", "n8-i", "i-n8", "c8-n"] {
            assert!(format!("{a}{role}").len() <= 15);
        }
        assert_eq!(make_prefix("_").len(), 8);
    }
}
