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
