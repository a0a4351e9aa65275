//! The manual pages: all seven render without a warning; each program's
//! page documents every command (a section of its own) and every long
//! option that its `--help`, and each of its subcommands' (`teredo-mire
//! probe --help`, ..., found in `teredo-mire --help`, so that a new one is
//! covered at once), lists; their footers (`.TH`) agree on the source,
//! the version, the date's form and the manual's title; and the two pages
//! that tell what a peer costs say the same.

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

/// The subcommands that must be found in `--help` (a parser that finds
/// none would check nothing); others found there are checked as well.
const KNOWN_SUBCOMMANDS: [(&str, &[&str]); 1] = [(
    "teredo-mire",
    &["decode", "probe", "servers", "portmap", "status"],
)];

/// Whether the page has a section for the subcommand `sub`: a `.SS` line
/// whose first word is its name (`.SS decode \fIADDRESS\fR`).
fn has_section(text: &str, sub: &str) -> bool {
    text.lines().any(|l| {
        l.strip_prefix(".SS ")
            .and_then(|rest| rest.trim().trim_matches('"').split_whitespace().next())
            == Some(sub)
    })
}

fn pages_document_every_option_of_help() {
    let mut checked = Vec::new();
    for (bin, page) in BINS {
        let exe = our_bin_dir().join(bin);
        let text = std::fs::read_to_string(man_dir().join(page)).expect("read page");
        // In roff, a hyphen in an option is written \- .
        let text = text.replace("\\-", "-");
        let commands = commands_of(&exe);
        let found: Vec<&str> = commands
            .iter()
            .filter_map(|(args, _)| args.last().map(String::as_str))
            .collect();
        for (_, subs) in KNOWN_SUBCOMMANDS.iter().filter(|(b, _)| *b == bin) {
            for sub in *subs {
                assert!(
                    found.contains(sub),
                    "{bin} --help does not list the command {sub} (found {found:?})"
                );
            }
        }
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
                    has_section(&text, sub),
                    "{page} has no section (.SS {sub}) for the command {command}"
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

/// The arguments of a roff request line, double quotes grouping words.
fn request_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut in_word) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    args.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        args.push(word);
    }
    args
}

/// Whether `date` is written YYYY-MM-DD.
fn is_iso_date(date: &str) -> bool {
    let b = date.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn page_footers_agree() {
    // .TH TITLE SECTION DATE SOURCE MANUAL: the title is the page's name
    // in capitals (a hyphen written \-), the section its file's, the
    // date YYYY-MM-DD, the source "miredo" and the workspace's version,
    // the manual's title the usual one of the section.
    let source = format!("miredo {}", env!("CARGO_PKG_VERSION"));
    let mut footers = Vec::new();
    for page in PAGES {
        let text = std::fs::read_to_string(man_dir().join(page)).expect("read page");
        let th = text
            .lines()
            .find_map(|l| l.strip_prefix(".TH "))
            .unwrap_or_else(|| panic!("{page} has no .TH line"));
        let args = request_args(th);
        let (name, section) = page.rsplit_once('.').expect("NAME.SECTION");
        let title = name.to_uppercase().replace('-', "\\-");
        let manual = match section {
            "1" => "User Commands",
            "5" => "File Formats",
            "8" => "System Administration",
            other => panic!("{page}: no manual title known for section {other}"),
        };
        let [t, sec, date, src, man] = args.as_slice() else {
            panic!("{page}: .TH has {} arguments, not 5: {th}", args.len());
        };
        assert_eq!(t, &title, "{page}: .TH title");
        assert_eq!(sec, section, "{page}: .TH section");
        assert!(
            is_iso_date(date),
            "{page}: .TH date {date:?} is not YYYY-MM-DD"
        );
        assert_eq!(src, &source, "{page}: .TH source and version");
        assert_eq!(man, manual, "{page}: .TH manual");
        footers.push(format!("{page}: {date}"));
    }
    report(
        "page_footers_agree",
        &format!(
            "{} pages, source \"{source}\"; {}",
            PAGES.len(),
            footers.join(", ")
        ),
    );
}

fn pages_agree_on_what_a_peer_costs() {
    // The figure the pages give: about 80 bytes an entry, measured by
    // `cargo bench -p libteredo --bench peers` (77.6 bytes an entry in a
    // table of a million), and at most what memory_bound counts.
    let most = libteredo::proto::memory_bound(1, 0);
    assert_eq!(most, 100, "memory_bound changed: say so in the pages");
    let conf = std::fs::read_to_string(man_dir().join("miredo.conf.5")).expect("read page");
    let daemon = std::fs::read_to_string(man_dir().join("miredo.8")).expect("read page");
    let conf = conf.split_whitespace().collect::<Vec<_>>().join(" ");
    let daemon = daemon.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        conf.contains(&format!("Each entry takes about 80 bytes, {most} at most")),
        "miredo.conf.5, MaxPeers"
    );
    assert!(
        daemon.contains("A peer's entry takes about 80 bytes")
            && daemon.contains(&format!("; {most} bytes at most.")),
        "miredo.8, PERFORMANCE"
    );
    assert!(
        daemon.contains(&format!("entries of about 80 bytes each, {most} at most")),
        "miredo.8, FLOODS AND ADMISSION"
    );
    assert!(
        daemon.contains(&format!("MaxPeers times {most} bytes")),
        "miredo.8, FLOODS AND ADMISSION: the bound"
    );
    report(
        "pages_agree_on_what_a_peer_costs",
        &format!("about 80 bytes an entry, {most} at most, in miredo.8 and miredo.conf.5"),
    );
}

/// The number after `before` in `text` (spaces normalised).
fn number_after(text: &str, before: &str) -> Option<u32> {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let at = text.find(before)? + before.len();
    let digits: String = text
        .get(at..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn probe_nat_test_time_agrees() {
    // `teredo-mire probe --help` and the page give the NAT test's time
    // alike (the progress line and --help take it from one constant,
    // which teredo-mire's unit tests check against the engine's).
    let exe = our_bin_dir().join("teredo-mire");
    let help = help_of(&exe, &["probe".to_string()]);
    let page = std::fs::read_to_string(man_dir().join("teredo-mire.1")).expect("read page");
    let in_help = number_after(&help, "(which takes up to about ");
    let in_page = number_after(&page, "All in all this takes up to about ");
    assert!(in_help.is_some(), "no time in probe --help:\n{help}");
    assert_eq!(in_help, in_page, "probe --help and teredo-mire.1 disagree");
    report(
        "probe_nat_test_time_agrees",
        &format!(
            "the NAT test takes up to about {} s in both",
            in_help.unwrap_or(0)
        ),
    );
}

teredo_lab::lab_tests! {
    needs(groff): [every_page_renders_without_warnings],
    needs(our_programs): [pages_document_every_option_of_help, probe_nat_test_time_agrees],
    plain: [page_footers_agree, pages_agree_on_what_a_peer_costs],
}
