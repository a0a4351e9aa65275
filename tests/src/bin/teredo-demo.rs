//! teredo-demo: a whole Teredo world on one machine, with this workspace's
//! daemons. Builds network namespaces for an IPv4 Internet, a Teredo server,
//! a relay, a NAT with a client behind it and a native IPv6 host; starts
//! our miredo-server, our relay and our client; shows the client's Teredo
//! address and pings between the native host and the client; tears
//! everything down.
//!
//! ```text
//! cargo build --release --workspace && sudo target/release/teredo-demo
//! ```

use std::process::ExitCode;
use std::time::Duration;

use teredo_lab::cmd::run_with_timeout;
use teredo_lab::skip::root_unavailable;
use teredo_lab::{
    teredo_parts, Impl, NatKind, World, NATIVE_V6, RELAY_V4, SERVER2_V4, SERVER_V4, TEREDO_IFACE,
};

const BUILD: &str = "cargo build --release --workspace";

fn main() -> ExitCode {
    let privproc = Impl::Ours.path("miredo-privproc");
    if let Some(why) = Impl::Ours.unavailable() {
        eprintln!("teredo-demo: {why}.\nBuild them first: {BUILD}");
        return ExitCode::FAILURE;
    }
    if !privproc.is_file() {
        eprintln!(
            "teredo-demo: our daemons not built (no {}).\nBuild them first: {BUILD}",
            privproc.display()
        );
        return ExitCode::FAILURE;
    }
    if let Some(why) = root_unavailable() {
        let me = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "teredo-demo".into());
        eprintln!(
            "teredo-demo: cannot build the lab here ({why}).\n\
             It creates network namespaces, so it must run as root: sudo {me}"
        );
        return ExitCode::FAILURE;
    }
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("teredo-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `ping` in a namespace and prints its output as is.
fn show_ping(ns: &teredo_lab::Netns, from: &str, to: std::net::Ipv6Addr) -> bool {
    println!("\n$ ping -6 -c 3 {to}    # from {from}");
    let out = ns.exec(
        &[
            "ping",
            "-6",
            "-n",
            "-c",
            "3",
            "-i",
            "0.3",
            "-w",
            "8",
            &to.to_string(),
        ],
        Duration::from_secs(12),
    );
    print!("{}", out.stdout);
    if !out.stderr.trim().is_empty() {
        eprint!("{}", out.stderr);
    }
    out.success()
}

fn demo() -> Result<(), String> {
    println!("Building the world (network namespaces, veth links, an nftables NAT)...");
    let w = World::build("teredo-demo", &[NatKind::PortRestricted]);
    let srv = w.start_server(Impl::Ours);
    println!(
        "  miredo-server  pid {:<7} in {:<16} on {SERVER_V4} and {SERVER2_V4}, UDP 3544",
        srv.pid,
        w.srv().name()
    );
    let relay = w.start_relay(Impl::Ours, "cone");
    println!(
        "  miredo (relay) pid {:<7} in {:<16} on {RELAY_V4}; the IPv6 core routes 2001::/32 to it",
        relay.pid,
        w.relay().name()
    );
    println!(
        "  NAT            (nft masquerade) in {:<9} WAN {}, LAN 192.168.1.1",
        w.nat(1).name(),
        w.nat_wan_v4(1)
    );
    let cli = w.start_client(1, Impl::Ours, "");
    println!(
        "  miredo (client) pid {:<6} in {:<16} at {} behind the NAT, server {SERVER_V4}",
        cli.pid,
        w.client(1).name(),
        w.client_v4(1)
    );
    println!(
        "  native IPv6 host                in {:<16} at {NATIVE_V6}",
        w.v6h().name()
    );

    let Some((addr, took)) = w.wait_qualified(&cli, 1, Duration::from_secs(15)) else {
        return Err(format!(
            "the client did not qualify within 15 s; its log:\n{}",
            w.log_of(&cli)
        ));
    };
    println!(
        "\nThe client qualified in {took:.1?}: its Teredo address on interface {TEREDO_IFACE} is"
    );
    println!("  {addr}");
    if let Some(p) = teredo_parts(&addr) {
        println!(
            "  = server {}, flags {:#06x}, mapped address {}:{} (the NAT's public side)",
            p.server, p.flags, p.mapped_v4, p.mapped_port
        );
    }

    let inbound = show_ping(w.v6h(), "the native IPv6 host", addr);
    let outbound = show_ping(w.client(1), "the Teredo client", NATIVE_V6);

    let mire = Impl::Ours.path("teredo-mire");
    if mire.is_file() {
        // The lab gives each client a status socket of its own (every
        // world's clients call their interface `teredo`).
        let socket = w.status_socket_of(&cli, TEREDO_IFACE);
        println!(
            "\n$ teredo-mire status --socket {}    # the client's status",
            socket.display()
        );
        let out = run_with_timeout(
            &[
                mire.display().to_string(),
                "status".into(),
                "--socket".into(),
                socket.display().to_string(),
            ],
            Duration::from_secs(5),
        );
        print!("{}", out.stdout);
        if !out.success() {
            print!("{}", out.stderr);
        }
    }

    println!("\nTearing down...");
    drop(w);
    println!("Done: every daemon stopped, every namespace deleted.");
    if inbound && outbound {
        Ok(())
    } else {
        Err(format!(
            "ping failed (native host -> client: {}, client -> native host: {})",
            if inbound { "ok" } else { "failed" },
            if outbound { "ok" } else { "failed" }
        ))
    }
}
