//! Issue 14, the host's network changing under a running client: no
//! default route for the first seconds, a new LAN address (with a new NAT
//! mapping, and with the same one), the LAN link down and up, the NAT
//! rebooting with new mappings, the server unreachable for a minute.
//!
//! Each test is one scenario. It runs our client (site 1) and the C miredo
//! client (site 2, when installed) side by side in one fresh world, each
//! behind a NAT of its own (port-restricted: Linux masquerade), with our
//! server and our cone relay, and makes the change at both sites at once.
//! For each client it measures the seconds from the change (from the
//! moment the path is back, for a route, a link or a server that comes
//! back) until the client's current Teredo address answers pings both
//! ways with the native IPv6 host (a round of short pings every 200 ms,
//! each round bounded to 0.8 s, rounds overlapping; given up after 90 s),
//! and the most Teredo addresses its interface carried at once, sampled
//! every 100 ms from before the change to after the recovery.
//!
//! Our client must recover within 2 s of a change the host sees itself
//! (a route added, its address changed, its link up) and within one
//! refresh interval and a margin (30 s + 5 s) otherwise (the NAT rebooted,
//! the server back), and never carry two Teredo addresses; the C client is
//! only reported. Each test prints a `LAB` line per client and the table
//! of every scenario run so far in this process (the last one printed has
//! them all).
//!
//! Name resolution, several servers behind one name and one status socket
//! per daemon are in network_daemon.rs.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use teredo_lab::steps::{self, teredo_addrs};
use teredo_lab::{
    report, teredo_parts, Daemon, Impl, NatKind, NatReboot, Netns, World, NATIVE_V6, TEREDO_IFACE,
};

/// How long a client may take to answer both ways before it is given up.
const GIVE_UP: Duration = Duration::from_secs(90);
/// Between two rounds of pings.
const POLL: Duration = Duration::from_millis(200);
/// One short ping: echoes 200 ms apart until the first reply, killed
/// after this.
const PING_BOUND: Duration = Duration::from_millis(800);
/// Between two samples of the client's Teredo addresses.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Our bound for a change the host itself sees (route, address, link).
const HOST_SEES: Duration = Duration::from_secs(2);
/// Our bound otherwise: one refresh interval (RFC 4380 5.2.5) and a margin.
const ONE_REFRESH: Duration = Duration::from_secs(35);
/// The client's namespace has no default route for this long at start.
const NO_ROUTE_FOR: Duration = Duration::from_secs(5);
/// The LAN link stays down this long.
const LINK_DOWN_FOR: Duration = Duration::from_secs(3);
/// The server is unreachable this long.
const OUTAGE: Duration = Duration::from_secs(60);

/// The change a test makes at every site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The client starts without a default route, added after 5 s.
    NoRouteAtStart,
    /// A new LAN address (a DHCP renewal) and a new NAT mapping: the NAT
    /// still tracks the old address's flows, so the new address's flow
    /// to the server leaves on another port.
    NewLanAddressNewMapping,
    /// A new LAN address and the same NAT mapping: the NAT forgets the old
    /// address's flows as the route changes (and drops unsolicited packets
    /// untracked), so masquerade gives the new address's flows the same
    /// external port.
    NewLanAddressSameMapping,
    /// The LAN link down for 3 s, then up with its default route again.
    LinkDownUp,
    /// The NAT reboots: flows flushed, new mappings (another port range).
    NatReboot,
    /// The server's UDP port 3544 dropped for 60 s, then open again.
    ServerOutage,
}

/// Every scenario, in the table's order.
const ALL: [Scenario; 6] = [
    Scenario::NoRouteAtStart,
    Scenario::NewLanAddressNewMapping,
    Scenario::NewLanAddressSameMapping,
    Scenario::LinkDownUp,
    Scenario::NatReboot,
    Scenario::ServerOutage,
];

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::NoRouteAtStart => "1. no default route for 5 s at start",
            Scenario::NewLanAddressNewMapping => "2a. new LAN address, new NAT mapping",
            Scenario::NewLanAddressSameMapping => "2b. new LAN address, same NAT mapping",
            Scenario::LinkDownUp => "3. LAN link down 3 s and up",
            Scenario::NatReboot => "4. NAT reboot (new mappings)",
            Scenario::ServerOutage => "5. server unreachable 60 s",
        }
    }

    /// Whether the client's host sees the change itself (its route, its
    /// address, its link), as opposed to a change somewhere on the path.
    fn host_sees(self) -> bool {
        !matches!(self, Scenario::NatReboot | Scenario::ServerOutage)
    }

    /// How soon our client must answer both ways again.
    fn our_bound(self) -> Duration {
        if self.host_sees() {
            HOST_SEES
        } else {
            ONE_REFRESH
        }
    }
}

