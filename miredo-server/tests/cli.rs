//! The command line and configuration errors, without root.

use std::process::Command;

fn server(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_miredo-server"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn conf(name: &str, text: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("miredo-server-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("miredo-server.conf");
    std::fs::write(&p, text).unwrap();
    let s = p.display().to_string();
    (dir, s)
}

#[test]
fn help_and_version() {
    let (code, out, _) = server(&["--help"]);
    assert_eq!(code, 0);
    for opt in [
        "--config",
        "--foreground",
        "--pidfile",
        "--user",
        "--version",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}:\n{out}");
    }
    let (code, out, _) = server(&["-V"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("miredo-server "), "{out}");
}

#[test]
fn refuses_a_private_server_address() {
    let (dir, c) = conf("private", "ServerBindAddress 192.168.1.1\n");
    let (code, _, err) = server(&["-f", "-c", &c]);
    assert_eq!(code, 1);
    assert!(
        err.contains("192.168.1.1") && err.contains("global"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn errors_name_file_and_line() {
    let (dir, c) = conf("bad", "ServerBindAddress 198.18.1.1\nInterfaceMTU 99999\n");
    let (code, _, err) = server(&["-f", "-c", &c]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{c}:2: InterfaceMTU")), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn server_name_on_the_command_line_replaces_server_bind_address() {
    // The file has no ServerBindAddress: the command line supplies it, and
    // it is checked like one from the file.
    let (dir, c) = conf("positional", "InterfaceMTU 1280\n");
    let (code, _, err) = server(&["-f", "-c", &c, "192.168.7.7"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("192.168.7.7") && err.contains("global"),
        "{err}"
    );
    let (code, _, err) = server(&["-f", "-c", &c]);
    assert_eq!(code, 1);
    assert!(err.contains("ServerBindAddress"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn refuses_to_run_as_root_once_set_up() {
    let (dir, c) = conf("root", "ServerBindAddress 198.18.1.1\n");
    let (code, _, err) = server(&["-f", "-u", "0", "-c", &c]);
    assert_eq!(code, 1);
    assert!(err.contains("uid 0"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
