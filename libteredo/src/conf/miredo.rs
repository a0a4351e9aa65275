//! `miredo.conf`: the configuration of the client and relay daemon.
//!
//! Which directives apply depends on `RelayType`: the client modes use the
//! server and local discovery directives, the relay modes the prefix and
//! MTU. A directive that the chosen mode does not use is an error
//! ("superfluous"), as in the C tool: it is most likely a mistake about the
//! mode.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use super::lexer::{lex_repeating, Entry};
use super::values::{
    check_host, listen_warning, parse_bool, parse_ifname, parse_ipv4, parse_listen, parse_netmask,
    parse_prefix, parse_uint, prefix_display, DiscoveryInterfaces, SyslogFacility, DEFAULT_MTU,
    MAX_MTU, MIN_MTU,
};
use super::{next_ipv4, read_text, resolve, Checked, ConfError, LoadError};
use crate::addr::TEREDO_PREFIX;

/// The Teredo servers a client uses when the file names none, in order of
/// preference: public servers that users' lists showed answering in 2023
/// (a list kept by users of XX-Net's Teredo prober, and its issues), none
/// whose operator announced it gone (miredo's own `teredo.remlab.net` and
/// `teredo-debian.remlab.net`, `teredo.trex.fi` offline since 2022,
/// Microsoft's `teredo.ipv6.microsoft.com` and `win8.ipv6.microsoft.com`).
/// Reviewed 2026-12-07; not probed from here (`teredo-mire servers` checks
/// them from a user's network). miredo.conf(5) says the same.
pub const DEFAULT_SERVERS: &[&str] = &[
    "win10.ipv6.microsoft.com",
    "win1710.ipv6.microsoft.com",
    "win1711.ipv6.microsoft.com",
    "teredo.iks-jena.de",
];

/// When [`DEFAULT_SERVERS`] was last reviewed against public evidence.
pub const DEFAULT_SERVERS_REVIEWED: &str = "2026-12-07";

/// The most `ServerAddress` lines a file may give.
pub const MAX_SERVER_ADDRESSES: usize = 16;

/// The interface name when the file gives none.
pub const DEFAULT_INTERFACE_NAME: &str = "teredo";

/// What the daemon is (`RelayType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RelayType {
    /// A Teredo client (RFC 4380 section 5.2): qualifies with a server,
    /// gets a Teredo address, and reaches IPv6 through relays. The default.
    #[default]
    Client,
    /// Written `autoclient`. Once a client that stepped aside whenever
    /// another interface gave global IPv6; since miredo 1.1 it is exactly a
    /// client, and so it is here.
    AutoClient,
    /// A Teredo relay (RFC 4380 section 5.4) on a public IPv4 address or
    /// behind a full cone NAT: it routes the Teredo prefix between Teredo
    /// clients and native IPv6. Written `cone` or `relay` (a synonym).
    Cone,
    /// A relay that also sends direct bubbles, for restricted NATs. Kept
    /// for old files; it makes NAT traversal unreliable, so the daemon and
    /// miredo-checkconf warn about it.
    Restricted,
}

impl RelayType {
    /// Whether this is one of the client modes.
    pub fn is_client(self) -> bool {
        matches!(self, RelayType::Client | RelayType::AutoClient)
    }

    /// Whether this is one of the relay modes.
    pub fn is_relay(self) -> bool {
        !self.is_client()
    }

    /// The canonical spelling in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayType::Client => "client",
            RelayType::AutoClient => "autoclient",
            RelayType::Cone => "cone",
            RelayType::Restricted => "restricted",
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "client" => Ok(RelayType::Client),
            "autoclient" => Ok(RelayType::AutoClient),
            "cone" | "relay" => Ok(RelayType::Cone),
            "restricted" => Ok(RelayType::Restricted),
            _ => Err(format!(
                "invalid relay type \"{value}\" (expected client, autoclient, relay, cone or restricted)"
            )),
        }
    }
}

