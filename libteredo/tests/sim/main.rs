//! The simulator tests: the engines in `libteredo::sim`'s virtual
//! Internet with NATs, on a virtual clock, reproducible from a seed. One
//! test binary; every test name contains `sim` (`cargo test -p libteredo
//! --test sim admission::` runs one module).

mod admission;
mod basics;
mod foreign_prefix;
mod network;
mod portmap;
mod servers;

use std::time::Duration;

// The addresses the scenarios share (RFC 2544's benchmarking range for
// IPv4, the documentation prefix for IPv6).
const SERVER: &str = "198.18.1.1";
const RELAY: &str = "198.18.2.1";
const NAT_WAN: &str = "198.18.3.1";
const NAT2_WAN: &str = "198.18.4.1";
const NATIVE: &str = "2001:db8:9::1";

const MS: fn(u64) -> Duration = Duration::from_millis;
const SECS: fn(u64) -> Duration = Duration::from_secs;
