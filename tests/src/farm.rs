//! A Teredo relay farm on BGP anycast (issue 17), built on a [`World`]:
//! the world's Internet router becomes the core router, running BIRD with
//! one eBGP session per relay; each relay host runs our miredo relay and
//! BIRD, which announces 2001::/32 while the relay's route is in the
//! kernel. The BIRD configs are made from the files operators copy
//! (`deploy/farm/`), their `@NAME@` placeholders filled in.
//!
//! ```text
//!   srv 198.18.1.1+.2 ─┐          ┌─ rlyK 198.18.2K.1, 2001:db8:2K::1 (miredo relay + BIRD, AS 65001)
//!                      ├── inet ──┤
//!   hstJ 2001:db8:4J::1┘  core    └─ natN ── cliN (our client)
//!                       (BIRD AS 65000, ECMP on 2001::/32)
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cmd::wait_until;
use crate::impls::Impl;
use crate::nat::NatKind;
use crate::ns::Netns;
use crate::world::{Daemon, World, TEREDO_IFACE};

/// The shipped BIRD config of a relay.
pub const BIRD_RELAY_CONF: &str = include_str!("../../deploy/farm/bird-relay.conf");
/// The shipped BIRD config of the core router.
pub const BIRD_CORE_CONF: &str = include_str!("../../deploy/farm/bird-core.conf");
/// The shipped miredo.conf of a relay.
pub const MIREDO_RELAY_CONF: &str = include_str!("../../deploy/farm/miredo.conf");

/// The BGP hold time of the shipped configs.
pub const HOLD_TIME: Duration = Duration::from_secs(3);

/// `template` with every `@KEY@` replaced by its value; an error names a
/// placeholder left unfilled.
pub fn render(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    // Placeholders are @UPPER_CASE@ outside comments (those in comments
    // document them, and stay).
    let mut s = String::new();
    for line in template.lines() {
        let (code, comment) = line.split_at(line.find('#').unwrap_or(line.len()));
        let mut code = code.to_string();
        for (k, v) in values {
            code = code.replace(&format!("@{k}@"), v);
        }
        s += &code;
        s += comment;
        s.push('\n');
    }
    for line in s.lines() {
        let code = line.split('#').next().unwrap_or("");
        if let Some(i) = code.find('@') {
            let rest = &code[i + 1..];
            if let Some(j) = rest.find('@') {
                let name = &rest[..j];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(format!("placeholder @{name}@ left in: {line}"));
                }
            }
        }
    }
    Ok(s)
}

/// Relay `k`'s IPv4 address (its own, unicast).
pub fn relay_v4(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 20 + k as u8, 1)
}
/// The core router's IPv4 address on relay `k`'s link.
pub fn core_v4_to_relay(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 20 + k as u8, 254)
}
/// Relay `k`'s IPv6 address on its link to the core.
pub fn relay_v6(k: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x20 + k as u16, 0, 0, 0, 0, 1)
}
/// The core router's IPv6 address on relay `k`'s link.
pub fn core_v6_to_relay(k: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x20 + k as u16, 0, 0, 0, 0, 0xfe)
}
/// Native host `j`'s address.
pub fn host_v6(j: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x40 + j as u16, 0, 0, 0, 0, 1)
}

/// One relay host of the farm.
pub struct RelayHost {
    /// Its namespace.
    pub ns: Netns,
    /// Its interface towards the core.
    pub uplink: String,
    /// Its miredo, when running.
    pub miredo: Option<Daemon>,
    /// Its BIRD.
    pub bird: Option<Daemon>,
    /// How many times its miredo was started.
    pub starts: u32,
}

/// A relay farm: a [`World`] with relays behind a BIRD core router.
pub struct Farm {
    /// The world (core router = its `inet`, server, NATs and clients).
    pub w: World,
    /// The relay hosts, 1-based in names (`relays[0]` is relay 1).
    pub relays: Vec<RelayHost>,
    /// The native IPv6 hosts behind the core (`hosts[0]` is host 1).
    pub hosts: Vec<Netns>,
    /// The core router's BIRD.
    pub core_bird: Option<Daemon>,
    /// Whether BGP runs with BFD.
    pub bfd: bool,
}

