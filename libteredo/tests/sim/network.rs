//! Simulator scenarios of a client whose network changes under it (issue
//! 14): the host's own path changes (`Client::path_changed`, which the
//! daemon calls on rtnetlink events and on waking from sleep), a server
//! that stops answering with others behind the same name (fallbacks), no
//! server yet (a name that does not resolve), and the backoff cap. Every
//! test name contains `sim`.

use crate::{MS, NAT_WAN, SECS, SERVER};
use libteredo::addr::TeredoAddr;
use libteredo::proto::Event;
use libteredo::proto::{
    ClientConfig, ClientState, MAX_BACKOFF, REFRESH_INTERVAL, RS_ATTEMPTS, RS_TIMEOUT,
};
use libteredo::sim::*;
use std::net::Ipv4Addr;
use std::time::Duration;

const SERVER_B: &str = "198.18.5.1";

fn world(seed: u64, cfg: ClientConfig) -> (World, NodeId, NatId) {
    let mut w = World::new(seed);
    w.add_server(ip(SERVER));
    w.add_server(ip(SERVER_B));
    let (nat, lan) = w.add_nat(NatKind::PortRestricted, ip(NAT_WAN), false);
    let c = w.add_client_with(ip("192.168.1.2"), 40000, Some(lan), cfg);
    (w, c, nat)
}

fn qualified_events(w: &World, c: NodeId) -> usize {
    w.events(c)
        .iter()
        .filter(|e| matches!(e, Event::Qualified { .. }))
        .count()
}

#[test]
fn sim_network_a_path_change_requalifies_at_once_not_at_the_refresh() {
    let (mut w, c, nat) = world(1401, ClientConfig::new(ip(SERVER)));
    let old = w.qualify(c, SECS(10));
    // Let the NAT tests finish and the refresh timer settle.
    w.run_for(SECS(25));
    let before = qualified_events(&w, c);
    // The host's network changed and its NAT now maps it elsewhere (a new
    // WAN address, as after a move to another network).
    w.nats[nat].reboot(Some(ip("198.18.3.99")));
    let now = w.now;
    // The daemon tells the engine its source address, then the change.
    let local = std::net::SocketAddrV4::new(ip("192.168.1.2"), 40000);
    w.client_mut(c).set_local(Some(local));
    assert_eq!(w.client(c).config().local, Some(local));
    w.client_mut(c).path_changed(now);
    let got = w.run_until_cond(SECS(2), |w| w.teredo_addr(c).is_some_and(|a| a != old));
    assert!(got, "no new address within 2 s of the change");
    let new = w.teredo_addr(c).unwrap();
    assert_eq!(
        TeredoAddr::parse(&new).unwrap().mapped_addr,
        ip("198.18.3.99")
    );
    // One event, replacing the old address: never two at once.
    let ev: Vec<_> = w.events(c).into_iter().skip(before).collect();
    let qualified: Vec<_> = ev
        .iter()
        .filter(|e| matches!(e, Event::Qualified { .. }))
        .collect();
    assert!(
        matches!(qualified[..], [Event::Qualified { addr, old: Some(o), .. }] if *addr == new && *o == old),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| matches!(e, Event::ServerLost { .. })));
}

#[test]
fn sim_network_without_the_input_the_change_waits_for_the_refresh() {
    // The control: the same change, not reported, is found only by the
    // next maintenance solicitation.
    let (mut w, c, nat) = world(1402, ClientConfig::new(ip(SERVER)));
    let old = w.qualify(c, SECS(10));
    w.run_for(SECS(25));
    w.nats[nat].reboot(Some(ip("198.18.3.99")));
    let got = w.run_until_cond(SECS(2), |w| w.teredo_addr(c).is_some_and(|a| a != old));
    assert!(!got);
    let got = w.run_until_cond(REFRESH_INTERVAL + SECS(5), |w| {
        w.teredo_addr(c).is_some_and(|a| a != old)
    });
    assert!(got);
}

#[test]
fn sim_network_a_path_change_that_changes_nothing_keeps_the_address() {
    let (mut w, c, _) = world(1403, ClientConfig::new(ip(SERVER)));
    let addr = w.qualify(c, SECS(10));
    w.run_for(SECS(25));
    let before = w.events(c).len();
    let now = w.now;
    w.client_mut(c).path_changed(now);
    w.run_for(SECS(3));
    assert_eq!(w.teredo_addr(c), Some(addr));
    assert_eq!(w.client(c).state(), ClientState::Qualified);
    // Nothing the daemon must act on (the NAT may be observed again).
    let ev: Vec<_> = w.events(c).into_iter().skip(before).collect();
    assert!(
        ev.iter().all(|e| matches!(e, Event::NatObserved(_))),
        "{ev:?}"
    );
}

#[test]
fn sim_network_offline_a_path_change_retries_now_not_after_the_backoff() {
    let (mut w, c, _) = world(1404, ClientConfig::new(ip(SERVER)));
    // The host has no way out at first: the server is unreachable.
    w.nodes[0].up = false;
    w.run_for(RS_TIMEOUT * u32::from(RS_ATTEMPTS) + SECS(1));
    assert_eq!(w.client(c).state(), ClientState::Offline);
    // The path comes up: the host tells the engine.
    w.nodes[0].up = true;
    let now = w.now;
    w.client_mut(c).path_changed(now);
    assert!(w.run_until_cond(SECS(1), |w| w.teredo_addr(c).is_some()));
}