/// One client's run of a scenario, for the table.
#[derive(Debug, Clone)]
struct Row {
    scenario: Scenario,
    imp: Impl,
    old: Option<Ipv6Addr>,
    new: Option<Ipv6Addr>,
    /// From the change to an address answering both ways.
    recovered: Option<Duration>,
    /// The most Teredo addresses on the interface in one sample.
    most: usize,
}

/// The rows of every scenario run so far in this process.
static ROWS: Mutex<Vec<Row>> = Mutex::new(Vec::new());

fn who(imp: Impl) -> &'static str {
    match imp {
        Impl::Ours => "ours",
        Impl::C => "C",
    }
}

fn secs(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1}", d.as_secs_f64()),
        None => format!("none in {} s", GIVE_UP.as_secs()),
    }
}

fn addr_or_none(a: Option<Ipv6Addr>) -> String {
    a.map_or_else(|| "none".to_string(), |a| a.to_string())
}

/// `old -> new`, or the one address when it stayed.
fn addresses(old: Option<Ipv6Addr>, new: Option<Ipv6Addr>) -> String {
    if old.is_some() && old == new {
        format!("{} (kept)", addr_or_none(old))
    } else {
        format!("{} -> {}", addr_or_none(old), addr_or_none(new))
    }
}

/// The table of every row so far: scenario, ours, C, addresses.
fn table(rows: &[Row]) -> String {
    let done = ALL
        .iter()
        .filter(|s| rows.iter().any(|r| r.scenario == **s))
        .count();
    let mut t = format!(
        "recovery times, {done} of {} scenarios run so far (seconds from the change to an \
         address answering pings both ways; at most N Teredo addresses at once):\n\
         | scenario | ours (s) | C (s) | addresses |\n|---|---|---|---|\n",
        ALL.len()
    );
    for s in ALL {
        let of = |imp: Impl| rows.iter().find(|r| r.scenario == s && r.imp == imp);
        let (ours, c) = (of(Impl::Ours), of(Impl::C));
        if ours.is_none() && c.is_none() {
            continue;
        }
        let cell = |r: Option<&Row>| match r {
            Some(r) => format!("{} (at most {})", secs(r.recovered), r.most),
            None => "not run".to_string(),
        };
        let addrs: Vec<String> = [ours, c]
            .into_iter()
            .flatten()
            .map(|r| format!("{}: {}", who(r.imp), addresses(r.old, r.new)))
            .collect();
        t += &format!(
            "| {} | {} | {} | {} |\n",
            s.label(),
            cell(ours),
            cell(c),
            addrs.join("; ")
        );
    }
    t
}

/// Our client, and the C client when it is installed.
fn implementations(test: &str) -> Vec<Impl> {
    match Impl::C.unavailable() {
        None => vec![Impl::Ours, Impl::C],
        Some(why) => {
            report(test, &format!("the C client is left out: {why}"));
            vec![Impl::Ours]
        }
    }
}

/// The client's interface on its LAN (`c{n}-n`, see world.rs).
fn lan_if(w: &World, n: usize) -> String {
    format!("{}c{n}-n", w.prefix())
}

/// The NAT's LAN address, the client's gateway.
fn gateway(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n as u8, 1)
}

/// The client's address after the "DHCP renewal".
fn renewed_v4(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, n as u8, 20)
}

/// One short ping from `from` to `to`: true when a reply came within
/// [`PING_BOUND`] (up to 4 echoes, 200 ms apart).
fn ping_once(from: &Netns, to: Ipv6Addr) -> bool {
    let to = to.to_string();
    from.exec(
        &[
            "ping", "-6", "-n", "-q", "-c", "1", "-i", "0.2", "-w", "1", &to,
        ],
        PING_BOUND,
    )
    .success()
}