impl Farm {
    /// Builds the namespaces and links of a farm of `relays` relays,
    /// `hosts` native hosts and `clients` NAT sites (port-restricted), and
    /// starts the Teredo server and every BIRD (not the relays).
    pub fn build(test: &str, relays: usize, hosts: usize, clients: usize, bfd: bool) -> Farm {
        let nats = vec![NatKind::PortRestricted; clients];
        let mut w = World::build(test, &nats);
        let mut farm_relays = Vec::new();
        let mut farm_hosts = Vec::new();
        let setup = (|| -> Result<(), String> {
            let core = w.inet().clone();
            // The world's static route to its own relay gives way to BGP.
            core.ip("-6 route del 2001::/32")?;
            core.sysctl("net.ipv6.fib_multipath_hash_policy", "3")?;
            core.sysctl("net.ipv6.fib_multipath_hash_fields", "0x0003")?;
            for k in 1..=relays {
                let ns = w.add_namespace(&format!("rly{k}"))?;
                w.link(&core, &format!("i-r{k}"), &ns, &format!("r{k}-i"))?;
                let (i_r, r_i) = (w.ifname(&format!("i-r{k}")), w.ifname(&format!("r{k}-i")));
                core.ip(&format!("addr add {}/24 dev {i_r}", core_v4_to_relay(k)))?;
                core.ip(&format!(
                    "-6 addr add {}/64 dev {i_r} nodad",
                    core_v6_to_relay(k)
                ))?;
                ns.ip(&format!("addr add {}/24 dev {r_i}", relay_v4(k)))?;
                ns.ip(&format!("-6 addr add {}/64 dev {r_i} nodad", relay_v6(k)))?;
                ns.ip(&format!("route add default via {}", core_v4_to_relay(k)))?;
                ns.ip(&format!("-6 route add default via {}", core_v6_to_relay(k)))?;
                ns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
                farm_relays.push(RelayHost {
                    ns,
                    uplink: r_i,
                    miredo: None,
                    bird: None,
                    starts: 0,
                });
            }
            for j in 1..=hosts {
                let ns = w.add_namespace(&format!("hst{j}"))?;
                w.link(&core, &format!("i-h{j}"), &ns, &format!("h{j}-i"))?;
                let (i_h, h_i) = (w.ifname(&format!("i-h{j}")), w.ifname(&format!("h{j}-i")));
                let gw = Ipv6Addr::new(0x2001, 0xdb8, 0x40 + j as u16, 0, 0, 0, 0, 0xfe);
                core.ip(&format!("-6 addr add {gw}/64 dev {i_h} nodad"))?;
                ns.ip(&format!("-6 addr add {}/64 dev {h_i} nodad", host_v6(j)))?;
                ns.ip(&format!("-6 route add default via {gw}"))?;
                farm_hosts.push(ns);
            }
            Ok(())
        })();
        if let Err(e) = setup {
            panic!("farm setup of {test} failed: {e}");
        }
        let mut farm = Farm {
            w,
            relays: farm_relays,
            hosts: farm_hosts,
            core_bird: None,
            bfd,
        };
        farm.w.start_server(Impl::Ours);
        farm.start_core_bird();
        for k in 1..=relays {
            farm.start_relay_bird(k);
        }
        farm
    }

    fn bfd_word(&self) -> String {
        if self.bfd { "on" } else { "off" }.to_string()
    }

    fn spawn_bird(&self, ns: &Netns, label: &str, config: &str) -> Daemon {
        let conf = self.w.write_file(&format!("{label}.conf"), config);
        let dir = self.w.dir();
        let ctl = dir.join(format!("{label}.ctl"));
        let pid = dir.join(format!("{label}.pid"));
        let argv: Vec<String> = vec![
            "bird".into(),
            "-f".into(),
            "-c".into(),
            conf.display().to_string(),
            "-s".into(),
            ctl.display().to_string(),
            "-P".into(),
            pid.display().to_string(),
        ];
        let d = self.w.spawn(ns, label, &argv);
        let up = wait_until(Duration::from_secs(5), || ctl.exists());
        assert!(
            up && self.w.is_running(&d),
            "{label} did not start: {}",
            self.w.log_of(&d)
        );
        d
    }

