//! Configuration files of the C miredo 1.2.x: `miredo.conf` and
//! `miredo-server.conf`.
//!
//! The format: one directive per line, `Name value`; names are
//! case-insensitive; `#` starts a comment (a whole line or the end of one);
//! blank lines are ignored. Each directive may appear once.
//!
//! Parsing never stops at the first problem: it returns every error of a
//! file, each with the file name, line, directive and reason, displayed as
//! `FILE:LINE: Directive: reason` (the form compilers use, so editors can
//! jump to it).
//!
//! - [`miredo`]: the client and relay daemon's file;
//! - [`server`]: the server daemon's file.

mod lexer;
pub mod miredo;
pub mod server;
mod values;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, ToSocketAddrs};
use std::path::{Path, PathBuf};

pub use values::{
    DiscoveryInterfaces, SyslogFacility, DEFAULT_MTU, MAX_IFNAME_LEN, MAX_MTU, MIN_MTU,
};

/// One problem found in a configuration file.
///
/// `line` is `None` for a problem of the file as a whole (a required
/// directive that is missing); the display then leaves the line out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfError {
    /// The file name, as given to the parser.
    pub file: String,
    /// The line number, counted from 1.
    pub line: Option<usize>,
    /// The directive, spelled as the file spells it (or canonically when it
    /// is missing from the file).
    pub directive: String,
    /// What is wrong, in one sentence without a final full stop.
    pub reason: String,
}

impl ConfError {
    pub(crate) fn at(file: &str, line: usize, directive: &str, reason: impl Into<String>) -> Self {
        ConfError {
            file: file.to_owned(),
            line: Some(line),
            directive: directive.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn whole_file(file: &str, directive: &str, reason: impl Into<String>) -> Self {
        ConfError {
            file: file.to_owned(),
            line: None,
            directive: directive.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(
                f,
                "{}:{}: {}: {}",
                self.file, line, self.directive, self.reason
            ),
            None => write!(f, "{}: {}: {}", self.file, self.directive, self.reason),
        }
    }
}

impl std::error::Error for ConfError {}

/// Why a configuration file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read (missing, permissions, a directory...).
    Unreadable {
        /// The path that was tried.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file was read and is not valid: every problem found.
    Invalid(Vec<ConfError>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unreadable { path, source } => {
                write!(f, "{}: cannot read: {}", path.display(), source)
            }
            LoadError::Invalid(errors) => {
                let mut first = true;
                for e in errors {
                    if !first {
                        writeln!(f)?;
                    }
                    first = false;
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Unreadable { source, .. } => Some(source),
            LoadError::Invalid(_) => None,
        }
    }
}

/// What a parser found in a file, valid or not: the configuration, or
/// every error; and the warnings in both cases (a valid file's are also in
/// its configuration). miredo-checkconf reports the warnings of an invalid
/// file beside its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<T> {
    /// The configuration of a valid file, or every error, in line order.
    pub config: Result<T, Vec<ConfError>>,
    /// Every warning, in line order.
    pub warnings: Vec<ConfError>,
}

/// Reads a file for a parser. Bytes that are not UTF-8 become U+FFFD, which
/// the lexer reports as an error of the line (outside comments).
pub(crate) fn read_text(path: &Path) -> Result<String, LoadError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(source) => Err(LoadError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Resolves a server name (an IPv4 literal or a host name) to one IPv4
/// address with the system resolver, as the C tool does with getaddrinfo.
/// Blocking; the daemons call it at start and on reload.
pub fn resolve(name: &str) -> io::Result<Ipv4Addr> {
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(ip);
    }
    (name, 0u16)
        .to_socket_addrs()?
        .find_map(|sa| match sa {
            std::net::SocketAddr::V4(v4) => Some(*v4.ip()),
            std::net::SocketAddr::V6(_) => None,
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} has no IPv4 address"),
            )
        })
}

/// The address after `ip` (the default secondary server address), or `None`
/// after 255.255.255.255.
pub fn next_ipv4(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    u32::from(ip).checked_add(1).map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_line() {
        let e = ConfError::at("f.conf", 3, "BindPort", "bad");
        assert_eq!(e.to_string(), "f.conf:3: BindPort: bad");
        let e = ConfError::whole_file("f.conf", "ServerBindAddress", "missing");
        assert_eq!(e.to_string(), "f.conf: ServerBindAddress: missing");
    }

    #[test]
    fn load_error_lists_every_error() {
        let e = LoadError::Invalid(vec![
            ConfError::at("f", 1, "A", "x"),
            ConfError::at("f", 2, "B", "y"),
        ]);
        assert_eq!(e.to_string(), "f:1: A: x\nf:2: B: y");
    }

    #[test]
    fn unreadable_file() {
        let err = read_text(Path::new("/nonexistent/miredo.conf")).unwrap_err();
        assert!(matches!(err, LoadError::Unreadable { .. }));
        assert!(err
            .to_string()
            .starts_with("/nonexistent/miredo.conf: cannot read:"));
    }

    #[test]
    fn resolve_literal_and_localhost() {
        assert_eq!(resolve("192.0.2.1").unwrap(), Ipv4Addr::new(192, 0, 2, 1));
        // localhost comes from /etc/hosts, no DNS needed.
        assert_eq!(resolve("localhost").unwrap(), Ipv4Addr::LOCALHOST);
        assert!(resolve("no-such-host.invalid").is_err());
    }

    #[test]
    fn next_address() {
        assert_eq!(
            next_ipv4(Ipv4Addr::new(192, 0, 2, 255)),
            Some(Ipv4Addr::new(192, 0, 3, 0))
        );
        assert_eq!(next_ipv4(Ipv4Addr::BROADCAST), None);
    }
}

#[cfg(test)]
mod proptests {
    use super::miredo::MiredoConfig;
    use super::server::ServerConfig;
    use proptest::prelude::*;

    /// Words the parsers know, so that random files get past the lexer.
    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("RelayType".to_string()),
            Just("ServerAddress".to_string()),
            Just("ServerAddress2".to_string()),
            Just("LocalDiscovery".to_string()),
            Just("DiscoveryInterfaces".to_string()),
            Just("DiscoveryNetmask".to_string()),
            Just("Prefix".to_string()),
            Just("InterfaceMTU".to_string()),
            Just("InterfaceName".to_string()),
            Just("BindAddress".to_string()),
            Just("BindPort".to_string()),
            Just("SyslogFacility".to_string()),
            Just("PortMapping".to_string()),
            Just("PortMappingLifetime".to_string()),
            Just("ServerBindAddress".to_string()),
            Just("ServerBindAddress2".to_string()),
            Just("cone".to_string()),
            Just("client".to_string()),
            Just("#".to_string()),
            "[-0-9a-fx.:/]{0,12}",
            "[\\[\\](){}|*+?^$\\\\:.=a-z0-9-]{0,10}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = MiredoConfig::parse(&text, "p");
            let _ = ServerConfig::parse(&text, "p");
        }

        #[test]
        fn arbitrary_directives_never_panic(
            lines in proptest::collection::vec(proptest::collection::vec(word(), 0..4), 0..12)
        ) {
            let text: String = lines.iter().map(|l| l.join(" ") + "\n").collect();
            match MiredoConfig::parse(&text, "p") {
                Ok(_) => {}
                Err(errors) => prop_assert!(!errors.is_empty()),
            }
            let _ = ServerConfig::parse(&text, "p");
        }

        #[test]
        fn ere_checker_never_panics(p in "[\\[\\](){}|*+?^$\\\\:.=,a-z0-9-]{0,16}") {
            let _ = super::values::check_ere(&p);
        }
    }
}