/// Every [`POLL`], a round of pings: the client's current Teredo address
/// from the native host and the native host from the client, at once.
/// Rounds overlap (a failing one lasts [`PING_BOUND`]), so that a failed
/// round does not delay the next. Returns the address of the first round
/// that got both answers and the time from `since` to its end; `None` when
/// no round started before `since + bound` did.
fn answers_both_ways(
    w: &World,
    n: usize,
    since: Instant,
    bound: Duration,
) -> Option<(Ipv6Addr, Duration)> {
    let ns = w.client(n);
    let found: Mutex<Option<(Ipv6Addr, Duration)>> = Mutex::new(None);
    let done = |f: &Mutex<Option<(Ipv6Addr, Duration)>>| {
        f.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    };
    thread::scope(|s| {
        while since.elapsed() < bound && !done(&found) {
            let round = Instant::now();
            if let Some(&a) = teredo_addrs(ns, TEREDO_IFACE).first() {
                let found = &found;
                s.spawn(move || {
                    let (to, from) = thread::scope(|s| {
                        let to = s.spawn(|| ping_once(w.v6h(), a));
                        let from = ping_once(ns, NATIVE_V6);
                        (to.join().unwrap_or(false), from)
                    });
                    if to && from {
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        if f.is_none() {
                            *f = Some((a, since.elapsed()));
                        }
                    }
                });
            }
            thread::sleep(POLL.saturating_sub(round.elapsed()));
        }
    });
    found.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Samples of one interface: when, and its Teredo addresses then.
type Samples = Vec<(Instant, Vec<Ipv6Addr>)>;

/// Samples the Teredo addresses of every namespace's [`TEREDO_IFACE`]
/// every [`SAMPLE_EVERY`] while `during` runs (at most 10 minutes).
fn watching<T>(nss: &[Netns], during: impl FnOnce() -> T) -> (T, Vec<Samples>) {
    let stop = AtomicBool::new(false);
    /// Stops the samplers however `during` ends.
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let start = Instant::now();
    thread::scope(|s| {
        let samplers: Vec<_> = nss
            .iter()
            .map(|ns| {
                let stop = &stop;
                s.spawn(move || {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed)
                        && start.elapsed() < Duration::from_secs(600)
                    {
                        let t = Instant::now();
                        samples.push((t, teredo_addrs(ns, TEREDO_IFACE)));
                        thread::sleep(SAMPLE_EVERY.saturating_sub(t.elapsed()));
                    }
                    samples
                })
            })
            .collect();
        let guard = Stop(&stop);
        let result = during();
        drop(guard);
        let samples = samplers
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (result, samples)
    })
}

/// Signed seconds from `t0` to `t`.
fn since(t0: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(t0) {
        Some(d) => d.as_secs_f64(),
        None => -t0.duration_since(t).as_secs_f64(),
    }
}

/// Runs `ip ARGS` in `ns`, panicking with the error.
fn ip(ns: &Netns, args: &str) {
    if let Err(e) = ns.ip(args) {
        panic!("{e}");
    }
}

/// The NAT's WAN interface (`n{n}-i`, see world.rs).
fn wan_if(w: &World, n: usize) -> String {
    format!("{}n{n}-i", w.prefix())
}

/// A table for NAT `n` that drops unsolicited UDP from its WAN side before
/// connection tracking records it, as a home router's firewall does (the
/// masquerade NAT never forwards such a packet anyway): then an unsolicited
/// packet to the NAT's external port, arriving when the NAT has forgotten
/// the port's flows, leaves no entry of its own that would make the
/// client's next flow from that port take another port.
fn unsolicited_rules(w: &World, n: usize) -> String {
    format!(
        "add table inet lab_unsolicited\n\
         add chain inet lab_unsolicited pre {{ type filter hook prerouting priority -150 ; policy accept ; }}\n\
         add rule inet lab_unsolicited pre iifname {} meta l4proto udp ct state new drop\n",
        wan_if(w, n)
    )
}

/// NAT `n` forgets the flows from `source` and any it tracks to its own
/// WAN address (none is fine).
fn forget_flows(w: &World, n: usize, source: Ipv4Addr) {
    for (flag, addr) in [("-s", source), ("-d", w.nat_wan_v4(n))] {
        let _ = w.nat(n).exec(
            &["conntrack", "-D", flag, &addr.to_string()],
            teredo_lab::cmd::CMD_TIMEOUT,
        );
    }
}

