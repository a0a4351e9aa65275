//! Tests of the miredo.conf parser: defaults, every directive, and the
//! errors with their file, line and reason.

use super::*;

fn ok(text: &str) -> MiredoConfig {
    match MiredoConfig::parse(text, "m.conf") {
        Ok(c) => c,
        Err(e) => panic!("{text:?}: {e:?}"),
    }
}

fn errs(text: &str) -> Vec<String> {
    match MiredoConfig::parse(text, "m.conf") {
        Ok(c) => panic!("{text:?} accepted: {c:?}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn one_err(text: &str) -> String {
    let e = errs(text);
    assert_eq!(e.len(), 1, "{e:?}");
    e.into_iter().next().unwrap_or_default()
}

#[test]
fn metrics_listener_in_both_modes() {
    assert_eq!(ok("").metrics_listen, None);
    for mode in ["client", "cone"] {
        let c = ok(&format!("RelayType {mode}\nMetricsListen [::1]:9201\n"));
        assert_eq!(c.metrics_listen, Some("[::1]:9201".parse().unwrap()));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }
    let c = ok("MetricsListen 192.0.2.7:9201\n");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(MiredoConfig::parse("MetricsListen 0\n", "f").is_err());
    assert!(MiredoConfig::parse("MetricsListen yes\n", "f").is_err());
}

#[test]
fn peer_list_directives() {
    let c = ok("MaxPeers 10000\nPeerRateLimit 0\n");
    assert_eq!(c.max_peers, 10_000);
    assert_eq!(c.peer_rate_limit, 0);
    assert_eq!(c.global_peer_rate_limit, DEFAULT_GLOBAL_PEER_RATE_LIMIT);
    assert_eq!(c.bubble_rate_limit, DEFAULT_BUBBLE_RATE_LIMIT);
    assert_eq!(c.icmp_rate_limit, DEFAULT_ICMP_RATE_LIMIT);
    let c = ok("GlobalPeerRateLimit 0\nBubbleRateLimit 50\nIcmpRateLimit 3\n");
    assert_eq!(
        (
            c.global_peer_rate_limit,
            c.bubble_rate_limit,
            c.icmp_rate_limit
        ),
        (0, 50, 3)
    );
    assert!(MiredoConfig::parse("BubbleRateLimit 0\n", "f").is_err());
    assert!(MiredoConfig::parse("IcmpRateLimit 0\n", "f").is_err());
    assert!(MiredoConfig::parse("GlobalPeerRateLimit 2000000\n", "f").is_err());
    let c = ok("");
    assert_eq!(c.max_peers, DEFAULT_MAX_PEERS);
    assert_eq!(c.peer_rate_limit, DEFAULT_PEER_RATE_LIMIT);
    assert!(MiredoConfig::parse("MaxPeers 0\n", "f").is_err());
    assert!(MiredoConfig::parse("MaxPeers 99999999999\n", "f").is_err());
    assert!(MiredoConfig::parse("RelayType cone\nMaxPeers 5\nPeerRateLimit 3\n", "f").is_ok());
    assert_eq!(c.max_queued_bytes, DEFAULT_MAX_QUEUED_BYTES);
    let c = ok("MaxQueuedBytes 268435456\n");
    assert_eq!(c.max_queued_bytes, 256 << 20);
    assert!(MiredoConfig::parse("MaxQueuedBytes -1\n", "f").is_err());
    assert!(MiredoConfig::parse("MaxQueuedBytes 99999999999999\n", "f").is_err());
}

#[test]
fn empty_file_is_a_client_of_the_default_server() {
    let c = ok("");
    assert_eq!(c, MiredoConfig::default());
    assert_eq!(c.relay_type, RelayType::Client);
    assert_eq!(c.server_addresses, DEFAULT_SERVERS);
    assert!(c.server_address_is_default);
    // None of the servers whose operators announced them gone.
    for gone in [
        "teredo.remlab.net",
        "teredo-debian.remlab.net",
        "teredo.trex.fi",
        "teredo.ipv6.microsoft.com",
        "win8.ipv6.microsoft.com",
    ] {
        assert!(!DEFAULT_SERVERS.contains(&gone), "{gone}");
    }
    assert_eq!(c.interface_name, "teredo");
    assert_eq!(c.interface_mtu, 1280);
    assert_eq!(c.prefix, 0x2001_0000);
    assert_eq!(c.bind_address, Ipv4Addr::UNSPECIFIED);
    assert_eq!(c.bind_port, 0);
    assert_eq!(c.syslog_facility, SyslogFacility::Daemon);
    assert_eq!(c.local_discovery, LocalDiscovery::Disabled);
    assert!(c.warnings.is_empty());
}

#[test]
fn debian_default_file() {
    let c = ok("# Please refer to the miredo.conf(5) man page for details.\nInterfaceName\tteredo\n\n# Pick a Teredo server:\n#ServerAddress\tteredo.ipv6.microsoft.com\nServerAddress\tteredo-debian.remlab.net\n\n#BindPort\t3545\n");
    assert_eq!(c.server_addresses, ["teredo-debian.remlab.net"]);
    assert!(!c.server_address_is_default);
}

#[test]
fn relay_types() {
    for (v, t) in [
        ("client", RelayType::Client),
        ("AutoClient", RelayType::AutoClient),
        ("relay", RelayType::Cone),
        ("CONE", RelayType::Cone),
        ("restricted", RelayType::Restricted),
    ] {
        assert_eq!(ok(&format!("RelayType {v}\n")).relay_type, t, "{v}");
    }
    assert!(RelayType::AutoClient.is_client());
    assert!(RelayType::Restricted.is_relay());
    assert_eq!(
        one_err("RelayType server\n"),
        "m.conf:1: RelayType: invalid relay type \"server\" (expected client, autoclient, relay, cone or restricted)"
    );
    let c = ok("RelayType cone\n");
    assert!(c.server_addresses.is_empty());
    assert!(!c.server_address_is_default);
    assert!(c.warnings.is_empty());
    let w = ok("relaytype restricted\n").warnings;
    assert_eq!(w.len(), 1);
    assert!(w[0]
        .to_string()
        .starts_with("m.conf:1: relaytype: restricted is deprecated"));
}

#[test]
fn invalid_mode_skips_mode_checks() {
    // Prefix may be right or wrong depending on the intended mode: do
    // not guess, report only the mode.
    assert_eq!(
        errs("RelayType bogus\nPrefix 2001::\nServerAddress 192.0.2.1\n").len(),
        1
    );
}

#[test]
fn server_addresses() {
    let c = ok("ServerAddress 192.0.2.1\nServerAddress2 192.0.2.9\n");
    assert_eq!(c.server_addresses, ["192.0.2.1"]);
    assert_eq!(c.server_address2.as_deref(), Some("192.0.2.9"));
    assert_eq!(
        c.resolve_servers().unwrap(),
        Some((Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 9)))
    );
    let c = ok("ServerAddress 192.0.2.255\n");
    assert_eq!(
        c.resolve_servers().unwrap(),
        Some((Ipv4Addr::new(192, 0, 2, 255), Ipv4Addr::new(192, 0, 3, 0)))
    );
    assert!(ok("ServerAddress 255.255.255.255\n")
        .resolve_servers()
        .is_err());
    assert_eq!(ok("RelayType cone\n").resolve_servers().unwrap(), None);
    assert_eq!(
        ok("ServerAddress teredo.example.net\n").server_addresses,
        ["teredo.example.net"]
    );
    assert_eq!(
        one_err("ServerAddress 192.0.2\n"),
        "m.conf:1: ServerAddress: invalid IPv4 address \"192.0.2\" (expected a dotted quad such as 192.0.2.1, or a host name)"
    );
    assert!(one_err("ServerAddress bad_name\n").contains("invalid host name"));
    assert!(one_err("ServerAddress 192.0.2.1\nServerAddress2 -x\n")
        .starts_with("m.conf:2: ServerAddress2:"));
    assert_eq!(
        one_err("ServerAddress2 192.0.2.9\n"),
        "m.conf:1: ServerAddress2: given without ServerAddress: a secondary address needs its primary"
    );
}

#[test]
fn port_mapping() {
    assert_eq!(ok("").port_mapping, PortMapping::Auto);
    assert_eq!(ok("").port_mapping_lifetime, 3600);
    for (v, want) in [
        ("auto", PortMapping::Auto),
        ("PCP", PortMapping::Pcp),
        ("natpmp", PortMapping::NatPmp),
        ("UPnP", PortMapping::Upnp),
        ("off", PortMapping::Off),
        ("disabled", PortMapping::Off),
    ] {
        assert_eq!(ok(&format!("PortMapping {v}\n")).port_mapping, want, "{v}");
    }
    assert!(one_err("PortMapping nat-pmp\n").contains("expected auto, pcp, natpmp, upnp or off"));
    assert_eq!(ok("PortMappingLifetime 10\n").port_mapping_lifetime, 10);
    assert!(!one_err("PortMappingLifetime 1\n").is_empty());
    assert!(!one_err("PortMappingLifetime 86401\n").is_empty());
    assert!(one_err("RelayType cone\nPortMapping auto\n").contains("superfluous"));
}

#[test]
fn local_discovery() {
    for (v, d) in [
        ("enabled", LocalDiscovery::Enabled),
        ("Forced", LocalDiscovery::Forced),
        ("disabled", LocalDiscovery::Disabled),
        ("yes", LocalDiscovery::Enabled),
        ("ON", LocalDiscovery::Enabled),
        ("true", LocalDiscovery::Enabled),
        ("off", LocalDiscovery::Disabled),
        ("no", LocalDiscovery::Disabled),
        ("false", LocalDiscovery::Disabled),
    ] {
        assert_eq!(
            ok(&format!("LocalDiscovery {v}\n")).local_discovery,
            d,
            "{v}"
        );
    }
    assert!(one_err("LocalDiscovery maybe\n").contains("expected enabled, forced or disabled"));
    let c = ok("LocalDiscovery enabled\nDiscoveryInterfaces ^(eth|wlan)[0-9]+$\nDiscoveryNetmask 255.255.0.0\n");
    assert_eq!(
        c.discovery_interfaces.as_ref().map(|d| d.as_str()),
        Some("^(eth|wlan)[0-9]+$")
    );
    assert_eq!(c.discovery_netmask, Some(Ipv4Addr::new(255, 255, 0, 0)));
    assert!(c.warnings.is_empty());
    assert!(one_err("DiscoveryInterfaces (eth\n")
        .contains("invalid extended regular expression \"(eth\": a '(' is not closed"));
    assert!(one_err("DiscoveryNetmask 255.0.255.0\n").contains("contiguous"));
    let c = ok("DiscoveryInterfaces eth0\nDiscoveryNetmask 255.255.255.0\n");
    assert_eq!(c.warnings.len(), 2);
    assert!(c.warnings[0]
        .to_string()
        .contains("no effect while LocalDiscovery is disabled"));
}

#[test]
fn relay_directives() {
    let c = ok("RelayType cone\nPrefix 3ffe:831f::\nInterfaceMTU 1500\n");
    assert_eq!(c.prefix, 0x3ffe_831f);
    assert_eq!(c.interface_mtu, 1500);
    assert!(c.warnings.is_empty());
    let c = ok("RelayType cone\nInterfaceMTU 1400\n");
    assert!(c.warnings[0]
        .reason
        .contains("breaks other Teredo implementations"));
    assert_eq!(
        ok("RelayType cone\nInterfaceMTU 0x500\n").interface_mtu,
        1280
    );
    assert_eq!(
        one_err("RelayType cone\nInterfaceMTU 1000\n"),
        "m.conf:2: InterfaceMTU: 1000 is out of range: must be between 1280 and 65535"
    );
    assert!(one_err("RelayType cone\nInterfaceMTU 70000\n").contains("between 1280 and 65535"));
    assert!(one_err("RelayType cone\nPrefix 3ffe::1:2\n").contains("not a /32 prefix"));
    assert!(one_err("RelayType cone\nPrefix ::\n").contains("unspecified"));
}

#[test]
fn superfluous_directives() {
    assert_eq!(
        one_err("Prefix 2001::\n"),
        "m.conf:1: Prefix: superfluous: only the relay modes (cone, restricted) use it, and RelayType is client by default"
    );
    assert_eq!(
        one_err("RelayType client\nInterfaceMTU 1280\n"),
        "m.conf:2: InterfaceMTU: superfluous: only the relay modes (cone, restricted) use it, and RelayType is client at line 1"
    );
    let e = errs("RelayType relay\nServerAddress 192.0.2.1\nServerAddress2 x\nLocalDiscovery on\nDiscoveryInterfaces a\nDiscoveryNetmask 255.0.0.0\n");
    assert_eq!(e.len(), 5, "{e:?}");
    assert_eq!(
        e[0],
        "m.conf:2: ServerAddress: superfluous: only the client modes (client, autoclient) use it, and RelayType is relay at line 1"
    );
    // A superfluous directive is not also checked for its value.
    assert_eq!(errs("Prefix nonsense\n").len(), 1);
}

#[test]
fn general_directives() {
    let c =
        ok("InterfaceName miredo0\nBindAddress 192.0.2.7\nBindPort 3545\nSyslogFacility local3\n");
    assert_eq!(c.interface_name, "miredo0");
    assert_eq!(c.bind_address, Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(c.bind_port, 3545);
    assert_eq!(c.syslog_facility, SyslogFacility::Local3);
    let c = ok(
        "RelayType cone\nInterfaceName t\nBindPort 0\nBindAddress 0.0.0.0\nSyslogFacility USER\n",
    );
    assert_eq!(c.syslog_facility, SyslogFacility::User);
    assert_eq!(ok("BindPort 65535\n").bind_port, 65535);
    assert_eq!(
        one_err("BindPort 70000\n"),
        "m.conf:1: BindPort: 70000 is out of range: must be between 0 and 65535"
    );
    assert!(one_err("BindPort -1\n").contains("invalid number"));
    assert!(one_err("BindPort 010\n").contains("octal"));
    assert!(one_err("BindAddress localhost\n").contains("invalid IPv4 address"));
    assert!(one_err("InterfaceName abcdefghijklmnopqrstuvwxyz\n").contains("at most 15"));
    assert!(one_err("InterfaceName a/b\n").contains("does not allow"));
    assert!(one_err("SyslogFacility local9\n").contains("unknown syslog facility"));
}

#[test]
fn case_insensitive_names_and_values() {
    let c = ok("RELAYTYPE Cone\nprefix 2001:0::\nINTERFACEmtu 1280\nsyslogfacility Daemon\n");
    assert_eq!(c.relay_type, RelayType::Cone);
}

#[test]
fn comments_blank_lines_and_crlf() {
    let c =
        ok("\n# comment\n   # indented\nServerAddress 192.0.2.1 # the server\r\n\t\nBindPort 3545");
    assert_eq!(c.bind_port, 3545);
    assert_eq!(c.server_addresses, ["192.0.2.1"]);
}

#[test]
fn duplicates_unknowns_and_all_errors_at_once() {
    let e = errs("ServerAddress 192.0.2.1\nFoo bar\nbindport 1\nBindPort 99999\nInterfaceName\nBindPort 1 2\nMaxPeers 0\n");
    assert_eq!(
        e,
        vec![
            "m.conf:2: Foo: unknown directive",
            "m.conf:4: BindPort: given twice (first at line 3)",
            "m.conf:5: InterfaceName: missing value",
            "m.conf:6: BindPort: unexpected text after the value \"1\": \"2\" (a value is a single word)",
            "m.conf:7: MaxPeers: 0 is out of range: must be between 1 and 16777216",
        ]
    );
}

#[test]
fn load_distinguishes_unreadable_from_invalid() {
    let dir = std::env::temp_dir().join(format!("libteredo-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.conf");
    let bad = dir.join("bad.conf");
    std::fs::write(&good, "ServerAddress 192.0.2.1\n").unwrap();
    std::fs::write(&bad, b"ServerAddress \xff\n").unwrap();
    assert!(MiredoConfig::load(&good).is_ok());
    match MiredoConfig::load(&bad) {
        Err(LoadError::Invalid(e)) => {
            assert_eq!(e.len(), 1);
            assert!(e[0].file.ends_with("bad.conf"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        MiredoConfig::load(dir.join("missing.conf")),
        Err(LoadError::Unreadable { .. })
    ));
    assert!(matches!(
        MiredoConfig::load(&dir),
        Err(LoadError::Unreadable { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn several_servers_in_order_of_preference() {
    let c = ok("ServerAddress dead.example\nserveraddress 192.0.2.1\nServerAddress2 192.0.2.9\nServerAddress live.example\n");
    assert_eq!(
        c.server_addresses,
        ["dead.example", "192.0.2.1", "live.example"]
    );
    assert_eq!(c.server_address2.as_deref(), Some("192.0.2.9"));
    assert!(!c.server_address_is_default);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // A repeat changes nothing: a warning, not an error.
    let c = ok("ServerAddress a.example\nServerAddress A.example\n");
    assert_eq!(c.server_addresses, ["a.example"]);
    assert_eq!(
        c.warnings[0].to_string(),
        "m.conf:2: ServerAddress: A.example is listed already: this line changes nothing"
    );
    // Each line is checked.
    assert_eq!(
        one_err("ServerAddress a.example\nServerAddress 10.0.0\n"),
        "m.conf:2: ServerAddress: invalid IPv4 address \"10.0.0\" (expected a dotted quad such as 192.0.2.1, or a host name)"
    );
    // Bounded.
    let many: String = (0..=MAX_SERVER_ADDRESSES)
        .map(|i| format!("ServerAddress s{i}.example\n"))
        .collect();
    assert!(one_err(&many).contains("more than 16 servers"));
    // A relay refuses every line.
    let e = errs("RelayType cone\nServerAddress a.example\nServerAddress b.example\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[1].starts_with("m.conf:3: ServerAddress: superfluous"),
        "{e:?}"
    );
    // ServerAddress2 still needs a ServerAddress.
    assert!(one_err("ServerAddress2 192.0.2.9\n").contains("needs its primary"));
}

#[test]
fn the_packaged_file_and_the_page_name_the_default_servers() {
    // The packaged miredo.conf lists the built-in servers, in their order.
    let packaged = include_str!("../../../../packaging/etc/miredo.conf");
    let c = MiredoConfig::parse(packaged, "packaging/etc/miredo.conf").unwrap();
    assert_eq!(c.server_addresses, DEFAULT_SERVERS);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(packaged.contains(DEFAULT_SERVERS_REVIEWED));
    // miredo.conf(5) names each, and when the list was reviewed.
    let page = include_str!("../../../../man/miredo.conf.5").replace("\\-", "-");
    for s in DEFAULT_SERVERS {
        assert!(page.contains(s), "miredo.conf.5 does not name {s}");
    }
    assert!(page.contains(DEFAULT_SERVERS_REVIEWED));
}
