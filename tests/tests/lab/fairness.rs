//! Fair under flood (issue 15): a flood must not shut a newcomer out.
//!
//! 1. `relay_newcomer_under_flood`: the native host floods a relay with
//!    100,000 datagrams a second to random Teredo addresses (RFC 4380
//!    7.3.3), and meanwhile pings a Teredo client that starts, qualifies
//!    and is pinged during the flood: 20 echoes, 1 s apart, each answered
//!    within 2 s. Five runs through our relay (asserted: 19 of 20
//!    answered, the relay alive, its memory growth within what MaxPeers
//!    and MaxQueuedBytes imply), one through the C relay (reported).
//! 2. `client_answers_a_newcomer_under_flood`: our client, behind a full
//!    cone NAT, flooded with spoofed Teredo datagrams (bubbles, indirect
//!    bubbles, echoes) from random IPv4 sources at its NAT's mapping; a
//!    second client it never heard from, and the native host through the
//!    relay, ping it during the flood (asserted: 8 of 10 answered each).
//! 3. `server_qualifies_a_newcomer_under_rs_flood`: our server flooded
//!    with spoofed router solicitations at 198.18.1.1:3544; a new client
//!    qualifies at most 1 s later than one without the flood (asserted for
//!    ours, reported for the C server).
//!
//! Every figure is printed on a `LAB` line.
//!
//! `cargo test --release -p teredo-lab --test lab -- fairness:: --nocapture`

use std::net::{Ipv6Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libteredo::proto::{memory_bound, DEFAULT_TOTAL_QUEUE_BYTES};
use teredo_lab::named::{self, status_number, unique_iface};
use teredo_lab::nftcount::{legit_flow_rules, refs, relay_flood_rules, Counters, Hook};
use teredo_lab::procstat;
use teredo_lab::{report, Daemon, Impl, NatKind, Netns, World, SERVER_V4};

const QUALIFY: Duration = Duration::from_secs(15);
/// The flood's rate, datagrams a second (teredo-flood's most).
const FLOOD_RATE: u64 = 100_000;
/// teredo-flood runs this long at a time (its count is bounded): a flood
/// is a chain of such chunks, until the test says stop.
const CHUNK_SECS: u64 = 4;
/// The longest flood, whatever happens.
const FLOOD_MAX: Duration = Duration::from_secs(60);
/// Our relay's MaxPeers in test 1 (set in its miredo.conf, to keep the
/// memory the flood may take modest).
const RELAY_MAX_PEERS: usize = 262_144;
/// Runs of test 1 through our relay.
const OUR_RUNS: usize = 5;
/// Test 1: echoes to the newcomer, 1 s apart.
const NEWCOMER_PINGS: u32 = 20;
/// A full cone NAT for the flooded client of test 2, so that datagrams
/// from any source reach it (the client binds `client_port`).
const CONE: NatKind = NatKind::FullCone {
    client_port: 3545,
    mapped_port: 40000,
};

/// One flood at a time: two floods on two cores would measure each other.
static FLOOD: Mutex<()> = Mutex::new(());

fn flood_bin() -> &'static str {
    env!("CARGO_BIN_EXE_teredo-flood")
}

/// What a chain of teredo-flood chunks did.
#[derive(Debug, Default, Clone)]
struct Flood {
    sent: u64,
    errors: u64,
    millis: u64,
    chunks: u32,
    /// Chunks that failed, with why.
    failures: Vec<String>,
}

impl Flood {
    fn rate(&self) -> u64 {
        self.sent * 1000 / self.millis.max(1)
    }

    fn line(&self) -> String {
        format!(
            "flood sent {} datagrams in {} ms ({} /s, {} chunks, {} send errors{})",
            self.sent,
            self.millis,
            self.rate(),
            self.chunks,
            self.errors,
            if self.failures.is_empty() {
                String::new()
            } else {
                format!("; FAILED chunks: {}", self.failures.join(" | "))
            }
        )
    }
}

