//! libteredo: everything the Teredo (RFC 4380) programs share.
//!
//! Layers, from the bytes up (data flows down, never back up):
//! - [`wire`]: zero-copy views and builders for the packets Teredo carries;
//! - [`addr`]: Teredo addresses and the global-unicast rule;
//! - [`proto`]: sans-IO protocol engines (client, relay, server, discovery);
//! - [`conf`], [`privsep`], [`metrics`]: configuration files, the messages
//!   of the privilege split, the status as monitoring systems read it.
//!
//! All of these are pure code. The Linux layer, `sys` (sockets, TUN,
//! privileges, netlink, seccomp, syslog), is the default feature `sys`:
//! built without it (`cargo check -p libteredo --no-default-features`,
//! which CI runs), the crate links no system crate, so the compiler keeps
//! I/O out of the core.

pub mod addr;
pub mod conf;
pub mod metrics;
pub mod privsep;
pub mod proto;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sys")]
pub mod sys;
pub mod wire;
