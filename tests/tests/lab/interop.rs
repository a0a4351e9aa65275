//! The interop matrix: every combination of {ours, C} server x relay x
//! client pings both ways between the native host and the client, behind a
//! port-restricted NAT and behind a symmetric NAT (16 cases); and our
//! client reaches a C client directly across two NATs, both ways.
//!
//! One world per NAT kind runs its eight combinations in turn (the daemons
//! are stopped and the NAT's flows forgotten between them); the two worlds
//! run side by side. A failing case where only C components take part is
//! the C tool's failure; a failing case with one of ours fails the test
//! unless the failure follows a C component (see [`blame`]).

use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use teredo_lab::steps::{self, mostly};
use teredo_lab::{ping6_stats, report, Impl, NatKind, NatReboot, World, NATIVE_V6};

/// Behind a NAT that lets it, either client qualifies in well under a
/// second; 12 s covers the three 4 s solicitations of RFC 4380 5.2.1.
const MATRIX_QUALIFY: Duration = Duration::from_secs(13);
const MATRIX_PING: Duration = Duration::from_secs(5);
const ECHOES: u32 = 4;
const STOP: Duration = Duration::from_secs(3);

/// One cell of the matrix.
#[derive(Clone, Copy)]
struct Combo {
    server: Impl,
    relay: Impl,
    client: Impl,
}

impl Combo {
    fn all() -> Vec<Combo> {
        let both = [Impl::C, Impl::Ours];
        let mut v = Vec::new();
        for server in both {
            for relay in both {
                for client in both {
                    v.push(Combo {
                        server,
                        relay,
                        client,
                    });
                }
            }
        }
        v
    }

    fn tag(&self) -> String {
        format!(
            "{}{}{}",
            self.server.tag(),
            self.relay.tag(),
            self.client.tag()
        )
    }

    fn has_ours(&self) -> bool {
        [self.server, self.relay, self.client].contains(&Impl::Ours)
    }

    fn roles(&self) -> [(Role, Impl); 3] {
        [
            (Role::Server, self.server),
            (Role::Relay, self.relay),
            (Role::Client, self.client),
        ]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Server,
    Relay,
    Client,
}

fn name(i: Impl) -> &'static str {
    match i {
        Impl::C => "C",
        Impl::Ours => "ours",
    }
}

/// What one case did.
struct Case {
    nat: &'static str,
    combo: Combo,
    qualified: Option<(Ipv6Addr, Duration)>,
    inbound: (u32, u32),
    outbound: (u32, u32),
    took: Duration,
    /// The daemons' logs, kept for failing cases.
    logs: String,
}

impl Case {
    fn passed(&self) -> bool {
        self.qualified.is_some() && mostly(self.inbound) && mostly(self.outbound)
    }
}

/// Runs the eight combinations in one world behind a NAT of `kind`.
fn run_nat(kind: NatKind) -> Vec<Case> {
    let test = format!("interop_{}", kind.name().replace('-', "_"));
    let w = World::build(&test, &[kind]);
    let mut cases = Vec::new();
    for combo in Combo::all() {
        let t = Instant::now();
        let tag = combo.tag();
        let srv = w.start_server_labeled(combo.server, &format!("srv-{tag}"));
        let relay = w.start_relay_labeled(combo.relay, "cone", &format!("relay-{tag}"));
        let cli = w.start_client_labeled(1, combo.client, "", &format!("cli-{tag}"));
        let qualified = w.wait_qualified(&cli, 1, MATRIX_QUALIFY);
        let (inbound, outbound) = match qualified {
            Some((addr, _)) => (
                ping6_stats(w.v6h(), addr, ECHOES, MATRIX_PING),
                ping6_stats(w.client(1), NATIVE_V6, ECHOES, MATRIX_PING),
            ),
            None => ((0, 0), (0, 0)),
        };
        let mut case = Case {
            nat: kind.name(),
            combo,
            qualified,
            inbound,
            outbound,
            took: Duration::ZERO,
            logs: String::new(),
        };
        if !case.passed() {
            for (what, d) in [("server", &srv), ("relay", &relay), ("client", &cli)] {
                let _ = writeln!(
                    case.logs,
                    "---- {what} {} ----\n{}",
                    d.label,
                    w.log_of(d).trim_end()
                );
            }
            let _ = writeln!(
                case.logs,
                "---- NAT flows ----\n{}",
                w.nat_flows(1).trim_end()
            );
        }
        for d in [&cli, &relay, &srv] {
            w.stop(d, STOP);
        }
        // The next combination starts from a NAT with no flows.
        if let Err(e) = w.nat_reboot(1, NatReboot::KeepMapping) {
            panic!("cannot reset the NAT: {e}");
        }
        case.took = t.elapsed();
        report(
            &test,
            &format!(
                "server {} relay {} client {}: qualified {:?}, native -> client {}/{}, \
                 client -> native {}/{} ({:?})",
                name(combo.server),
                name(combo.relay),
                name(combo.client),
                case.qualified.map(|q| q.1),
                case.inbound.1,
                case.inbound.0,
                case.outbound.1,
                case.outbound.0,
                case.took
            ),
        );
        cases.push(case);
    }
    cases
}