/// Parses teredo-flood's `sent N datagrams in T ms (E send errors)`.
fn parse_flood(line: &str) -> Option<(u64, u64, u64)> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let sent = w.get(1)?.parse().ok()?;
    let ms = w.get(4)?.parse().ok()?;
    let errors = w.get(6)?.trim_start_matches('(').parse().ok()?;
    Some((sent, ms, errors))
}

/// Runs teredo-flood `args` (a mode and its addresses) in `ns`, chunk
/// after chunk of [`CHUNK_SECS`] at [`FLOOD_RATE`], until `stop` is set
/// (the chunk under way finishes) or [`FLOOD_MAX`] has passed. Each chunk
/// has its seed: new random addresses.
fn flood_until(ns: &Netns, args: &[String], seed: u64, stop: &AtomicBool) -> Flood {
    let start = Instant::now();
    let mut f = Flood::default();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < FLOOD_MAX {
        let mut argv = vec![flood_bin().to_string()];
        argv.extend(args.iter().cloned());
        for (k, v) in [
            ("--count", FLOOD_RATE * CHUNK_SECS),
            ("--rate", FLOOD_RATE),
            ("--secs", CHUNK_SECS),
            ("--seed", seed * 1000 + u64::from(f.chunks)),
        ] {
            argv.push(k.to_string());
            argv.push(v.to_string());
        }
        let out = ns.exec(&argv, Duration::from_secs(CHUNK_SECS + 10));
        f.chunks += 1;
        match parse_flood(out.stdout.trim()).filter(|_| out.success()) {
            Some((sent, _, errors)) => {
                f.sent += sent;
                f.errors += errors;
            }
            None => {
                f.failures.push(format!(
                    "{:?} {} {}",
                    out.status,
                    out.stdout.trim(),
                    out.stderr.trim()
                ));
                break;
            }
        }
    }
    f.millis = start.elapsed().as_millis() as u64;
    f
}

/// Sets its flag when dropped: a flood thread stops even when the test
/// panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What `ping -D` saw.
#[derive(Debug, Default, Clone)]
struct Pings {
    sent: u32,
    /// Distinct echoes answered within 2 s.
    answered: u32,
    /// Replies received within the first 5 s of the ping.
    early: u32,
    /// Distinct echoes answered at all.
    replies: u32,
    /// The sequence numbers of the echoes not answered within 2 s.
    lost: Vec<u32>,
}

