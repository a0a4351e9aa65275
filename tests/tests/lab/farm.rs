//! A Teredo relay farm on BGP anycast (issue 17): three relay hosts, each
//! running our relay and BIRD, announce 2001::/32 to a core router (BIRD,
//! ECMP); three native hosts behind the core exchange two-way UDP flows
//! (a datagram every 10 ms each way) with three Teredo clients behind
//! NATs (two of ours, one of Debian's C miredo). The BIRD configs are the
//! shipped ones (`deploy/farm/`).
//!
//! Events, in order: a relay's miredo is killed (SIGKILL), another is
//! stopped (SIGTERM), the first comes back, then a relay host goes silent
//! (every packet dropped: BGP's hold time or BFD must notice). For each,
//! each direction: the time until every flow runs again and the datagrams
//! lost; the flows the event did not touch must lose nothing. Run with
//! BGP timers alone (keepalive 1 s, hold 3 s) and with BFD (100 ms x 3).
//! Targets (issue 17): every flow resumes within 3 s with BGP timers alone,
//! within 1 s with BFD; a silent host, which only the timers can detect,
//! within the hold time plus 1 s without BFD.

use std::fs;
use std::io::Read;
use std::net::Ipv6Addr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use teredo_lab::farm::{
    host_v6, outage, parse_flow, render, settle, wall_ns, Farm, Outage, BIRD_CORE_CONF,
    BIRD_RELAY_CONF, HOLD_TIME, INTERRUPTION,
};
use teredo_lab::named::wait_addr;
use teredo_lab::skip::which;
use teredo_lab::{report, wait_until, Daemon, Impl, TEREDO_IFACE};

/// The farm tests run one at a time (their timings would suffer from each
/// other on a small machine).
static ONE_FARM: Mutex<()> = Mutex::new(());

const RELAYS: usize = 3;
const HOSTS: usize = 3;
const CLIENTS: usize = 3;
const INTERVAL_MS: u64 = 10;
/// How long each flow process runs (longer than the whole scenario).
const FLOW_SECS: u64 = 90;

/// The implementation of client `n`: the last one is Debian's C miredo,
/// the others ours.
fn client_impl(n: usize) -> Impl {
    if n == CLIENTS {
        Impl::C
    } else {
        Impl::Ours
    }
}

/// BIRD 2 installed (Debian package `bird2`).
fn bird() -> Option<String> {
    match (which("bird"), which("birdc")) {
        (Some(_), Some(_)) => None,
        _ => Some("needs BIRD 2 (Debian package bird2: bird, birdc)".into()),
    }
}