/// The roles where the C component is the cause of this NAT kind's
/// failures: the all-ours case passes, and every case using the C
/// component in that role fails while every case using ours there passes.
fn blame(cases: &[&Case]) -> Vec<Role> {
    let all_ours_passes = cases
        .iter()
        .any(|c| c.combo.roles().iter().all(|(_, i)| *i == Impl::Ours) && c.passed());
    if !all_ours_passes {
        return Vec::new();
    }
    [Role::Server, Role::Relay, Role::Client]
        .into_iter()
        .filter(|role| {
            let at = |c: &Case| {
                c.combo
                    .roles()
                    .iter()
                    .find(|(r, _)| r == role)
                    .map(|(_, i)| *i)
            };
            cases.iter().all(|c| (at(c) == Some(Impl::C)) != c.passed())
        })
        .collect()
}

fn interop_matrix() {
    let test = "interop_matrix";
    let start = Instant::now();
    let kinds = [NatKind::PortRestricted, NatKind::Symmetric];
    let results: Vec<Vec<Case>> = std::thread::scope(|s| {
        let handles: Vec<_> = kinds.iter().map(|&k| s.spawn(move || run_nat(k))).collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    });
    let cases: Vec<&Case> = results.iter().flatten().collect();

    let mut table = String::from(
        "\n| NAT | server | relay | client | qualified | native -> client | client -> native | verdict |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    for kind in kinds {
        let mine: Vec<&Case> = cases
            .iter()
            .copied()
            .filter(|c| c.nat == kind.name())
            .collect();
        let culprits = blame(&mine);
        for c in &mine {
            let verdict = if c.passed() {
                "pass".to_string()
            } else if !c.combo.has_ours() {
                "FAIL: the C tool's failure (C only)".to_string()
            } else {
                let blamed: Vec<String> = c
                    .combo
                    .roles()
                    .iter()
                    .filter(|(r, i)| *i == Impl::C && culprits.contains(r))
                    .map(|(r, _)| format!("C {r:?}").to_lowercase())
                    .collect();
                if blamed.is_empty() {
                    failures.push(*c);
                    "FAIL: ours".to_string()
                } else {
                    format!("FAIL: the C tool's failure ({})", blamed.join(", "))
                }
            };
            let q = match c.qualified {
                Some((_, t)) => format!("{:.2} s", t.as_secs_f64()),
                None => "no".to_string(),
            };
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} | {q} | {}/{} | {}/{} | {verdict} |",
                c.nat,
                name(c.combo.server),
                name(c.combo.relay),
                name(c.combo.client),
                c.inbound.1,
                c.inbound.0,
                c.outbound.1,
                c.outbound.0
            );
        }
        if !culprits.is_empty() {
            let _ = writeln!(
                table,
                "\nbehind the {} NAT, the C component fails in role(s) {culprits:?}: every case with it \
                 there fails, every case with ours there passes",
                kind.name()
            );
        }
    }
    report(
        test,
        &format!("interop matrix in {:?}:{table}", start.elapsed()),
    );
    for c in &failures {
        eprintln!(
            "==== failing case: NAT {}, server {}, relay {}, client {} ====\n{}",
            c.nat,
            name(c.combo.server),
            name(c.combo.relay),
            name(c.combo.client),
            c.logs
        );
    }
    assert!(
        failures.is_empty(),
        "{} case(s) with our daemons failed (logs above)",
        failures.len()
    );
}

