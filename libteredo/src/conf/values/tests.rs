//! Tests of the directive value parsers.

use super::*;

#[test]
fn booleans() {
    for t in ["yes", "TRUE", "On", "enabled", "1"] {
        assert_eq!(parse_bool(t), Ok(true), "{t}");
    }
    for f in ["no", "False", "OFF", "Disabled", "0"] {
        assert_eq!(parse_bool(f), Ok(false), "{f}");
    }
    assert!(parse_bool("maybe").unwrap_err().contains("invalid boolean"));
    assert!(parse_bool("2").is_err());
}

#[test]
fn integers() {
    assert_eq!(parse_uint("3545", 0, 65535), Ok(3545));
    assert_eq!(parse_uint("0", 0, 65535), Ok(0));
    assert_eq!(parse_uint("65535", 0, 65535), Ok(65535));
    assert_eq!(parse_uint("0x500", 1280, 65535), Ok(1280));
    assert_eq!(parse_uint("0X0", 0, 1), Ok(0));
    assert_eq!(parse_uint("0x0000000000000000000001", 0, 1), Ok(1));
    assert_eq!(
        parse_uint("70000", 0, 65535),
        Err("70000 is out of range: must be between 0 and 65535".into())
    );
    assert_eq!(
        parse_uint("1279", 1280, 65535),
        Err("1279 is out of range: must be between 1280 and 65535".into())
    );
    assert!(parse_uint("99999999999999999999999", 0, 65535)
        .unwrap_err()
        .contains("out of range"));
    for bad in ["-1", "+1280", "12a", "0x", "0xg", "", "1.5"] {
        assert!(
            parse_uint(bad, 0, 65535)
                .unwrap_err()
                .contains("invalid number"),
            "{bad}"
        );
    }
    assert!(parse_uint("02400", 0, 65535).unwrap_err().contains("octal"));
}

#[test]
fn ipv4_and_netmask() {
    assert_eq!(parse_ipv4("192.0.2.1"), Ok(Ipv4Addr::new(192, 0, 2, 1)));
    for bad in ["192.0.2", "256.0.0.1", "localhost", "::1", "1.2.3.4.5"] {
        assert!(parse_ipv4(bad).is_err(), "{bad}");
    }
    for good in [
        "255.255.255.0",
        "255.255.0.0",
        "0.0.0.0",
        "255.255.255.255",
        "255.128.0.0",
    ] {
        assert!(parse_netmask(good).is_ok(), "{good}");
    }
    for bad in ["255.0.255.0", "0.255.255.255", "255.255.255.1"] {
        assert!(
            parse_netmask(bad).unwrap_err().contains("contiguous"),
            "{bad}"
        );
    }
}

#[test]
fn prefixes() {
    assert_eq!(parse_prefix("2001:0::"), Ok(0x2001_0000));
    assert_eq!(parse_prefix("2001::"), Ok(0x2001_0000));
    assert_eq!(parse_prefix("3ffe:831f::"), Ok(0x3ffe_831f));
    let e = parse_prefix("3ffe::1:2").unwrap_err();
    assert!(e.contains("not a /32") && e.contains("3ffe:0::"), "{e}");
    assert!(parse_prefix("2001::/32")
        .unwrap_err()
        .contains("invalid IPv6"));
    assert!(parse_prefix("::").unwrap_err().contains("unspecified"));
    assert!(parse_prefix("ff02::").unwrap_err().contains("multicast"));
    assert!(parse_prefix("fe80::").unwrap_err().contains("link-local"));
    assert!(parse_prefix("febf:ffff::")
        .unwrap_err()
        .contains("link-local"));
    assert!(parse_prefix("fec0::").is_ok());
    assert!(parse_prefix("localhost").is_err());
}

#[test]
fn interface_names() {
    assert_eq!(parse_ifname("teredo"), Ok("teredo".into()));
    assert!(parse_ifname("abcdefghijklmno").is_ok()); // 15 bytes
    assert!(parse_ifname("abcdefghijklmnop")
        .unwrap_err()
        .contains("at most 15"));
    assert!(parse_ifname("éééééééé").unwrap_err().contains("16 bytes"));
    for bad in ["a/b", "a:b", ".", ".."] {
        assert!(parse_ifname(bad).is_err(), "{bad}");
    }
    assert!(parse_ifname("...").is_ok());
}

