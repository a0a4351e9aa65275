//! teredo-mire: a stateless Teredo ICMPv6 echo responder (the job of the C
//! tool of the same name), plus diagnostics: decode a Teredo address, probe
//! a Teredo server without creating an interface, check which of several
//! servers answer, ask the home gateway for a port mapping (PCP or
//! NAT-PMP), and read the status of a running miredo.
//!
//! Exit status: 0 success, 1 failure (the reason is printed on standard
//! error), 2 a bad command line.

mod decode;
mod names;
mod portmap;
mod probe;
mod random;
mod responder;
mod servers;
mod status;
mod summary;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "teredo-mire",
    version,
    about = "Stateless Teredo IPv6 echo responder and Teredo diagnostics",
    long_about = "Without a command, answer ICMPv6 echo requests (pings) that arrive \
                  over Teredo on UDP ports 3544 and 3545, statelessly, one reply per \
                  request, never larger than the request. The commands decode a Teredo \
                  address, probe a Teredo server, check a list of servers, ask the \
                  gateway for a port mapping, or show the status of a running miredo.",
    after_help = "Exit status: 0 on success, 1 on failure (the reason is printed on \
                  standard error), 2 for a bad command line.",
    args_conflicts_with_subcommands = true
)]
struct Args {
    /// Responder: the local IPv4 address to listen on (ports 3544 and 3545)
    #[arg(short, long, value_name = "ADDR", default_value_t = Ipv4Addr::UNSPECIFIED)]
    bind: Ipv4Addr,

    /// Responder: also answer requests whose IPv4 source is not a global
    /// unicast address (private, loopback, link-local, ...)
    #[arg(long)]
    allow_private: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode a Teredo IPv6 address and check it against RFC 4380 and RFC 5991
    Decode {
        /// The IPv6 address to decode; a prefix length as `ip addr` prints
        /// it (ADDRESS/32) is accepted and ignored
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
    /// Qualify with a Teredo server over UDP, without creating an interface,
    /// and report the address, the mapped endpoint, the NAT behaviour and
    /// the port mapping the gateway offers (PCP, NAT-PMP, UPnP IGD)
    Probe {
        /// The Teredo server (host name or IPv4 address)
        #[arg(value_name = "SERVER", default_value = probe::DEFAULT_SERVER)]
        server: String,

        /// The secondary server address (default: SERVER's address + 1)
        #[arg(long, value_name = "ADDR")]
        server2: Option<String>,

        /// The local UDP endpoint to send from
        #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:0")]
        bind: SocketAddrV4,

        /// How long to wait for qualification, in seconds
        #[arg(long, value_name = "SECS", default_value_t = 15.0)]
        timeout: f64,

        /// Stop right after qualification, without learning the NAT behaviour
        /// (which takes up to about 20 s)
        #[arg(long)]
        no_nat_test: bool,

        /// The gateway asked, after the qualification, what port mapping it
        /// offers in PCP, NAT-PMP and UPnP IGD (nothing is mapped; default:
        /// the gateway of the default route)
        #[arg(long, value_name = "ADDR")]
        gateway: Option<Ipv4Addr>,

        /// Do not ask the gateway what port mapping it offers
        #[arg(long, conflicts_with = "gateway")]
        no_gateway: bool,
    },
    /// Check which Teredo servers answer from here, all at once: round trip,
    /// mapped address, secondary address, NAT behaviour, faults of their
    /// advertisements
    Servers {
        /// The servers to check (host names or IPv4 addresses; default:
        /// the ServerAddress lines of the configuration file, or the
        /// built-in list when it names none)
        #[arg(value_name = "NAME", num_args = 0..=servers::MAX_NAMES)]
        names: Vec<String>,

        /// The miredo.conf whose servers to check (default:
        /// /etc/miredo/miredo.conf, or the built-in list if it is absent)
        #[arg(short, long, value_name = "FILE", conflicts_with = "names")]
        config: Option<PathBuf>,

        /// How long the whole check may take, in seconds
        #[arg(long, value_name = "SECS", default_value_t = servers::DEFAULT_TIMEOUT,
              value_parser = timeout_arg)]
        timeout: f64,