/// The client of site `n` gets another address on its LAN, as a DHCP
/// renewal giving a new lease would: in one `ip -batch` (the host sees it
/// all at once), the new address added and made the source of the default
/// route, the old one removed (the kernel promotes the new one) and the
/// route set again. With `keep_mapping`, the NAT forgets the old address's
/// flows just before (and drops unsolicited packets without tracking them:
/// [`unsolicited_rules`]), so that masquerade gives the new address's
/// flows the port the old one had (the client keeps its UDP port): the
/// same mapping. Without, the NAT still tracks the old flows, and the new
/// address's flow to the server takes another external port: a new
/// mapping.
fn renew_lan_address(w: &World, n: usize, keep_mapping: bool) {
    let ns = w.client(n);
    let (lan, old, new, gw) = (lan_if(w, n), w.client_v4(n), renewed_v4(n), gateway(n));
    let batch = w.write_file(
        &format!("renew{n}.batch"),
        &format!(
            "addr add {new}/24 dev {lan}\n\
             route replace default via {gw} dev {lan} src {new}\n\
             addr del {old}/24 dev {lan}\n\
             route replace default via {gw} dev {lan} src {new}\n"
        ),
    );
    if keep_mapping {
        forget_flows(w, n, old);
    }
    ip(ns, &format!("-batch {}", batch.display()));
    if keep_mapping {
        // A packet from the old address that left between the two.
        let _ = w.nat(n).exec(
            &["conntrack", "-D", "-s", &old.to_string()],
            teredo_lab::cmd::CMD_TIMEOUT,
        );
    }
}

/// An nftables table of the server host that drops UDP to port 3544.
const OUTAGE_RULES: &str = "add table inet lab_outage\n\
     add chain inet lab_outage input { type filter hook input priority -300 ; policy accept ; }\n\
     add rule inet lab_outage input udp dport 3544 drop\n";

/// Makes the change of `sc` at every site; returns, per site, when the
/// change was made (for a path that was cut, when it was back).
fn make_change(w: &World, sc: Scenario, sites: &[(usize, Impl)]) -> Vec<Instant> {
    let test = w.test_name();
    match sc {
        Scenario::NoRouteAtStart => {
            thread::sleep(NO_ROUTE_FOR);
            sites
                .iter()
                .map(|&(n, _)| {
                    ip(
                        w.client(n),
                        &format!("route add default via {}", gateway(n)),
                    );
                    Instant::now()
                })
                .collect()
        }
        Scenario::NewLanAddressNewMapping | Scenario::NewLanAddressSameMapping => sites
            .iter()
            .map(|&(n, _)| {
                let t = Instant::now();
                renew_lan_address(w, n, sc == Scenario::NewLanAddressSameMapping);
                report(
                    test,
                    &format!(
                        "site {n}: {} -> {} in {:?}",
                        w.client_v4(n),
                        renewed_v4(n),
                        t.elapsed()
                    ),
                );
                Instant::now()
            })
            .collect(),
        Scenario::LinkDownUp => {
            for &(n, _) in sites {
                ip(w.client(n), &format!("link set dev {} down", lan_if(w, n)));
            }
            thread::sleep(LINK_DOWN_FOR);
            sites
                .iter()
                .map(|&(n, _)| {
                    let ns = w.client(n);
                    ip(ns, &format!("link set dev {} up", lan_if(w, n)));
                    let had = ns.ip("route show default").unwrap_or_default();
                    if had.trim().is_empty() {
                        ip(ns, &format!("route add default via {}", gateway(n)));
                    }
                    report(
                        test,
                        &format!(
                            "site {n}: link up; the kernel had {} the default route",
                            if had.trim().is_empty() {
                                "dropped (added again)"
                            } else {
                                "kept"
                            }
                        ),
                    );
                    Instant::now()
                })
                .collect()
        }
        Scenario::NatReboot => sites
            .iter()
            .map(|&(n, _)| {
                if let Err(e) = w.nat_reboot(n, NatReboot::NewPort) {
                    panic!("NAT {n} does not reboot: {e}");
                }
                Instant::now()
            })
            .collect(),
        Scenario::ServerOutage => {
            if let Err(e) = w.srv().nft(OUTAGE_RULES) {
                panic!("cannot cut the server off: {e}");
            }
            thread::sleep(OUTAGE);
            if let Err(e) = w.srv().nft("delete table inet lab_outage") {
                panic!("cannot let the server answer again: {e}");
            }
            let t = Instant::now();
            sites.iter().map(|_| t).collect()
        }
    }
}

