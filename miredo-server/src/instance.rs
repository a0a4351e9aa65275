//! The files an instance of miredo-server uses when the command line does
//! not name them: its status socket and its pid file.
//!
//! Several servers may run on one host, each on its own pair of addresses,
//! so these names carry the primary address (the one clients know the
//! server by): `/run/miredo/miredo-server-198.18.1.1.sock` and
//! `/run/miredo/miredo-server-198.18.1.1.pid`, both in the run directory
//! (which the packaged unit's sandbox, where the rest of /run is
//! read-only, lets the server write). One instance keeps the names the
//! server always had, `miredo-server.sock` and `/run/miredo-server.pid`:
//! the one that reads the default configuration file and has no server
//! name on its command line, which is how the packaged unit (and any
//! script written for one server per host) starts it. Another instance
//! reads another file or is given its address on the command line, and a
//! second one started the default way would fail on its addresses (already
//! bound) anyway.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::DEFAULT_CONFIG;

/// The default instance's status socket, in the run directory.
pub const DEFAULT_STATUS_NAME: &str = "miredo-server.sock";
/// The default instance's pid file.
pub const DEFAULT_PIDFILE: &str = "/run/miredo-server.pid";

/// Whether the server started with configuration file `config` and
/// `server_name` from its command line is the host's default instance:
/// the default file (however the path to it is spelled: relative to the
/// working directory, with `.` or doubled `/`) and no server name.
pub fn is_default(config: &Path, server_name: Option<&str>) -> bool {
    if server_name.is_some() {
        return false;
    }
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    // Path equality compares components: "/etc//miredo/./x" equals
    // "/etc/miredo/x". Links are not followed: the default file is
    // usually a link (Debian's packages link it to /etc/miredo-server.conf).
    config == Path::new(DEFAULT_CONFIG)
}

/// The name, in the run directory, of the status socket of a server whose
/// primary address is `primary`.
pub fn status_name(default: bool, primary: Ipv4Addr) -> String {
    if default {
        DEFAULT_STATUS_NAME.to_string()
    } else {
        format!("miredo-server-{primary}.sock")
    }
}

/// The pid file of a server whose primary address is `primary`.
pub fn pidfile(default: bool, primary: Ipv4Addr) -> PathBuf {
    if default {
        PathBuf::from(DEFAULT_PIDFILE)
    } else {
        PathBuf::from(format!("/run/miredo/miredo-server-{primary}.pid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);

    #[test]
    fn the_default_instance_is_the_default_file_without_a_server_name() {
        assert!(is_default(Path::new(DEFAULT_CONFIG), None));
        assert!(is_default(
            Path::new("/etc//miredo/./miredo-server.conf"),
            None
        ));
        // A server name makes another instance, even with the default file.
        assert!(!is_default(Path::new(DEFAULT_CONFIG), Some("198.18.1.3")));
        assert!(!is_default(Path::new("/etc/miredo/second.conf"), None));
        assert!(!is_default(Path::new("/etc/miredo-server.conf"), None));
        // Relative: resolved against the working directory (never /etc
        // when the tests run).
        assert!(!is_default(Path::new("miredo-server.conf"), None));
    }

    #[test]
    fn names_tell_instances_apart_by_their_primary_address() {
        assert_eq!(status_name(true, A), "miredo-server.sock");
        assert_eq!(status_name(true, B), "miredo-server.sock");
        assert_eq!(status_name(false, A), "miredo-server-198.18.1.1.sock");
        assert_eq!(status_name(false, B), "miredo-server-198.18.1.3.sock");
        assert_ne!(status_name(false, A), status_name(false, B));
        assert_eq!(pidfile(true, A), Path::new("/run/miredo-server.pid"));
        assert_eq!(
            pidfile(false, B),
            Path::new("/run/miredo/miredo-server-198.18.1.3.pid")
        );
        // Every name is one plain component, of the shape teredo-mire
        // looks for (miredo-server*.sock).
        for default in [true, false] {
            for a in [A, B, Ipv4Addr::new(1, 2, 3, 4)] {
                let n = status_name(default, a);
                assert!(!n.contains('/') && !n.starts_with('.'), "{n}");
                assert!(n.starts_with("miredo-server") && n.ends_with(".sock"));
            }
        }
    }
}
