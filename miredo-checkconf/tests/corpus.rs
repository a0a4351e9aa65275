//! Runs our miredo-checkconf on every file of the corpus and checks the
//! exit status and every line it prints; then the command line itself.

mod common;

use common::{run, run_ours, scratch, write_case, CORPUS};

#[test]
fn corpus_is_large_enough() {
    assert!(CORPUS.len() >= 30, "{}", CORPUS.len());
    let mut names: Vec<_> = CORPUS.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CORPUS.len(), "case names must be unique");
}

#[test]
fn every_case_gives_the_expected_status_and_messages() {
    let dir = scratch("corpus");
    let mut failures = Vec::new();
    for case in CORPUS {
        let path = write_case(&dir, case);
        let shown = path.display().to_string();
        let expected: Vec<String> = case
            .stderr
            .iter()
            .map(|l| l.replace("{F}", &shown))
            .collect();
        let (status, stderr) = run_ours(case, &path);
        if status != case.status || stderr != expected {
            failures.push(format!(
                "{}: expected status {} and {:#?}\n   got status {} and {:#?}",
                case.name, case.status, expected, status, stderr
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unreadable_files_exit_2_and_say_why() {
    let dir = scratch("unreadable");
    let missing = dir.join("missing.conf");
    let missing = missing.to_str().expect("UTF-8 temp path");
    let (status, stderr) = run(common::ours(), &[missing]);
    assert_eq!(status, 2);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with(&format!(
            "{missing}: cannot read: No such file or directory"
        )),
        "{stderr:?}"
    );
    let (status, stderr) = run(common::ours(), &["-s", missing]);
    assert_eq!(status, 2, "{stderr:?}");

    let as_dir = dir.to_str().expect("UTF-8 temp path");
    let (status, stderr) = run(common::ours(), &[as_dir]);
    assert_eq!(status, 2);
    assert!(
        stderr[0].contains("cannot read: Is a directory"),
        "{stderr:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bytes_that_are_not_utf8_are_invalid_not_unreadable() {
    let dir = scratch("utf8");
    let path = dir.join("latin1.conf");
    std::fs::write(&path, b"ServerAddress 192.0.2.1\nInterfaceName t\xe9redo\n")
        .expect("write test file");
    let (status, stderr) = run(common::ours(), &[path.to_str().expect("UTF-8 temp path")]);
    assert_eq!(status, 1, "{stderr:?}");
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].ends_with(":2: InterfaceName: the line is not valid UTF-8 text"),
        "{stderr:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn c_style_config_option_is_accepted() {
    let dir = scratch("dash-c");
    let path = dir.join("m.conf");
    std::fs::write(&path, "ServerAddress 192.0.2.1\n").expect("write test file");
    let path = path.to_str().expect("UTF-8 temp path");
    assert_eq!(run(common::ours(), &["-c", path]).0, 0);
    assert_eq!(run(common::ours(), &["--config", path]).0, 0);
    assert_eq!(run(common::ours(), &["--conf", path]).0, 0);
    // Both a -c file and a positional file: ambiguous, refused.
    assert_eq!(run(common::ours(), &["-c", path, path]).0, 2);
    // Debian's miredo.service runs `miredo-checkconf -f FILE`: miredo's
    // own options are accepted and ignored, as by the C tool.
    assert_eq!(run(common::ours(), &["-f", path]).0, 0);
    assert_eq!(
        run(
            common::ours(),
            &["-f", "-u", "nobody", "-p", "/x.pid", "-t", "/", path]
        )
        .0,
        0
    );
    std::fs::write(dir.join("bad.conf"), "Bogus 1\n").expect("write test file");
    let bad = dir.join("bad.conf");
    assert_eq!(
        run(common::ours(), &["-f", bad.to_str().expect("UTF-8")]).0,
        1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_and_version() {
    let out = std::process::Command::new(common::ours())
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "-s, --server",
        "/etc/miredo/miredo.conf",
        "/etc/miredo/miredo-server.conf",
        "FILE:LINE: Directive: reason",
        "Exit status: 0 if the file is valid, 1 if it is not, 2 if it cannot be read",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let short = std::process::Command::new(common::ours())
        .arg("-h")
        .output()
        .expect("run -h");
    assert!(short.status.success());
    // miredo's options, which the C tool shares, are listed as ignored
    // (both forms of help).
    for help in [
        help.to_string(),
        String::from_utf8_lossy(&short.stdout).into_owned(),
    ] {
        let compat = help
            .split_once("Options of miredo, accepted for compatibility, ignored:")
            .map(|(_, after)| after)
            .unwrap_or_else(|| panic!("no section of ignored options:\n{help}"));
        for needle in [
            "-f, --foreground",
            "-p, --pidfile <FILE>",
            "-t, --chrootdir <DIR>",
            "-u, --user <USER>",
        ] {
            assert!(
                compat.contains(needle),
                "{needle:?} is not listed as ignored:\n{help}"
            );
        }
    }

    let out = std::process::Command::new(common::ours())
        .arg("-V")
        .output()
        .expect("run -V");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("miredo-checkconf {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_command_line_exits_2() {
    let (status, stderr) = run(common::ours(), &["--no-such-option"]);
    assert_eq!(status, 2);
    assert!(
        stderr.iter().any(|l| l.contains("--no-such-option")),
        "{stderr:?}"
    );
    assert_eq!(run(common::ours(), &["a.conf", "b.conf"]).0, 2);
}
