//! The manual pages: all seven render without a warning, and each program's
//! page documents every command and every long option that its `--help`,
//! and each of its subcommands' (`teredo-mire probe --help`, ...), lists.

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

/// The subcommands `--help` lists under `Commands:` (clap's layout: one
/// per line, the name first), but `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// `exe ARGS... --help`: its standard output; the test fails when it does
/// not succeed or prints nothing (an option list read from nothing would
/// pass).
fn help_of(exe: &Path, args: &[String]) -> String {
    let out = Command::new(exe)
        .args(args)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --help: {e}", exe.display()));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !help.trim().is_empty(),
        "{} {} --help failed or printed nothing: {}",
        exe.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    help
}

/// Every command of `exe` (its top level, `[]`, and each subcommand,
/// `["probe"]`, down to two levels) with the long options its `--help`
/// lists.
fn commands_of(exe: &Path) -> Vec<(Vec<String>, Vec<String>)> {
    let mut found = Vec::new();
    let mut todo = vec![Vec::new()];
    while let Some(args) = todo.pop() {
        let help = help_of(exe, &args);
        if args.len() < 2 {
            for sub in subcommands(&help) {
                let mut deeper = args.clone();
                deeper.push(sub);
                todo.push(deeper);
            }
        }
        found.push((args, long_options(&help)));
    }
    found.sort();
    found
}

fn pages_document_every_option_of_help() {
    let mut checked = Vec::new();
    for (bin, page) in BINS {
        let exe = our_bin_dir().join(bin);
        let text = std::fs::read_to_string(man_dir().join(page)).expect("read page");
        // In roff, a hyphen in an option is written \- .
        let text = text.replace("\\-", "-");
        let commands = commands_of(&exe);
        let options: usize = commands.iter().map(|(_, opts)| opts.len()).sum();
        assert!(
            options > 0,
            "{bin}: no long option read from any --help (the parser or the help text changed)"
        );
        for (args, opts) in &commands {
            let command = [bin.to_string()]
                .iter()
                .chain(args)
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(sub) = args.last() {
                assert!(
                    text.contains(sub.as_str()),
                    "{page} does not document the command {command}"
                );
            }
            for opt in opts {
                assert!(
                    text.contains(opt.as_str()),
                    "{page} does not document {opt} (from {command} --help)"
                );
            }
            checked.push(format!("{command}: {}", opts.len()));
        }
    }
    report(
        "pages_document_every_option_of_help",
        &format!("long options checked, by command: {}", checked.join(", ")),
    );
}

teredo_lab::lab_tests! {
    needs(groff): [every_page_renders_without_warnings],
    needs(our_programs): [pages_document_every_option_of_help],
}
