//! The C reference (Debian's miredo 1.2.x) in the lab: proves the harness,
//! and records how the reference behaves behind each kind of NAT so that
//! our daemons can be measured against it.

use std::time::Duration;

use teredo_lab::{
    leftover_namespaces, ping6_stats, report, require_c_miredo, require_root, teredo_parts, Impl,
    NatKind, World, NATIVE_V6,
};

const QUALIFY_TIMEOUT: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(8);

/// What one C client did behind one NAT.
struct Outcome {
    qualified: Option<(std::net::Ipv6Addr, Duration)>,
    /// (sent, received) from the native host to the client.
    inbound: (u32, u32),
    /// (sent, received) from the client to the native host.
    outbound: (u32, u32),
}

/// Server, cone relay and one client, all C, behind one NAT of `kind`.
/// Checks on the way that the world's namespaces are gone afterwards.
fn run_c_world(test: &str, kind: NatKind, check: impl FnOnce(&World, &Outcome)) -> Outcome {
    let w = World::build(test, &[kind]);
    let prefix = w.prefix().to_string();
    w.start_server(Impl::C);
    w.start_relay(Impl::C, "cone");
    let cli = w.start_client(1, Impl::C, "");
    let qualified = w.wait_qualified(&cli, 1, QUALIFY_TIMEOUT);
    let mut outcome = Outcome {
        qualified,
        inbound: (0, 0),
        outbound: (0, 0),
    };
    match qualified {
        Some((addr, took)) => {
            let parts = teredo_parts(&addr);
            report(
                test,
                &format!(
                    "C client behind a {} NAT qualified in {took:?} as {addr} ({parts:?})",
                    kind.name()
                ),
            );
            outcome.inbound = ping6_stats(w.v6h(), addr, 3, PING_TIMEOUT);
            outcome.outbound = ping6_stats(w.client(1), NATIVE_V6, 3, PING_TIMEOUT);
            report(
                test,
                &format!(
                    "native host -> client: {}/{} echoes answered; client -> native host: {}/{}",
                    outcome.inbound.1, outcome.inbound.0, outcome.outbound.1, outcome.outbound.0
                ),
            );
        }
        None => report(
            test,
            &format!(
                "C client behind a {} NAT did not qualify within {QUALIFY_TIMEOUT:?}; its log:\n{}",
                kind.name(),
                w.log_of(&cli)
            ),
        ),
    }
    report(test, &format!("NAT flows:\n{}", w.nat_flows(1).trim_end()));
    assert!(
        w.is_running(&cli),
        "the C client exited:\n{}",
        w.log_of(&cli)
    );
    check(&w, &outcome);
    drop(w);
    let left = leftover_namespaces(&prefix);
    assert!(left.is_empty(), "teardown left namespaces behind: {left:?}");
    outcome
}

#[test]
fn c_client_behind_port_restricted_nat() {
    require_root!();
    require_c_miredo!();
    let test = "c_client_behind_port_restricted_nat";
    run_c_world(test, NatKind::PortRestricted, |w, o| {
        let (addr, _) = o
            .qualified
            .expect("the C client qualifies behind a port-restricted NAT");
        let parts = teredo_parts(&addr).expect("a Teredo address");
        assert_eq!(parts.server, teredo_lab::SERVER_V4);
        assert_eq!(parts.mapped_v4, w.nat_wan_v4(1));
        assert_eq!(o.inbound.1, 3, "the native host reaches the client");
        assert_eq!(o.outbound.1, 3, "the client reaches the native host");
    });
}

#[test]
fn c_client_behind_full_cone_nat() {
    require_root!();
    require_c_miredo!();
    let test = "c_client_behind_full_cone_nat";
    let kind = NatKind::FullCone {
        client_port: 3545,
        mapped_port: 40000,
    };
    run_c_world(test, kind, |w, o| {
        let (addr, _) = o
            .qualified
            .expect("the C client qualifies behind a full cone NAT");
        let parts = teredo_parts(&addr).expect("a Teredo address");
        // The harness's static mapping is what the server saw.
        assert_eq!(Some(parts.mapped_port), w.nat_mapped_port(1));
        assert_eq!(parts.mapped_v4, w.nat_wan_v4(1));
        assert_eq!(o.inbound.1, 3, "the native host reaches the client");
        assert_eq!(o.outbound.1, 3, "the client reaches the native host");
    });
}

/// Documents the reference: RFC 4380 clients cannot work behind a
/// symmetric NAT in general, and the C miredo implements none of RFC
/// 6081. Whatever it does is reported, not asserted.
#[test]
fn c_client_behind_symmetric_nat() {
    require_root!();
    require_c_miredo!();
    let test = "c_client_behind_symmetric_nat";
    let o = run_c_world(test, NatKind::Symmetric, |_, _| {});
    let verdict = match o.qualified {
        None => "does not qualify".to_string(),
        Some(_) => format!(
            "qualifies; native host -> client {}/{}, client -> native host {}/{}",
            o.inbound.1, o.inbound.0, o.outbound.1, o.outbound.0
        ),
    };
    report(
        test,
        &format!("C reference behind a symmetric NAT: {verdict}"),
    );
}