/// Runs scenario `sc` for every implementation, reports, adds the rows to
/// the table, and asserts on our client.
fn run(test: &str, sc: Scenario) {
    let start = Instant::now();
    let imps = implementations(test);
    let w = World::build(test, &vec![NatKind::PortRestricted; imps.len()]);
    let _srv = w.start_server(Impl::Ours);
    let _relay = w.start_relay(Impl::Ours, "cone");
    let sites: Vec<(usize, Impl)> = imps.iter().enumerate().map(|(i, &m)| (i + 1, m)).collect();
    for &(n, _) in &sites {
        let ns = w.client(n);
        match sc {
            Scenario::NoRouteAtStart => ip(ns, "route del default"),
            // The new address must outlive the old one's removal.
            Scenario::NewLanAddressNewMapping | Scenario::NewLanAddressSameMapping => {
                ns.sysctl("net.ipv4.conf.all.promote_secondaries", "1")
                    .unwrap_or_else(|e| panic!("{e}"));
                if sc == Scenario::NewLanAddressSameMapping {
                    w.nat(n)
                        .nft(&unsolicited_rules(&w, n))
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            _ => {}
        }
    }
    let daemons: Vec<Daemon> = sites
        .iter()
        .map(|&(n, imp)| w.start_client(n, imp, ""))
        .collect();

    // Before the change: each client qualified, answering both ways.
    let mut old = vec![None; sites.len()];
    if sc != Scenario::NoRouteAtStart {
        for (i, &(n, imp)) in sites.iter().enumerate() {
            let (a, _) = steps::qualify(&w, &daemons[i], n, &format!("{} client", who(imp)));
            let t = Instant::now();
            let both = answers_both_ways(&w, n, t, Duration::from_secs(15));
            let Some((a, _)) = both else {
                panic!(
                    "{} client, before the change: {a} does not answer both ways:\n{}",
                    who(imp),
                    w.log_of(&daemons[i])
                );
            };
            old[i] = Some(a);
        }
    }

    let nss: Vec<Netns> = sites.iter().map(|&(n, _)| w.client(n).clone()).collect();
    let ((began, t0s, found), samples) = watching(&nss, || {
        // The samplers see the state before the change first.
        thread::sleep(Duration::from_millis(300));
        let began = Instant::now();
        let t0s = make_change(&w, sc, &sites);
        let found: Vec<Option<(Ipv6Addr, Duration)>> = thread::scope(|s| {
            let hs: Vec<_> = sites
                .iter()
                .zip(&t0s)
                .map(|(&(n, _), &t0)| {
                    let w = &w;
                    s.spawn(move || answers_both_ways(w, n, t0, GIVE_UP))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(None)).collect()
        });
        // The samplers see the state after the recovery too.
        thread::sleep(Duration::from_secs(1));
        (began, t0s, found)
    });

    let mut rows = Vec::new();
    let mut same_mapping = None;
    for (i, &(n, imp)) in sites.iter().enumerate() {
        let t0 = t0s[i];
        let new = found[i].map(|(a, _)| a);
        let recovered = found[i].map(|(_, d)| d);
        let s = &samples[i];
        let most = s.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
        let twice: Vec<String> = s
            .iter()
            .filter(|(_, a)| a.len() > 1)
            .take(3)
            .map(|(t, a)| format!("{:+.1} s {a:?}", since(t0, *t)))
            .collect();
        let lost = old[i].and_then(|o| {
            s.iter()
                .find(|(t, a)| *t >= began && !a.contains(&o))
                .map(|(t, _)| since(t0, *t))
        });
        // Since when the answering address has been there without a break.
        let seen = new.and_then(|a| {
            let from = s
                .iter()
                .rposition(|(_, x)| !x.contains(&a))
                .map_or(0, |i| i + 1);
            s.get(from).map(|(t, _)| since(t0, *t))
        });
        let left = s.last().map(|(_, a)| a.clone()).unwrap_or_default();
        let port = |a: Option<Ipv6Addr>| {
            a.as_ref()
                .and_then(teredo_parts)
                .map_or("-".to_string(), |p| {
                    format!("{}:{}", p.mapped_v4, p.mapped_port)
                })
        };
        let running = w.is_running(&daemons[i]);
        report(
            test,
            &format!(
                "{} client (site {n}): {} -> answers both ways after {} s; {} \
                 (mapped {} -> {}); old address gone at {}, the answering one there since {} \
                 (s from the change); at the end {left:?}; at most {most} Teredo address(es) at \
                 once in {} samples{}{}",
                who(imp),
                sc.label(),
                secs(recovered),
                addresses(old[i], new),
                port(old[i]),
                port(new),
                lost.map_or("-".to_string(), |x| format!("{x:+.1}")),
                seen.map_or("-".to_string(), |x| format!("{x:+.1}")),
                s.len(),
                if twice.is_empty() {
                    String::new()
                } else {
                    format!(" (two at once: {})", twice.join(", "))
                },
                if running { "" } else { "; the daemon EXITED" }
            ),
        );
        if imp == Impl::Ours {
            // What our client saw of the change (miredo/src/daemon.rs).
            let log = w.log_of(&daemons[i]);
            let seen: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("the path to the Teredo server") || l.contains("slept"))
                .collect();
            report(
                test,
                &format!(
                    "ours client's log on the path: {}",
                    if seen.is_empty() {
                        "nothing".to_string()
                    } else {
                        seen[seen.len().saturating_sub(3)..].join(" | ")
                    }
                ),
            );
        }
        if sc == Scenario::NewLanAddressSameMapping {
            let kept = old[i].is_some() && port(old[i]) == port(new);
            if imp == Impl::Ours {
                same_mapping = Some(kept);
            }
            report(
                test,
                &format!(
                    "{} client: the NAT {} the mapping; NAT {n} flows:\n{}",
                    who(imp),
                    if kept { "kept" } else { "did NOT keep" },
                    w.nat_flows(n).trim_end()
                ),
            );
        }
        rows.push(Row {
            scenario: sc,
            imp,
            old: old[i],
            new,
            recovered,
            most,
        });
    }
    let all = {
        let mut g = ROWS.lock().unwrap_or_else(|e| e.into_inner());
        g.extend(rows.iter().cloned());
        g.clone()
    };
    report(test, &table(&all));

    // Our client only; the C client is reported above.
    let i = sites
        .iter()
        .position(|&(_, m)| m == Impl::Ours)
        .unwrap_or(0);
    let ours = &rows[i];
    let log = w.log_of(&daemons[i]);
    assert!(w.is_running(&daemons[i]), "our client exited:\n{log}");
    let Some(took) = ours.recovered else {
        panic!(
            "{}: our client does not answer both ways {} s after the change:\n{log}",
            sc.label(),
            GIVE_UP.as_secs()
        );
    };
    assert_ne!(
        same_mapping,
        Some(false),
        "{}: the NAT gave our client a new mapping (see its flows above): the scenario was \
         not built (a packet raced the NAT's flush, or the client changed its UDP port)",
        sc.label()
    );
    assert!(
        ours.most <= 1,
        "{}: our client carried {} Teredo addresses at once",
        sc.label(),
        ours.most
    );
    if let (Some(o), Some(n)) = (ours.old, ours.new) {
        if o != n {
            assert!(
                !teredo_addrs(w.client(sites[i].0), TEREDO_IFACE).contains(&o),
                "{}: our client's old address {o} is still there",
                sc.label()
            );
        }
    }
    assert!(
        took <= sc.our_bound(),
        "{}: our client answers both ways {took:.1?} after the change, more than {:?}:\n{log}",
        sc.label(),
        sc.our_bound()
    );
    drop(w);
    report(test, &format!("done in {:?}", start.elapsed()));
}

/// Scenario 1: the client's namespace has no default route when the
/// client starts; it is added 5 s later.
fn no_default_route_for_the_first_seconds() {
    run(
        "no_default_route_for_the_first_seconds",
        Scenario::NoRouteAtStart,
    );
}

/// Scenario 2a: the client's LAN address changes and the NAT maps its
/// flows anew.
fn lan_address_changes_with_a_new_nat_mapping() {
    run(
        "lan_address_changes_with_a_new_nat_mapping",
        Scenario::NewLanAddressNewMapping,
    );
}

/// Scenario 2b: the client's LAN address changes and the NAT keeps its
/// mapping.
fn lan_address_changes_keeping_the_nat_mapping() {
    run(
        "lan_address_changes_keeping_the_nat_mapping",
        Scenario::NewLanAddressSameMapping,
    );
}

/// Scenario 3: the client's LAN link goes down for 3 s and comes back.
fn lan_link_down_and_up() {
    run("lan_link_down_and_up", Scenario::LinkDownUp);
}

/// Scenario 4: the NAT reboots: its flows are flushed and its mappings
/// change.
fn nat_reboot_with_new_mappings() {
    run("nat_reboot_with_new_mappings", Scenario::NatReboot);
}

/// Scenario 5: the server is unreachable for a minute, then back.
fn server_unreachable_for_a_minute() {
    run("server_unreachable_for_a_minute", Scenario::ServerOutage);
}

teredo_lab::lab_tests! {
    needs(root, ours): [
        no_default_route_for_the_first_seconds,
        lan_address_changes_with_a_new_nat_mapping,
        lan_address_changes_keeping_the_nat_mapping,
        lan_link_down_and_up,
        nat_reboot_with_new_mappings,
        server_unreachable_for_a_minute,
    ],
}
