//! `teredo-mire decode`: the RFC 4380 example, invalid addresses, and the
//! exit codes.

mod common;

use common::{run, BIN};
use std::process::Command;
use std::time::Duration;

fn decode(arg: &str) -> (i32, String, String) {
    let out = run(
        Command::new(BIN).args(["decode", arg]),
        Duration::from_secs(10),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rfc4380_example() {
    // RFC 4380 section 4: server 65.54.227.120, cone, port 40000,
    // client 192.0.2.45.
    let (code, out, err) = decode("2001:0:4136:e378:8000:63bf:3fff:fdd2");
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "address: 2001:0:4136:e378:8000:63bf:3fff:fdd2\n\
         server: 65.54.227.120\n\
         flags: 0x8000 (cone)\n\
         cone: yes\n\
         random bits: 0x0000\n\
         reserved bits: R=0 U=0 G=0\n\
         mapped port: 40000\n\
         mapped address: 192.0.2.45\n\
         rfc4380: valid\n\
         rfc5991: valid\n"
    );
    assert_eq!(err, "");
}

#[test]
fn rfc5991_address_with_random_bits() {
    // Server 198.18.1.1, flags 0x3cff (all twelve random bits), mapped
    // 198.18.3.1:4096, in the long uncompressed form.
    let (code, out, _) = decode("2001:0000:c612:0101:3cff:efff:39ed:fcfe");
    assert_eq!(code, 0);
    assert!(out.contains("server: 198.18.1.1\n"), "{out}");
    assert!(out.contains("flags: 0x3cff (random)\n"), "{out}");
    assert!(out.contains("cone: no\n"), "{out}");
    assert!(out.contains("random bits: 0x3cff\n"), "{out}");
    assert!(out.contains("mapped port: 4096\n"), "{out}");
    assert!(out.contains("mapped address: 198.18.3.1\n"), "{out}");
    assert!(out.contains("rfc4380: valid\n"), "{out}");
    assert!(out.contains("rfc5991: valid\n"), "{out}");
}

#[test]
fn teredo_but_invalid() {
    // Server 10.0.0.1 (private), flags with U set, mapped 192.168.1.2.
    let (code, out, _) = decode("2001:0:a00:1:200:ffff:3f57:fefd");
    assert_eq!(code, 0, "a Teredo address is decoded even when invalid");
    assert!(out.contains("server: 10.0.0.1\n"), "{out}");
    assert!(out.contains("flags: 0x0200 (U)\n"), "{out}");
    assert!(out.contains("reserved bits: R=0 U=1 G=0\n"), "{out}");
    assert!(out.contains("mapped port: 0\n"), "{out}");
    assert!(out.contains("mapped address: 192.168.1.2\n"), "{out}");
    assert!(
        out.contains(
            "rfc4380: invalid (server 10.0.0.1 is not global unicast, \
             mapped address 192.168.1.2 is not global unicast)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("rfc5991: invalid (the U bit is set)\n"),
        "{out}"
    );
}

#[test]
fn not_teredo() {
    let (code, out, err) = decode("2001:db8::1");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "teredo-mire: 2001:db8::1 is not a Teredo address: it is outside 2001::/32\n"
    );
}

#[test]
fn unparseable() {
    for bad in [
        "",
        "2001::zz",
        "192.0.2.1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2:1",
        "x",
    ] {
        let (code, out, err) = decode(bad);
        assert_eq!(code, 1, "{bad:?}");
        assert_eq!(out, "", "{bad:?}");
        assert!(err.contains("is not an IPv6 address"), "{bad:?}: {err}");
    }
}

#[test]
fn prefix_length_as_ip_addr_prints_it() {
    // `ip -6 addr show teredo` prints the address as ADDRESS/32 (the hook
    // adds it so); copied with its length, it decodes the same.
    let (_, bare, _) = decode("2001:0:4136:e378:8000:63bf:3fff:fdd2");
    for length in ["32", "64", "128"] {
        let (code, out, err) = decode(&format!("2001:0:4136:e378:8000:63bf:3fff:fdd2/{length}"));
        assert_eq!(code, 0, "/{length}: {err}");
        assert_eq!(out, bare, "/{length}");
        assert_eq!(err, "");
    }
    let (code, out, err) = decode("2001:0:4136:e378:8000:63bf:3fff:fdd2/129");
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "teredo-mire: \"2001:0:4136:e378:8000:63bf:3fff:fdd2/129\": invalid prefix length \"129\" \
         (an IPv6 prefix length is a number from 0 to 128)\n"
    );
}

#[test]
fn missing_argument_is_a_usage_error() {
    let out = run(Command::new(BIN).arg("decode"), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_and_version() {
    let out = run(Command::new(BIN).arg("--help"), Duration::from_secs(10));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["decode", "probe", "status", "--allow-private", "--bind"] {
        assert!(text.contains(word), "{word} missing from --help");
    }
    let out = run(Command::new(BIN).arg("-V"), Duration::from_secs(10));
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("teredo-mire {}\n", env!("CARGO_PKG_VERSION"))
    );
}
