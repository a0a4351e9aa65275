//! `teredo-mire servers` in the lab: our miredo-server (198.18.1.1, .2),
//! the C miredo-server (198.18.1.3, .4) and a silent address (198.18.1.9,
//! nothing listens) on the server host, checked at once from the client
//! behind a port-restricted NAT and from the relay host (no NAT), by
//! address and by names from the client namespace's own hosts file
//! (`/etc/netns/NS/hosts`, which `ip netns exec` mounts over /etc/hosts).

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use teredo_lab::cmd::CmdOutput;
use teredo_lab::json::{self, Value};
use teredo_lab::steps::{teredo_mire, teredo_mire_built};
use teredo_lab::{report, wait_until, Impl, NatKind, Netns, World, RELAY_V4, SERVER_V4};

/// The C server's primary address (its secondary is the next one).
const C_SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
const C_SERVER2_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 4);
/// An address of the server host where nothing listens.
const SILENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 9);
/// How long one `teredo-mire servers` may run: its 12 s and resolution.
const RUN_LIMIT: Duration = Duration::from_secs(40);

/// `/etc/netns/NS/` with a `hosts` and a `resolv.conf` of the test's,
/// removed when dropped (whatever happens to the test).
struct NetnsEtc(PathBuf);

impl NetnsEtc {
    fn new(ns: &Netns, hosts: &str) -> NetnsEtc {
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let guard = NetnsEtc(dir);
        fs::write(guard.0.join("hosts"), hosts).expect("write the namespace's hosts");
        // No DNS server in the lab: a name outside the hosts file fails at
        // once (nothing listens on the namespace's loopback).
        fs::write(guard.0.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("write the namespace's resolv.conf");
        guard
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const HOSTS: &str = "127.0.0.1 localhost\n\
                     198.18.1.1 ours.teredo.test\n\
                     198.18.1.3 c.teredo.test\n\
                     198.18.1.9 silent.teredo.test\n";

/// Our miredo-server on 198.18.1.1 and .2, the C one on .3 and .4, and .9
/// on the server host; returns once both listen.
fn start_both_servers(w: &World) {
    w.start_server(Impl::Ours);
    let s_i = w.ifname("s-i");
    for a in [C_SERVER_V4, C_SERVER2_V4, SILENT_V4] {
        w.srv()
            .ip(&format!("addr add {a}/24 dev {s_i}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let c = w.spawn_daemon(
        w.srv(),
        "server-c",
        &Impl::C.miredo_server(),
        &format!("ServerBindAddress {C_SERVER_V4}\nServerBindAddress2 {C_SERVER2_V4}\n"),
        &[],
    );
    let listening = wait_until(Duration::from_secs(5), || {
        let ss = w
            .srv()
            .run(&["ss", "-H", "-u", "-l", "-n"])
            .unwrap_or_default();
        ss.contains(&format!("{C_SERVER_V4}:3544")) && ss.contains(&format!("{C_SERVER2_V4}:3544"))
    });
    assert!(
        listening,
        "the C miredo-server does not listen on {C_SERVER_V4} and {C_SERVER2_V4}:\n{}",
        w.log_of(&c)
    );
}

/// `teredo-mire servers ARGS...` in `ns`.
fn servers(ns: &Netns, args: &[&str]) -> CmdOutput {
    let mut argv = vec![teredo_mire().display().to_string(), "servers".into()];
    argv.extend(args.iter().map(|s| s.to_string()));
    ns.exec(&argv, RUN_LIMIT)
}

/// The rows of a `--format json` run, by name and address.
fn rows_of(out: &CmdOutput) -> Vec<Value> {
    let v = json::parse(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out:?}"));
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {out:?}"))
        .to_vec()
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}: {rows:?}"))
}

fn field<'a>(r: &'a Value, key: &str) -> &'a Value {
    r.get(key).unwrap_or_else(|| panic!("no {key} in {r:?}"))
}

/// A server that answered, as a client behind `mapped_ip` sees it.
fn assert_answered(r: &Value, address: Ipv4Addr, mapped_ip: Ipv4Addr, nat: &str) {
    assert_eq!(
        field(r, "address").as_str(),
        Some(&*address.to_string()),
        "{r:?}"
    );
    assert_eq!(field(r, "answered").as_bool(), Some(true), "{r:?}");
    let rtt = field(r, "rtt_ms").as_f64().unwrap_or(-1.0);
    assert!(rtt > 0.0 && rtt < 1000.0, "rtt_ms {rtt}: {r:?}");
    let mapped = field(r, "mapped").as_str().unwrap_or_default();
    assert!(
        mapped.starts_with(&format!("{mapped_ip}:")),
        "mapped {mapped}, not {mapped_ip}: {r:?}"
    );
    assert_eq!(
        field(r, "secondary_answered").as_bool(),
        Some(true),
        "{r:?}"
    );
    assert_eq!(field(r, "nat").as_str(), Some(nat), "{r:?}");
    let o = address.octets();
    let prefix = format!(
        "2001:0:c612:{:x}::/64",
        u16::from(o[2]) << 8 | u16::from(o[3])
    );
    assert_eq!(field(r, "prefix").as_str(), Some(&*prefix), "{r:?}");
    assert_eq!(field(r, "problems"), &Value::Array(vec![]), "{r:?}");
    assert!(field(r, "error").is_null(), "{r:?}");
}

fn assert_silent(r: &Value) {
    assert_eq!(field(r, "answered").as_bool(), Some(false), "{r:?}");
    for k in ["rtt_ms", "mapped", "nat", "secondary_answered"] {
        assert!(field(r, k).is_null(), "{k}: {r:?}");
    }
}

/// Both servers answer through the NAT (restricted, as Linux masquerade
/// is), the silent address does not, the name that does not resolve is a
/// row saying so; exit 0. The table is in the report.
fn table_of_our_server_c_server_and_silent_address() {
    let test = "table_of_our_server_c_server_and_silent_address";
    let w = World::build(test, &[NatKind::PortRestricted]);
    start_both_servers(&w);
    let cli = w.client(1).clone();
    let _etc = NetnsEtc::new(&cli, HOSTS);
    let names = [
        "ours.teredo.test",
        "c.teredo.test",
        "silent.teredo.test",
        "nowhere.invalid",
    ];
    // The table and the JSON at once: each run has a socket (a mapping)
    // of its own.
    let (table, out) = std::thread::scope(|s| {
        let t = s.spawn(|| servers(&cli, &names));
        let mut args = vec!["--format", "json"];
        args.extend(names);
        let j = servers(&cli, &args);
        (t.join().expect("the table's run"), j)
    });
    report(
        test,
        &format!(
            "teredo-mire servers, from the client behind a port-restricted NAT \
             (exit {:?}, {:?}):\n{}",
            table.status.and_then(|s| s.code()),
            table.elapsed,
            table.stdout.trim_end()
        ),
    );
    assert_eq!(table.status.and_then(|s| s.code()), Some(0), "{table:?}");
    assert!(table.stdout.starts_with("NAME "), "{table:?}");
    assert_eq!(out.status.and_then(|s| s.code()), Some(0), "{out:?}");
    let got = rows_of(&out);
    assert_eq!(got.len(), 4, "{got:?}");
    let wan = w.nat_wan_v4(1);
    assert_answered(row(&got, "ours.teredo.test"), SERVER_V4, wan, "restricted");
    assert_answered(row(&got, "c.teredo.test"), C_SERVER_V4, wan, "restricted");
    let silent = row(&got, "silent.teredo.test");
    assert_eq!(field(silent, "address").as_str(), Some("198.18.1.9"));
    assert_silent(silent);
    let nowhere = row(&got, "nowhere.invalid");
    assert!(field(nowhere, "address").is_null(), "{nowhere:?}");
    assert_eq!(field(nowhere, "answered").as_bool(), Some(false));
    assert!(
        field(nowhere, "error")
            .as_str()
            .is_some_and(|e| e.contains("nowhere.invalid")),
        "{nowhere:?}"
    );
    // The silent address keeps the run to its 12 s, no more.
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);

    // From the relay host, with no NAT: the servers see its own address
    // and port, and their other addresses get through.
    let open = servers(
        w.relay(),
        &[
            "--format",
            "json",
            &SERVER_V4.to_string(),
            &C_SERVER_V4.to_string(),
        ],
    );
    assert_eq!(open.status.and_then(|s| s.code()), Some(0), "{open:?}");
    let open_rows = rows_of(&open);
    for (name, a) in [
        (SERVER_V4.to_string(), SERVER_V4),
        (C_SERVER_V4.to_string(), C_SERVER_V4),
    ] {
        assert_answered(row(&open_rows, &name), a, RELAY_V4, "none");
    }
    report(
        test,
        &format!(
            "from the relay host (no NAT), in {:?}: {}",
            open.elapsed,
            open.stdout.trim_end()
        ),
    );

    // Through the NAT, one server alone cannot tell: Linux connection
    // tracking keeps the refused cone answer from 198.18.1.2, and our
    // first datagram to that address leaves from another port.
    let alone = servers(&cli, &["--format", "json", "ours.teredo.test"]);
    assert_eq!(alone.status.and_then(|s| s.code()), Some(0), "{alone:?}");
    let alone_rows = rows_of(&alone);
    let r = row(&alone_rows, "ours.teredo.test");
    assert_eq!(
        field(r, "nat").as_str(),
        Some("restricted or symmetric"),
        "{r:?}"
    );
    assert_ne!(field(r, "secondary_mapped"), field(r, "mapped"), "{r:?}");
    report(
        test,
        &format!(
            "our server alone, through the NAT: mapped {:?}, secondary mapped {:?}, nat {:?}",
            field(r, "mapped"),
            field(r, "secondary_mapped"),
            field(r, "nat")
        ),
    );

    // The servers of a miredo.conf, in its order, names included.
    let conf = w.write_file(
        "client.conf",
        "RelayType client\nServerAddress c.teredo.test\nServerAddress ours.teredo.test\n",
    );
    let conf = conf.display().to_string();
    let configured = servers(&cli, &["--format", "json", "-c", &conf]);
    assert_eq!(
        configured.status.and_then(|s| s.code()),
        Some(0),
        "{configured:?}"
    );
    let names: Vec<&str> = rows_of(&configured)
        .iter()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
        .map(|n| if n == "c.teredo.test" { "c" } else { "ours" })
        .collect();
    assert_eq!(names, ["c", "ours"], "{configured:?}");
    // A relay's file names no server: an error, said so.
    let relay = w.write_file("relay.conf", "RelayType cone\n");
    let relay = servers(&cli, &["-c", &relay.display().to_string()]);
    assert_eq!(relay.status.and_then(|s| s.code()), Some(1), "{relay:?}");
    assert!(
        relay.stderr.contains("a relay uses no Teredo server"),
        "{relay:?}"
    );
}

/// Silent addresses only: every row unanswered, exit 1, within the
/// timeout.
fn only_silent_addresses_exit_1() {
    let test = "only_silent_addresses_exit_1";
    let w = World::build(test, &[NatKind::PortRestricted]);
    // 198.18.1.1 with no server started: the host is there, the port is
    // closed; 198.18.200.1 has no host at all.
    let out = servers(
        w.client(1),
        &[
            "--format",
            "json",
            "--timeout",
            "3",
            "198.18.1.1",
            "198.18.200.1",
        ],
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out:?}");
    let got = rows_of(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    for r in &got {
        assert_silent(r);
    }
    assert!(out.stderr.contains("no Teredo server answered"), "{out:?}");
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);
    report(test, &format!("exit 1 after {:?}", out.elapsed));
}

teredo_lab::lab_tests! {
    needs(root, ours, c_miredo, teredo_mire_built): [
        table_of_our_server_c_server_and_silent_address,
    ],
    needs(root, teredo_mire_built): [only_silent_addresses_exit_1],
}
