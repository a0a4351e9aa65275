//! miredo-server: a Teredo server (RFC 4380 5.3) on two consecutive public
//! IPv4 addresses, UDP port 3544; a drop-in replacement of the C
//! miredo-server 1.2.x.

mod instance;
mod server;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

pub const DEFAULT_CONFIG: &str = "/etc/miredo/miredo-server.conf";

/// Teredo server (RFC 4380).
#[derive(Parser, Debug)]
#[command(name = "miredo-server", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file
    #[arg(short = 'c', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Stay in the foreground and log to standard error as well as syslog
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
    /// Pid file [default: /run/miredo/miredo-server-ADDRESS.pid, ADDRESS being
    /// the primary address; /run/miredo-server.pid for the default
    /// configuration file without SERVER_NAME]
    #[arg(short = 'p', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Directory to chroot into once the sockets are open, a directory of
    /// root's [default: an empty directory, /run/miredo/empty]
    #[arg(short = 't', long = "chrootdir", value_name = "DIR")]
    pub chrootdir: Option<PathBuf>,
    /// User to run as once the sockets are open [default: miredo-server,
    /// or nobody where that user does not exist]
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// The status socket [default: /run/miredo/miredo-server-ADDRESS.sock,
    /// ADDRESS being the primary address; /run/miredo/miredo-server.sock
    /// for the default configuration file without SERVER_NAME]; its
    /// directory must be root's and writable by nobody else
    #[arg(long = "status-socket", value_name = "PATH")]
    pub status_socket: Option<PathBuf>,
    /// Log debugging messages too
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Primary server address, overriding ServerBindAddress (the secondary
    /// becomes the next address)
    #[arg(value_name = "SERVER_NAME")]
    pub server_name: Option<String>,
}

fn main() -> ExitCode {
    // Whatever descriptors our parent left open go at once.
    let _ = libteredo::sys::fds::close_from(3);
    // The service manager's socket, if any: read (and taken out of the
    // environment) before anything else starts.
    let notify = libteredo::sys::notify::from_env();
    let cli = Cli::parse();
    match server::run(cli, notify) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be set up yet, or not to standard error: say
            // it there too (once).
            if !libteredo::sys::logging::to_stderr() {
                eprintln!("miredo-server: {e}");
            }
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}