#[test]
fn sim_network_moves_to_the_next_server_of_the_name_and_says_so() {
    let mut cfg = ClientConfig::new(ip(SERVER));
    cfg.fallbacks = vec![(ip(SERVER_B), ip("198.18.5.2"))];
    let (mut w, c, _) = world(1405, cfg);
    let addr = w.qualify(c, SECS(10));
    assert_eq!(TeredoAddr::parse(&addr).unwrap().server, ip(SERVER));
    w.run_for(SECS(25));
    // The first server stops.
    w.nodes[0].up = false;
    let stopped = w.elapsed();
    let moved = w.run_until_cond(REFRESH_INTERVAL + SECS(20), |w| {
        w.teredo_addr(c)
            .is_some_and(|a| TeredoAddr::parse(&a).unwrap().server == ip(SERVER_B))
    });
    assert!(moved, "{:?}", w.events(c));
    // Within a refresh and the RFC's retries.
    let took = w.elapsed() - stopped;
    assert!(
        took <= REFRESH_INTERVAL + RS_TIMEOUT * u32::from(RS_ATTEMPTS) + SECS(1),
        "{took:?}"
    );
    let ev = w.events(c);
    let changed: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::ServerChanged { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(changed, vec![(ip(SERVER), ip(SERVER_B))]);
    let servers: Vec<_> = w.client(c).servers().collect();
    // The list keeps its order (of preference); the one in use is B.
    assert_eq!(
        servers,
        vec![
            (ip(SERVER), ip("198.18.1.2")),
            (ip(SERVER_B), ip("198.18.5.2"))
        ]
    );
    assert_eq!(w.client(c).config().server, ip(SERVER_B));
    let cands = w.client(c).candidates();
    assert_eq!(cands[0].answering, Some(false));
    assert_eq!(cands[1].answering, Some(true));
    assert!(cands[1].rtt.is_some() && cands[1].last_heard.is_some());
}

#[test]
fn sim_network_all_servers_silent_backs_off_at_most_one_refresh_interval() {
    let mut cfg = ClientConfig::new(ip(SERVER));
    cfg.fallbacks = vec![(ip(SERVER_B), ip("198.18.5.2"))];
    let (mut w, c, _) = world(1406, cfg);
    w.nodes[0].up = false;
    w.nodes[1].up = false;
    // Two minutes without any server: the gaps between rounds never exceed
    // the backoff cap, and the two servers take turns.
    let mut offline_since = None;
    let mut longest = Duration::ZERO;
    for _ in 0..1200 {
        w.run_for(MS(100));
        match (w.client(c).state(), offline_since) {
            (ClientState::Offline, None) => offline_since = Some(w.elapsed()),
            (ClientState::Offline, Some(_)) => {}
            (_, Some(t)) => {
                longest = longest.max(w.elapsed() - t);
                offline_since = None;
            }
            (_, None) => {}
        }
    }
    assert!(longest <= MAX_BACKOFF + MS(200), "{longest:?}");
    assert!(longest > Duration::ZERO);
    // Both asked, neither answering; nothing to move to.
    assert!(w
        .client(c)
        .candidates()
        .iter()
        .all(|c| c.answering == Some(false)));
    assert!(!w
        .events(c)
        .iter()
        .any(|e| matches!(e, Event::ServerChanged { .. })));
    // A server comes back: the client qualifies within one refresh
    // interval (plus a round of solicitations).
    w.nodes[1].up = true;
    let back = w.run_until_cond(MAX_BACKOFF + RS_TIMEOUT * u32::from(RS_ATTEMPTS) * 2, |w| {
        w.teredo_addr(c).is_some()
    });
    assert!(back);
    // B, the second of the list, answered: said so.
    assert!(w.events(c).contains(&Event::ServerChanged {
        from: ip(SERVER),
        to: ip(SERVER_B)
    }));
}

#[test]
fn sim_network_no_server_yet_waits_quietly_then_qualifies() {
    let (mut w, c, _) = world(1407, ClientConfig::new(Ipv4Addr::UNSPECIFIED));
    assert!(!w.client(c).has_server());
    w.run_for(SECS(30));
    assert_eq!(w.client(c).poll_timeout(), None);
    assert_eq!(w.client(c).stats().udp_tx_packets, 0);
    assert!(w.teredo_addr(c).is_none());
    // A path change without a server does nothing either.
    let now = w.now;
    w.client_mut(c).path_changed(now);
    assert_eq!(w.client(c).poll_timeout(), None);
    // The name resolves.
    let now = w.now;
    let mut out = Vec::new();
    w.client_mut(c)
        .set_server_list(now, ip(SERVER), ip("198.18.1.2"), Vec::new(), &mut out);
    assert!(out.is_empty());
    let started = w.elapsed();
    w.qualify(c, SECS(2));
    assert!(w.elapsed() - started < SECS(1));
}
