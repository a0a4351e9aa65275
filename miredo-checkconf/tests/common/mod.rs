//! The corpus of configuration files shared by the corpus and interop
//! tests: what our miredo-checkconf must say about each file, and how the
//! C miredo-checkconf 1.2.6 judges it.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

/// Which format a case is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Miredo,
    Server,
}

/// How the C miredo-checkconf 1.2.6 judges a file, compared with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C {
    /// It judges right: same verdict as ours.
    Agrees,
    /// It accepts a file that is wrong (PROTOCOL.md, "Where the C
    /// miredo-checkconf is wrong"); we reject it. The text says why.
    WronglyAccepts(&'static str),
    /// It rejects a file that is right; we accept it.
    WronglyRejects(&'static str),
    /// It rejects a directive or default that 1.2.6 predates and this
    /// suite adds (local discovery, the default server); we accept it.
    Predates(&'static str),
    /// Not comparable: it cannot check server files, or its verdict
    /// depends on DNS.
    NotComparable(&'static str),
}

/// One file of the corpus.
pub struct Case {
    pub name: &'static str,
    pub format: Format,
    pub text: &'static [u8],
    /// Our exit status: 0 valid, 1 invalid.
    pub status: i32,
    /// Our standard error, line by line, `{F}` standing for the file path.
    pub stderr: &'static [&'static str],
    pub c: C,
}

const fn m(
    name: &'static str,
    text: &'static str,
    status: i32,
    stderr: &'static [&'static str],
    c: C,
) -> Case {
    Case {
        name,
        format: Format::Miredo,
        text: text.as_bytes(),
        status,
        stderr,
        c,
    }
}

const fn s(
    name: &'static str,
    text: &'static str,
    status: i32,
    stderr: &'static [&'static str],
) -> Case {
    Case {
        name,
        format: Format::Server,
        text: text.as_bytes(),
        status,
        stderr,
        c: C::NotComparable("the C tool cannot check miredo-server.conf"),
    }
}

const NOTE_DEFAULT: &str =
    "{F}: ServerAddress: note: not given; the client uses the default servers win10.ipv6.microsoft.com, win1710.ipv6.microsoft.com, win1711.ipv6.microsoft.com, teredo.iks-jena.de";