impl Pings {
    fn line(&self) -> String {
        let lost: Vec<String> = self.lost.iter().map(u32::to_string).collect();
        format!(
            "{}/{} answered within 2 s ({} at all), {} in the first 5 s (not within 2 s: [{}])",
            self.answered,
            self.sent,
            self.replies,
            self.early,
            lost.join(",")
        )
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `ping -6 -n -D -c COUNT -i INTERVAL -W 2` from `from` to `to`.
fn ping_timed(from: &Netns, to: Ipv6Addr, count: u32, interval: f64) -> Pings {
    let start = unix_now();
    let bound = Duration::from_secs_f64(f64::from(count) * interval + 8.0);
    let out = from.exec(
        &[
            "ping",
            "-6",
            "-n",
            "-D",
            "-c",
            &count.to_string(),
            "-i",
            &interval.to_string(),
            "-W",
            "2",
            &to.to_string(),
        ],
        bound,
    );
    parse_ping(&out.stdout, start)
}

/// Reads `ping -D` output; `start` is when the ping began (Unix time).
fn parse_ping(text: &str, start: f64) -> Pings {
    let mut p = Pings::default();
    let mut seen = Vec::new();
    let mut in_time = Vec::new();
    for line in text.lines() {
        if let Some((sent, _)) = line.split_once(" packets transmitted") {
            p.sent = sent.trim().parse().unwrap_or(0);
            continue;
        }
        if line.contains("DUP!") {
            continue;
        }
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let (Some(seq), Some(ms)) = (field("icmp_seq="), field("time=")) else {
            continue;
        };
        let seq = seq as u32;
        if seen.contains(&seq) {
            continue;
        }
        seen.push(seq);
        p.replies += 1;
        if ms <= 2000.0 {
            p.answered += 1;
            in_time.push(seq);
        }
        let at = line
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .and_then(|(t, _)| t.parse::<f64>().ok());
        if at.is_some_and(|t| t - start <= 5.0) {
            p.early += 1;
        }
    }
    p.lost = (1..=p.sent).filter(|s| !in_time.contains(s)).collect();
    p
}

/// A status page's value for `key`, or `n/a`.
fn field(status: &[(String, String)], key: &str) -> String {
    status
        .iter()
        .find(|(k, _)| k == key)
        .map_or("n/a".to_string(), |(_, v)| v.clone())
}

fn number(status: &[(String, String)], key: &str) -> Option<u64> {
    status
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[start..].replace('\n', " | ")
}

/// `ip -s link show dev IFACE` in `ns`: (RX dropped, TX dropped). TX of a
/// TUN device is what the kernel queues for the daemon: its drops are
/// packets lost before the daemon could choose.
fn link_drops(ns: &Netns, iface: &str) -> Option<(u64, u64)> {
    let out = ns.run(&["ip", "-s", "link", "show", "dev", iface]).ok()?;
    let lines: Vec<&str> = out.lines().collect();
    let dropped = |tag: &str| -> Option<u64> {
        let i = lines.iter().position(|l| l.trim_start().starts_with(tag))?;
        lines.get(i + 1)?.split_whitespace().nth(3)?.parse().ok()
    };
    Some((dropped("RX:")?, dropped("TX:")?))
}

/// Packets the host's CPUs dropped from their input backlogs
/// (/proc/net/softnet_stat, second column; every namespace, and whatever
/// else the machine runs, together).
fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum()
}

/// Samples `pid`'s memory (and our relay's `peers`) every 500 ms until
/// `stop`; (max RSS kB, max peers).
fn sample(pid: u32, status_if: Option<&str>, stop: &AtomicBool) -> (u64, Option<u64>) {
    let (mut rss, mut peers) = (0, None);
    let t0 = Instant::now();
    while !stop.load(Ordering::Relaxed) && t0.elapsed() < FLOOD_MAX + Duration::from_secs(10) {
        rss = rss.max(procstat::usage_of_tree(pid).rss_kb);
        if let Some(p) = status_if.and_then(|i| status_number(i, "peers")) {
            peers = Some(peers.map_or(p, |q: u64| q.max(p)));
        }
        thread::sleep(Duration::from_millis(500));
    }
    (rss, peers)
}

/// One run of test 1.
#[derive(Debug, Default)]
struct NewcomerRun {
    pings: Pings,
    qualified: Option<Duration>,
    rss_before: u64,
    rss_max: u64,
    cpu_ms: u64,
    flood: Flood,
    /// Flood datagrams that reached the relay host.
    inbound: u64,
    bubbles_to_server: u64,
    running: bool,
    peers_max: Option<u64>,
    status: Vec<(String, String)>,
    log_tail: String,
    /// The newcomer's echoes hop by hop at the relay host: requests in,
    /// requests to the TUN, datagrams to the client's NAT, datagrams back,
    /// replies out.
    legit: [u64; 5],
    /// The relay's TUN: packets dropped before the daemon read them.
    tun_tx_dropped: Option<u64>,
    /// Host-wide input backlog drops during the run.
    softnet_drops: u64,
}

impl NewcomerRun {
    fn rss_growth_kb(&self) -> u64 {
        self.rss_max.saturating_sub(self.rss_before)
    }