impl fmt::Display for RelayType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `LocalDiscovery`: the optional local client discovery of RFC 4380
/// section 5.2.8 (bubbles to 224.0.0.253:3544 so that Teredo clients behind
/// the same NAT talk directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LocalDiscovery {
    /// No discovery bubbles sent or accepted. The default, as in miredo
    /// 1.2.x, which has no local discovery.
    #[default]
    Disabled,
    /// Discovery on the multicast-capable interfaces whose IPv4 address is
    /// not global (the networks behind a NAT), filtered by
    /// `DiscoveryInterfaces`. Also written yes, true, on, 1.
    Enabled,
    /// As `Enabled`, on interfaces with global IPv4 addresses too.
    Forced,
}

impl LocalDiscovery {
    /// The canonical spelling in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalDiscovery::Disabled => "disabled",
            LocalDiscovery::Enabled => "enabled",
            LocalDiscovery::Forced => "forced",
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        if value.eq_ignore_ascii_case("forced") {
            return Ok(LocalDiscovery::Forced);
        }
        match parse_bool(value) {
            Ok(true) => Ok(LocalDiscovery::Enabled),
            Ok(false) => Ok(LocalDiscovery::Disabled),
            Err(_) => Err(format!(
                "invalid value \"{value}\" (expected enabled, forced or disabled, or a boolean)"
            )),
        }
    }
}

/// `PortMapping`: how the client asks the home gateway to map its
/// service port (issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PortMapping {
    /// PCP, then NAT-PMP, then UPnP IGD (the default: Windows asks its
    /// gateway by default too).
    #[default]
    Auto,
    Pcp,
    NatPmp,
    Upnp,
    Off,
}

impl PortMapping {
    /// The canonical spelling in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            PortMapping::Auto => "auto",
            PortMapping::Pcp => "pcp",
            PortMapping::NatPmp => "natpmp",
            PortMapping::Upnp => "upnp",
            PortMapping::Off => "off",
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        for m in [
            PortMapping::Auto,
            PortMapping::Pcp,
            PortMapping::NatPmp,
            PortMapping::Upnp,
            PortMapping::Off,
        ] {
            if value.eq_ignore_ascii_case(m.as_str()) {
                return Ok(m);
            }
        }
        match parse_bool(value) {
            Ok(false) => Ok(PortMapping::Off),
            _ => Err(format!(
                "invalid value \"{value}\" (expected auto, pcp, natpmp, upnp or off)"
            )),
        }
    }
}

/// The least and largest `PortMappingLifetime` (seconds).
pub const MIN_PORT_MAPPING_LIFETIME: u32 = 2;
pub const MAX_PORT_MAPPING_LIFETIME: u32 = 86_400;
/// The default `PortMappingLifetime` (seconds).
pub const DEFAULT_PORT_MAPPING_LIFETIME: u32 = crate::proto::portmap::DEFAULT_LIFETIME;

