//! `teredo-mire status`: the client side of miredo's status socket, against
//! a stand-in server on a socket of our own.

mod common;

use common::{run, TempDir, BIN};
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

#[test]
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
        Command::new(BIN).args(["status", "--socket", path.to_str().unwrap()]),
        Duration::from_secs(10),
    );
    server.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
}

#[test]
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

#[test]
fn absent_socket_says_so() {
    let out = run(
        Command::new(BIN).args(["status", "mire-absent0"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/run/miredo/mire-absent0.status")
            && err.contains("is miredo running for interface mire-absent0?"),
        "{err}"
    );
}

#[test]
fn bad_interface_name() {
    let out = run(
        Command::new(BIN).args(["status", "../etc/x"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid interface name"), "{err}");
}
