//! `miredo-server.conf`: the configuration of the Teredo server daemon.
//!
//! A Teredo server listens on UDP port 3544 of two consecutive public IPv4
//! addresses (RFC 4380 section 5.3): the second is how clients learn
//! whether their NAT is a cone. The C miredo-checkconf cannot check this
//! file; ours can.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use super::lexer::{lex, Entry};
use super::values::{
    listen_warning, parse_ipv4, parse_listen, parse_prefix, parse_uint, prefix_display,
    SyslogFacility, DEFAULT_MTU, MAX_MTU, MIN_MTU,
};
use super::{next_ipv4, read_text, Checked, ConfError, LoadError};
use crate::addr::{is_global_unicast_v4, TEREDO_PREFIX};

/// The content of a valid `miredo-server.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `ServerBindAddress`: the primary address, global unicast. Required
    /// in a file; the daemon's command line may supply it instead.
    pub server_bind_address: Ipv4Addr,
    /// `ServerBindAddress2`: the secondary address, global unicast; the
    /// primary plus one by default (what Windows clients assume).
    pub server_bind_address2: Ipv4Addr,
    /// `Prefix`, as its first 32 bits; 2001:0:: by default.
    pub prefix: u32,
    /// `InterfaceMTU`: the MTU advertised to clients; 1280 by default.
    pub interface_mtu: u16,
    /// `SyslogFacility`; daemon by default.
    pub syslog_facility: SyslogFacility,
    /// `MetricsListen`: where the daemon serves its counters over HTTP in
    /// the Prometheus text format; `None` (off) by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Things worth saying that do not make the file invalid.
    pub warnings: Vec<ConfError>,
}

impl Default for ServerConfig {
    /// The built-in defaults. The addresses are unspecified (0.0.0.0): a
    /// real configuration always names them.
    fn default() -> Self {
        ServerConfig {
            server_bind_address: Ipv4Addr::UNSPECIFIED,
            server_bind_address2: Ipv4Addr::UNSPECIFIED,
            prefix: TEREDO_PREFIX,
            interface_mtu: DEFAULT_MTU,
            syslog_facility: SyslogFacility::Daemon,
            metrics_listen: None,
            warnings: Vec::new(),
        }
    }
}

const NAMES: [&str; 6] = [
    "ServerBindAddress",
    "ServerBindAddress2",
    "Prefix",
    "InterfaceMTU",
    "SyslogFacility",
    "MetricsListen",
];
const SERVER_BIND_ADDRESS: usize = 0;
const SERVER_BIND_ADDRESS2: usize = 1;
const PREFIX: usize = 2;
const INTERFACE_MTU: usize = 3;
const SYSLOG_FACILITY: usize = 4;
const METRICS_LISTEN: usize = 5;

/// Parses a server address: an IPv4 literal that is global unicast
/// (RFC 4380 section 5.3: clients reach the server from the Internet, and
/// its address is part of their Teredo addresses).
fn server_address(value: &str) -> Result<Ipv4Addr, String> {
    let ip = parse_ipv4(value)?;
    if !is_global_unicast_v4(ip) {
        return Err(format!(
            "{ip} is not a global unicast address; Teredo clients must reach the server from the Internet"
        ));
    }
    Ok(ip)
}

impl ServerConfig {
    /// Parses the text of a `miredo-server.conf`. `file_name` only labels
    /// errors. Returns every error of the file.
    pub fn parse(text: &str, file_name: &str) -> Result<ServerConfig, Vec<ConfError>> {
        ServerConfig::check(text, file_name).config
    }

