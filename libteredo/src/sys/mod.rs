//! Linux-only plumbing shared by the daemons: the UDP socket layer and its
//! control messages, the main thread's wait, the status socket,
//! randomness, privileges, pid files, logging, daemonizing, signals, the
//! network and sleep as the host sees them. No protocol logic here (the
//! `sys` feature of libteredo; the rest of the crate builds without it).

pub mod batch;
mod cmsg;
pub mod daemon;
pub mod fds;
pub mod http;
pub mod logging;
pub mod netlink;
pub mod notify;
pub mod pidfile;
pub mod poll;
pub mod privileges;
pub mod random;
pub mod reader;
pub mod rundir;
pub mod seccomp;
pub mod signals;
pub mod sleep;
pub mod socket;
pub mod status;
pub mod upnp;