        /// How to print the results: an aligned table, or a JSON array
        #[arg(long, value_enum, default_value_t = servers::Format::Table)]
        format: servers::Format,
    },
    /// Ask the gateway for a UDP port mapping in PCP or NAT-PMP, as
    /// miredo's client does for its Teredo port, and report it
    Portmap {
        /// The gateway to ask (default: the gateway of the default route,
        /// from /proc/net/route)
        #[arg(long, value_name = "ADDR")]
        gateway: Option<Ipv4Addr>,

        /// The protocol: PCP, then NAT-PMP if the gateway does not speak
        /// PCP (auto), or only one of them
        #[arg(long, value_enum, default_value_t = portmap::Protocol::Auto)]
        protocol: portmap::Protocol,

        /// The internal UDP port to map, bound by this command while it runs
        #[arg(long, value_name = "PORT", default_value_t = portmap::DEFAULT_PORT,
              value_parser = clap::value_parser!(u16).range(1..))]
        port: u16,

        /// The lifetime to ask for, in seconds (the gateway may give another)
        #[arg(long, value_name = "SECS", default_value_t = portmap::DEFAULT_LIFETIME,
              value_parser = clap::value_parser!(u32).range(1..))]
        lifetime: u32,

        /// Hold the mapping this many seconds, renewing it at half its
        /// lifetime, and show the datagrams that arrive through it
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        keep: f64,

        /// Leave the mapping in place at the end (it lapses after its
        /// lifetime) instead of deleting it
        #[arg(long)]
        no_delete: bool,

        /// Give up if there is no mapping after this many seconds, all
        /// protocols together: in auto mode PCP has the first half at most,
        /// NAT-PMP the rest (at once if the gateway refuses PCP)
        #[arg(long, value_name = "SECS", default_value_t = portmap::DEFAULT_TIMEOUT)]
        timeout: f64,
    },
    /// Show the status of a running miredo or miredo-server (read from its
    /// status socket)
    Status {
        /// The Teredo interface of the miredo instance
        #[arg(value_name = "IFACE", default_value = status::DEFAULT_IFACE)]
        iface: String,

        /// Read this Unix socket instead of /run/miredo/IFACE.status (with
        /// --server, instead of looking for miredo-server's sockets)
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,

        /// Read miredo-server's status instead: of every server whose
        /// socket, /run/miredo/miredo-server*.sock, answers (each under a
        /// header with its address when there are several), or only of the
        /// server whose primary or secondary address is ADDRESS
        #[arg(long, value_name = "ADDRESS", num_args = 0..=1, conflicts_with = "iface")]
        server: Option<Option<Ipv4Addr>>,

        /// How to print it: for a person (text: miredo's state, server,
        /// addresses, NAT, port mapping, servers, traffic and peers in a
        /// dozen lines), one JSON object (json), or the Prometheus text
        /// exposition format (prometheus)
        #[arg(long, value_enum, default_value_t = status::Format::Text)]
        format: status::Format,

        /// With the text format, the daemon's whole page: every `key: value`
        /// line, every counter (miredo-server's page is always shown whole)
        #[arg(long)]
        all: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        None => responder::run(args.bind, args.allow_private),
        Some(Command::Decode { address }) => decode::run(&address),
        Some(Command::Probe {
            server,
            server2,
            bind,
            timeout,
            no_nat_test,
            gateway,
            no_gateway,
        }) => match timeout_from_secs(timeout) {
            Ok(timeout) => probe::run(&probe::Options {
                gateway: (!no_gateway).then_some(gateway),
                server,
                server2,
                bind,
                timeout,
                nat_test: !no_nat_test,
            }),
            Err(e) => Err(e),
        },
        Some(Command::Servers {
            names,
            config,
            timeout,
            format,
        }) => match timeout_from_secs(timeout) {
            Ok(timeout) => servers::run(&servers::Options {
                names,
                config,
                timeout,
                format,
            }),
            Err(e) => Err(e),
        },
        Some(Command::Portmap {
            gateway,
            protocol,
            port,
            lifetime,
            keep,
            no_delete,
            timeout,
        }) => match (timeout_from_secs(timeout), keep_from_secs(keep)) {
            (Ok(timeout), Ok(keep)) => portmap::run(&portmap::Options {
                gateway,
                protocol,
                port,
                lifetime,
                keep,
                delete: !no_delete,
                timeout,
            }),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        Some(Command::Status {
            iface,
            socket,
            server,
            format,
            all,
        }) => {
            let target = match server {
                Some(want) => status::Target::Server(want),
                None => status::Target::Miredo(&iface),
            };
            let format = match (format, all, target) {
                (status::Format::Text, false, status::Target::Miredo(_)) => status::Format::Summary,
                (f, _, _) => f,
            };
            status::run(target, socket.as_deref(), format)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("teredo-mire: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A timeout in seconds from the command line: positive and at most a day.
fn timeout_from_secs(secs: f64) -> Result<Duration, String> {
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "invalid timeout {secs}: give a number of seconds above 0 and at most 86400"
        ))
    }
}

/// A timeout option checked by clap, so that a bad one is a bad command
/// line (exit status 2).
fn timeout_arg(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    timeout_from_secs(secs).map(|_| secs)
}

/// A time to hold something, in seconds: 0 or more, at most a day.
fn keep_from_secs(secs: f64) -> Result<Duration, String> {
    if secs.is_finite() && (0.0..=86_400.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!(
            "invalid time {secs}: give a number of seconds from 0 to 86400"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The help of `--NAME` of the subcommand `sub`.
    fn help_of(sub: &str, name: &str) -> String {
        let cmd = Args::command();
        let sub = cmd.find_subcommand(sub).expect("subcommand");
        let arg = sub
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .expect("option");
        arg.get_help().map(|h| h.to_string()).unwrap_or_default()
    }

    #[test]
    fn probe_help_says_what_the_probe_does() {
        // The NAT test's time as the probe computes it.
        let secs = probe::NAT_TEST_TIME.as_secs();
        assert!(
            help_of("probe", "no-nat-test").contains(&format!("up to about {secs} s")),
            "{}",
            help_of("probe", "no-nat-test")
        );
        // The gateway is asked in the three protocols gateway_offers speaks.
        let gateway = help_of("probe", "gateway");
        for protocol in ["PCP", "NAT-PMP", "UPnP IGD"] {
            assert!(gateway.contains(protocol), "{gateway}");
        }
    }
}
