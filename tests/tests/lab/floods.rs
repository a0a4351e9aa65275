//! Floods against the daemons (issue 6 part 2), ours and the C miredo in
//! the same run, each figure printed on a `LAB` line:
//!
//! (a) 20,000 spoofed, malformed and forged datagrams at each of the
//!     server, the relay and the client: every daemon keeps running, the
//!     client keeps its address, pings pass during and after; CPU time,
//!     memory and what the flood provoked are measured.
//! (b) 200,000 packets from the native host to random Teredo addresses
//!     through the relay (RFC 4380 7.3.3, peer table exhaustion): the
//!     relay's peers and memory stay bounded, bubbles per inbound packet are
//!     counted, and a legitimate ping flow meanwhile loses under 5 %.
//!
//! `cargo test --release -p teredo-lab --test lab -- floods:: --nocapture` (the
//! figures show without --nocapture too).

use std::net::{Ipv6Addr, SocketAddrV4};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use teredo_lab::named::{self, status_number, unique_iface};
use teredo_lab::nftcount::{legit_flow_rules, refs, relay_flood_rules, Counters, Hook};
use teredo_lab::procstat;
use teredo_lab::{
    ping6_stats, report, Impl, NatKind, Netns, World, NATIVE_V6, RELAY_V4, SERVER_V4,
};

const QUALIFY: Duration = Duration::from_secs(15);
/// Datagrams per victim in flood (a), and their rate.
const MALFORMED_COUNT: u64 = 20_000;
const MALFORMED_RATE: u64 = 10_000;
/// Packets and rate of flood (b).
const PEER_FLOOD_COUNT: u64 = 200_000;
const PEER_FLOOD_RATE: u64 = 20_000;
/// Our relay's peer table capacity (libteredo's DEFAULT_CAPACITY; miredo.conf
/// has no directive for it).
const OUR_PEER_CAP: u64 = 1 << 20;
/// The C relay's: MAX_PEERS of libteredo/relay.c, 1048576 when built with
/// libJudy (Debian's is: `ldd /usr/sbin/miredo` shows libJudy.so.1), else
/// 1024.
const C_PEER_CAP: u64 = 1 << 20;

/// One flood at a time: two floods on two cores would measure each other.
static FLOOD: Mutex<()> = Mutex::new(());

fn flood_bin() -> &'static str {
    env!("CARGO_BIN_EXE_teredo-flood")
}

/// Runs teredo-flood in `ns` with `args`; returns its summary line.
fn run_flood(ns: &Netns, args: &[String]) -> String {
    let mut argv = vec![flood_bin().to_string()];
    argv.extend(args.iter().cloned());
    let out = ns.exec(&argv, Duration::from_secs(70));
    assert!(
        out.success(),
        "teredo-flood {} failed: {}",
        args.join(" "),
        out.stderr
    );
    out.stdout.trim().to_string()
}

/// `ping -i INTERVAL -c COUNT` from `from` to `to`, bounded by `secs`;
/// (sent, received).
fn steady_ping(from: &Netns, to: Ipv6Addr, interval: &str, count: u32, secs: u64) -> (u32, u32) {
    let out = from.exec(
        &[
            "ping",
            "-6",
            "-n",
            "-q",
            "-i",
            interval,
            "-c",
            &count.to_string(),
            "-w",
            &secs.to_string(),
            &to.to_string(),
        ],
        Duration::from_secs(secs + 5),
    );
    for line in out.stdout.lines() {
        if let Some((sent, rest)) = line.split_once(" packets transmitted, ") {
            let recv = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return (sent.trim().parse().unwrap_or(0), recv);
        }
    }
    (0, 0)
}

/// What one victim of flood (a) went through.
#[derive(Debug, Default, Clone)]
struct Victim {
    role: &'static str,
    summary: String,
    cpu_ms: u64,
    /// CPU spent in the second before the flood, for comparison.
    idle_cpu_ms: u64,
    rss_before: u64,
    rss_after: u64,
    /// (counter, packets) in the victim's namespace during the flood.
    counters: Vec<(String, u64)>,
    ping_during: (u32, u32),
    ping_after_in: (u32, u32),
    ping_after_out: (u32, u32),
    all_running: bool,
    address_kept: bool,
    /// Ours: what the daemon's status page counted during the flood.
    status: String,
}

