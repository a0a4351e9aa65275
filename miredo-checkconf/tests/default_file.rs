//! The default files, from the command line: `miredo-checkconf` with no
//! file argument reads /etc/miredo/miredo.conf as miredo does (absent:
//! the built-in defaults, valid, exit 0); `-s` reads
//! /etc/miredo/miredo-server.conf, which miredo-server cannot run
//! without (absent: exit 2). Each run sees an /etc/miredo of the test's own
//! making: a tmpfs mounted over it in a private mount namespace
//! (`unshare --mount`), so the host's files are neither read nor touched.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_miredo-checkconf");

/// A need of `lab_main!`: root, `unshare` and an /etc/miredo to cover.
fn private_etc() -> Option<String> {
    // /proc/self belongs to the process's effective user.
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid());
    if euid.ok() != Some(0) {
        return Some(
            "needs root to mount a tmpfs over /etc/miredo in a private mount namespace".into(),
        );
    }
    if teredo_lab::skip::which("unshare").is_none() {
        return Some("needs unshare (util-linux) for a private mount namespace".into());
    }
    if !Path::new("/etc/miredo").is_dir() {
        return Some("needs a directory /etc/miredo to mount a tmpfs over".into());
    }
    None
}

/// Runs miredo-checkconf with `args` where /etc/miredo is an empty tmpfs
/// that `setup` (a shell snippet) fills first; the exit status and the
/// lines on stderr.
fn run(setup: &str, args: &[&str]) -> (i32, Vec<String>) {
    let script = format!("mount -t tmpfs tmpfs /etc/miredo && {{ {setup}; }} && exec \"$@\"");
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            BIN,
        ])
        .args(args)
        .output()
        .expect("run unshare");
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect();
    (out.status.code().unwrap_or(-1), stderr)
}

fn no_default_miredo_conf_is_valid_as_for_the_daemon() {
    let (status, stderr) = run(":", &[]);
    assert_eq!(status, 0, "{stderr:?}");
    assert_eq!(
        stderr,
        vec![
            "/etc/miredo/miredo.conf is absent: miredo runs on its built-in defaults \
             (client mode, interface teredo, servers win10.ipv6.microsoft.com, win1710.ipv6.microsoft.com, \
             win1711.ipv6.microsoft.com, teredo.iks-jena.de), which are valid"
                .to_string()
        ]
    );
    // Debian's layout: /etc/miredo/miredo.conf a link to ../miredo.conf;
    // with nothing at the other end the daemon runs on its defaults too.
    let (status, stderr) = run(
        "ln -s /nonexistent/miredo.conf /etc/miredo/miredo.conf",
        &[],
    );
    assert_eq!(status, 0, "{stderr:?}");
    // miredo's own options, accepted and ignored, change nothing.
    let (status, _) = run(":", &["-f"]);
    assert_eq!(status, 0);
}

fn a_named_file_that_is_absent_stays_an_error() {
    for args in [
        &["/etc/miredo/miredo.conf"][..],
        &["-c", "/etc/miredo/miredo.conf"],
        &["-f", "/etc/miredo/miredo.conf"],
    ] {
        let (status, stderr) = run(":", args);
        assert_eq!(status, 2, "{args:?}: {stderr:?}");
        assert_eq!(
            stderr,
            vec![
                "/etc/miredo/miredo.conf: cannot read: No such file or directory (os error 2)"
                    .to_string()
            ],
            "{args:?}"
        );
    }
}

fn no_default_server_conf_stays_an_error() {
    // miredo-server has no built-in defaults (ServerBindAddress is
    // required): it does not start without its file, so neither does the
    // check pass.
    let (status, stderr) = run(":", &["-s"]);
    assert_eq!(status, 2, "{stderr:?}");
    assert_eq!(
        stderr,
        vec![
            "/etc/miredo/miredo-server.conf: cannot read: No such file or directory (os error 2)"
                .to_string()
        ]
    );
}

fn a_default_file_that_exists_is_checked_as_ever() {
    let (status, stderr) = run("echo 'Bogus 1' > /etc/miredo/miredo.conf", &[]);
    assert_eq!(status, 1, "{stderr:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("/etc/miredo/miredo.conf:1: "),
        "{stderr:?}"
    );

    let (status, stderr) = run("mkdir /etc/miredo/miredo.conf", &[]);
    assert_eq!(status, 2, "{stderr:?}");
    assert!(
        stderr[0].contains("cannot read: Is a directory"),
        "{stderr:?}"
    );

    // A loop of links cannot be read: an error, not "absent".
    let (status, stderr) = run("ln -s miredo.conf /etc/miredo/miredo.conf", &[]);
    assert_eq!(status, 2, "{stderr:?}");

    let (status, stderr) = run(
        "echo 'ServerAddress 192.0.2.1' > /etc/miredo/miredo.conf",
        &[],
    );
    assert_eq!((status, stderr), (0, Vec::<String>::new()));

    let (status, stderr) = run(
        "echo 'ServerBindAddress 192.0.2.1' > /etc/miredo/miredo-server.conf",
        &["-s"],
    );
    assert_eq!((status, stderr), (0, Vec::<String>::new()));
}

teredo_lab::lab_main! {
    needs(private_etc): [
        no_default_miredo_conf_is_valid_as_for_the_daemon,
        a_named_file_that_is_absent_stays_an_error,
        no_default_server_conf_stays_an_error,
        a_default_file_that_exists_is_checked_as_ever,
    ],
}
