//! The manual pages: all seven render without a warning, and each program's
//! page documents every long option its `--help` lists.

use std::path::{Path, PathBuf};
use std::process::Command;

use teredo_lab::impls::our_bin_dir;
use teredo_lab::report;

const PAGES: [&str; 7] = [
    "miredo.8",
    "miredo.conf.5",
    "miredo-server.8",
    "miredo-server.conf.5",
    "miredo-checkconf.8",
    "miredo-privproc.8",
    "teredo-mire.1",
];

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../man")
}

/// The programs `pages_document_every_option_of_help` runs, with their
/// pages.
const BINS: [(&str, &str); 5] = [
    ("miredo", "miredo.8"),
    ("miredo-server", "miredo-server.8"),
    ("miredo-checkconf", "miredo-checkconf.8"),
    ("miredo-privproc", "miredo-privproc.8"),
    ("teredo-mire", "teredo-mire.1"),
];

/// A need of `lab_tests!`: groff installed.
fn groff() -> Option<String> {
    match Command::new("groff").arg("--version").output() {
        Ok(_) => None,
        Err(_) => Some("groff is not installed (apt-get install groff)".into()),
    }
}

/// A need of `lab_tests!`: every program of [`BINS`] built.
fn our_programs() -> Option<String> {
    BINS.iter()
        .map(|(bin, _)| our_bin_dir().join(bin))
        .find(|exe| !exe.is_file())
        .map(|exe| format!("{} not built", exe.display()))
}

fn every_page_renders_without_warnings() {
    for page in PAGES {
        let path = man_dir().join(page);
        assert!(path.is_file(), "{} is missing", path.display());
        let out = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&path)
            .output()
            .expect("run groff");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{page}: {err}"
        );
    }
    report(
        "every_page_renders_without_warnings",
        &format!("{} pages render clean under groff -man -ww -z", PAGES.len()),
    );
}

/// The long options `--help` prints (`--name`), but --help and --version.
fn long_options(help: &str) -> Vec<String> {
    let mut v: Vec<String> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        })
        .filter(|w| w != "--help" && w != "--version")
        .collect();
    v.sort();
    v.dedup();
    v
}

fn pages_document_every_option_of_help() {
    for (bin, page) in BINS {
        let exe = our_bin_dir().join(bin);
        let out = Command::new(&exe)
            .arg("--help")
            .output()
            .expect("run --help");
        let help = String::from_utf8_lossy(&out.stdout);
        let text = std::fs::read_to_string(man_dir().join(page)).expect("read page");
        // In roff, a hyphen in an option is written \- .
        let text = text.replace("\\-", "-");
        for opt in long_options(&help) {
            assert!(
                text.contains(&opt),
                "{page} does not document {opt} (from {bin} --help)"
            );
        }
    }
}

teredo_lab::lab_tests! {
    needs(groff): [every_page_renders_without_warnings],
    needs(our_programs): [pages_document_every_option_of_help],
}