    fn line(&self, imp: Impl) -> String {
        let st = &self.status;
        let held = number(st, "peers-held");
        let shed = held.map_or("n/a".to_string(), |h| {
            format!("{:.3}", h as f64 / self.flood.sent.max(1) as f64)
        });
        format!(
            "{} relay: pings {}; client qualified in {}; RSS {} -> max {} kB (+{} kB); CPU {} ms; {}; inbound at the relay host {}, bubbles to the server {}; peers max {} / now {}, peers-held {}, peers-admitted-late {}, peers-evicted {}, drop-rate-limited {}, drop-peers-full {}, bubbles-sent {}; shed (peers-held / sent) {}; newcomer's echoes at the relay host: {} in, {} to the TUN, {} datagrams to the NAT, {} back, {} replies out; TUN drops {}; host backlog drops +{}; running: {}",
            imp.tag(),
            self.pings.line(),
            self.qualified
                .map_or("never".to_string(), |d| format!("{} ms", d.as_millis())),
            self.rss_before,
            self.rss_max,
            self.rss_growth_kb(),
            self.cpu_ms,
            self.flood.line(),
            self.inbound,
            self.bubbles_to_server,
            self.peers_max
                .map_or("n/a".to_string(), |p| p.to_string()),
            field(st, "peers"),
            field(st, "peers-held"),
            field(st, "peers-admitted-late"),
            field(st, "peers-evicted"),
            field(st, "drop-rate-limited"),
            field(st, "drop-peers-full"),
            field(st, "bubbles-sent"),
            shed,
            self.legit[0],
            self.legit[1],
            self.legit[2],
            self.legit[3],
            self.legit[4],
            self.tun_tx_dropped
                .map_or("n/a".to_string(), |d| d.to_string()),
            self.softnet_drops,
            self.running
        )
    }
}

/// Test 1, one run through `imp`'s relay: a fresh world, the flood from
/// the native host, a new client started 2 s into it and pinged from the
/// same host.
fn newcomer_run(imp: Impl, run: usize) -> NewcomerRun {
    let test = format!("relay_newcomer_{}_{run}", imp.tag());
    let w = World::build(&test, &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let relay_if = unique_iface(&w, "fr");
    let cli_if = unique_iface(&w, "fc");
    let ours = imp == Impl::Ours;
    let extra = if ours {
        format!("MaxPeers {RELAY_MAX_PEERS}\n")
    } else {
        String::new()
    };
    let relay =
        named::start_relay_with(&w, imp, &relay_if, &format!("relay-{}", imp.tag()), &extra)
            .unwrap_or_else(|| panic!("{} relay has no route", imp.tag()));
    // The kernel queues 500 packets for a tunnel interface by default: at
    // 100,000 packets a second, a relay that loses the CPU for 5 ms loses
    // packets before it can admit or hold anything (the losses then fall
    // on the newcomer at random). An operator who expects floods raises
    // it (miredo.8, PERFORMANCE); both relays get the same.
    let _ = w
        .relay()
        .ip(&format!("link set {relay_if} txqueuelen 10000"));
    let p = w.prefix().to_string();
    let mut counters = Counters::install(w.relay(), &refs(&relay_flood_rules(&p, SERVER_V4)))
        .expect("nft counters");
    thread::sleep(Duration::from_secs(1));
    let before = procstat::usage_of_tree(relay.pid);
    let tun_before = link_drops(w.relay(), &relay_if);
    let softnet_before = softnet_drops();
    let status_if = ours.then_some(relay_if.as_str());
    let args: Vec<String> = ["teredo6", "--server", &SERVER_V4.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let stop = AtomicBool::new(false);
    let mut r = NewcomerRun {
        rss_before: before.rss_kb,
        ..NewcomerRun::default()
    };
    let (flood, (rss_max, peers_max)) = thread::scope(|s| {
        let flooding = s.spawn(|| flood_until(w.v6h(), &args, 42 + run as u64, &stop));
        let sampler = s.spawn(|| sample(relay.pid, status_if, &stop));
        let _stop = StopOnDrop(&stop);
        thread::sleep(Duration::from_secs(2));
        let t = Instant::now();
        let (_cli, addr) = named::start_client(&w, 1, Impl::Ours, &cli_if, "client1-rs", QUALIFY);
        if let Some(addr) = addr {
            r.qualified = Some(t.elapsed());
            let nat_wan = w.nat_wan_v4(1);
            let mut rules = legit_flow_rules(&p, addr, nat_wan);
            rules.insert(
                1,
                (
                    "legit_tun",
                    Hook::Forward,
                    format!("oifname {relay_if} ip6 daddr {addr}"),
                ),
            );
            counters.add(&refs(&rules)).expect("nft counters");
            report(
                &test,
                &format!(
                    "client {addr} qualified in {} ms, 2 s into the flood",
                    t.elapsed().as_millis()
                ),
            );
            r.pings = ping_timed(w.v6h(), addr, NEWCOMER_PINGS, 1.0);
        }
        stop.store(true, Ordering::Relaxed);
        (
            flooding.join().unwrap_or_default(),
            sampler.join().unwrap_or_default(),
        )
    });
    let after = procstat::usage_of_tree(relay.pid);
    r.flood = flood;
    r.cpu_ms = after.cpu_ms().saturating_sub(before.cpu_ms());
    r.rss_max = rss_max.max(after.rss_kb);
    r.peers_max = peers_max;
    r.inbound = counters.packets("inbound");
    r.bubbles_to_server = counters.packets("bubbles_to_server");
    r.running = w.is_running(&relay);
    r.legit = [
        "legit_in",
        "legit_tun",
        "legit_to_nat",
        "legit_from_nat",
        "legit_out",
    ]
    .map(|n| counters.packets(n));
    r.tun_tx_dropped = link_drops(w.relay(), &relay_if)
        .zip(tun_before)
        .map(|((_, tx), (_, tx0))| tx.saturating_sub(tx0));
    r.softnet_drops = softnet_drops().saturating_sub(softnet_before);
    if ours {
        r.status = named::status_of(&relay_if);
    }
    if !r.running || r.pings.answered + 1 < NEWCOMER_PINGS {
        r.log_tail = tail(&w.log_of(&relay), 600);
    }
    report(&test, &r.line(imp));
    if !r.log_tail.is_empty() {
        report(&test, &format!("relay log tail: {}", r.log_tail));
    }
    r
}

fn relay_newcomer_under_flood() {
    let _one = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let test = "relay_newcomer_under_flood";
    let start = Instant::now();
    let ours: Vec<NewcomerRun> = (1..=OUR_RUNS)
        .map(|i| newcomer_run(Impl::Ours, i))
        .collect();
    let theirs = newcomer_run(Impl::C, 1);
    // What MaxPeers and MaxQueuedBytes (its default) allow our relay.
    let bound_kb = (memory_bound(RELAY_MAX_PEERS, DEFAULT_TOTAL_QUEUE_BYTES) / 1024) as u64;
    let summary: Vec<String> = ours
        .iter()
        .map(|r| {
            format!(
                "{}/{} ({} early, +{} kB)",
                r.pings.answered,
                r.pings.sent,
                r.pings.early,
                r.rss_growth_kb()
            )
        })
        .collect();
    report(
        test,
        &format!(
            "ours: {}; C: {}/{} ({} early, +{} kB); memory bound of MaxPeers {RELAY_MAX_PEERS} and MaxQueuedBytes {DEFAULT_TOTAL_QUEUE_BYTES}: {bound_kb} kB; took {:?}",
            summary.join(", "),
            theirs.pings.answered,
            theirs.pings.sent,
            theirs.pings.early,
            theirs.rss_growth_kb(),
            start.elapsed()
        ),
    );
    assert!(
        theirs.inbound > theirs.flood.sent / 2,
        "the flood did not reach the C relay: {}",
        theirs.line(Impl::C)
    );
    for (i, r) in ours.iter().enumerate() {
        let run = i + 1;
        assert!(
            r.flood.failures.is_empty() && r.inbound > r.flood.sent / 2,
            "run {run}: the flood did not reach our relay: {}",
            r.line(Impl::Ours)
        );
        assert!(r.running, "run {run}: our relay died: {}", r.log_tail);
        assert!(
            r.qualified.is_some(),
            "run {run}: the newcomer did not qualify within {QUALIFY:?}"
        );
        assert!(
            r.pings.answered + 1 >= NEWCOMER_PINGS,
            "run {run}: our relay let {} of {NEWCOMER_PINGS} echoes to the newcomer through within 2 s: {}",
            r.pings.answered,
            r.line(Impl::Ours)
        );
        assert!(
            r.rss_growth_kb() < bound_kb,
            "run {run}: our relay grew by {} kB, over the {bound_kb} kB its limits imply",
            r.rss_growth_kb()
        );
    }
}

/// Starts our client of site `n` (behind a full cone NAT: it binds the
/// NAT's client port) and waits for its address.
fn start_cone_client(w: &World, n: usize, iface: &str, label: &str) -> (Daemon, Option<Ipv6Addr>) {
    let NatKind::FullCone { client_port, .. } = w.nat_kind(n) else {
        panic!("site {n} is not a full cone NAT");
    };
    let d = w.spawn_daemon(
        w.client(n),
        label,
        &Impl::Ours.miredo(),
        &named::client_conf(iface, &format!("BindPort {client_port}\n")),
        &[],
    );
    (d, named::wait_addr(w.client(n), iface, QUALIFY))
}

fn client_answers_a_newcomer_under_flood() {
    let _one = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let test = "client_answers_a_newcomer_under_flood";
    let start = Instant::now();
    let w = World::build(test, &[CONE, NatKind::PortRestricted]);
    let srv = w.start_server(Impl::Ours);
    let relay_if = unique_iface(&w, "ar");
    let relay = named::start_relay(&w, Impl::Ours, &relay_if, "relay-rs").expect("relay starts");
    let cli_if = unique_iface(&w, "ac");
    let new_if = unique_iface(&w, "an");
    let (cli, addr) = start_cone_client(&w, 1, &cli_if, "client1-rs");
    let addr = addr.expect("the flooded client qualifies");
    // The newcomer qualifies before the flood; it never sent anything to
    // the flooded client until its pings.
    let (newcomer, new_addr) =
        named::start_client(&w, 2, Impl::Ours, &new_if, "client2-rs", QUALIFY);
    let new_addr = new_addr.expect("the newcomer qualifies");
    let mapped = teredo_lab::teredo_parts(&addr).expect("a Teredo address");
    let nat_wan = SocketAddrV4::new(
        w.nat_wan_v4(1),
        w.nat_mapped_port(1).expect("a full cone NAT"),
    );
    report(
        test,
        &format!(
            "flooded client {addr} (mapped {}:{}), flood at {nat_wan}; newcomer {new_addr}",
            mapped.mapped_v4, mapped.mapped_port
        ),
    );
    let p = w.prefix().to_string();
    let counters = Counters::install(
        w.client(1),
        &[
            (
                "udp_in",
                Hook::Prerouting,
                &format!("iifname {p}c1-n udp dport 3545"),
            ),
            ("udp_out", Hook::Output, "meta l4proto udp"),
        ],
    )
    .expect("nft counters");
    let args: Vec<String> = [
        "udp4",
        "--dst",
        &nat_wan.to_string(),
        "--src",
        "random",
        "--server",
        &SERVER_V4.to_string(),
        "--ipv6-dst",
        &addr.to_string(),
        "--kinds",
        "IndirectBubble,Echo,ServerBubble",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let status_before = named::status_of(&cli_if);
    let before = procstat::usage_of_tree(cli.pid);
    let stop = AtomicBool::new(false);
    let (flood, from_newcomer, from_native, rss_max) = thread::scope(|s| {
        let flooding = s.spawn(|| flood_until(w.inet(), &args, 7, &stop));
        let sampler = s.spawn(|| sample(cli.pid, None, &stop));
        let _stop = StopOnDrop(&stop);
        thread::sleep(Duration::from_secs(2));
        let v6h = w.v6h().clone();
        let native = s.spawn(move || ping_timed(&v6h, addr, 10, 0.5));
        let newcomer = ping_timed(w.client(2), addr, 10, 0.5);
        let native = native.join().unwrap_or_default();
        stop.store(true, Ordering::Relaxed);
        (
            flooding.join().unwrap_or_default(),
            newcomer,
            native,
            sampler.join().unwrap_or_default().0,
        )
    });
    let after = procstat::usage_of_tree(cli.pid);
    let status = named::status_of(&cli_if);
    let conntrack = w
        .nat(1)
        .run(&["conntrack", "-C"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("n/a ({e})"));
    let running = [&srv, &relay, &cli, &newcomer]
        .iter()
        .all(|d| w.is_running(d));
    let kept = teredo_lab::teredo_addr_of(w.client(1), &cli_if) == Some(addr);
    let num = |st: &[(String, String)], k: &str| number(st, k).unwrap_or(0);
    report(
        test,
        &format!(
            "{}; at the client host {} datagrams in, {} UDP out; client CPU {} ms, RSS {} -> max {} kB; newcomer client pings {}; native host through the relay {}; client peers {}, peers-held {}, peers-admitted-late {}, peers-evicted {}, bubbles-sent +{}, drop-rate-limited +{}; NAT flows now {conntrack}; all running: {running}, address kept: {kept}; took {:?}",
            flood.line(),
            counters.packets("udp_in"),
            counters.packets("udp_out"),
            after.cpu_ms().saturating_sub(before.cpu_ms()),
            before.rss_kb,
            rss_max.max(after.rss_kb),
            from_newcomer.line(),
            from_native.line(),
            field(&status, "peers"),
            field(&status, "peers-held"),
            field(&status, "peers-admitted-late"),
            field(&status, "peers-evicted"),
            num(&status, "bubbles-sent").saturating_sub(num(&status_before, "bubbles-sent")),
            num(&status, "drop-rate-limited")
                .saturating_sub(num(&status_before, "drop-rate-limited")),
            start.elapsed()
        ),
    );
    if !running {
        for d in [&srv, &relay, &cli, &newcomer] {
            report(
                test,
                &format!(
                    "{} running: {}; log tail: {}",
                    d.label,
                    w.is_running(d),
                    tail(&w.log_of(d), 400)
                ),
            );
        }
    }
    assert!(
        flood.failures.is_empty() && counters.packets("udp_in") > flood.sent / 2,
        "the flood did not reach the client: {}",
        flood.line()
    );
    assert!(running, "a daemon died under the flood");
    assert!(kept, "the flooded client lost its address");
    assert!(
        from_newcomer.replies >= 8,
        "the newcomer client got {} of 10 echoes answered",
        from_newcomer.replies
    );
    assert!(
        from_native.replies >= 8,
        "the native host (a newcomer through the relay) got {} of 10 echoes answered",
        from_native.replies
    );
}

/// Test 3 for one server: (baseline, flooded) qualification times of our
/// clients, or `None` when one did not qualify.
fn rs_flood_run(imp: Impl) -> (Option<Duration>, Option<Duration>) {
    let test = format!("server_rs_flood_{}", imp.tag());
    let w = World::build(&test, &[NatKind::PortRestricted, NatKind::PortRestricted]);
    let srv = w.start_server(imp);
    let qualify = |n: usize| {
        let iface = unique_iface(&w, &format!("q{n}"));
        let t = Instant::now();
        let (d, addr) =
            named::start_client(&w, n, Impl::Ours, &iface, &format!("client{n}-rs"), QUALIFY);
        let took = t.elapsed();
        let own = named::status_of(&iface);
        (d, addr.map(|_| took), field(&own, "qualified-after"))
    };
    let (_, baseline, own_base) = qualify(1);
    let counters = Counters::install(
        w.srv(),
        &[
            (
                "rs_in",
                Hook::Prerouting,
                &format!("ip daddr {SERVER_V4} udp dport 3544"),
            ),
            ("udp_out", Hook::Output, "meta l4proto udp"),
        ],
    )
    .expect("nft counters");
    let args: Vec<String> = [
        "udp4",
        "--dst",
        &format!("{SERVER_V4}:3544"),
        "--src",
        "random",
        "--server",
        &SERVER_V4.to_string(),
        "--ipv6-dst",
        "::1",
        "--kinds",
        "RouterSolicit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let before = procstat::usage_of_tree(srv.pid);
    let stop = AtomicBool::new(false);
    let (flood, (_, flooded, own_flooded)) = thread::scope(|s| {
        let flooding = s.spawn(|| flood_until(w.inet(), &args, 3, &stop));
        let _stop = StopOnDrop(&stop);
        thread::sleep(Duration::from_secs(2));
        let q = qualify(2);
        stop.store(true, Ordering::Relaxed);
        (flooding.join().unwrap_or_default(), q)
    });
    let after = procstat::usage_of_tree(srv.pid);
    let running = w.is_running(&srv);
    let ms =
        |d: Option<Duration>| d.map_or("never".to_string(), |d| format!("{} ms", d.as_millis()));
    report(
        &test,
        &format!(
            "{} server: qualified without a flood in {} (client's own figure {own_base}), during the flood in {} (client's own figure {own_flooded}); {}; RS at the server host {}, UDP out {}; server CPU {} ms, RSS {} -> {} kB; running: {running}",
            imp.tag(),
            ms(baseline),
            ms(flooded),
            flood.line(),
            counters.packets("rs_in"),
            counters.packets("udp_out"),
            after.cpu_ms().saturating_sub(before.cpu_ms()),
            before.rss_kb,
            after.rss_kb,
        ),
    );
    if imp == Impl::Ours {
        assert!(running, "our server died under the flood");
        assert!(
            flood.failures.is_empty() && counters.packets("rs_in") > flood.sent / 2,
            "the flood did not reach the server: {}",
            flood.line()
        );
    }
    (baseline, flooded)
}

fn server_qualifies_a_newcomer_under_rs_flood() {
    let _one = FLOOD.lock().unwrap_or_else(|e| e.into_inner());
    let test = "server_qualifies_a_newcomer_under_rs_flood";
    let start = Instant::now();
    let (base, flooded) = rs_flood_run(Impl::Ours);
    let (c_base, c_flooded) = rs_flood_run(Impl::C);
    report(
        test,
        &format!(
            "qualification ours {base:?} -> {flooded:?} under the flood, C {c_base:?} -> {c_flooded:?}; took {:?}",
            start.elapsed()
        ),
    );
    let base = base.expect("our client qualifies with our server, without a flood");
    let flooded = flooded.expect("our client qualifies with our server during the RS flood");
    assert!(
        flooded <= base + Duration::from_secs(1),
        "qualification took {flooded:?} during the flood, {base:?} without"
    );
}

teredo_lab::lab_tests! {
    // Floods that fill the CPU, and bounds on time: alone.
    needs(root, ours, c_miredo) alone: [
        relay_newcomer_under_flood,
        server_qualifies_a_newcomer_under_rs_flood,
    ],
    needs(root, ours) alone: [
        client_answers_a_newcomer_under_flood,
    ],
}