    /// [`ServerConfig::parse`], with the warnings kept when the file is
    /// invalid too.
    pub fn check(text: &str, file_name: &str) -> Checked<ServerConfig> {
        let mut errors = Vec::new();
        let found = lex(text, file_name, &NAMES, &mut errors);
        let mut conf = ServerConfig::default();
        let entry = |index: usize| -> Option<Entry<'_>> { found.get(index).copied().flatten() };

        let mut primary_ok = false;
        match entry(SERVER_BIND_ADDRESS) {
            None => errors.push(ConfError::whole_file(
                file_name,
                NAMES[SERVER_BIND_ADDRESS],
                "missing: a Teredo server needs its primary IPv4 address",
            )),
            Some(e) => match server_address(e.value) {
                Ok(ip) => {
                    conf.server_bind_address = ip;
                    primary_ok = true;
                }
                Err(why) => errors.push(ConfError::at(file_name, e.line, e.name, why)),
            },
        }
        match entry(SERVER_BIND_ADDRESS2) {
            Some(e) => match server_address(e.value) {
                Ok(ip) if primary_ok && ip == conf.server_bind_address => {
                    errors.push(ConfError::at(
                        file_name,
                        e.line,
                        e.name,
                        format!("{ip} is also the primary address; the two addresses must differ"),
                    ));
                }
                Ok(ip) => conf.server_bind_address2 = ip,
                Err(why) => errors.push(ConfError::at(file_name, e.line, e.name, why)),
            },
            None if primary_ok => {
                // The secondary defaults to the primary plus one; say so
                // at the primary's line when that is not usable.
                let primary = conf.server_bind_address;
                match next_ipv4(primary).filter(|ip| is_global_unicast_v4(*ip)) {
                    Some(ip) => conf.server_bind_address2 = ip,
                    None => {
                        if let Some(e) = entry(SERVER_BIND_ADDRESS) {
                            errors.push(ConfError::at(
                                file_name,
                                e.line,
                                e.name,
                                format!(
                                    "the secondary address defaults to {primary} + 1, which is not global unicast; set ServerBindAddress2"
                                ),
                            ));
                        }
                    }
                }
            }
            None => {}
        }
        if let Some(e) = entry(PREFIX) {
            match parse_prefix(e.value) {
                Ok(p) => conf.prefix = p,
                Err(why) => errors.push(ConfError::at(file_name, e.line, e.name, why)),
            }
        }
        if let Some(e) = entry(INTERFACE_MTU) {
            match parse_uint(e.value, MIN_MTU.into(), MAX_MTU.into()) {
                Ok(n) => conf.interface_mtu = u16::try_from(n).unwrap_or(MAX_MTU),
                Err(why) => errors.push(ConfError::at(file_name, e.line, e.name, why)),
            }
            if conf.interface_mtu != DEFAULT_MTU && conf.prefix == TEREDO_PREFIX {
                conf.warnings.push(ConfError::at(
                    file_name,
                    e.line,
                    e.name,
                    format!(
                        "an MTU other than {DEFAULT_MTU} with the standard prefix {}:: breaks other Teredo implementations",
                        prefix_display(TEREDO_PREFIX)
                    ),
                ));
            }
        }
        if let Some(e) = entry(SYSLOG_FACILITY) {
            match SyslogFacility::parse(e.value) {
                Ok(f) => conf.syslog_facility = f,
                Err(why) => errors.push(ConfError::at(file_name, e.line, e.name, why)),
            }
        }
        if let Some(e) = entry(METRICS_LISTEN) {
            match parse_listen(e.value) {
                Ok(addr) => {
                    conf.metrics_listen = Some(addr);
                    if let Some(why) = listen_warning(addr) {
                        conf.warnings
                            .push(ConfError::at(file_name, e.line, e.name, why));
                    }
                }
                Err(why) => errors.push(ConfError::at(file_name, e.line, e.name, why)),
            }
        }

        conf.warnings.sort_by_key(|w| w.line);
        let warnings = conf.warnings.clone();
        if errors.is_empty() {
            Checked {
                config: Ok(conf),
                warnings,
            }
        } else {
            errors.sort_by_key(|e| e.line);
            Checked {
                config: Err(errors),
                warnings,
            }
        }
    }

