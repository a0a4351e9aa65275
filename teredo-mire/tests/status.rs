//! `teredo-mire status`: the client side of miredo's status socket, against
//! a stand-in server on a socket of our own. Where a test needs the
//! default socket paths to be absent, it runs teredo-mire in a mount
//! namespace whose `/run` is an empty tmpfs: never the host's sockets.

mod common;

use common::{run, TempDir, BIN};
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

fn prints_what_the_daemon_sends() {
    let dir = TempDir::new("mirest");
    let path = dir.0.join("teredo.status");
    let listener = UnixListener::bind(&path).unwrap();
    let text = "state: qualified\naddress: 2001:0:c612:101:0:f227:39ed:fefd\nnat: cone\n";
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Slowly, in pieces: the client reads until the end.
        for chunk in text.as_bytes().chunks(7) {
            s.write_all(chunk).unwrap();
            thread::sleep(Duration::from_millis(5));
        }
    });
    let out = run(
        Command::new(BIN).args(["status", "--all", "--socket", path.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
    // Without --all: the page for a person, from the same lines.
    let listener = UnixListener::bind(dir.0.join("again.status")).unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(text.as_bytes()).unwrap();
    });
    let again = dir.0.join("again.status");
    let out = run(
        Command::new(BIN).args(["status", "--socket", again.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    server.join().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("state:")
            && said.contains("qualified")
            && said.contains("2001:0:c612:101:0:f227:39ed:fefd")
            && said.contains("NAT:")
            && said.contains("teredo-mire status --all"),
        "{said}"
    );
}

fn a_silent_daemon_times_out() {
    let dir = TempDir::new("mirest");
    let path = dir.0.join("teredo.status");
    let listener = UnixListener::bind(&path).unwrap();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        thread::sleep(Duration::from_secs(4));
        drop(s);
    });
    let start = Instant::now();
    let out = run(
        Command::new(BIN).args(["status", "--socket", path.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no complete status"), "{err}");
    server.join().unwrap();
}

fn absent_socket_says_so() {
    let out = with_empty_run(&["status", "mire-absent0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/run/miredo/mire-absent0.status")
            && err.contains("is miredo running for interface mire-absent0?"),
        "{err}"
    );
}

fn a_dead_socket_named_by_path_is_named_so() {
    // --socket PATH: the error names the socket, not the interface
    // `teredo` the command would otherwise have asked.
    let dir = TempDir::new("mirest");
    let path = dir.0.join("gone.status");
    let out = run(
        Command::new(BIN).args(["status", "--socket", path.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(path.to_str().unwrap())
            && err.contains("is the daemon that serves it running?")
            && !err.contains("interface teredo"),
        "{err}"
    );
}

fn bad_interface_name() {
    let out = run(
        Command::new(BIN).args(["status", "../etc/x"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid interface name"), "{err}");
}

/// Serves `text` once on a socket of our own; returns teredo-mire's output
/// for `status --format FORMAT`.
fn status_as(format: &str, text: &'static str) -> std::process::Output {
    let dir = TempDir::new("mirest");
    let path = dir.0.join("teredo.status");
    let listener = UnixListener::bind(&path).unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(text.as_bytes()).unwrap();
    });
    let out = run(
        Command::new(BIN).args([
            "status",
            "--socket",
            path.to_str().unwrap(),
            "--format",
            format,
        ]),
        Duration::from_secs(10),
    );
    server.join().unwrap();
    out
}

const RELAY_STATUS: &str = "interface: teredo\nmode: cone\nuptime: 7s\n\
    service-port: 0.0.0.0:3545\nstate: relaying\nprefix: 2001::/32\nmtu: 1280\npeers: 12\n\
    peers-trusted: 3\nudp-rx-packets: 100\nudp-rx-bytes: 9000\ntun-tx-packets: 90\n\
    bubbles-sent: 4\ndrop-malformed: 1\ndrop-rate-limited: 0\ndrop-queue-expired: 0\n";

fn prometheus_format_passes_promtool() {
    let out = status_as("prometheus", RELAY_STATUS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("teredo_udp_received_packets_total 100\n"),
        "{text}"
    );
    assert!(text.contains("teredo_dropped_packets_total{reason=\"malformed\"} 1\n"));
    promtool_check(&text);
}

/// What miredo-server's status socket sends (its keys, in its order).
const SERVER_STATUS: &str = "mode: server\nstate: serving\nuptime: 30s\n\
    server-address: 198.18.1.1\nserver-address2: 198.18.1.2\nprefix: 2001::/32\nmtu: 1280\n\
    workers: 4\nrs-received: 12\nra-sent: 12\nrelayed-to-clients: 5\nrelayed-to-native: 2\n\
    udp-rx-packets: 20\nudp-rx-bytes: 2000\nudp-tx-packets: 17\nudp-tx-bytes: 1900\n\
    drop-malformed: 1\ndrop-spoofed: 0\n";

fn server_status_in_prometheus_format_passes_promtool() {
    let out = status_as("prometheus", SERVER_STATUS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "teredo_server_router_solicitations_received_total 12\n",
        "teredo_server_router_advertisements_sent_total 12\n",
        "teredo_server_relayed_to_clients_packets_total 5\n",
        "teredo_server_relayed_to_native_packets_total 2\n",
        "teredo_state{state=\"serving\"} 1\n",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    promtool_check(&text);
}

fn absent_server_socket_says_so() {
    let out = with_empty_run(&["status", "--server"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/run/miredo/miredo-server.sock")
            && err.contains("miredo-server-ADDRESS.sock")
            && err.contains("is miredo-server running?"),
        "{err}"
    );
    // An interface and --server contradict each other.
    let out = run(
        Command::new(BIN).args(["status", "--server", "teredo"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Answers `text` on `dir/name` to every connection, until the test
/// process ends.
fn serve_forever(dir: &std::path::Path, name: &str, text: &'static str) {
    let l = UnixListener::bind(dir.join(name)).unwrap();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.write_all(text.as_bytes());
        }
    });
}

const SERVER_B_STATUS: &str = "mode: server\nstate: serving\nuptime: 9s\n\
    server-address: 198.18.1.3\nserver-address2: 198.18.1.4\nprefix: 2001::/32\nmtu: 1280\n\
    workers: 2\nrs-received: 40\nra-sent: 39\nrelayed-to-clients: 0\nrelayed-to-native: 0\n\
    udp-rx-packets: 40\nudp-rx-bytes: 2400\nudp-tx-packets: 39\nudp-tx-bytes: 3900\n\
    drop-malformed: 0\ndrop-spoofed: 3\n";

/// A run directory with two live servers' sockets and a stale one,
/// mounted as `/run/miredo` for `teredo-mire status ARGS` (see
/// [`with_run_miredo`]).
fn two_servers_and_a_stale_one() -> TempDir {
    let dir = TempDir::new("mirerun");
    serve_forever(&dir.0, "miredo-server-198.18.1.1.sock", SERVER_STATUS);
    serve_forever(&dir.0, "miredo-server-198.18.1.3.sock", SERVER_B_STATUS);
    drop(UnixListener::bind(dir.0.join("miredo-server-198.18.1.5.sock")).unwrap());
    // Not a server's.
    serve_forever(&dir.0, "teredo.status", RELAY_STATUS);
    dir
}

/// Mounts an empty tmpfs on /run and the directory `$1` on /run/miredo,
/// then runs `"$0" "$2" ...`.
const RUN_MIREDO: &str = "mount -t tmpfs tmpfs /run && mkdir /run/miredo && \
    mount --bind \"$1\" /run/miredo && shift && exec \"$0\" \"$@\"";

/// `teredo-mire ARGS` in a mount namespace of its own whose
/// `/run/miredo` is `dir`.
fn with_run_miredo(dir: &TempDir, args: &[&str]) -> Output {
    run(
        Command::new("unshare")
            .args(unshare_flags())
            .args(["--", "sh", "-c", RUN_MIREDO, BIN])
            .arg(&dir.0)
            .args(args),
        Duration::from_secs(20),
    )
}

fn every_server_is_found_each_under_its_address() {
    let dir = two_servers_and_a_stale_one();
    let out = with_run_miredo(&dir, &["status", "--server"]);
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{err}");
    assert_eq!(
        text,
        format!(
            "==> 198.18.1.1 (/run/miredo/miredo-server-198.18.1.1.sock) <==\n{SERVER_STATUS}\n\
             ==> 198.18.1.3 (/run/miredo/miredo-server-198.18.1.3.sock) <==\n{SERVER_B_STATUS}"
        )
    );
    assert!(
        err.contains("/run/miredo/miredo-server-198.18.1.5.sock: nobody answers"),
        "the stale socket is not mentioned: {err}"
    );
    // One picked by its address, primary or secondary: alone, as it came.
    for (addr, want) in [
        ("198.18.1.3", SERVER_B_STATUS),
        ("198.18.1.2", SERVER_STATUS),
    ] {
        let out = with_run_miredo(&dir, &["status", "--server", addr]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{addr}");
        assert!(out.stderr.is_empty());
    }
    // An address nobody serves: every socket tried, named.
    let out = with_run_miredo(&dir, &["status", "--server", "198.18.1.7"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for said in [
        "no miredo-server serving 198.18.1.7",
        "/run/miredo/miredo-server-198.18.1.1.sock (serves 198.18.1.1)",
        "/run/miredo/miredo-server-198.18.1.3.sock (serves 198.18.1.3)",
        "/run/miredo/miredo-server-198.18.1.5.sock (nobody answers",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
    // --socket and an address: that socket, if it serves the address.
    let b = dir.0.join("miredo-server-198.18.1.3.sock");
    let b = b.to_str().unwrap();
    let out = run(
        Command::new(BIN).args(["status", "--server", "198.18.1.4", "--socket", b]),
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), SERVER_B_STATUS);
    let out = run(
        Command::new(BIN).args(["status", "--server", "198.18.1.1", "--socket", b]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("(serves 198.18.1.3)"), "{err}");
}

fn several_servers_as_json_and_prometheus() {
    let dir = two_servers_and_a_stale_one();
    let out = with_run_miredo(&dir, &["status", "--server", "--format", "json"]);
    assert!(out.status.success());
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.starts_with("[{\"mode\": \"server\""), "{json}");
    assert!(json.trim_end().ends_with("}]"), "{json}");
    assert_eq!(json.matches("\"server-address\": ").count(), 2, "{json}");
    // One picked: one object, as for a single server.
    let out = with_run_miredo(
        &dir,
        &["status", "--server", "198.18.1.3", "--format", "json"],
    );
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.starts_with("{\"mode\": \"server\"") && json.contains("\"rs-received\": 40"),
        "{json}"
    );
    let out = with_run_miredo(&dir, &["status", "--server", "--format", "prometheus"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "teredo_server_router_solicitations_received_total{server_address=\"198.18.1.1\"} 12\n",
        "teredo_server_router_solicitations_received_total{server_address=\"198.18.1.3\"} 40\n",
        "teredo_dropped_packets_total{server_address=\"198.18.1.3\",reason=\"spoofed\"} 3\n",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    promtool_check(&text);
}

/// The flags of unshare(1) for a mount namespace of our own: root has
/// the right; anyone else asks for a user namespace too.
fn unshare_flags() -> &'static [&'static str] {
    if nix::unistd::geteuid().is_root() {
        &["--mount"]
    } else {
        &["--user", "--map-root-user", "--mount"]
    }
}

/// Mounts an empty tmpfs on /run, then runs `"$0" "$@"`.
const EMPTY_RUN: &str = "mount -t tmpfs tmpfs /run && exec \"$0\" \"$@\"";

/// `teredo-mire ARGS` in a mount namespace of its own whose `/run` is an
/// empty tmpfs, so that no status socket of the host answers.
fn with_empty_run(args: &[&str]) -> Output {
    run(
        Command::new("unshare")
            .args(unshare_flags())
            .args(["--", "sh", "-c", EMPTY_RUN, BIN])
            .args(args),
        Duration::from_secs(10),
    )
}

/// A need of `lab_main!`: a mount namespace with an empty `/run` (root,
/// or unprivileged user namespaces; unshare from util-linux).
fn empty_run() -> Option<String> {
    match Command::new("unshare")
        .args(unshare_flags())
        .args(["--", "sh", "-c", EMPTY_RUN, "true"])
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "cannot mount an empty /run in a namespace of its own (unshare {}): {}",
            unshare_flags().join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare (util-linux): {e}")),
    }
}

/// A need of `lab_main!`: promtool (Debian's prometheus package; .ci/run
/// installs it), which checks the syntax and Prometheus' naming
/// conventions.
fn promtool() -> Option<String> {
    match Command::new("promtool").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("promtool is not installed (apt-get install prometheus)".into()),
    }
}

/// `promtool check metrics` accepts `text` without a word.
fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = child.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

fn json_format_is_one_object() {
    let out = status_as("json", RELAY_STATUS);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("{\"interface\": \"teredo\", \"mode\": \"cone\", \"uptime\": 7,"),
        "{text}"
    );
    assert!(text.contains("\"service-port\": \"0.0.0.0:3545\""));
    assert!(text.trim_end().ends_with('}'));
    let out = run(
        Command::new(BIN).args(["status", "--format", "xml"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
}

teredo_lab::lab_main! {
    needs(promtool): [
        prometheus_format_passes_promtool,
        server_status_in_prometheus_format_passes_promtool,
    ],
    needs(empty_run, promtool): [several_servers_as_json_and_prometheus],
    needs(empty_run): [
        absent_socket_says_so,
        a_dead_socket_named_by_path_is_named_so,
        absent_server_socket_says_so,
        every_server_is_found_each_under_its_address,
    ],
    plain: [
        prints_what_the_daemon_sends,
        a_silent_daemon_times_out,
        bad_interface_name,
        json_format_is_one_object,
    ],
}