/// Two clients (sites `a`, `b`) and the C-only pair over the same NATs,
/// if any.
type Topology = (usize, usize, Option<(usize, usize)>);

/// Our client and a C client reach each other directly across two NATs,
/// both ways. Our client must do at least what C clients do: a pair with
/// ours is asserted when the same NATs with two C clients work (the C
/// pairs run in the same world at the same time), and reported otherwise.
fn our_client_and_c_client_across_two_nats() {
    let test = "our_client_and_c_client_across_two_nats";
    let start = Instant::now();
    let cone = NatKind::FullCone {
        client_port: 3545,
        mapped_port: 40000,
    };
    let pr = NatKind::PortRestricted;
    let w = World::build(test, &[cone, cone, pr, pr, pr]);
    w.start_server(Impl::Ours);
    w.start_relay(Impl::Ours, "cone");
    let clients = [
        (1, Impl::Ours, "full cone"),
        (2, Impl::C, "full cone"),
        (3, Impl::Ours, "masquerade"),
        (4, Impl::C, "masquerade"),
        (5, Impl::C, "masquerade"),
    ];
    let mut addrs = vec![Ipv6Addr::UNSPECIFIED];
    for (n, imp, nat) in clients {
        let d = w.start_client(n, imp, "");
        let who = format!("{} client behind {nat} NAT {n}", name(imp));
        addrs.push(steps::qualify(&w, &d, n, &who).0);
    }
    let who = |n: usize| {
        let (_, imp, nat) = clients[n - 1];
        format!("{} client {n} ({nat})", name(imp))
    };
    let topologies: [Topology; 6] = [
        (1, 2, None),
        (1, 4, Some((2, 4))),
        (3, 2, Some((2, 4))),
        (3, 4, Some((4, 5))),
        (2, 4, None),
        (4, 5, None),
    ];
    let mut pings = Vec::new();
    for (a, b, _) in topologies {
        pings.push((a, b, addrs[b]));
        pings.push((b, a, addrs[a]));
    }
    let results = steps::ping_pairs(&w, &pings);
    let works = |a: usize, b: usize| {
        let i = topologies
            .iter()
            .position(|t| (t.0, t.1) == (a, b))
            .unwrap_or(0);
        mostly(results[2 * i].1) && mostly(results[2 * i + 1].1)
    };
    let mut rows = String::new();
    let mut bad = Vec::new();
    for (i, (a, b, baseline)) in topologies.iter().enumerate() {
        let (ab, ba) = (results[2 * i].1, results[2 * i + 1].1);
        let ok = mostly(ab) && mostly(ba);
        let ours = clients[a - 1].1 == Impl::Ours || clients[b - 1].1 == Impl::Ours;
        let asserted = ours
            && match baseline {
                Some((x, y)) => works(*x, *y),
                None => true,
            };
        let verdict = match (ok, ours, asserted) {
            (true, _, _) => "pass".to_string(),
            (false, false, _) => "fails (C clients only)".to_string(),
            (false, true, true) => {
                bad.push(format!("{} <-> {}: {ab:?} {ba:?}", who(*a), who(*b)));
                "FAIL: ours (C clients pass over the same NATs)".to_string()
            }
            (false, true, false) => {
                "fails, as C clients do over the same NATs (reported only)".to_string()
            }
        };
        let _ = writeln!(
            rows,
            "| {} | {} | {}/{} | {}/{} | {verdict} |",
            who(*a),
            who(*b),
            ab.1,
            ab.0,
            ba.1,
            ba.0
        );
    }
    report(
        test,
        &format!(
            "client to client in {:?}:\n| A | B | A -> B | B -> A | verdict |\n|---|---|---|---|---|\n{rows}",
            start.elapsed()
        ),
    );
    assert!(bad.is_empty(), "our client and a C client: {bad:?}");
}

teredo_lab::lab_tests! {
    needs(root, c_miredo, ours): [
        interop_matrix,
        our_client_and_c_client_across_two_nats,
    ],
}