    /// The control socket of BIRD `label` (for `birdc -s`).
    pub fn bird_ctl(&self, label: &str) -> PathBuf {
        self.w.dir().join(format!("{label}.ctl"))
    }

    /// The core router's BIRD config, from the shipped file.
    pub fn core_config(&self) -> String {
        let sessions: Vec<String> = (1..=self.relays.len())
            .map(|k| {
                format!(
                    "protocol bgp relay{k} from teredo_relays {{ neighbor {} as 65001; }}",
                    relay_v6(k)
                )
            })
            .collect();
        let values = [
            ("ROUTER_ID", "10.255.0.254".to_string()),
            ("UPLINK", format!("{}i-r*", self.w.prefix())),
            ("BFD", self.bfd_word()),
            ("RELAY_SESSIONS", sessions.join("\n")),
        ];
        render(BIRD_CORE_CONF, &values).unwrap_or_else(|e| panic!("bird-core.conf: {e}"))
    }

    /// Relay `k`'s BIRD config, from the shipped file.
    pub fn relay_config(&self, k: usize) -> String {
        let r = &self.relays[k - 1];
        let values = [
            ("ROUTER_ID", relay_v4(k).to_string()),
            ("UPLINK", r.uplink.clone()),
            ("LOCAL_V6", relay_v6(k).to_string()),
            ("CORE_V6", core_v6_to_relay(k).to_string()),
            ("TEREDO_IFACE", TEREDO_IFACE.to_string()),
            ("BFD", self.bfd_word()),
        ];
        render(BIRD_RELAY_CONF, &values).unwrap_or_else(|e| panic!("bird-relay.conf: {e}"))
    }

    fn start_core_bird(&mut self) {
        let conf = self.core_config();
        let core = self.w.inet().clone();
        self.core_bird = Some(self.spawn_bird(&core, "bird-core", &conf));
    }

    fn start_relay_bird(&mut self, k: usize) {
        let conf = self.relay_config(k);
        let ns = self.relays[k - 1].ns.clone();
        let d = self.spawn_bird(&ns, &format!("bird-relay{k}"), &conf);
        self.relays[k - 1].bird = Some(d);
    }

    /// Starts (again) relay `k`'s miredo with the shipped miredo.conf and
    /// waits (at most 5 s) for its 2001::/32 route; panics otherwise.
    pub fn start_relay(&mut self, k: usize) {
        let conf = render(MIREDO_RELAY_CONF, &[("RELAY_V4", relay_v4(k).to_string())])
            .unwrap_or_else(|e| panic!("miredo.conf: {e}"));
        let r = &self.relays[k - 1];
        let label = format!("relay{k}-{}", r.starts + 1);
        let d = self
            .w
            .spawn_daemon(&r.ns, &label, &Impl::Ours.miredo(), &conf, &[]);
        let up = wait_until(Duration::from_secs(5), || self.relay_route_up(k));
        assert!(
            up,
            "{label} has no 2001::/32 route after 5 s: {}",
            self.w.log_of(&d)
        );
        let r = &mut self.relays[k - 1];
        r.miredo = Some(d);
        r.starts += 1;
    }

    /// Whether relay `k` has its `2001::/32 dev teredo` route.
    pub fn relay_route_up(&self, k: usize) -> bool {
        !self.relays[k - 1]
            .ns
            .routes6(&format!("2001::/32 dev {TEREDO_IFACE}"))
            .is_empty()
    }

    /// The relays the core's 2001::/32 route leads to (1-based, sorted).
    pub fn core_paths(&self) -> Vec<usize> {
        let lines = self.w.inet().routes6("2001::/32");
        let text = lines.join(" ");
        let mut v: Vec<usize> = (1..=self.relays.len())
            .filter(|&k| text.contains(&format!("via {} ", relay_v6(k))))
            .collect();
        v.sort_unstable();
        v
    }

