//! Harness for end-to-end tests of the Teredo suite over real kernels: a
//! Teredo world (Internet router, server, relay, NATs, clients, a native
//! IPv6 host) in network namespaces, the daemons of either implementation
//! spawned in it, and bounded waits to observe them.
//!
//! ```no_run
//! // tests/tests/lab/example.rs, a module of the lab binary (see `harness`)
//! use std::time::Duration;
//! use teredo_lab::{ping6, Impl, NatKind, World, NATIVE_V6};
//!
//! fn client_reaches_native_host() {
//!     let w = World::build("client_reaches_native_host", &[NatKind::PortRestricted]);
//!     w.start_server(Impl::C);
//!     w.start_relay(Impl::C, "cone");
//!     let cli = w.start_client(1, Impl::C, "");
//!     let (addr, took) = w.wait_qualified(&cli, 1, Duration::from_secs(15)).expect("qualifies");
//!     assert!(ping6(w.v6h(), addr, 3, Duration::from_secs(10)));
//!     assert!(ping6(w.client(1), NATIVE_V6, 3, Duration::from_secs(10)));
//!     # let _ = took;
//! } // dropping `w` kills every daemon and deletes every namespace
//!
//! teredo_lab::lab_tests! {
//!     needs(root, c_miredo): [client_reaches_native_host],
//! }
//! ```
//!
//! Every command and wait is bounded in time. Tests need root; without it
//! (or without `ip netns`, or the C miredo a test uses) the test runner
//! reports the test as ignored, never passed, and stderr says why:
//! `IGNORED <test>: needs root for network namespaces`.

pub mod cmd;
pub mod farm;
pub mod flood;
pub mod harness;
pub mod impls;
pub mod json;
pub mod miniupnpd;
pub mod named;
pub mod nat;
pub mod nftcount;
pub mod ns;
pub mod procstat;
pub mod sha256;
pub mod skip;
pub mod steps;
pub mod world;

pub use cmd::{wait_for, wait_until, CmdOutput};
pub use impls::Impl;
pub use nat::{NatKind, NatReboot};
pub use ns::{is_teredo, ping6, ping6_stats, teredo_addr_of, Netns};
pub use world::{
    leftover_namespaces, Daemon, World, NATIVE_V6, RELAY_V4, RELAY_V6, SERVER2_V4, SERVER_V4,
    SERVER_V6, TEREDO_IFACE,
};

use std::net::{Ipv4Addr, Ipv6Addr};

/// Prints `LAB <test>: <message>` past the test harness's output capture,
/// so that measurements show in CI logs of passing tests too.
pub fn report(test: &str, message: &str) {
    skip::loud(&format!("LAB {test}: {message}"));
}

/// The fields of a Teredo address (RFC 4380 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeredoParts {
    pub server: Ipv4Addr,
    pub flags: u16,
    /// The mapped port, un-obfuscated.
    pub mapped_port: u16,
    /// The mapped IPv4 address, un-obfuscated.
    pub mapped_v4: Ipv4Addr,
}

/// Splits a Teredo address into its fields; `None` outside 2001:0::/32.
pub fn teredo_parts(addr: &Ipv6Addr) -> Option<TeredoParts> {
    if !is_teredo(addr) {
        return None;
    }
    let s = addr.segments();
    let server = (u32::from(s[2]) << 16) | u32::from(s[3]);
    let mapped = (u32::from(s[6]) << 16) | u32::from(s[7]);
    Some(TeredoParts {
        server: Ipv4Addr::from(server),
        flags: s[4],
        mapped_port: !s[5],
        mapped_v4: Ipv4Addr::from(!mapped),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rfc_example() {
        // RFC 4380 section 4: server 65.54.227.120, cone flag, mapped
        // 192.0.2.45:40000.
        let a: Ipv6Addr = "2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
        let p = teredo_parts(&a).unwrap();
        assert_eq!(p.server, Ipv4Addr::new(65, 54, 227, 120));
        assert_eq!(p.flags, 0x8000);
        assert_eq!(p.mapped_port, 40000);
        assert_eq!(p.mapped_v4, Ipv4Addr::new(192, 0, 2, 45));
        assert_eq!(teredo_parts(&NATIVE_V6), None);
    }
}