#[test]
fn host_names() {
    for good in [
        "192.0.2.1",
        "teredo.remlab.net",
        "teredo.remlab.net.",
        "localhost",
        "a-b.c0",
        "10.example",
    ] {
        assert!(check_host(good).is_ok(), "{good}");
    }
    for bad in [
        "192.0.2",
        "300.1.1.1",
        "-a.b",
        "a-.b",
        "a..b",
        "a_b",
        "",
        ".",
        "a b",
    ] {
        assert!(check_host(bad).is_err(), "{bad}");
    }
    assert!(check_host(&"a".repeat(64)).is_err());
    assert!(check_host(&["a"; 127].join(".")).is_ok()); // 253 bytes
    assert!(check_host(&["ab"; 85].join(".")).is_err()); // 254
}

#[test]
fn facilities() {
    assert_eq!(SyslogFacility::parse("daemon"), Ok(SyslogFacility::Daemon));
    assert_eq!(SyslogFacility::parse("LOCAL7"), Ok(SyslogFacility::Local7));
    for f in SyslogFacility::ALL {
        assert_eq!(SyslogFacility::parse(f.as_str()), Ok(f));
    }
    assert!(SyslogFacility::parse("local8").is_err());
    assert_eq!(SyslogFacility::default(), SyslogFacility::Daemon);
}

/// Expectations taken from glibc 2.36 regcomp(REG_EXTENDED), which the C
/// miredo uses for DiscoveryInterfaces.
#[test]
fn ere_agrees_with_glibc() {
    let valid = [
        "a**",
        "a)",
        "()",
        "a||b",
        "^eth[0-9]+$",
        "[]a]",
        "[^]a]",
        "a{,3}",
        "a{1}{2}",
        "a+*",
        "[a-]",
        "a{32767}",
        "a|",
        "|a",
        "a^",
        "[[.-.]]",
        "[[=a=]]",
        "\\d",
        "a(|b)",
        "a{1,}",
        "\\(",
        "x{1}*",
        "[--z]",
        "[[.a.]-z]",
        "()*",
        ".*",
        "a{1,2}{3}",
        "a{0}",
        "a{,}",
        "[a-a]",
        "[[:alpha:]]",
        "[a-[.z.]]",
        "[[:alpha:]-]",
        "[a-z-]",
        "a{01}",
        "eth0",
        "^(eth|wlan)[0-9]+$",
    ];
    for p in valid {
        assert_eq!(check_ere(p), Ok(()), "{p}");
    }
    let invalid = [
        "*a",
        "(a",
        "[a",
        "[z-a]",
        "[[:foo:]]",
        "a{2,1}",
        "a{x",
        "a{1",
        "\\",
        "a|*b",
        "{1}",
        "(*a)",
        "[[:alpha:]-z]",
        "a{99999}",
        "a{32768}",
        "[[.foo.]]",
        "a{1,2",
        "^*",
        "(+)",
        "a{}",
        "[]",
        "[^]",
        "[[:alpha:]",
        "[a-c-e]",
        "$*",
        "a$*",
        "a^*",
        "(^*)",
        "[[:ALPHA:]]",
        "[[=ab=]]",
        "[[..]]",
        "[[==]]",
    ];
    for p in invalid {
        assert!(check_ere(p).is_err(), "{p}");
    }
}

#[test]
fn listen_addresses() {
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(parse_listen("9100"), Ok(sa("127.0.0.1:9100")));
    assert_eq!(parse_listen("0.0.0.0:9100"), Ok(sa("0.0.0.0:9100")));
    assert_eq!(parse_listen("[::1]:9100"), Ok(sa("[::1]:9100")));
    assert_eq!(parse_listen("[2001:db8::1]:80"), Ok(sa("[2001:db8::1]:80")));
    for bad in [
        "",
        "0",
        "65536",
        "x",
        "127.0.0.1",
        "127.0.0.1:",
        ":9100",
        "::1:9100",
        "[::1]9100",
        "[::1]:",
        "host:9100",
        "1.2.3:9100",
        "127.0.0.1:+80",
        "127.0.0.1:0x50",
    ] {
        assert!(parse_listen(bad).is_err(), "{bad:?} accepted");
    }
    assert!(listen_warning(sa("127.0.0.1:1")).is_none());
    assert!(listen_warning(sa("[::1]:1")).is_none());
    assert!(listen_warning(sa("0.0.0.0:1")).is_some());
}