/// The content of a valid `miredo.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MiredoConfig {
    /// `RelayType`.
    pub relay_type: RelayType,
    /// `ServerAddress`, given once or more: host names or IPv4 literals in
    /// order of preference, resolved by the daemon at start and on reload.
    /// Never empty in the client modes ([`DEFAULT_SERVERS`] when the file
    /// names none); empty in the relay modes.
    pub server_addresses: Vec<String>,
    /// True when the client modes use [`DEFAULT_SERVERS`] because the file
    /// names no server (the daemon says so in its log).
    pub server_address_is_default: bool,
    /// `ServerAddress2`; `None` means the primary address plus one.
    pub server_address2: Option<String>,
    /// `LocalDiscovery` (client modes).
    pub local_discovery: LocalDiscovery,
    /// `DiscoveryInterfaces` (client modes); `None` means every suitable
    /// interface.
    pub discovery_interfaces: Option<DiscoveryInterfaces>,
    /// `DiscoveryNetmask` (client modes); `None` means each interface's own.
    pub discovery_netmask: Option<Ipv4Addr>,
    /// `Prefix` (relay modes), as its first 32 bits; 2001:0:: by default.
    pub prefix: u32,
    /// `InterfaceMTU` (relay modes); 1280 by default.
    pub interface_mtu: u16,
    /// `InterfaceName`; `teredo` by default.
    pub interface_name: String,
    /// `BindAddress`; 0.0.0.0 (any) by default.
    pub bind_address: Ipv4Addr,
    /// `BindPort`; 0 (any, chosen by the kernel) by default.
    pub bind_port: u16,
    /// `SyslogFacility`; daemon by default.
    pub syslog_facility: SyslogFacility,
    /// `MaxPeers`: the size of the peer list; 1,048,576 by default.
    pub max_peers: u32,
    /// `PeerRateLimit`: new peer entries one source may cause per second
    /// (0: no limit); 100 by default.
    pub peer_rate_limit: u32,
    /// `MaxQueuedBytes`: the bytes of packets waiting for their peers
    /// (bubble exchanges, connectivity tests), all peers together; 64 MiB
    /// by default.
    pub max_queued_bytes: u32,
    /// `GlobalPeerRateLimit`: new peers admitted per second, all sources
    /// together, in each admission tier (0: no limit); 500 by default.
    pub global_peer_rate_limit: u32,
    /// `BubbleRateLimit`: bubbles sent per second in answer to bubbles
    /// (direct or through the server); 1,000 by default.
    pub bubble_rate_limit: u32,
    /// `IcmpRateLimit`: ICMPv6 errors sent per second; 20 by default.
    pub icmp_rate_limit: u32,
    /// `MetricsListen`: where the daemon serves its counters over HTTP in
    /// the Prometheus text format; `None` (off) by default.
    pub metrics_listen: Option<SocketAddr>,
    /// `PortMapping` (client modes); auto by default.
    pub port_mapping: PortMapping,
    /// `PortMappingLifetime` (client modes): the lifetime asked for, in
    /// seconds; 3600 by default.
    pub port_mapping_lifetime: u32,
    /// Things worth saying that do not make the file invalid.
    pub warnings: Vec<ConfError>,
}

impl Default for MiredoConfig {
    /// The configuration of an empty file: a client of the default server.
    fn default() -> Self {
        MiredoConfig {
            relay_type: RelayType::Client,
            server_addresses: DEFAULT_SERVERS.iter().map(|s| s.to_string()).collect(),
            server_address_is_default: true,
            server_address2: None,
            local_discovery: LocalDiscovery::Disabled,
            discovery_interfaces: None,
            discovery_netmask: None,
            prefix: TEREDO_PREFIX,
            interface_mtu: DEFAULT_MTU,
            interface_name: DEFAULT_INTERFACE_NAME.to_owned(),
            bind_address: Ipv4Addr::UNSPECIFIED,
            bind_port: 0,
            syslog_facility: SyslogFacility::Daemon,
            max_peers: DEFAULT_MAX_PEERS,
            peer_rate_limit: DEFAULT_PEER_RATE_LIMIT,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            global_peer_rate_limit: DEFAULT_GLOBAL_PEER_RATE_LIMIT,
            bubble_rate_limit: DEFAULT_BUBBLE_RATE_LIMIT,
            icmp_rate_limit: DEFAULT_ICMP_RATE_LIMIT,
            metrics_listen: None,
            port_mapping: PortMapping::Auto,
            port_mapping_lifetime: DEFAULT_PORT_MAPPING_LIFETIME,
            warnings: Vec::new(),
        }
    }
}

/// The directives of the file, canonical spelling; the indices below
/// follow this order.
const NAMES: [&str; 21] = [
    "RelayType",
    "ServerAddress",
    "ServerAddress2",
    "LocalDiscovery",
    "DiscoveryInterfaces",
    "DiscoveryNetmask",
    "Prefix",
    "InterfaceMTU",
    "InterfaceName",
    "BindAddress",
    "BindPort",
    "SyslogFacility",
    "MaxPeers",
    "PeerRateLimit",
    "MaxQueuedBytes",
    "GlobalPeerRateLimit",
    "BubbleRateLimit",
    "IcmpRateLimit",
    "MetricsListen",
    "PortMapping",
    "PortMappingLifetime",
];
const RELAY_TYPE: usize = 0;
const SERVER_ADDRESS: usize = 1;
const SERVER_ADDRESS2: usize = 2;
const LOCAL_DISCOVERY: usize = 3;
const DISCOVERY_INTERFACES: usize = 4;
const DISCOVERY_NETMASK: usize = 5;
const PREFIX: usize = 6;
const INTERFACE_MTU: usize = 7;
const INTERFACE_NAME: usize = 8;
const BIND_ADDRESS: usize = 9;
const BIND_PORT: usize = 10;
const SYSLOG_FACILITY: usize = 11;
const MAX_PEERS: usize = 12;
const PEER_RATE_LIMIT: usize = 13;
const MAX_QUEUED_BYTES: usize = 14;
const GLOBAL_PEER_RATE_LIMIT: usize = 15;
const BUBBLE_RATE_LIMIT: usize = 16;
const ICMP_RATE_LIMIT: usize = 17;
const METRICS_LISTEN: usize = 18;
const PORT_MAPPING: usize = 19;
const PORT_MAPPING_LIFETIME: usize = 20;

