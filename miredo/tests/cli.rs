//! The command line and configuration errors, without root: what a user
//! sees before anything is set up.

use std::process::Command;

fn miredo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_miredo"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_the_c_tools_options() {
    let (code, out, _) = miredo(&["--help"]);
    assert_eq!(code, 0);
    for opt in [
        "--config",
        "--foreground",
        "--pidfile",
        "--chrootdir",
        "--user",
        "--version",
        "[server_name]",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}:\n{out}");
    }
    let (code, short, _) = miredo(&["-h"]);
    assert_eq!(code, 0);
    assert!(short.contains("-c, --config"));
}

#[test]
fn version() {
    let (code, out, _) = miredo(&["-V"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("miredo "), "{out}");
}

#[test]
fn invalid_configuration_names_file_line_and_directive() {
    let dir = std::env::temp_dir().join(format!("miredo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("bad.conf");
    std::fs::write(&conf, "RelayType client\nInterfaceMTU 1000\nBogus 1\n").unwrap();
    let (code, _, err) = miredo(&["-f", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 1);
    let file = conf.display().to_string();
    assert!(err.contains(&format!("{file}:3: Bogus")), "{err}");
    assert!(err.contains(&format!("{file}:2: InterfaceMTU")), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_explicit_configuration_is_an_error() {
    let (code, _, err) = miredo(&["-f", "-c", "/nonexistent/miredo.conf"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/miredo.conf"), "{err}");
}

#[test]
fn server_name_refused_in_relay_mode() {
    let dir = std::env::temp_dir().join(format!("miredo-cli-relay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("relay.conf");
    std::fs::write(&conf, "RelayType cone\n").unwrap();
    let (code, _, err) = miredo(&["-f", "-c", conf.to_str().unwrap(), "teredo.example"]);
    assert_eq!(code, 1);
    assert!(err.contains("client mode"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_to_run_as_root_once_set_up() {
    let dir = std::env::temp_dir().join(format!("miredo-cli-root-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("c.conf");
    std::fs::write(&conf, "ServerAddress 198.18.1.1\n").unwrap();
    let (code, _, err) = miredo(&["-f", "-u", "root", "-c", conf.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("uid 0"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs miredo as nobody (65534) through setpriv, when this runs as root.
fn miredo_as_nobody(args: &[&str]) -> Option<(i32, String)> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED the nobody half: not root (setpriv needs it)");
        return None;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_miredo"))
        .args(args)
        .output()
        .ok()?;
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn started_without_root_says_so_and_what_to_do() {
    let dir = std::env::temp_dir().join(format!("miredo-cli-nr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("ok.conf");
    std::fs::write(&conf, "RelayType client\nServerAddress 192.0.2.1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Some((code, err)) = miredo_as_nobody(&["-f", "-c", conf.to_str().unwrap()]) else {
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    };
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("must be started as root") && !err.contains("Permission denied"),
        "{err}"
    );
    // Said once, not once by the logger and once more.
    assert_eq!(err.matches("must be started as root").count(), 1, "{err}");
}

#[test]
fn a_fatal_error_is_said_once_in_the_foreground() {
    // An error after logging started (to standard error, with -f): the
    // logger says it, and main must not say it again.
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: not root (the user is looked up after the root check)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("miredo-cli-once-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("client.conf");
    std::fs::write(&conf, "RelayType client\nServerAddress 192.0.2.1\n").unwrap();
    let (code, _, err) = miredo(&[
        "-f",
        "-c",
        conf.to_str().unwrap(),
        "-u",
        "no-such-user-miredo-test",
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("no such user")).count(),
        1,
        "said more than once:\n{err}"
    );
}