    /// Waits (at most `timeout`) until the core routes 2001::/32 to
    /// exactly `relays`.
    pub fn wait_paths(&self, relays: &[usize], timeout: Duration) -> bool {
        wait_until(timeout, || self.core_paths() == relays)
    }

    /// The core BIRD's view of its sessions (`birdc show protocols`).
    pub fn core_protocols(&self) -> String {
        let ctl = self.bird_ctl("bird-core");
        self.w
            .inet()
            .exec(
                &[
                    "birdc",
                    "-s",
                    &ctl.display().to_string(),
                    "show",
                    "protocols",
                ],
                Duration::from_secs(5),
            )
            .stdout
    }

    /// Makes relay host `k` silent, as a host that lost power behind a
    /// switch: its namespace drops every packet in and out (its BIRD and
    /// miredo keep running, unheard).
    pub fn blackout(&self, k: usize) -> Result<(), String> {
        self.relays[k - 1].ns.nft(
            "add table inet blackout\n\
             add chain inet blackout bin { type filter hook input priority -300 ; policy drop ; }\n\
             add chain inet blackout bout { type filter hook output priority -300 ; policy drop ; }\n\
             add chain inet blackout bfw { type filter hook forward priority -300 ; policy drop ; }\n",
        )
    }
}

/// Nanoseconds since the epoch (the clock of teredo-lab-flow's logs).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What one end of a flow logged (teredo-lab-flow's output).
#[derive(Debug, Default, Clone)]
pub struct FlowLog {
    /// When the peer sent datagram 0, and the interval (ns).
    pub peer_t0: u64,
    pub peer_interval: u64,
    /// (sequence, sent, received) of every datagram received.
    pub rx: Vec<(u64, u64, u64)>,
}

/// Parses teredo-lab-flow's output; the start line given is the *peer's*
/// (what it sent is what this end received).
pub fn parse_flow(peer_out: &str, out: &str) -> FlowLog {
    let mut log = FlowLog::default();
    for line in peer_out.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() == 3 && w[0] == "start" {
            log.peer_t0 = w[1].parse().unwrap_or(0);
            log.peer_interval = w[2].parse().unwrap_or(0);
        }
    }
    for line in out.lines() {
        let w: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if w.len() == 3 && !line.starts_with("start") {
            log.rx.push((w[0], w[1], w[2]));
        }
    }
    log.rx.sort_unstable();
    log.rx.dedup_by_key(|r| r.0);
    log
}

/// A late datagram: one that took longer than this (counted, and not
/// taken as the first of a resumed flow).
pub const LATE_NS: u64 = 50_000_000;

/// Consecutive lost datagrams that make an interruption (30 ms without
/// delivery at 10 ms intervals).
pub const INTERRUPTION: u64 = 3;

/// Runs of lost datagrams less than this many datagrams apart
/// make one outage (100 ms at 10 ms intervals).
pub const MERGE: u64 = 10;

/// What a flow direction saw in `[from, to)` (datagrams scheduled in it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outage {
    /// Datagrams scheduled in the window and never received.
    pub lost: u64,
    /// Datagrams received later than [`LATE_NS`].
    pub late: u64,
    /// The longest run of lost datagrams.
    pub longest_run: u64,
    /// Datagrams lost after the event's outage (the first run of lost
    /// ones, and the runs less than [`MERGE`] datagrams after it).
    pub later: u64,
    /// The time from `event` until the first datagram received on time
    /// after its outage, in ns (0: nothing lost).
    pub recovery_ns: u64,
    /// Datagrams scheduled in the window.
    pub scheduled: u64,
}

