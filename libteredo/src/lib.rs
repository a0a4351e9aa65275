//! libteredo: everything the Teredo (RFC 4380) programs share.
//!
//! Layers, from the bytes up (data flows down, never back up):
//! - [`wire`]: zero-copy views and builders for the packets Teredo carries;
//! - [`addr`]: Teredo addresses and the global-unicast rule;
//! - [`proto`]: sans-IO protocol engines (client, relay, server, discovery).

pub mod addr;
pub mod conf;
pub mod metrics;
pub mod privsep;
pub mod proto;
#[cfg(feature = "sim")]
pub mod sim;
pub mod sys;
pub mod wire;
