//! Simulator scenarios of a client with a list of servers (issue 26): it
//! solicits every server at once and qualifies with the most preferred one
//! that answers, without waiting for a dead one to time out; when the
//! server in use stops answering it moves to the next that answers; never
//! with two Teredo addresses at once. Every test name contains `sim`.

use crate::{MS, NAT_WAN, SECS, SERVER};
use libteredo::addr::TeredoAddr;
use libteredo::proto::Event;
use libteredo::proto::{
    ClientConfig, ClientState, HUNT_GRACE, REFRESH_INTERVAL, RS_ATTEMPTS, RS_TIMEOUT,
};
use libteredo::sim::*;
use std::net::Ipv4Addr;

/// A second live server.
const SERVER_B: &str = "198.18.5.1";
/// An address where no server answers.
const DEAD: &str = "198.18.9.9";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn pair(s: &str) -> (Ipv4Addr, Ipv4Addr) {
    let a = ip(s);
    (a, Ipv4Addr::from(u32::from(a) + 1))
}

/// A world with our two servers (nodes 0 and 1) and a client behind a
/// port-restricted NAT whose list is `list`, in order of preference.
fn world(seed: u64, list: &[&str]) -> (World, NodeId) {
    let mut w = World::new(seed);
    w.add_server(ip(SERVER));
    w.add_server(ip(SERVER_B));
    let (_, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let mut cfg = ClientConfig::new(ip(list[0]));
    cfg.fallbacks = list[1..].iter().map(|s| pair(s)).collect();
    let c = w.add_client_with(ip("192.168.1.2"), 40000, Some(lan), cfg);
    (w, c)
}

fn server_of(w: &World, c: NodeId) -> Option<Ipv4Addr> {
    w.teredo_addr(c)
        .and_then(|a| TeredoAddr::parse(&a))
        .map(|t| t.server)
}

/// The events say never two addresses at once: every address after the
/// first comes after the loss of the one before, or replaces it (`old`).
fn never_two_addresses(events: &[Event]) {
    let mut held = None;
    for e in events {
        match e {
            Event::Qualified { addr, old, .. } => {
                assert!(
                    held.is_none() || *old == held,
                    "{addr} while {held:?} was held: {events:?}"
                );
                held = Some(*addr);
            }
            Event::ServerLost { old } => {
                assert_eq!(Some(*old), held, "{events:?}");
                held = None;
            }
            _ => {}
        }
    }
}

#[test]
fn sim_servers_first_dead_qualifies_with_the_next_within_5_s() {
    let (mut w, c) = world(2601, &[DEAD, SERVER, SERVER_B]);
    let start = w.elapsed();
    let ok = w.run_until_cond(SECS(5), |w| w.teredo_addr(c).is_some());
    assert!(ok, "not qualified within 5 s: {:?}", w.events(c));
    let took = w.elapsed() - start;
    // The live server answers at once; the dead one is waited for only
    // the grace after that answer, not the RFC's 12 s.
    assert!(took <= HUNT_GRACE + MS(200), "{took:?}");
    assert_eq!(server_of(&w, c), Some(ip(SERVER)));
    assert!(w.events(c).contains(&Event::ServerChanged {
        from: ip(DEAD),
        to: ip(SERVER)
    }));
    let cands = w.client(c).candidates();
    assert_eq!(cands.len(), 3);
    assert_eq!(cands[0].answering, Some(false));
    assert_eq!(cands[1].answering, Some(true));
    // B answered too (all were solicited at once), and is not used.
    assert_eq!(cands[2].answering, Some(true));
    assert!(cands[1].rtt.is_some() && cands[1].last_heard.is_some());
    assert!(!w.client(c).hunting());
}

#[test]
fn sim_servers_the_most_preferred_that_answers_wins() {
    for (seed, list, want) in [
        (2602, [SERVER_B, SERVER], SERVER_B),
        (2603, [SERVER, SERVER_B], SERVER),
    ] {
        let (mut w, c) = world(seed, &list);
        assert!(w.run_until_cond(SECS(2), |w| w.teredo_addr(c).is_some()));
        assert_eq!(server_of(&w, c), Some(ip(want)), "{list:?}");
        // The first of the list answered: nothing to say.
        assert!(
            !w.events(c)
                .iter()
                .any(|e| matches!(e, Event::ServerChanged { .. })),
            "{list:?}"
        );
    }
}

#[test]
fn sim_servers_the_server_in_use_stops_then_the_next_that_answers() {
    let (mut w, c) = world(2604, &[DEAD, SERVER, SERVER_B]);
    assert!(w.run_until_cond(SECS(5), |w| w.teredo_addr(c).is_some()));
    assert_eq!(server_of(&w, c), Some(ip(SERVER)));
    // Past the NAT tests.
    w.run_for(SECS(25));
    w.nodes[0].up = false;
    let stopped = w.elapsed();
    let moved = w.run_until_cond(REFRESH_INTERVAL + SECS(20), |w| {
        server_of(w, c) == Some(ip(SERVER_B))
    });
    assert!(moved, "{:?}", w.events(c));
    // At most a refresh interval before the maintenance solicitation,
    // the RFC's retries, then the grace of the search.
    let took = w.elapsed() - stopped;
    assert!(
        took <= REFRESH_INTERVAL + RS_TIMEOUT * u32::from(RS_ATTEMPTS) + HUNT_GRACE + SECS(1),
        "{took:?}"
    );
    assert!(w.events(c).contains(&Event::ServerChanged {
        from: ip(SERVER),
        to: ip(SERVER_B)
    }));
    never_two_addresses(&w.events(c));
    let cands = w.client(c).candidates();
    assert_eq!(cands[1].answering, Some(false), "{cands:?}");
    assert_eq!(cands[2].answering, Some(true), "{cands:?}");
    assert_eq!(w.client(c).state(), ClientState::Qualified);
}

#[test]
fn sim_servers_every_server_dead_then_one_back() {
    let (mut w, c) = world(2605, &[DEAD, SERVER, SERVER_B]);
    w.nodes[0].up = false;
    w.nodes[1].up = false;
    // One search: every server solicited 3 times, none answers.
    w.run_for(RS_TIMEOUT * u32::from(RS_ATTEMPTS) + SECS(1));
    assert_eq!(w.client(c).state(), ClientState::Offline);
    assert!(w
        .client(c)
        .candidates()
        .iter()
        .all(|c| c.answering == Some(false)));
    // The last of the list comes back: found at the next search.
    w.nodes[1].up = true;
    let back = w.run_until_cond(REFRESH_INTERVAL + SECS(15), |w| w.teredo_addr(c).is_some());
    assert!(back, "{:?}", w.events(c));
    assert_eq!(server_of(&w, c), Some(ip(SERVER_B)));
    never_two_addresses(&w.events(c));
}