/// The outage of `log` around an event at `event` (ns), over datagrams
/// scheduled in `[from, to)`.
pub fn outage(log: &FlowLog, event: u64, from: u64, to: u64) -> Outage {
    let mut o = Outage::default();
    if log.peer_interval == 0 || to <= log.peer_t0 {
        return o;
    }
    let first = from.saturating_sub(log.peer_t0).div_ceil(log.peer_interval);
    let last = (to - log.peer_t0).div_ceil(log.peer_interval); // exclusive
                                                               // Runs of lost datagrams: (first, last) sequence numbers.
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut rx = log.rx.iter().peekable();
    for seq in first..last {
        o.scheduled += 1;
        while rx.peek().is_some_and(|r| r.0 < seq) {
            rx.next();
        }
        // Late datagrams are counted, but did arrive: a loaded machine
        // delays every flow at once, which is no failover.
        let bad = match rx.peek() {
            Some(&&(s, sent, recv)) if s == seq => {
                o.late += u64::from(recv.saturating_sub(sent) > LATE_NS);
                false
            }
            _ => {
                o.lost += 1;
                true
            }
        };
        if bad {
            match runs.last_mut() {
                Some(r) if r.1 + 1 == seq => r.1 = seq,
                _ => runs.push((seq, seq)),
            }
        }
    }
    o.longest_run = runs.iter().map(|r| r.1 - r.0 + 1).max().unwrap_or(0);
    let Some(&(_, mut end)) = runs.first() else {
        return o;
    };
    // The event's outage: the first run, and those that follow it closely.
    let mut later = runs.iter().skip(1).peekable();
    while let Some(r) = later.next_if(|r| r.0 <= end + MERGE) {
        end = r.1;
    }
    o.later = later.map(|r| r.1 - r.0 + 1).sum();
    // The first datagram after it received on time.
    let resumed = log
        .rx
        .iter()
        .find(|&&(s, sent, recv)| s > end && recv.saturating_sub(sent) <= LATE_NS)
        .map(|r| r.2);
    o.recovery_ns = match resumed {
        Some(t) => t.saturating_sub(event),
        None => u64::MAX,
    };
    o
}

/// A bounded wait of `d` (measurement windows).
pub fn settle(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_fill_in() {
        let values = [
            ("ROUTER_ID", "10.0.0.1".to_string()),
            ("UPLINK", "eth0".to_string()),
            ("LOCAL_V6", "2001:db8::1".to_string()),
            ("CORE_V6", "2001:db8::fe".to_string()),
            ("TEREDO_IFACE", "teredo".to_string()),
            ("BFD", "on".to_string()),
            ("RELAY_SESSIONS", String::new()),
            ("RELAY_V4", "192.0.2.1".to_string()),
        ];
        for f in [BIRD_RELAY_CONF, BIRD_CORE_CONF, MIREDO_RELAY_CONF] {
            let s = render(f, &values).unwrap();
            assert!(s
                .lines()
                .all(|l| !l.split('#').next().unwrap_or("").contains('@')));
        }
        assert!(render(BIRD_RELAY_CONF, &values[..2]).is_err());
    }

    #[test]
    fn outages_count_lost_and_late_datagrams() {
        let ms = 1_000_000u64;
        let mut log = FlowLog {
            peer_t0: 1000 * ms,
            peer_interval: 10 * ms,
            rx: Vec::new(),
        };
        // 0..100 sent every 10 ms; 40..60 lost; 60 arrives 5 ms after sent.
        for s in (0..40).chain(60..100) {
            let sent = 1000 * ms + s * 10 * ms;
            log.rx.push((s, sent, sent + 5 * ms));
        }
        let event = 1000 * ms + 395 * ms;
        let o = outage(&log, event, 1000 * ms, 2000 * ms);
        assert_eq!(o.scheduled, 100);
        assert_eq!(o.lost, 20);
        assert_eq!(o.late, 0);
        // Datagram 60 sent at +600 ms, received at +605 ms.
        assert_eq!(o.recovery_ns, 210 * ms);
        let clean = outage(&log, event, 1000 * ms, 1300 * ms);
        assert_eq!((clean.lost, clean.recovery_ns), (0, 0));
        // One datagram lost alone later (80) is counted apart.
        log.rx.retain(|r| r.0 != 80);
        let o = outage(&log, event, 1000 * ms, 2000 * ms);
        assert_eq!((o.lost, o.later, o.longest_run), (21, 1, 20));
        assert_eq!(o.recovery_ns, 210 * ms);
    }
}
