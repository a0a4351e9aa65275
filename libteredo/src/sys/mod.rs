//! Linux-only plumbing shared by the daemons: randomness, privileges,
//! pid files, logging, daemonizing, signals, the network and sleep as the
//! host sees them. No protocol logic here.

pub mod batch;
mod cmsg;
pub mod daemon;
pub mod fds;
pub mod http;
pub mod logging;
pub mod netlink;
pub mod notify;
pub mod pidfile;
pub mod privileges;
pub mod random;
pub mod reader;
pub mod rundir;
pub mod seccomp;
pub mod signals;
pub mod sleep;
pub mod socket;
pub mod upnp;