/// The shipped BIRD configs, filled in, are accepted by `bird -p`.
fn shipped_bird_configs_parse() {
    let dir = std::env::temp_dir().join(format!("teredo-farm-parse-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    for bfd in ["on", "off"] {
        let values = [
            ("ROUTER_ID", "192.0.2.1".to_string()),
            ("UPLINK", "eth*".to_string()),
            ("LOCAL_V6", "2001:db8:21::1".to_string()),
            ("CORE_V6", "2001:db8:21::fe".to_string()),
            ("TEREDO_IFACE", TEREDO_IFACE.to_string()),
            ("BFD", bfd.to_string()),
            (
                "RELAY_SESSIONS",
                "protocol bgp relay1 from teredo_relays { neighbor 2001:db8:21::1 as 65001; }"
                    .to_string(),
            ),
        ];
        for (name, template) in [("relay", BIRD_RELAY_CONF), ("core", BIRD_CORE_CONF)] {
            let text = render(template, &values).expect("placeholders filled");
            let path = dir.join(format!("{name}-{bfd}.conf"));
            fs::write(&path, text).expect("write config");
            let out = teredo_lab::cmd::run_with_timeout(
                &["bird", "-p", "-c", &path.display().to_string()],
                Duration::from_secs(10),
            );
            assert!(
                out.success(),
                "bird -p rejects bird-{name}.conf (bfd {bfd}): {} {}",
                out.stdout,
                out.stderr
            );
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

/// One two-way flow between a native host and a Teredo client.
struct Flow {
    host: usize,
    client: usize,
    client_addr: Ipv6Addr,
    host_port: u16,
    client_port: u16,
    host_end: Daemon,
    client_end: Daemon,
    /// What each end received (teredo-lab-flow's OUT_FILE).
    host_out: PathBuf,
    client_out: PathBuf,
}

/// The non-zero `drop-*` lines of a daemon's status page at `socket`.
fn status_drops(socket: &Path) -> String {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return format!("(no status at {})", socket.display());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let drops: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("drop"))
        .filter(|l| !l.trim_end().ends_with(": 0"))
        .map(str::trim)
        .collect();
    if drops.is_empty() {
        "nothing".into()
    } else {
        drops.join(", ")
    }
}

/// The non-zero UDP error counters of `ns` (`/proc/net/snmp`, `snmp6`)
/// and the dropped packets of its interfaces (`ip -s link`).
fn kernel_drops(ns: &teredo_lab::Netns) -> String {
    let mut found = Vec::new();
    let snmp = ns.run(&["cat", "/proc/net/snmp"]).unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    if let [names, values] = udp[..] {
        for (n, v) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            if (n.ends_with("Errors") || n == "NoPorts") && v != "0" {
                found.push(format!("Udp{n}={v}"));
            }
        }
    }
    let snmp6 = ns.run(&["cat", "/proc/net/snmp6"]).unwrap_or_default();
    for l in snmp6.lines() {
        let mut w = l.split_whitespace();
        if let (Some(n), Some(v)) = (w.next(), w.next()) {
            let interesting = n.starts_with("Udp6")
                && (n.ends_with("Errors") || n.ends_with("NoPorts"))
                || n.starts_with("Ip6In")
                    && (n.ends_with("Discards")
                        || n.ends_with("NoRoutes")
                        || n.ends_with("HdrErrors"))
                || n == "Ip6OutDiscards"
                || n == "Ip6OutNoRoutes";
            if interesting && v != "0" {
                found.push(format!("{n}={v}"));
            }
        }
    }
    let links = ns.run(&["ip", "-s", "-o", "link"]).unwrap_or_default();
    for l in links.lines() {
        let name = l.split(':').nth(1).unwrap_or("").trim().to_string();
        let w: Vec<&str> = l.split_whitespace().collect();
        // "RX: bytes packets errors dropped ... \ N N N N ..." twice.
        let nums: Vec<&str> = w
            .iter()
            .copied()
            .filter(|x| x.parse::<u64>().is_ok())
            .collect();
        // ip -o -s link: after the flags, RX bytes packets errors dropped
        // missed mcast, then TX bytes packets errors dropped carrier collsns.
        if nums.len() >= 12 {
            let n = nums.len();
            let (rxd, txd) = (nums[n - 9], nums[n - 3]);
            if rxd != "0" || txd != "0" {
                found.push(format!("{name} rx dropped {rxd} tx dropped {txd}"));
            }
        }
    }
    found.join(", ")
}

/// The UDP checksum errors `ns` counted (IPv4 and IPv6).
fn csum_errors(ns: &teredo_lab::Netns) -> u64 {
    let mut n = 0;
    let snmp6 = ns.run(&["cat", "/proc/net/snmp6"]).unwrap_or_default();
    for l in snmp6.lines() {
        let mut w = l.split_whitespace();
        if let (Some("Udp6InCsumErrors"), Some(v)) = (w.next(), w.next()) {
            n += v.parse::<u64>().unwrap_or(0);
        }
    }
    let snmp = ns.run(&["cat", "/proc/net/snmp"]).unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    if let [names, values] = udp[..] {
        for (k, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if k == "InCsumErrors" {
                n += v.parse::<u64>().unwrap_or(0);
            }
        }
    }
    n
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

impl Flow {
    fn name(&self) -> String {
        format!("h{}-c{}", self.host, self.client)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    /// Native host to Teredo client (through the relay the core picks).
    Down,
    /// Teredo client to native host (through the relay the client uses).
    Up,
}

/// Installs, in every relay host, a counter per flow and direction of the
/// packets it forwards.
fn install_counters(farm: &Farm, flows: &[Flow]) {
    let mut script = String::from(
        "add table ip6 farmcount\n\
         add chain ip6 farmcount count { type filter hook forward priority 0 ; }\n",
    );
    for (i, f) in flows.iter().enumerate() {
        let h = host_v6(f.host);
        script += &format!(
            "add rule ip6 farmcount count ip6 saddr {h} ip6 daddr {} udp dport {} counter comment \"f{i}d\"\n",
            f.client_addr, f.client_port
        );
        script += &format!(
            "add rule ip6 farmcount count ip6 saddr {} ip6 daddr {h} udp dport {} counter comment \"f{i}u\"\n",
            f.client_addr, f.host_port
        );
    }
    for r in &farm.relays {
        r.ns.nft(&script).expect("counters in a relay");
    }
}

/// Counter values of relay `k`: (flow, dir) -> packets.
fn counters(farm: &Farm, k: usize) -> Vec<(usize, Dir, u64)> {
    let out = farm.relays[k - 1]
        .ns
        .run(&["nft", "list", "chain", "ip6", "farmcount", "count"])
        .unwrap_or_default();
    let mut v = Vec::new();
    for line in out.lines() {
        let Some(c) = line.split("comment \"f").nth(1) else {
            continue;
        };
        let tag: String = c.chars().take_while(|ch| *ch != '"').collect();
        let (num, dir) = tag.split_at(tag.len().saturating_sub(1));
        let Ok(i) = num.parse::<usize>() else {
            continue;
        };
        let dir = if dir == "d" { Dir::Down } else { Dir::Up };
        let packets = line
            .split("packets ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        v.push((i, dir, packets));
    }
    v
}

/// Which relay carries each flow's each direction now: for flow i,
/// (down, up), from the counters over 400 ms.
fn carriers(farm: &Farm, n_flows: usize) -> Carried {
    let before: Vec<_> = (1..=farm.relays.len()).map(|k| counters(farm, k)).collect();
    settle(Duration::from_millis(400));
    let after: Vec<_> = (1..=farm.relays.len()).map(|k| counters(farm, k)).collect();
    let mut best = vec![[(0u64, None::<usize>); 2]; n_flows];
    for k in 0..farm.relays.len() {
        for &(i, dir, n) in &after[k] {
            let was = before[k]
                .iter()
                .find(|&&(j, d, _)| j == i && d == dir)
                .map(|x| x.2)
                .unwrap_or(0);
            let delta = n.saturating_sub(was);
            let slot = &mut best[i][usize::from(dir == Dir::Up)];
            if delta > slot.0 {
                *slot = (delta, Some(k + 1));
            }
        }
    }
    best.iter().map(|b| (b[0].1, b[1].1)).collect()
}

/// The live relay carrying most flow directions.
fn busiest(carried: &Carried, live: &[usize]) -> usize {
    *live
        .iter()
        .max_by_key(|&&k| {
            carried
                .iter()
                .map(|&(d, u)| usize::from(d == Some(k)) + usize::from(u == Some(k)))
                .sum::<usize>()
        })
        .expect("a live relay")
}

/// For each flow, the relays carrying it (native to client, client to
/// native).
type Carried = Vec<(Option<usize>, Option<usize>)>;

/// An event of the scenario, as it happened.
struct Event {
    name: String,
    relay: usize,
    /// When it happened, and the end of its window (ns, wall clock).
    at: u64,
    to: u64,
    /// Who carried each flow before and after.
    before: Carried,
    after: Carried,
    route: Option<u64>,
    target: Duration,
}

/// An event under way: started when made, measured by [`Step::done`].
struct Step {
    name: &'static str,
    relay: usize,
    before: Carried,
    window: Duration,
    target: Duration,
    at: u64,
    t: Instant,
}

impl Step {
    /// Notes the time; the event itself happens right after.
    fn new(
        name: &'static str,
        relay: usize,
        before: Carried,
        window: Duration,
        target: Duration,
    ) -> Step {
        Step {
            name,
            relay,
            before,
            window,
            target,
            at: wall_ns(),
            t: Instant::now(),
        }
    }

    /// Watches the core's route until the relay's path is gone
    /// (`withdrawn`) or back, within the window, and reads who carries
    /// each flow now.
    fn done(self, farm: &Farm, n_flows: usize, withdrawn: bool) -> Event {
        let k = self.relay;
        let route = watch_route(farm, self.t, self.window, |p| p.contains(&k) != withdrawn);
        Event {
            name: self.name.into(),
            relay: k,
            at: self.at,
            to: self.at + self.window.as_nanos() as u64,
            before: self.before,
            after: carriers(farm, n_flows),
            route,
            target: self.target,
        }
    }
}

/// One event's measure.
struct Row {
    config: &'static str,
    event: String,
    relay: usize,
    /// From the event to the core's route change (ms), if it changed.
    route_ms: Option<u64>,
    /// Flows whose path crossed the relay (either direction).
    touched: usize,
    down: Vec<Outage>,
    up: Vec<Outage>,
    /// Flows the event did not touch, and what they lost.
    untouched: Vec<usize>,
    target: Duration,
    /// UDP checksum errors the flows' ends counted in the whole run.
    csum_errors: u64,
}

/// The longest recovery among the flows the event touched (the others'
/// losses are checked apart).
fn max_recovery(r: &Row, v: &[Outage]) -> u64 {
    v.iter()
        .enumerate()
        .filter(|(i, _)| !r.untouched.contains(i))
        .map(|(_, o)| o.recovery_ns)
        .max()
        .unwrap_or(0)
}

fn ms(ns: u64) -> String {
    if ns == u64::MAX {
        "never".into()
    } else {
        format!("{}", ns / 1_000_000)
    }
}

/// Watches the core's paths for `window` after the event at `t`, returns
/// the time (ms) until `changed` held first.
fn watch_route(
    farm: &Farm,
    t: Instant,
    window: Duration,
    changed: impl Fn(&[usize]) -> bool,
) -> Option<u64> {
    let mut seen = None;
    while t.elapsed() < window {
        if seen.is_none() && changed(&farm.core_paths()) {
            seen = Some(t.elapsed().as_millis() as u64);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}

fn run_config(bfd: bool) -> Vec<Row> {
    let config: &'static str = if bfd { "BFD 100ms x3" } else { "BGP 1s/3s" };
    let test = if bfd {
        "farm_failover_bfd"
    } else {
        "farm_failover_bgp"
    };
    let mut farm = Farm::build(test, RELAYS, HOSTS, CLIENTS, bfd);
    for k in 1..=RELAYS {
        farm.start_relay(k);
    }
    let all: Vec<usize> = (1..=RELAYS).collect();
    assert!(
        farm.wait_paths(&all, Duration::from_secs(15)),
        "the core has no path to every relay after 15 s: {:?}\n{}",
        farm.core_paths(),
        farm.core_protocols()
    );
    // Clients.
    let mut addrs = Vec::new();
    for n in 1..=CLIENTS {
        farm.w.start_client(n, client_impl(n), "");
    }
    for n in 1..=CLIENTS {
        let a = wait_addr(farm.w.client(n), TEREDO_IFACE, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("client {n} not qualified after 20 s"));
        addrs.push(a);
    }
    // Flows: every host with every client.
    let tool = env!("CARGO_BIN_EXE_teredo-lab-flow");
    let mut flows = Vec::new();
    for j in 1..=HOSTS {
        for n in 1..=CLIENTS {
            let i = flows.len() as u16;
            let (hp, cp) = (5000 + i, 6000 + i);
            let ca = addrs[n - 1];
            let secs = FLOW_SECS.to_string();
            let iv = INTERVAL_MS.to_string();
            let host_out = farm.w.dir().join(format!("flow-h{j}-c{n}-host.rx"));
            let client_out = farm.w.dir().join(format!("flow-h{j}-c{n}-client.rx"));
            let (ho, co) = (
                host_out.display().to_string(),
                client_out.display().to_string(),
            );
            let host_end = farm.w.spawn(
                &farm.hosts[j - 1],
                &format!("flow-h{j}-c{n}-host"),
                &[
                    tool,
                    &host_v6(j).to_string(),
                    &hp.to_string(),
                    &ca.to_string(),
                    &cp.to_string(),
                    &iv,
                    &secs,
                    &ho,
                ],
            );
            let client_end = farm.w.spawn(
                farm.w.client(n),
                &format!("flow-h{j}-c{n}-client"),
                &[
                    tool,
                    &ca.to_string(),
                    &cp.to_string(),
                    &host_v6(j).to_string(),
                    &hp.to_string(),
                    &iv,
                    &secs,
                    &co,
                ],
            );
            flows.push(Flow {
                host: j,
                client: n,
                client_addr: ca,
                host_port: hp,
                client_port: cp,
                host_end,
                client_end,
                host_out,
                client_out,
            });
        }
    }
    install_counters(&farm, &flows);
    // Every flow runs both ways.
    let running = wait_until(Duration::from_secs(15), || {
        flows.iter().all(|f| {
            read(&f.host_out).lines().count() > 5 && read(&f.client_out).lines().count() > 5
        })
    });
    assert!(running, "the flows do not all run both ways after 15 s");
    settle(Duration::from_secs(3));

    let mut rows = Vec::new();
    let mut live: Vec<usize> = all.clone();
    let mut events: Vec<Event> = Vec::new();
    let target = if bfd {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    let window = Duration::from_millis(2500);

    // 1. SIGKILL.
    let before = carriers(&farm, flows.len());
    let k1 = busiest(&before, &live);
    let d = farm.relays[k1 - 1].miredo.clone().expect("relay running");
    let ev = Step::new("SIGKILL", k1, before, window, target);
    farm.w.signal(&d, "KILL");
    events.push(ev.done(&farm, flows.len(), true));
    assert!(
        !farm.relay_route_up(k1),
        "relay {k1}'s route outlives its killed miredo"
    );
    assert!(
        !farm.relays[k1 - 1].ns.has_iface(TEREDO_IFACE),
        "relay {k1}'s Teredo interface outlives its killed miredo"
    );
    live.retain(|&k| k != k1);

    // 2. SIGTERM.
    let before = carriers(&farm, flows.len());
    let k2 = busiest(&before, &live);
    let d = farm.relays[k2 - 1].miredo.clone().expect("relay running");
    let ev = Step::new("SIGTERM", k2, before, window, target);
    let stopped = farm.w.stop(&d, Duration::from_secs(3));
    assert!(
        stopped.is_some(),
        "relay {k2} did not stop within 3 s of SIGTERM"
    );
    events.push(ev.done(&farm, flows.len(), true));
    live.retain(|&k| k != k2);

    // 3. The first comes back.
    let before = carriers(&farm, flows.len());
    let ev = Step::new("back", k1, before, window, target);
    farm.start_relay(k1);
    events.push(ev.done(&farm, flows.len(), false));
    live.push(k1);
    live.sort_unstable();

    // 4. A relay host goes silent.
    let before = carriers(&farm, flows.len());
    let k4 = busiest(&before, &live);
    let silent_window = if bfd { window } else { HOLD_TIME + window };
    let silent_target = if bfd {
        target
    } else {
        HOLD_TIME + Duration::from_secs(1)
    };
    let ev = Step::new("host silent", k4, before, silent_window, silent_target);
    farm.blackout(k4).expect("blackout");
    events.push(ev.done(&farm, flows.len(), true));
    live.retain(|&k| k != k4);

    // The flows' logs are flushed every 100 ms.
    settle(Duration::from_millis(300));
    let logs: Vec<(String, String)> = flows
        .iter()
        .map(|f| (read(&f.host_out), read(&f.client_out)))
        .collect();
    for f in &flows {
        farm.w.stop(&f.host_end, Duration::from_secs(1));
        farm.w.stop(&f.client_end, Duration::from_secs(1));
    }
    for ev in events {
        let Event {
            name,
            relay: k,
            at: e,
            to,
            before,
            after,
            route,
            target,
        } = ev;
        let from = e;
        let mut down = Vec::new();
        let mut up = Vec::new();
        let mut untouched = Vec::new();
        let mut touched = 0;
        for (i, (host_log, client_log)) in logs.iter().enumerate() {
            // Down: the host sent, the client received.
            let d = outage(&parse_flow(host_log, client_log), e, from, to);
            let u = outage(&parse_flow(client_log, host_log), e, from, to);
            down.push(d);
            up.push(u);
            let (bd, bu) = before[i];
            let (ad, au) = after[i];
            let on_it = [bd, bu, ad, au].contains(&Some(k));
            if on_it {
                touched += 1;
            } else {
                untouched.push(i);
            }
        }
        rows.push(Row {
            config,
            event: name,
            relay: k,
            route_ms: route,
            touched,
            down,
            up,
            untouched,
            target,
            csum_errors: 0,
        });
    }
    let names: Vec<String> = flows.iter().map(Flow::name).collect();
    for r in &rows {
        for (i, n) in names.iter().enumerate() {
            let (d, u) = (r.down[i], r.up[i]);
            if d.lost + d.late + u.lost + u.late > 0 {
                report(
                    test,
                    &format!(
                        "{} relay {}: flow {n}: down lost {} late {} resumed {} ms; up lost {} late {} resumed {} ms",
                        r.event,
                        r.relay,
                        d.lost,
                        d.late,
                        ms(d.recovery_ns),
                        u.lost,
                        u.late,
                        ms(u.recovery_ns)
                    ),
                );
            }
        }
    }
    // What the live daemons dropped, and why (their status pages).
    let mut labels: Vec<String> = (1..=CLIENTS)
        .filter(|&n| client_impl(n) == Impl::Ours)
        .map(|n| format!("client{n}-{}", Impl::Ours.tag()))
        .collect();
    for (k, r) in farm.relays.iter().enumerate() {
        if let Some(d) = &r.miredo {
            if farm.w.is_running(d) {
                labels.push(format!("relay{}-{}", k + 1, r.starts));
            }
        }
    }
    for label in labels {
        let drops = status_drops(&farm.w.trusted_dir().join(format!("{label}.status")));
        report(test, &format!("{label} dropped: {drops}"));
    }
    // What the kernels dropped: UDP buffers full, interface queues.
    let mut spots: Vec<(String, teredo_lab::Netns)> = farm
        .relays
        .iter()
        .enumerate()
        .map(|(k, r)| (format!("relay host {}", k + 1), r.ns.clone()))
        .collect();
    for n in 1..=CLIENTS {
        spots.push((format!("client host {n}"), farm.w.client(n).clone()));
        spots.push((format!("NAT {n}"), farm.w.nat(n).clone()));
    }
    for (j, h) in farm.hosts.iter().enumerate() {
        spots.push((format!("native host {}", j + 1), h.clone()));
    }
    spots.push(("core".into(), farm.w.inet().clone()));
    for (name, ns) in &spots {
        let d = kernel_drops(ns);
        if !d.is_empty() {
            report(test, &format!("{name} kernel drops: {d}"));
        }
    }
    let mut csum = 0;
    for ns in farm
        .hosts
        .iter()
        .chain((1..=CLIENTS).map(|n| farm.w.client(n)))
    {
        csum += csum_errors(ns);
    }
    report(
        test,
        &format!("UDP checksum errors at the flows' ends: {csum}"),
    );
    for r in &mut rows {
        r.csum_errors = csum;
    }
    // Checked while the farm stands: a failure keeps its files and logs.
    report(test, &format!("failover\n{}", table(&rows)));
    check(&rows);
    drop(farm);
    rows
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "config       | event       | relay | route (ms) | flows on it | down: resumed (ms) lost | up: resumed (ms) lost | others lost\n",
    );
    for r in rows {
        let others: u64 = r
            .untouched
            .iter()
            .map(|&i| r.down[i].lost + r.up[i].lost)
            .sum();
        let dl: u64 = r.down.iter().map(|o| o.lost).sum();
        let ul: u64 = r.up.iter().map(|o| o.lost).sum();
        s += &format!(
            "{:<12} | {:<11} | {:>5} | {:>10} | {:>11} | {:>18} {:>4} | {:>16} {:>4} | {:>11}\n",
            r.config,
            r.event,
            r.relay,
            r.route_ms.map_or("-".into(), |m| m.to_string()),
            r.touched,
            ms(max_recovery(r, &r.down)),
            dl,
            ms(max_recovery(r, &r.up)),
            ul,
            others
        );
    }
    s
}

fn check(rows: &[Row]) {
    for r in rows {
        for (dir, v) in [("native to client", &r.down), ("client to native", &r.up)] {
            let worst = max_recovery(r, v);
            assert!(
                worst <= r.target.as_nanos() as u64,
                "{} {} relay {}: flows {dir} resumed after {} ms, over the target of {:?}",
                r.config,
                r.event,
                r.relay,
                ms(worst),
                r.target
            );
            let cut: Vec<u64> = r.untouched.iter().map(|&i| v[i].longest_run).collect();
            assert!(
                cut.iter().all(|&c| c < INTERRUPTION),
                "{} {} relay {}: flows not through relay {} were interrupted {dir} (datagrams lost in a row: {cut:?})",
                r.config,
                r.event,
                r.relay,
                r.relay
            );
            let again: Vec<u64> = v.iter().map(|o| o.later).collect();
            assert!(
                again.iter().all(|&c| c < INTERRUPTION),
                "{} {} relay {}: flows {dir} broke again after they resumed (datagrams lost later: {again:?})",
                r.config,
                r.event,
                r.relay
            );
        }
        // Flows the event did not touch lose nothing (a datagram a
        // receiving kernel found corrupt counts as lost: UDP checksum
        // errors are reported, and allowed no more).
        let others: u64 = r
            .untouched
            .iter()
            .map(|&i| r.down[i].lost + r.up[i].lost)
            .sum();
        assert!(
            others == 0,
            "{} {} relay {}: flows not through it lost {others} datagrams ({} UDP checksum errors in the run)",
            r.config,
            r.event,
            r.relay,
            r.csum_errors
        );
        assert!(
            r.route_ms.is_some(),
            "{} {}: the core's route did not change",
            r.config,
            r.event
        );
        if r.event == "back" {
            assert!(
                r.touched > 0,
                "{}: relay {} came back but carries no flow",
                r.config,
                r.relay
            );
        }
    }
}

/// The farm's failover, with BGP timers alone and with BFD.
fn farm_failover() {
    let _one = ONE_FARM.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let mut rows = run_config(false);
    rows.extend(run_config(true));
    let t = table(&rows);
    report("farm_failover", &format!("failover (every flow, each way; targets: BGP 3 s, BFD 1 s, silent host without BFD: hold + 1 s)\n{t}"));
    report("farm_failover", &format!("took {:?}", start.elapsed()));
}

/// A farm of one relay (running, its path in the core) and one native
/// host, with our client 1 qualified: the farm, the client and its address.
fn one_relay_farm(test: &str) -> (Farm, Daemon, String) {
    let mut farm = Farm::build(test, 1, 1, 1, false);
    farm.start_relay(1);
    assert!(
        farm.wait_paths(&[1], Duration::from_secs(15)),
        "no path to the relay"
    );
    let client = farm.w.start_client(1, Impl::Ours, "");
    let ca = wait_addr(farm.w.client(1), TEREDO_IFACE, Duration::from_secs(20))
        .expect("client qualified");
    (farm, client, ca.to_string())
}

/// The two ends of a two-way flow between the native host (UDP port
/// `host_port`) and the client at `ca` (`client_port`), a datagram every
/// millisecond each way for `secs` seconds (`teredo-lab-flow`), each
/// writing what it received in the world's directory: host end first.
fn burst_ends(
    farm: &Farm,
    label: &str,
    ca: &str,
    host_port: u16,
    client_port: u16,
    secs: &str,
) -> [Daemon; 2] {
    let tool = env!("CARGO_BIN_EXE_teredo-lab-flow");
    let dir = farm.w.dir();
    let h = host_v6(1).to_string();
    let (hp, cp) = (host_port.to_string(), client_port.to_string());
    let ho = dir.join(format!("{label}-host.rx")).display().to_string();
    let co = dir.join(format!("{label}-client.rx")).display().to_string();
    [
        farm.w.spawn(
            &farm.hosts[0],
            &format!("{label}-host"),
            &[tool, &h, &hp, ca, &cp, "1", secs, &ho],
        ),
        farm.w.spawn(
            farm.w.client(1),
            &format!("{label}-client"),
            &[tool, ca, &cp, &h, &hp, "1", secs, &co],
        ),
    ]
}

/// Datagrams through a relay of the farm arrive intact both ways, also at
/// 1,000 a second each way (runs of one flow's datagrams in one batch,
/// which the daemons coalesce for the TUN device and the UDP socket): no
/// receiving kernel counts a UDP checksum error.
fn udp_through_the_farm_arrives_intact() {
    let _one = ONE_FARM.lock().unwrap_or_else(|e| e.into_inner());
    let test = "udp_through_the_farm_arrives_intact";
    let (farm, _client, c) = one_relay_farm(test);
    let [host_end, client_end] = burst_ends(&farm, "burst", &c, 5100, 6100, "4");
    let done = wait_until(Duration::from_secs(10), || {
        !farm.w.is_running(&host_end) && !farm.w.is_running(&client_end)
    });
    assert!(done, "the flow ends did not finish in 10 s");
    let csum_host = csum_errors(&farm.hosts[0]);
    let csum_client = csum_errors(farm.w.client(1));
    report(
        test,
        &format!(
            "1 ms flow, 4 s: host end: {}; client end: {}; UDP checksum errors: at the native host {csum_host}, at the client {csum_client}",
            farm.w.log_of(&host_end).trim(),
            farm.w.log_of(&client_end).trim()
        ),
    );
    assert_eq!(
        (csum_host, csum_client),
        (0, 0),
        "datagrams through the relay arrived corrupt (native host, client)"
    );
}

/// Bursts through one relay: 4 two-way 1 ms flows (48,000 datagrams in the
/// 6 s default, `BURST_SECS` to change it) while the relay and the client
/// are stopped (SIGSTOP) for 200 ms in turn, so that what queued in their
/// sockets and TUN devices leaves in bursts (batched, coalesced). No
/// receiving kernel may count a UDP checksum error: before the daemons
/// repaired a zero UDP/IPv6 checksum left by the TUN offload path (one
/// datagram in 65,536), about half the runs counted one or two.
/// `CSUM_CAPTURE=DIR` also captures UDP in the relay's, the client's and
/// the host's namespaces (tcpdump) into DIR.
fn udp_bursts_through_the_farm_arrive_intact() {
    let _one = ONE_FARM.lock().unwrap_or_else(|e| e.into_inner());
    let test = "udp_bursts_through_the_farm_arrive_intact";
    let (farm, client, c) = one_relay_farm(test);
    let mut caps = Vec::new();
    if let Some(to) = std::env::var_os("CSUM_CAPTURE") {
        let to = PathBuf::from(to);
        for (ns, name) in [
            (&farm.relays[0].ns, "relay"),
            (farm.w.client(1), "client"),
            (&farm.hosts[0], "host"),
        ] {
            let f = to.join(format!("{name}.pcap")).display().to_string();
            caps.push(farm.w.spawn_tcpdump(
                ns,
                &format!("cap-{name}"),
                &["-i", "any", "-s", "0", "-U", "-w", &f, "udp"],
            ));
        }
    }
    let secs: u64 = std::env::var("BURST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let secs_s = secs.to_string();
    let mut ends = Vec::new();
    for f in 0..4u16 {
        ends.extend(burst_ends(
            &farm,
            &format!("b{f}"),
            &c,
            5200 + f,
            6200 + f,
            &secs_s,
        ));
    }
    let relay = farm.relays[0].miredo.as_ref().expect("relay runs").pid;
    let stop_end = Instant::now() + Duration::from_secs(secs.saturating_sub(1));
    let mut turn = 0u32;
    while Instant::now() < stop_end {
        std::thread::sleep(Duration::from_millis(300));
        let pid = if turn.is_multiple_of(2) {
            relay
        } else {
            client.pid
        };
        let _ = teredo_lab::cmd::host(&["kill", "-s", "STOP", &pid.to_string()]);
        std::thread::sleep(Duration::from_millis(200));
        let _ = teredo_lab::cmd::host(&["kill", "-s", "CONT", &pid.to_string()]);
        turn += 1;
    }
    let done = wait_until(Duration::from_secs(secs + 10), || {
        ends.iter().all(|e| !farm.w.is_running(e))
    });
    assert!(done, "the flow ends did not finish");
    std::thread::sleep(Duration::from_millis(500));
    for c in &caps {
        farm.w.stop(c, Duration::from_secs(2));
    }
    let csum_host = csum_errors(&farm.hosts[0]);
    let csum_client = csum_errors(farm.w.client(1));
    let logs: Vec<String> = ends
        .iter()
        .map(|e| farm.w.log_of(e).trim().to_string())
        .collect();
    report(
        test,
        &format!(
            "4 flows at 1 ms, {secs} s, {turn} stops: {logs:?}; UDP checksum errors: at the native host {csum_host}, at the client {csum_client}"
        ),
    );
    assert_eq!(
        (csum_host, csum_client),
        (0, 0),
        "datagrams through the relay arrived corrupt in bursts (native host, client)"
    );
}

teredo_lab::lab_tests! {
    needs(bird): [shipped_bird_configs_parse],
    // Failover times measured, streams of datagrams: alone.
    needs(root, ours, c_miredo, bird) alone: [farm_failover],
    needs(root, ours, bird) alone: [
        udp_through_the_farm_arrives_intact,
        udp_bursts_through_the_farm_arrive_intact,
    ],
}