/// The default `GlobalPeerRateLimit`.
pub const DEFAULT_GLOBAL_PEER_RATE_LIMIT: u32 = crate::proto::DEFAULT_NEW_PEERS_PER_SECOND;
/// The default `BubbleRateLimit`.
pub const DEFAULT_BUBBLE_RATE_LIMIT: u32 = 1000;
/// The default `IcmpRateLimit`.
pub const DEFAULT_ICMP_RATE_LIMIT: u32 = 20;

/// The default size of the peer list (as the C miredo's).
pub const DEFAULT_MAX_PEERS: u32 = 1 << 20;
/// The largest `MaxPeers`.
pub const MAX_MAX_PEERS: u32 = 1 << 24;
/// The default `PeerRateLimit`.
pub const DEFAULT_PEER_RATE_LIMIT: u32 = 100;
/// The default `MaxQueuedBytes` (64 MiB).
pub const DEFAULT_MAX_QUEUED_BYTES: u32 = 64 << 20;
/// The largest `MaxQueuedBytes` (4 GiB less a byte).
pub const MAX_MAX_QUEUED_BYTES: u32 = u32::MAX;

/// Directives only the client modes use.
const CLIENT_ONLY: [usize; 7] = [
    SERVER_ADDRESS,
    SERVER_ADDRESS2,
    LOCAL_DISCOVERY,
    DISCOVERY_INTERFACES,
    DISCOVERY_NETMASK,
    PORT_MAPPING,
    PORT_MAPPING_LIFETIME,
];
/// Directives only the relay modes use.
const RELAY_ONLY: [usize; 2] = [PREFIX, INTERFACE_MTU];

impl MiredoConfig {
    /// Parses the text of a `miredo.conf`. `file_name` only labels errors.
    /// Returns every error of the file, in line order.
    pub fn parse(text: &str, file_name: &str) -> Result<MiredoConfig, Vec<ConfError>> {
        MiredoConfig::check(text, file_name).config
    }

