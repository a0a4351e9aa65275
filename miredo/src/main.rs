//! miredo: Teredo IPv6 tunneling client and relay (RFC 4380), a drop-in
//! replacement of the C miredo 1.2.x daemon.

// Start-up in its security order: opened as root, privileges dropped,
// running unprivileged.
mod dropping;
mod opened_as_root;
mod running;

mod engine;
mod io_threads;
mod iobufs;
mod network;
mod portmap;
mod privproc_client;
mod servers;
mod status;

use clap::Parser;
use libteredo::sys::daemon::Startup;
use libteredo::sys::notify::Notifier;
use std::path::PathBuf;
use std::process::ExitCode;

/// The default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/miredo/miredo.conf";
/// The default pid file.
pub const DEFAULT_PIDFILE: &str = "/run/miredo.pid";

/// Teredo IPv6 tunneling client and relay (RFC 4380).
#[derive(Parser, Debug)]
#[command(name = "miredo", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file [default: /etc/miredo/miredo.conf; when that file
    /// is absent, built-in defaults: client mode, the public servers
    /// miredo.conf(5) lists]
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Stay in the foreground and log to standard error as well as syslog
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Pid file [default: /run/miredo.pid]
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Directory to chroot into once set up [default: /run/miredo/chroot,
    /// holding only copies of the resolver's files]
    #[arg(short = 't', long = "chrootdir", value_name = "DIR")]
    pub chrootdir: Option<PathBuf>,
    /// User to run as once set up [default: miredo, or nobody where that
    /// user does not exist]
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// The miredo-privproc to start instead of the one installed with
    /// miredo (/usr/libexec/miredo/miredo-privproc): for tests and builds
    /// run before installing
    #[arg(long = "privproc", value_name = "PATH")]
    pub privproc: Option<PathBuf>,
    /// The status socket [default: /run/miredo/IFACE.status]; its
    /// directory must be root's and writable by nobody else
    #[arg(long = "status-socket", value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
    /// Log debugging messages too
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Teredo server to use (client mode), overriding ServerAddress
    #[arg(value_name = "server_name")]
    pub server_name: Option<String>,
}

fn main() -> ExitCode {
    // Whatever descriptors our parent left open reach neither root's steps
    // nor the helpers we start.
    let _ = libteredo::sys::fds::close_from(3);
    // The service manager's socket, if any: read (and taken out of the
    // environment) before anything else starts.
    let notify = libteredo::sys::notify::from_env();
    let cli = Cli::parse();
    match run(cli, notify) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be set up yet, or not to standard error: say
            // it there too (once).
            if !libteredo::sys::logging::to_stderr() {
                eprintln!("miredo: {e}");
            }
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

/// The whole start-up, then the daemon until it stops. Detached, the
/// process that was started exits with start-up's result (see
/// libteredo::sys::daemon::daemonize).
fn run(cli: Cli, notify: Notifier) -> Result<(), String> {
    let mut startup = Startup::foreground();
    let started =
        opened_as_root::open(cli, notify, &mut startup).and_then(dropping::drop_privileges);
    match started {
        Ok(mut d) => {
            startup.succeeded();
            let result = d.run();
            // The interface is gone when we are.
            d.release_privproc();
            drop(d);
            log::info!("stopped");
            result
        }
        Err(e) => {
            startup.failed(&e);
            Err(e)
        }
    }
}