    /// Reads and parses a `miredo-server.conf`.
    pub fn load(path: impl AsRef<Path>) -> Result<ServerConfig, LoadError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        ServerConfig::parse(&text, &path.display().to_string()).map_err(LoadError::Invalid)
    }

    /// Reads a `miredo-server.conf` and checks it
    /// ([`ServerConfig::check`]); the error is [`LoadError::Unreadable`]
    /// alone.
    pub fn load_checked(path: impl AsRef<Path>) -> Result<Checked<ServerConfig>, LoadError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        Ok(ServerConfig::check(&text, &path.display().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> ServerConfig {
        match ServerConfig::parse(text, "s.conf") {
            Ok(c) => c,
            Err(e) => panic!("{text:?}: {e:?}"),
        }
    }

    fn errs(text: &str) -> Vec<String> {
        match ServerConfig::parse(text, "s.conf") {
            Ok(c) => panic!("{text:?} accepted: {c:?}"),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_file() {
        let c = ok("ServerBindAddress 192.0.2.221\n");
        assert_eq!(c.server_bind_address, Ipv4Addr::new(192, 0, 2, 221));
        assert_eq!(c.server_bind_address2, Ipv4Addr::new(192, 0, 2, 222));
        assert_eq!(c.prefix, TEREDO_PREFIX);
        assert_eq!(c.interface_mtu, 1280);
        assert_eq!(c.syslog_facility, SyslogFacility::Daemon);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn every_directive() {
        let c = ok("serverbindaddress 198.51.100.1\nSERVERBINDADDRESS2 203.0.113.9\nPrefix 3ffe:831f::\nInterfaceMTU 1400\nSyslogFacility local5 # comment\n");
        assert_eq!(c.server_bind_address2, Ipv4Addr::new(203, 0, 113, 9));
        assert_eq!(c.prefix, 0x3ffe_831f);
        assert_eq!(c.interface_mtu, 1400);
        assert_eq!(c.syslog_facility, SyslogFacility::Local5);
        assert!(c.warnings.is_empty());
        let c = ok("ServerBindAddress 198.51.100.1\nInterfaceMTU 1400\n");
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn missing_primary() {
        assert_eq!(
            errs("# nothing\n"),
            vec!["s.conf: ServerBindAddress: missing: a Teredo server needs its primary IPv4 address"]
        );
    }

    #[test]
    fn addresses_must_be_global() {
        assert_eq!(
            errs("ServerBindAddress 10.0.0.1\n"),
            vec!["s.conf:1: ServerBindAddress: 10.0.0.1 is not a global unicast address; Teredo clients must reach the server from the Internet"]
        );
        assert_eq!(
            errs("ServerBindAddress 192.0.2.1\nServerBindAddress2 127.0.0.1\n").len(),
            1
        );
        assert!(
            errs("ServerBindAddress 192.0.2.1\nServerBindAddress2 192.0.2.1\n")[0]
                .contains("must differ")
        );
        // 9.255.255.255 + 1 is 10.0.0.0, private.
        assert!(errs("ServerBindAddress 9.255.255.255\n")[0].contains("set ServerBindAddress2"));
        assert!(
            ok("ServerBindAddress 9.255.255.255\nServerBindAddress2 8.8.8.8\n")
                .warnings
                .is_empty()
        );
        assert!(errs("ServerBindAddress teredo.example.net\n")[0].contains("invalid IPv4 address"));
    }

    #[test]
    fn every_error_at_once() {
        let e = errs("ServerBindAddress 192.0.2.1\nPrefix 3ffe::1:2\nInterfaceMTU 1000\nSyslogFacility nope\nServerAddress 192.0.2.1\nPrefix 2001::\n");
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e[0].starts_with("s.conf:2: Prefix: 3ffe::1:2 is not a /32 prefix"));
        assert_eq!(
            e[1],
            "s.conf:3: InterfaceMTU: 1000 is out of range: must be between 1280 and 65535"
        );
        assert!(e[2].starts_with("s.conf:4: SyslogFacility: unknown syslog facility"));
        assert_eq!(e[3], "s.conf:5: ServerAddress: unknown directive");
        assert_eq!(e[4], "s.conf:6: Prefix: given twice (first at line 2)");
    }

    #[test]
    fn warnings_of_an_invalid_file_are_kept() {
        let c = ServerConfig::check(
            "ServerBindAddress 192.0.2.1\nInterfaceMTU 1400\nBogus 1\n",
            "s.conf",
        );
        assert_eq!(
            c.config.map_err(|e| e.len()),
            Err(1),
            "the unknown directive is an error"
        );
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0]
            .to_string()
            .starts_with("s.conf:2: InterfaceMTU: an MTU other than 1280"));
        // A valid file: the same warnings in both places.
        let c = ServerConfig::check("ServerBindAddress 192.0.2.1\nInterfaceMTU 1400\n", "s.conf");
        assert_eq!(c.config.map(|c| c.warnings), Ok(c.warnings.clone()));
    }

    #[test]
    fn metrics_listener() {
        assert_eq!(ok("ServerBindAddress 192.0.2.1\n").metrics_listen, None);
        let c = ok("ServerBindAddress 192.0.2.1\nMetricsListen 9200\n");
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9200".parse().unwrap()));
        assert!(c.warnings.is_empty());
        let c = ok("ServerBindAddress 192.0.2.1\nMetricsListen 0.0.0.0:9200\n");
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].to_string().contains("not a loopback address"));
        let e = errs("ServerBindAddress 192.0.2.1\nMetricsListen localhost:9200\n");
        assert!(
            e[0].starts_with("s.conf:2: MetricsListen: invalid listening address"),
            "{e:?}"
        );
    }
}
