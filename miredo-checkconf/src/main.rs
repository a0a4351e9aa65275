//! miredo-checkconf: checks a miredo.conf (or, with -s, a
//! miredo-server.conf) and reports every problem as
//! `FILE:LINE: Directive: reason`.
//!
//! Exit status: 0 valid, 1 invalid, 2 unreadable (or a bad command line).

mod check;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

/// The default files, as in the C miredo.
const MIREDO_CONF: &str = "/etc/miredo/miredo.conf";
const SERVER_CONF: &str = "/etc/miredo/miredo-server.conf";

#[derive(Parser, Debug)]
#[command(
    name = "miredo-checkconf",
    version,
    about = "Check a miredo.conf, or with -s a miredo-server.conf",
    long_about = "Check a miredo.conf, or with -s a miredo-server.conf, without starting \
                  anything. Every problem, errors and warnings alike, is printed on \
                  standard error as FILE:LINE: Directive: reason, in line order; \
                  warnings do not make a file invalid. \
                  Host names are checked for syntax, not resolved.",
    after_help = "Exit status: 0 if the file is valid, 1 if it is not, \
                  2 if it cannot be read or the command line is wrong."
)]
struct Args {
    /// Check a miredo-server.conf (default /etc/miredo/miredo-server.conf)
    /// instead of a miredo.conf (default /etc/miredo/miredo.conf)
    #[arg(short, long)]
    server: bool,

    /// The file to check (the C tool's -c/--config is accepted too)
    #[arg(
        short = 'c',
        long = "config",
        visible_alias = "conf",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// The file to check. Without one, the default file: an absent
    /// /etc/miredo/miredo.conf is valid (miredo then runs on its built-in
    /// defaults); /etc/miredo/miredo-server.conf must exist
    #[arg(value_name = "FILE", conflicts_with = "config")]
    file: Option<PathBuf>,

    // The C tool shares miredo's option table, and Debian's service file
    // runs `miredo-checkconf -f FILE`: miredo's options are accepted and
    // ignored.
    /// miredo's "stay in the foreground" (Debian's service file gives it)
    #[arg(short = 'f', long = "foreground", help_heading = COMPAT)]
    _foreground: bool,
    /// miredo's pid file
    #[arg(short = 'p', long = "pidfile", value_name = "FILE", help_heading = COMPAT)]
    _pidfile: Option<PathBuf>,
    /// miredo's root directory
    #[arg(short = 't', long = "chrootdir", value_name = "DIR", help_heading = COMPAT)]
    _chrootdir: Option<PathBuf>,
    /// miredo's user
    #[arg(short = 'u', long = "user", value_name = "USER", help_heading = COMPAT)]
    _user: Option<String>,
}

/// The heading of the options kept for the C tool's command line.
const COMPAT: &str = "Options of miredo, accepted for compatibility, ignored";

fn main() -> ExitCode {
    let args = Args::parse();
    let kind = if args.server {
        check::Kind::Server
    } else {
        check::Kind::Miredo
    };
    let mut stderr = std::io::stderr().lock();
    let status = match args.file.or(args.config) {
        Some(path) => check::run(kind, &path, &mut stderr),
        // No file named: the default file, read as the daemon reads it
        // (miredo runs on built-in defaults without it; miredo-server
        // does not run without its own).
        None if args.server => check::run_default(kind, Path::new(SERVER_CONF), &mut stderr),
        None => check::run_default(kind, Path::new(MIREDO_CONF), &mut stderr),
    };
    ExitCode::from(status as u8)
}