pub const CORPUS: &[Case] = &[
    // Valid client files.
    m("client-ip", "ServerAddress 192.0.2.1\n", 0, &[], C::Agrees),
    m(
        "client-full",
        "# a full client\nRelayType client\nServerAddress 192.0.2.1\nServerAddress2 192.0.2.9\nInterfaceName teredo0\nBindAddress 0.0.0.0\nBindPort 3545\nSyslogFacility local7\n",
        0,
        &[],
        C::Agrees,
    ),
    m("autoclient", "RelayType autoclient\nServerAddress 192.0.2.1\n", 0, &[], C::Agrees),
    m("server-localhost", "ServerAddress localhost\n", 0, &[], C::Agrees),
    m(
        "case-insensitive",
        "relaytype CLIENT\nSERVERADDRESS 192.0.2.1\nInterfaceNAME teredo\nsyslogfacility USER\n",
        0,
        &[],
        C::Agrees,
    ),
    m(
        "comments-and-blanks",
        "# Sample\n\n   # indented comment\n\t\nServerAddress\t192.0.2.1\n\n#BindPort 3545\n",
        0,
        &[],
        C::Agrees,
    ),
    m("trailing-comment", "ServerAddress 192.0.2.1 # primary\n", 0, &[], C::Agrees),
    m("crlf", "ServerAddress 192.0.2.1\r\nBindPort 3545\r\n", 0, &[], C::Agrees),
    m("bindport-max", "ServerAddress 192.0.2.1\nBindPort 65535\n", 0, &[], C::Agrees),
    m("bindport-zero", "ServerAddress 192.0.2.1\nBindPort 0\n", 0, &[], C::Agrees),
    m("facility-kern", "ServerAddress 192.0.2.1\nSyslogFacility kern\n", 0, &[], C::Agrees),
    // Valid relay files.
    m("relay-minimal", "RelayType relay\n", 0, &[], C::Agrees),
    m(
        "cone-full",
        "RelayType cone\nPrefix 2001:0::\nInterfaceMTU 1280\nInterfaceName teredo\nBindAddress 192.0.2.7\nBindPort 3545\n",
        0,
        &[],
        C::Agrees,
    ),
    m(
        "restricted",
        "RelayType restricted\n",
        0,
        &["{F}:1: RelayType: warning: restricted is deprecated: direct bubbles make NAT traversal unreliable; use cone"],
        C::Agrees,
    ),
    m(
        "relay-other-prefix",
        "RelayType cone\nPrefix 3ffe:831f::\nInterfaceMTU 1400\n",
        0,
        &[],
        C::Agrees,
    ),
    m(
        "relay-mtu-hex",
        "RelayType cone\nPrefix 3ffe:831f::\nInterfaceMTU 0x578\n",
        0,
        &[],
        C::Agrees,
    ),
    m(
        "relay-mtu-default-prefix",
        "RelayType cone\nInterfaceMTU 1400\n",
        0,
        &["{F}:2: InterfaceMTU: warning: an MTU other than 1280 with the standard prefix 2001:0:: breaks other Teredo implementations"],
        C::Agrees,
    ),
    // Invalid files the C tool rejects too.
    m(
        "duplicate",
        "BindPort 3545\nbindport 3546\n",
        1,
        &["{F}:2: bindport: given twice (first at line 1)"],
        C::Agrees,
    ),
    m(
        "several-servers",
        "ServerAddress 192.0.2.1\nserveraddress 192.0.2.2\nServerAddress 192.0.2.1\n",
        0,
        &["{F}:3: ServerAddress: warning: 192.0.2.1 is listed already: this line changes nothing"],
        C::Predates("several ServerAddress lines, in order of preference"),
    ),
    m(
        "duplicate-relaytype",
        "RelayType cone\nRelayType client\n",
        1,
        &["{F}:2: RelayType: given twice (first at line 1)"],
        C::Agrees,
    ),
    m(
        "unknown",
        "ServerAddress 192.0.2.1\nFoo bar\n",
        1,
        &["{F}:2: Foo: unknown directive"],
        C::Agrees,
    ),
    m(
        "misspelt",
        "ServerAdress 192.0.2.1\nbindprot 3545\n",
        1,
        &[
            "{F}:1: ServerAdress: unknown directive; did you mean ServerAddress?",
            "{F}:2: bindprot: unknown directive; did you mean BindPort?",
        ],
        C::Agrees,
    ),
    m(
        "errors-and-warnings",
        "RelayType restricted\nInterfaceMTU 1400\nBindPort 70000\n",
        1,
        &[
            "{F}:1: RelayType: warning: restricted is deprecated: direct bubbles make NAT traversal unreliable; use cone",
            "{F}:2: InterfaceMTU: warning: an MTU other than 1280 with the standard prefix 2001:0:: breaks other Teredo implementations",
            "{F}:3: BindPort: 70000 is out of range: must be between 0 and 65535",
        ],
        C::Agrees,
    ),
    m(
        "bad-relaytype",
        "RelayType server\nServerAddress 192.0.2.1\n",
        1,
        &["{F}:1: RelayType: invalid relay type \"server\" (expected client, autoclient, relay, cone or restricted)"],
        C::Agrees,
    ),
    m(
        "server-in-relay",
        "RelayType cone\nServerAddress 192.0.2.1\n",
        1,
        &["{F}:2: ServerAddress: superfluous: only the client modes (client, autoclient) use it, and RelayType is cone at line 1"],
        C::Agrees,
    ),
    m(
        "prefix-in-client",
        "ServerAddress 192.0.2.1\nPrefix 2001:0::\n",
        1,
        &["{F}:2: Prefix: superfluous: only the relay modes (cone, restricted) use it, and RelayType is client by default"],
        C::Agrees,
    ),
    m(
        "mtu-in-client",
        "RelayType client\nServerAddress 192.0.2.1\nInterfaceMTU 1280\n",
        1,
        &["{F}:3: InterfaceMTU: superfluous: only the relay modes (cone, restricted) use it, and RelayType is client at line 1"],
        C::Agrees,
    ),
    m(
        "bindport-range",
        "ServerAddress 192.0.2.1\nBindPort 70000\n",
        1,
        &["{F}:2: BindPort: 70000 is out of range: must be between 0 and 65535"],
        C::Agrees,
    ),
    m(
        "bindport-negative",
        "ServerAddress 192.0.2.1\nBindPort -1\n",
        1,
        &["{F}:2: BindPort: invalid number \"-1\" (must be between 0 and 65535)"],
        C::Agrees,
    ),
    m(
        "bindport-word",
        "ServerAddress 192.0.2.1\nBindPort teredo\n",
        1,
        &["{F}:2: BindPort: invalid number \"teredo\" (must be between 0 and 65535)"],
        C::Agrees,
    ),
    m(
        "relay-mtu-range",
        "RelayType cone\nInterfaceMTU 70000\n",
        1,
        &["{F}:2: InterfaceMTU: 70000 is out of range: must be between 1280 and 65535"],
        C::Agrees,
    ),
    m(
        "bad-facility",
        "ServerAddress 192.0.2.1\nSyslogFacility local9\n",
        1,
        &["{F}:2: SyslogFacility: unknown syslog facility \"local9\" (expected daemon, user, kern, local0 to local7, auth, authpriv, cron, ftp, lpr, mail, news, syslog or uucp)"],
        C::Agrees,
    ),
    m(
        "missing-value",
        "ServerAddress 192.0.2.1\nBindPort\n",
        1,
        &["{F}:2: BindPort: missing value"],
        C::Agrees,
    ),
    m(
        "bad-server-address",
        "ServerAddress 300.1.1.1\n",
        1,
        &["{F}:1: ServerAddress: invalid IPv4 address \"300.1.1.1\" (expected a dotted quad such as 192.0.2.1, or a host name)"],
        C::Agrees,
    ),
    m(
        "bad-bind-address",
        "ServerAddress 192.0.2.1\nBindAddress 1.2.3.4.5\n",
        1,
        &["{F}:2: BindAddress: invalid IPv4 address \"1.2.3.4.5\" (expected a dotted quad such as 192.0.2.1)"],
        C::Agrees,
    ),
    m(
        "bad-prefix-syntax",
        "RelayType cone\nPrefix 2001:::\n",
        1,
        &["{F}:2: Prefix: invalid IPv6 prefix \"2001:::\" (expected a /32 prefix written as an address, such as 2001:0::)"],
        C::Agrees,
    ),
    m(
        "prefix-with-length",
        "RelayType cone\nPrefix 2001::/32\n",
        1,
        &["{F}:2: Prefix: invalid IPv6 prefix \"2001::/32\" (expected a /32 prefix written as an address, such as 2001:0::)"],
        C::Agrees,
    ),
    m(
        "hash-value",
        "ServerAddress #192.0.2.1\n",
        1,
        &["{F}:1: ServerAddress: missing value"],
        C::Agrees,
    ),
    m(
        "secondary-without-primary",
        "ServerAddress2 192.0.2.9\n",
        1,
        &["{F}:1: ServerAddress2: given without ServerAddress: a secondary address needs its primary"],
        C::Agrees,
    ),
    m(
        "many-errors",
        "RelayType cone\nServerAddress 192.0.2.1\nPrefix 2001:0::\nInterfaceMTU 65536\nBindPort 65536\nSyslogFacility nowhere\nFoo 1\nprefix 2001:0::\n",
        1,
        &[
            "{F}:2: ServerAddress: superfluous: only the client modes (client, autoclient) use it, and RelayType is cone at line 1",
            "{F}:4: InterfaceMTU: 65536 is out of range: must be between 1280 and 65535",
            "{F}:5: BindPort: 65536 is out of range: must be between 0 and 65535",
            "{F}:6: SyslogFacility: unknown syslog facility \"nowhere\" (expected daemon, user, kern, local0 to local7, auth, authpriv, cron, ftp, lpr, mail, news, syslog or uucp)",
            "{F}:7: Foo: unknown directive",
            "{F}:8: prefix: given twice (first at line 3)",
        ],
        C::Agrees,
    ),
    m(
        "discovery-bad-value",
        "ServerAddress 192.0.2.1\nLocalDiscovery maybe\n",
        1,
        &["{F}:2: LocalDiscovery: invalid value \"maybe\" (expected enabled, forced or disabled, or a boolean)"],
        C::Agrees,
    ),
    m(
        "discovery-bad-regex",
        "ServerAddress 192.0.2.1\nLocalDiscovery enabled\nDiscoveryInterfaces (eth\n",
        1,
        &["{F}:3: DiscoveryInterfaces: invalid extended regular expression \"(eth\": a '(' is not closed"],
        C::Agrees,
    ),
    m(
        "discovery-in-relay",
        "RelayType cone\nLocalDiscovery enabled\n",
        1,
        &["{F}:2: LocalDiscovery: superfluous: only the client modes (client, autoclient) use it, and RelayType is cone at line 1"],
        C::Agrees,
    ),
    // Invalid files the C tool accepts.
    m(
        "ifname-too-long",
        "ServerAddress 192.0.2.1\nInterfaceName teredo-interface0\n",
        1,
        &["{F}:2: InterfaceName: interface name \"teredo-interface0\" is 17 bytes long; Linux allows at most 15"],
        C::WronglyAccepts("an interface name longer than the kernel's 15 bytes"),
    ),
    m(
        "ifname-slash",
        "ServerAddress 192.0.2.1\nInterfaceName te/redo\n",
        1,
        &["{F}:2: InterfaceName: interface name \"te/redo\" contains '/', which Linux does not allow"],
        C::WronglyAccepts("a '/' in an interface name"),
    ),
    m(
        "relay-mtu-small",
        "RelayType cone\nInterfaceMTU 1000\n",
        1,
        &["{F}:2: InterfaceMTU: 1000 is out of range: must be between 1280 and 65535"],
        C::WronglyAccepts("an IPv6 MTU under 1280"),
    ),
    m(
        "relay-mtu-zero",
        "RelayType cone\nInterfaceMTU 0\n",
        1,
        &["{F}:2: InterfaceMTU: 0 is out of range: must be between 1280 and 65535"],
        C::WronglyAccepts("an MTU of 0"),
    ),
    m(
        "prefix-not-32",
        "RelayType cone\nPrefix 3ffe::1:2\n",
        1,
        &["{F}:2: Prefix: 3ffe::1:2 is not a /32 prefix: only its first 32 bits may be non-zero (did you mean 3ffe:0::?)"],
        C::WronglyAccepts("a prefix with bits set beyond the first 32"),
    ),
    m(
        "prefix-zero",
        "RelayType cone\nPrefix ::\n",
        1,
        &["{F}:2: Prefix: :: is the unspecified address, not a Teredo prefix"],
        C::WronglyAccepts("the unspecified address as a prefix"),
    ),
    m(
        "prefix-multicast",
        "RelayType cone\nPrefix ff02::\n",
        1,
        &["{F}:2: Prefix: ff02:: is a multicast prefix, not a Teredo prefix"],
        C::WronglyAccepts("a multicast prefix"),
    ),
    m(
        "extra-words",
        "ServerAddress 192.0.2.1 192.0.2.2\n",
        1,
        &["{F}:1: ServerAddress: unexpected text after the value \"192.0.2.1\": \"192.0.2.2\" (a value is a single word)"],
        C::WronglyAccepts("it silently drops every word after the first"),
    ),
    m(
        "short-ipv4",
        "ServerAddress 192.0.2\n",
        1,
        &["{F}:1: ServerAddress: invalid IPv4 address \"192.0.2\" (expected a dotted quad such as 192.0.2.1, or a host name)"],
        C::WronglyAccepts("192.0.2 silently means 192.0.0.2"),
    ),
    m(
        "octal-port",
        "ServerAddress 192.0.2.1\nBindPort 010\n",
        1,
        &["{F}:2: BindPort: ambiguous number \"010\": a leading zero means octal to the C miredo; write it without the leading zero"],
        C::WronglyAccepts("010 silently means port 8"),
    ),
    // Valid files the C tool rejects.
    m(
        "no-final-newline",
        "ServerAddress 192.0.2.1",
        0,
        &[],
        C::WronglyRejects("it calls a last line without a newline \"overly long\""),
    ),
    m(
        "no-server",
        "RelayType client\nInterfaceName teredo\n",
        0,
        &[NOTE_DEFAULT],
        C::Predates("the default servers"),
    ),
    m("empty", "", 0, &[NOTE_DEFAULT], C::Predates("the default servers")),
    m(
        "discovery",
        "ServerAddress 192.0.2.1\nLocalDiscovery enabled\nDiscoveryInterfaces ^(eth|wlan)[0-9]+$\nDiscoveryNetmask 255.255.0.0\n",
        0,
        &[],
        C::Predates("local discovery (RFC 4380 5.2.8)"),
    ),
    m(
        "discovery-forced",
        "ServerAddress 192.0.2.1\nLocalDiscovery forced\n",
        0,
        &[],
        C::Predates("local discovery (RFC 4380 5.2.8)"),
    ),
    m(
        "discovery-disabled-filters",
        "ServerAddress 192.0.2.1\nDiscoveryNetmask 255.255.255.0\n",
        0,
        &["{F}:2: DiscoveryNetmask: warning: has no effect while LocalDiscovery is disabled"],
        C::Predates("local discovery (RFC 4380 5.2.8)"),
    ),
    // Depends on DNS.
    m(
        "debian-default",
        "# Please refer to the miredo.conf(5) man page for details.\nInterfaceName\tteredo\n\n# Pick a Teredo server:\n#ServerAddress\tteredo.ipv6.microsoft.com\nServerAddress\tteredo-debian.remlab.net\n\n# Some firewall/NAT setups require a specific UDP port number:\n#BindPort\t3545\n",
        0,
        &[],
        C::NotComparable("the C tool resolves the host name, which needs DNS"),
    ),
    // miredo-server.conf.
    s("srv-debian-default", "# Please refer to the miredo-server.conf(5) manpage for details.\n\n# Server primary IPv4 address.\nServerBindAddress 192.0.2.221\n", 0, &[]),
    s(
        "srv-full",
        "ServerBindAddress 198.51.100.1\nServerBindAddress2 203.0.113.9\nPrefix 3ffe:831f::\nInterfaceMTU 1400\nSyslogFacility local5\n",
        0,
        &[],
    ),
    s(
        "srv-mtu-default-prefix",
        "ServerBindAddress 198.51.100.1\nInterfaceMTU 1400\n",
        0,
        &["{F}:2: InterfaceMTU: warning: an MTU other than 1280 with the standard prefix 2001:0:: breaks other Teredo implementations"],
    ),
    s(
        "srv-missing-address",
        "# nothing\n",
        1,
        &["{F}: ServerBindAddress: missing: a Teredo server needs its primary IPv4 address"],
    ),
    s(
        "srv-private",
        "ServerBindAddress 10.0.0.1\n",
        1,
        &["{F}:1: ServerBindAddress: 10.0.0.1 is not a global unicast address; Teredo clients must reach the server from the Internet"],
    ),
    s(
        "srv-same-addresses",
        "ServerBindAddress 192.0.2.1\nServerBindAddress2 192.0.2.1\n",
        1,
        &["{F}:2: ServerBindAddress2: 192.0.2.1 is also the primary address; the two addresses must differ"],
    ),
    s(
        "srv-next-not-global",
        "ServerBindAddress 9.255.255.255\n",
        1,
        &["{F}:1: ServerBindAddress: the secondary address defaults to 9.255.255.255 + 1, which is not global unicast; set ServerBindAddress2"],
    ),
    s(
        "srv-hostname",
        "ServerBindAddress teredo.example.net\n",
        1,
        &["{F}:1: ServerBindAddress: invalid IPv4 address \"teredo.example.net\" (expected a dotted quad such as 192.0.2.1)"],
    ),
    s(
        "srv-many-errors",
        "ServerBindAddress 192.0.2.1\nPrefix 3ffe::1:2\nInterfaceMTU 1000\nServerAddress 192.0.2.1\nprefix 2001::\n",
        1,
        &[
            "{F}:2: Prefix: 3ffe::1:2 is not a /32 prefix: only its first 32 bits may be non-zero (did you mean 3ffe:0::?)",
            "{F}:3: InterfaceMTU: 1000 is out of range: must be between 1280 and 65535",
            "{F}:4: ServerAddress: unknown directive",
            "{F}:5: prefix: given twice (first at line 2)",
        ],
    ),
    s(
        "srv-errors-and-warnings",
        "ServerBindAddress 192.0.2.1\nInterfaceMTU 1400\nServerBindAdress2 192.0.2.9\n",
        1,
        &[
            "{F}:2: InterfaceMTU: warning: an MTU other than 1280 with the standard prefix 2001:0:: breaks other Teredo implementations",
            "{F}:3: ServerBindAdress2: unknown directive; did you mean ServerBindAddress2?",
        ],
    ),
    s(
        "srv-miredo-file",
        "ServerAddress 192.0.2.1\n",
        1,
        &[
            "{F}: ServerBindAddress: missing: a Teredo server needs its primary IPv4 address",
            "{F}:1: ServerAddress: unknown directive",
        ],
    ),
];

/// Our binary.
pub fn ours() -> &'static str {
    env!("CARGO_BIN_EXE_miredo-checkconf")
}

/// A fresh directory for one test binary's files.
pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("miredo-checkconf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Writes a case to `dir` and returns its path.
pub fn write_case(dir: &Path, case: &Case) -> PathBuf {
    let path = dir.join(format!("{}.conf", case.name));
    std::fs::write(&path, case.text).expect("write case");
    path
}

/// Runs a checker; returns (exit status, stderr lines).
pub fn run(program: &str, args: &[&str]) -> (i32, Vec<String>) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    (out.status.code().unwrap_or(-1), stderr)
}

/// Runs our binary on a case file.
pub fn run_ours(case: &Case, path: &Path) -> (i32, Vec<String>) {
    let path = path.to_str().expect("UTF-8 temp path");
    match case.format {
        Format::Miredo => run(ours(), &[path]),
        Format::Server => run(ours(), &["-s", path]),
    }
}