    /// [`MiredoConfig::parse`], with the warnings kept when the file is
    /// invalid too.
    pub fn check(text: &str, file_name: &str) -> Checked<MiredoConfig> {
        let mut errors = Vec::new();
        let (mut found, more) =
            lex_repeating(text, file_name, &NAMES, &[SERVER_ADDRESS], &mut errors);
        let mut conf = MiredoConfig::default();

        // The mode decides what else is allowed; when it is invalid, the
        // mode checks are skipped rather than guessed.
        let mut mode_known = true;
        if let Some(e) = entry(&found, RELAY_TYPE) {
            match RelayType::parse(e.value) {
                Ok(t) => conf.relay_type = t,
                Err(why) => {
                    errors.push(ConfError::at(file_name, e.line, e.name, why));
                    mode_known = false;
                }
            }
        }
        if conf.relay_type == RelayType::Restricted {
            if let Some(e) = entry(&found, RELAY_TYPE) {
                conf.warnings.push(ConfError::at(
                    file_name,
                    e.line,
                    e.name,
                    "restricted is deprecated: direct bubbles make NAT traversal unreliable; use cone",
                ));
            }
        }
        if mode_known {
            let mode_source = match entry(&found, RELAY_TYPE) {
                Some(e) => format!("RelayType is {} at line {}", e.value, e.line),
                None => "RelayType is client by default".to_owned(),
            };
            let (unused, used_by) = if conf.relay_type.is_client() {
                (&RELAY_ONLY[..], "the relay modes (cone, restricted)")
            } else {
                (&CLIENT_ONLY[..], "the client modes (client, autoclient)")
            };
            for &index in unused {
                let first = found.get_mut(index).and_then(Option::take);
                let again = more.iter().filter(|(i, _)| *i == index).map(|(_, e)| *e);
                for e in first.into_iter().chain(again) {
                    errors.push(ConfError::at(
                        file_name,
                        e.line,
                        e.name,
                        format!("superfluous: only {used_by} use it, and {mode_source}"),
                    ));
                }
            }
        }

        let mut check = |index: usize, apply: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(e) = entry(&found, index) {
                if let Err(why) = apply(e.value) {
                    errors.push(ConfError::at(file_name, e.line, e.name, why));
                }
            }
        };
        check(SERVER_ADDRESS, &mut |v| {
            conf.server_addresses = vec![check_host(v)?];
            conf.server_address_is_default = false;
            Ok(())
        });
        check(SERVER_ADDRESS2, &mut |v| {
            conf.server_address2 = Some(check_host(v)?);
            Ok(())
        });
        check(LOCAL_DISCOVERY, &mut |v| {
            conf.local_discovery = LocalDiscovery::parse(v)?;
            Ok(())
        });
        check(DISCOVERY_INTERFACES, &mut |v| {
            conf.discovery_interfaces = Some(DiscoveryInterfaces::parse(v)?);
            Ok(())
        });
        check(DISCOVERY_NETMASK, &mut |v| {
            conf.discovery_netmask = Some(parse_netmask(v)?);
            Ok(())
        });
        check(PREFIX, &mut |v| {
            conf.prefix = parse_prefix(v)?;
            Ok(())
        });
        check(INTERFACE_MTU, &mut |v| {
            conf.interface_mtu = mtu(parse_uint(v, MIN_MTU.into(), MAX_MTU.into())?);
            Ok(())
        });
        check(INTERFACE_NAME, &mut |v| {
            conf.interface_name = parse_ifname(v)?;
            Ok(())
        });
        check(BIND_ADDRESS, &mut |v| {
            conf.bind_address = parse_ipv4(v)?;
            Ok(())
        });
        check(BIND_PORT, &mut |v| {
            conf.bind_port = port(parse_uint(v, 0, u16::MAX.into())?);
            Ok(())
        });
        check(SYSLOG_FACILITY, &mut |v| {
            conf.syslog_facility = SyslogFacility::parse(v)?;
            Ok(())
        });
        check(MAX_PEERS, &mut |v| {
            conf.max_peers = parse_uint(v, 1, MAX_MAX_PEERS)?;
            Ok(())
        });
        check(PEER_RATE_LIMIT, &mut |v| {
            conf.peer_rate_limit = parse_uint(v, 0, 1_000_000)?;
            Ok(())
        });
        check(GLOBAL_PEER_RATE_LIMIT, &mut |v| {
            conf.global_peer_rate_limit = parse_uint(v, 0, 1_000_000)?;
            Ok(())
        });
        check(BUBBLE_RATE_LIMIT, &mut |v| {
            conf.bubble_rate_limit = parse_uint(v, 1, 1_000_000)?;
            Ok(())
        });
        check(ICMP_RATE_LIMIT, &mut |v| {
            conf.icmp_rate_limit = parse_uint(v, 1, 1_000_000)?;
            Ok(())
        });
        check(METRICS_LISTEN, &mut |v| {
            conf.metrics_listen = Some(parse_listen(v)?);
            Ok(())
        });
        check(MAX_QUEUED_BYTES, &mut |v| {
            conf.max_queued_bytes = parse_uint(v, 0, MAX_MAX_QUEUED_BYTES)?;
            Ok(())
        });
        check(PORT_MAPPING, &mut |v| {
            conf.port_mapping = PortMapping::parse(v)?;
            Ok(())
        });
        check(PORT_MAPPING_LIFETIME, &mut |v| {
            conf.port_mapping_lifetime =
                parse_uint(v, MIN_PORT_MAPPING_LIFETIME, MAX_PORT_MAPPING_LIFETIME)?;
            Ok(())
        });