impl Victim {
    fn line(&self, imp: Impl) -> String {
        let counters: Vec<String> = self
            .counters
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        format!(
            "{} {}: {}; CPU {} ms (idle second before: {} ms), RSS {} -> {} kB; {}; {}; ping during {}/{}, after native->client {}/{}, client->native {}/{}; all running: {}, address kept: {}",
            imp.tag(),
            self.role,
            self.summary,
            self.cpu_ms,
            self.idle_cpu_ms,
            self.rss_before,
            self.rss_after,
            counters.join(" "),
            self.status,
            self.ping_during.1,
            self.ping_during.0,
            self.ping_after_in.1,
            self.ping_after_in.0,
            self.ping_after_out.1,
            self.ping_after_out.0,
            self.all_running,
            self.address_kept,
        )
    }

    fn pings_ok(&self) -> bool {
        let ok = |(s, g): (u32, u32)| g > 0 && g + 1 >= s;
        ok(self.ping_after_in) && ok(self.ping_after_out)
    }
}

/// Flood (a) against one implementation's server, relay and client.
fn malformed_run(imp: Impl) -> Vec<Victim> {
    let test = format!("flood_malformed_{}", imp.tag());
    let w = World::build(&test, &[NatKind::PortRestricted]);
    let srv = w.start_server(imp);
    let relay_if = unique_iface(&w, "fr");
    let cli_if = unique_iface(&w, "fc");
    let relay = named::start_relay(&w, imp, &relay_if, &format!("relay-{}", imp.tag()))
        .unwrap_or_else(|| panic!("{} relay has no route", imp.tag()));
    let (cli, addr) = named::start_client(
        &w,
        1,
        imp,
        &cli_if,
        &format!("client1-{}", imp.tag()),
        QUALIFY,
    );
    let addr = addr.unwrap_or_else(|| panic!("{} client did not qualify", imp.tag()));
    report(&test, &format!("{} client qualified as {addr}", imp.tag()));
    // Both ways once, so that the NAT maps the client's flow to the relay
    // too (the flood at the client comes from the server and the relay).
    let warm = ping6_stats(w.v6h(), addr, 3, Duration::from_secs(6));
    let warm_out = ping6_stats(w.client(1), NATIVE_V6, 3, Duration::from_secs(6));
    report(
        &test,
        &format!("warm-up: native->client {warm:?}, client->native {warm_out:?} (sent, got)"),
    );
    let parts = teredo_lab::teredo_parts(&addr).expect("a Teredo address");
    let nat_wan = SocketAddrV4::new(parts.mapped_v4, parts.mapped_port);

    // Relays (ours and the C one) listen on a random port unless told
    // otherwise: find it.
    let relay_port = udp_port_in(w.relay()).expect("the relay listens on UDP");
    report(
        &test,
        &format!("{} relay listens on UDP {relay_port}", imp.tag()),
    );
    let daemons = [&srv, &relay, &cli];
    let p = w.prefix().to_string();
    let mut out = Vec::new();
    for (role, victim, ns, dst, src, v6dst, rules) in [
        (
            "server",
            &srv,
            w.srv().clone(),
            SocketAddrV4::new(SERVER_V4, 3544),
            "random".to_string(),
            addr,
            vec![
                ("udp_out", Hook::Output, "meta l4proto udp".to_string()),
                (
                    "udp_to_spoofed",
                    Hook::Output,
                    "meta l4proto udp ip daddr != 198.18.0.0/16".to_string(),
                ),
                ("ip6_out", Hook::Output, "meta nfproto ipv6".to_string()),
            ],
        ),
        (
            "relay",
            &relay,
            w.relay().clone(),
            SocketAddrV4::new(RELAY_V4, relay_port),
            "random".to_string(),
            NATIVE_V6,
            vec![
                ("udp_out", Hook::Output, "meta l4proto udp".to_string()),
                (
                    "udp_to_spoofed",
                    Hook::Output,
                    "meta l4proto udp ip daddr != 198.18.0.0/16".to_string(),
                ),
                (
                    "decapsulated",
                    Hook::Prerouting,
                    format!("iifname {relay_if}"),
                ),
                ("to_native", Hook::Forward, format!("oifname {p}r-i")),
            ],
        ),
        (
            "client",
            &cli,
            w.client(1).clone(),
            nat_wan,
            format!("{SERVER_V4}:3544,{RELAY_V4}:{relay_port}"),
            addr,
            vec![
                ("udp_out", Hook::Output, "meta l4proto udp".to_string()),
                (
                    "decapsulated",
                    Hook::Prerouting,
                    format!("iifname {cli_if}"),
                ),
            ],
        ),
    ] {
        let rules: Vec<(&str, Hook, &str)> =
            rules.iter().map(|(n, h, m)| (*n, *h, m.as_str())).collect();
        let counters = Counters::install(&ns, &rules).expect("nft counters");
        let idle = procstat::usage_of_tree(victim.pid);
        thread::sleep(Duration::from_secs(1));
        let before = procstat::usage_of_tree(victim.pid);
        let status_if = match role {
            "relay" => Some(relay_if.as_str()),
            "client" => Some(cli_if.as_str()),
            _ => None,
        }
        .filter(|_| imp == Impl::Ours);
        let status_before = status_if.map(named::status_of).unwrap_or_default();
        let args: Vec<String> = [
            "udp4",
            "--dst",
            &dst.to_string(),
            "--src",
            &src,
            "--server",
            &SERVER_V4.to_string(),
            "--ipv6-dst",
            &v6dst.to_string(),
            "--count",
            &MALFORMED_COUNT.to_string(),
            "--rate",
            &MALFORMED_RATE.to_string(),
            "--secs",
            "20",
            "--seed",
            &format!("{}", 1 + out.len()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let secs = MALFORMED_COUNT / MALFORMED_RATE + 1;
        let (summary, during) = thread::scope(|s| {
            let v6h = w.v6h().clone();
            let ping = s.spawn(move || steady_ping(&v6h, addr, "0.1", (secs * 10) as u32, secs));
            let summary = run_flood(w.inet(), &args);
            (summary, ping.join().unwrap_or((0, 0)))
        });
        // Let queued work drain before reading costs and counters.
        thread::sleep(Duration::from_millis(500));
        let after = procstat::usage_of_tree(victim.pid);
        let counts = counters.all();
        let status_after = status_if.map(named::status_of).unwrap_or_default();
        let all_running = daemons.iter().all(|d| w.is_running(d));
        let now = teredo_lab::teredo_addr_of(w.client(1), &cli_if);
        let ping_in = ping6_stats(w.v6h(), addr, 4, Duration::from_secs(6));
        let ping_out = ping6_stats(w.client(1), NATIVE_V6, 4, Duration::from_secs(6));
        let v = Victim {
            role,
            summary,
            cpu_ms: after.cpu_ms().saturating_sub(before.cpu_ms()),
            idle_cpu_ms: before.cpu_ms().saturating_sub(idle.cpu_ms()),
            rss_before: before.rss_kb,
            rss_after: after.rss_kb,
            counters: counts,
            ping_during: during,
            ping_after_in: ping_in,
            ping_after_out: ping_out,
            all_running,
            address_kept: now == Some(addr),
            status: status_delta(&status_before, &status_after),
        };
        report(&test, &v.line(imp));
        if !all_running {
            for d in daemons {
                report(
                    &test,
                    &format!(
                        "{} running: {}; log tail: {}",
                        d.label,
                        w.is_running(d),
                        tail(&w.log_of(d), 400)
                    ),
                );
            }
        }
        out.push(v);
    }
    report(
        &test,
        &format!(
            "processes: server [{}], relay [{}], client [{}]",
            procstat::describe_tree(srv.pid),
            procstat::describe_tree(relay.pid),
            procstat::describe_tree(cli.pid)
        ),
    );
    out
}

/// The first UDP port something listens on in `ns` (the only daemon there).
fn udp_port_in(ns: &Netns) -> Option<u16> {
    let out = ns.run(&["ss", "-H", "-u", "-l", "-n"]).ok()?;
    out.lines().find_map(|l| {
        l.split_whitespace()
            .nth(3)
            .and_then(|local| local.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
    })
}

/// The counters of a status page that moved between two readings.
fn status_delta(before: &[(String, String)], after: &[(String, String)]) -> String {
    if after.is_empty() {
        return "status: n/a".to_string();
    }
    let num = |v: &[(String, String)], k: &str| {
        v.iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, x)| x.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let moved: Vec<String> = after
        .iter()
        .filter(|(k, v)| k != "uptime" && v.parse::<u64>().is_ok())
        .filter_map(|(k, _)| {
            let d = num(after, k).saturating_sub(num(before, k));
            (d > 0).then(|| format!("{k}+{d}"))
        })
        .collect();
    format!("status: {}", moved.join(" "))
}

fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].replace('\n', " | ")
}

fn flood_malformed_at_server_relay_client() {
    let _one = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let ours = malformed_run(Impl::Ours);
    let theirs = malformed_run(Impl::C);
    let test = "flood_malformed_at_server_relay_client";
    for (o, c) in ours.iter().zip(&theirs) {
        report(
            test,
            &format!(
                "{}: CPU ours {} ms / C {} ms; RSS after ours {} kB / C {} kB; ping during ours {}/{} / C {}/{}; survived ours {} / C {}",
                o.role,
                o.cpu_ms,
                c.cpu_ms,
                o.rss_after,
                c.rss_after,
                o.ping_during.1,
                o.ping_during.0,
                c.ping_during.1,
                c.ping_during.0,
                o.all_running,
                c.all_running
            ),
        );
    }
    report(test, &format!("took {:?}", start.elapsed()));
    for v in &ours {
        assert!(
            v.all_running,
            "ours: a daemon died under the flood at the {}",
            v.role
        );
        assert!(
            v.address_kept,
            "ours: the client lost its address (flood at the {})",
            v.role
        );
        assert!(
            v.pings_ok(),
            "ours: pings fail after the flood at the {}: {}",
            v.role,
            v.line(Impl::Ours)
        );
        assert!(
            v.ping_during.1 > 0,
            "ours: no echo came back during the flood at the {}",
            v.role
        );
    }
}

/// What flood (b) measured for one relay.
#[derive(Debug, Default)]
struct PeerFlood {
    summary: String,
    inbound: u64,
    bubbles_to_server: u64,
    bubbles_after_settle: u64,
    udp_out: u64,
    icmp6_back: u64,
    rss_before: u64,
    rss_max: u64,
    rss_after: u64,
    cpu_ms: u64,
    peers_max: Option<u64>,
    ping: (u32, u32),
    /// The legitimate flow at the relay host (see the counters).
    legit: [u64; 4],
    running: bool,
    status: String,
}

impl PeerFlood {
    fn loss_percent(&self) -> f64 {
        let (s, g) = self.ping;
        if s == 0 {
            return 100.0;
        }
        100.0 * f64::from(s.saturating_sub(g)) / f64::from(s)
    }

    fn bubbles_per_packet(&self) -> f64 {
        self.bubbles_after_settle as f64 / self.inbound.max(1) as f64
    }
}

/// Flood (b) through `relay_imp`'s relay; the server and client are ours.
fn peer_flood_run(relay_imp: Impl) -> PeerFlood {
    let test = format!("flood_peers_{}", relay_imp.tag());
    let w = World::build(&test, &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let relay_if = unique_iface(&w, "pr");
    let cli_if = unique_iface(&w, "pc");
    let relay = named::start_relay(
        &w,
        relay_imp,
        &relay_if,
        &format!("relay-{}", relay_imp.tag()),
    )
    .unwrap_or_else(|| panic!("{} relay has no route", relay_imp.tag()));
    let (_cli, addr) = named::start_client(&w, 1, Impl::Ours, &cli_if, "client1-rs", QUALIFY);
    let addr = addr.expect("our client qualifies");
    let warm = ping6_stats(w.v6h(), addr, 3, Duration::from_secs(6));
    report(
        &test,
        &format!("client {addr}; warm-up native->client {warm:?}"),
    );
    let nat_wan = w.nat_wan_v4(1);

    let p = w.prefix().to_string();
    let mut rules = relay_flood_rules(&p, SERVER_V4);
    rules.push(("udp_out", Hook::Output, "meta l4proto udp".to_string()));
    rules.push((
        "icmp6_back",
        Hook::Forward,
        format!("oifname {p}r-i icmpv6 type destination-unreachable"),
    ));
    rules.extend(legit_flow_rules(&p, addr, nat_wan));
    let counters = Counters::install(w.relay(), &refs(&rules)).expect("nft counters");
    let ours = relay_imp == Impl::Ours;
    let status_before = named::status_of(&relay_if);
    let before = procstat::usage_of_tree(relay.pid);
    let secs = PEER_FLOOD_COUNT / PEER_FLOOD_RATE;
    let args: Vec<String> = [
        "teredo6",
        "--server",
        &SERVER_V4.to_string(),
        "--count",
        &PEER_FLOOD_COUNT.to_string(),
        "--rate",
        &PEER_FLOOD_RATE.to_string(),
        "--secs",
        &(secs + 5).to_string(),
        "--seed",
        "42",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut r = PeerFlood {
        rss_before: before.rss_kb,
        ..PeerFlood::default()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let (summary, ping, samples) = thread::scope(|s| {
        let v6h = w.v6h().clone();
        // The legitimate flow: 50 echoes a second for the whole flood.
        let ping = s.spawn(move || steady_ping(&v6h, addr, "0.02", (secs * 50) as u32, secs + 2));
        let sampler = s.spawn(|| {
            let mut v = Vec::new();
            let t0 = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed)
                && t0.elapsed() < Duration::from_secs(60)
            {
                let u = procstat::usage_of_tree(relay.pid);
                let peers = if ours {
                    status_number(&relay_if, "peers")
                } else {
                    None
                };
                v.push((u.rss_kb, peers));
                thread::sleep(Duration::from_millis(500));
            }
            v
        });
        let summary = run_flood(w.v6h(), &args);
        let ping = ping.join().unwrap_or((0, 0));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (summary, ping, sampler.join().unwrap_or_default())
    });
    r.summary = summary;
    r.ping = ping;
    r.inbound = counters.packets("inbound");
    r.bubbles_to_server = counters.packets("bubbles_to_server");
    // Bubbles are repeated (RFC 4380 5.4.1: up to 3 more, 2 s apart):
    // count those too before dividing.
    thread::sleep(Duration::from_secs(7));
    r.bubbles_after_settle = counters.packets("bubbles_to_server");
    r.udp_out = counters.packets("udp_out");
    r.icmp6_back = counters.packets("icmp6_back");
    let after = procstat::usage_of_tree(relay.pid);
    r.rss_after = after.rss_kb;
    r.cpu_ms = after.cpu_ms().saturating_sub(before.cpu_ms());
    r.rss_max = samples
        .iter()
        .map(|(rss, _)| *rss)
        .chain([after.rss_kb])
        .max()
        .unwrap_or(0);
    r.peers_max = samples.iter().filter_map(|(_, p)| *p).max();
    if ours {
        let now = status_number(&relay_if, "peers");
        r.peers_max = r.peers_max.max(now);
    }
    r.running = w.is_running(&relay);
    r.legit =
        ["legit_in", "legit_to_nat", "legit_from_nat", "legit_out"].map(|n| counters.packets(n));
    r.status = status_delta(&status_before, &named::status_of(&relay_if));
    report(
        &test,
        &format!(
            "{} relay: {}; inbound {} packets, bubbles to the server {} during / {} after 7 s ({:.3} per inbound packet), UDP out {}, ICMPv6 back {}; RSS {} -> max {} -> {} kB, CPU {} ms; peers max {}; legit ping {}/{} ({:.1} % lost; at the relay host: {} echo requests in, {} datagrams to the NAT, {} back, {} replies out); running: {}; {}",
            relay_imp.tag(),
            r.summary,
            r.inbound,
            r.bubbles_to_server,
            r.bubbles_after_settle,
            r.bubbles_per_packet(),
            r.udp_out,
            r.icmp6_back,
            r.rss_before,
            r.rss_max,
            r.rss_after,
            r.cpu_ms,
            r.peers_max.map_or("n/a (no status socket)".to_string(), |p| p.to_string()),
            r.ping.1,
            r.ping.0,
            r.loss_percent(),
            r.legit[0],
            r.legit[1],
            r.legit[2],
            r.legit[3],
            r.running,
            r.status
        ),
    );
    if !r.running {
        report(
            &test,
            &format!("relay log: {}", tail(&w.log_of(&relay), 600)),
        );
    }
    r
}

fn flood_random_teredo_peers_through_relay() {
    let _one = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let test = "flood_random_teredo_peers_through_relay";
    let start = Instant::now();
    let ours = peer_flood_run(Impl::Ours);
    let theirs = peer_flood_run(Impl::C);
    report(
        test,
        &format!(
            "peer caps: ours {OUR_PEER_CAP}, C {C_PEER_CAP}; peers max ours {:?}, C not exposed; RSS growth ours {} kB, C {} kB; bubbles per inbound packet ours {:.3}, C {:.3}; legit loss ours {:.1} %, C {:.1} %; CPU ours {} ms, C {} ms; took {:?}",
            ours.peers_max,
            ours.rss_max.saturating_sub(ours.rss_before),
            theirs.rss_max.saturating_sub(theirs.rss_before),
            ours.bubbles_per_packet(),
            theirs.bubbles_per_packet(),
            ours.loss_percent(),
            theirs.loss_percent(),
            ours.cpu_ms,
            theirs.cpu_ms,
            start.elapsed()
        ),
    );
    assert!(ours.running, "our relay died under the flood");
    assert!(
        ours.inbound > PEER_FLOOD_COUNT / 2,
        "the flood did not reach the relay: {ours:?}"
    );
    let peers = ours.peers_max.expect("our relay's status socket answers");
    assert!(peers <= OUR_PEER_CAP, "peers {peers} above the cap");
    // Memory: bounded by the table, not by the flood. 200,000 peers with a
    // queued packet each would be tens of MB; allow 64 MB of growth.
    assert!(
        ours.rss_max.saturating_sub(ours.rss_before) < 64 * 1024,
        "our relay grew by {} kB",
        ours.rss_max.saturating_sub(ours.rss_before)
    );
    // RFC 4380 5.4.1: one bubble and at most 3 repeats per new peer.
    assert!(
        ours.bubbles_per_packet() <= 4.0,
        "{:.3} bubbles per inbound packet",
        ours.bubbles_per_packet()
    );
    assert!(
        ours.loss_percent() < 5.0,
        "the legitimate flow lost {:.1} % through our relay",
        ours.loss_percent()
    );
}

/// The cost of doing nothing: each daemon of ours over 2 idle seconds,
/// beside the C ones. (Flood (a) showed our server spending CPU before
/// any flood: its socket threads call recvmmsg on non-blocking sockets in
/// a loop, and get EAGAIN tens of thousands of times a second.)
fn idle_daemons_spend_no_cpu() {
    let test = "idle_daemons_spend_no_cpu";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let srv = w.start_server(Impl::Ours);
    let relay_if = unique_iface(&w, "ir");
    let relay = named::start_relay(&w, Impl::Ours, &relay_if, "relay-rs").expect("relay starts");
    let cli_if = unique_iface(&w, "ic");
    let (cli, addr) = named::start_client(&w, 1, Impl::Ours, &cli_if, "client1-rs", QUALIFY);
    assert!(addr.is_some(), "our client qualifies");
    thread::sleep(Duration::from_secs(1));
    let before = [&srv, &relay, &cli].map(|d| procstat::usage_of_tree(d.pid));
    thread::sleep(Duration::from_secs(2));
    let after = [&srv, &relay, &cli].map(|d| procstat::usage_of_tree(d.pid));
    let spent: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.cpu_ms().saturating_sub(b.cpu_ms()))
        .collect();
    report(
        test,
        &format!(
            "CPU over 2 idle seconds: server {} ms, relay {} ms, client {} ms",
            spent[0], spent[1], spent[2]
        ),
    );
    for (what, ms) in ["server", "relay", "client"].iter().zip(&spent) {
        assert!(
            *ms <= 100,
            "our {what} spent {ms} ms of CPU in 2 idle seconds"
        );
    }
}

teredo_lab::lab_tests! {
    // Floods that fill the CPU, and CPU time measured: alone.
    needs(root, ours, c_miredo) alone: [
        flood_malformed_at_server_relay_client,
        flood_random_teredo_peers_through_relay,
    ],
    needs(root, ours) alone: [
        idle_daemons_spend_no_cpu,
    ],
}