        // ServerAddress again: more servers, in order of preference (a
        // relay mode refused them all above).
        if entry(&found, SERVER_ADDRESS).is_some() {
            for (_, e) in more.iter().filter(|(i, _)| *i == SERVER_ADDRESS) {
                match check_host(e.value) {
                    Ok(_) if conf.server_addresses.len() >= MAX_SERVER_ADDRESSES => {
                        errors.push(ConfError::at(
                            file_name,
                            e.line,
                            e.name,
                            format!("more than {MAX_SERVER_ADDRESSES} servers"),
                        ))
                    }
                    Ok(h)
                        if conf
                            .server_addresses
                            .iter()
                            .any(|x| x.eq_ignore_ascii_case(&h)) =>
                    {
                        conf.warnings.push(ConfError::at(
                            file_name,
                            e.line,
                            e.name,
                            format!("{h} is listed already: this line changes nothing"),
                        ))
                    }
                    Ok(h) => conf.server_addresses.push(h),
                    Err(why) => errors.push(ConfError::at(file_name, e.line, e.name, why)),
                }
            }
        }
        if let (Some(e), None) = (
            entry(&found, SERVER_ADDRESS2),
            entry(&found, SERVER_ADDRESS),
        ) {
            errors.push(ConfError::at(
                file_name,
                e.line,
                e.name,
                "given without ServerAddress: a secondary address needs its primary",
            ));
        }
        if let (Some(addr), Some(e)) = (conf.metrics_listen, entry(&found, METRICS_LISTEN)) {
            if let Some(why) = listen_warning(addr) {
                conf.warnings
                    .push(ConfError::at(file_name, e.line, e.name, why));
            }
        }
        if conf.relay_type.is_relay() {
            conf.server_addresses.clear();
            conf.server_address_is_default = false;
            if conf.interface_mtu != DEFAULT_MTU && conf.prefix == TEREDO_PREFIX {
                if let Some(e) = entry(&found, INTERFACE_MTU) {
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
        } else if conf.local_discovery == LocalDiscovery::Disabled {
            for index in [DISCOVERY_INTERFACES, DISCOVERY_NETMASK] {
                if let Some(e) = entry(&found, index) {
                    conf.warnings.push(ConfError::at(
                        file_name,
                        e.line,
                        e.name,
                        "has no effect while LocalDiscovery is disabled",
                    ));
                }
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

    /// Reads and parses a `miredo.conf`.
    pub fn load(path: impl AsRef<Path>) -> Result<MiredoConfig, LoadError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        MiredoConfig::parse(&text, &path.display().to_string()).map_err(LoadError::Invalid)
    }

    /// Reads a `miredo.conf` and checks it ([`MiredoConfig::check`]); the
    /// error is [`LoadError::Unreadable`] alone.
    pub fn load_checked(path: impl AsRef<Path>) -> Result<Checked<MiredoConfig>, LoadError> {
        let path = path.as_ref();
        let text = read_text(path)?;
        Ok(MiredoConfig::check(&text, &path.display().to_string()))
    }

    /// Resolves the first server's primary and secondary addresses (client
    /// modes); `Ok(None)` in the relay modes. Blocks on the system
    /// resolver.
    pub fn resolve_servers(&self) -> io::Result<Option<(Ipv4Addr, Ipv4Addr)>> {
        let Some(primary_name) = self.server_addresses.first() else {
            return Ok(None);
        };
        let primary = resolve(primary_name)?;
        let secondary = match &self.server_address2 {
            Some(name) => resolve(name)?,
            None => next_ipv4(primary).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{primary_name} resolves to {primary}, which has no next address; set ServerAddress2"),
                )
            })?,
        };
        Ok(Some((primary, secondary)))
    }
}

fn entry<'a>(found: &[Option<Entry<'a>>], index: usize) -> Option<Entry<'a>> {
    found.get(index).copied().flatten()
}

/// `parse_uint` was given a u16 range.
fn mtu(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(MAX_MTU)
}

/// `parse_uint` was given a u16 range.
fn port(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests;
