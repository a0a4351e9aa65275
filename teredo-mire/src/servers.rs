//! `teredo-mire servers [NAME...]`: which Teredo servers answer, from here,
//! and how. Every IPv4 address of every name (the configured list by
//! default) is probed at once from one UDP socket of its own, an
//! ephemeral port: a running miredo, on its own port, sees nothing of it.
//! The survey itself is [`survey`] (sans I/O); the checks of an
//! advertisement [`advert`]; the output [`render`].

mod advert;
mod render;
mod survey;

use crate::names::{resolve_all, unicast};
use crate::random::OsRandom;
use libteredo::addr::TEREDO_PORT;
use libteredo::conf::miredo::{MiredoConfig, DEFAULT_SERVERS};
use libteredo::conf::{next_ipv4, LoadError};
use render::{Probed, Row, Unprobed};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use survey::{Output, Survey, Target};

/// Where the client's configuration is, when `--config` names none.
pub const DEFAULT_CONFIG: &str = "/etc/miredo/miredo.conf";
/// How long the survey lasts at most, in seconds: the RFC's 3
/// solicitations, 4 s apart, and 4 s to wait for the last (RFC 4380
/// 5.2.1); a server that answers is done in about a second.
pub const DEFAULT_TIMEOUT: f64 = 12.0;
/// The most addresses of one name that are probed (as many as the daemon
/// hands its client).
pub const MAX_ADDRESSES_PER_NAME: usize = 4;
/// The most names one survey takes.
pub const MAX_NAMES: usize = 64;

/// How the results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table, problems beneath their row.
    Table,
    /// A JSON array, an object per address.
    Json,
}

pub struct Options {
    /// Names from the command line; none: the configuration's.
    pub names: Vec<String>,
    /// `--config`, when given.
    pub config: Option<PathBuf>,
    pub timeout: Duration,
    pub format: Format,
}

/// A name to probe, and the secondary address given for it
/// (`ServerAddress2` pairs with the first name's first address).
struct Entry {
    name: String,
    secondary: Option<String>,
}

/// A name's addresses from the resolver (or why none), and the secondary
/// address given for it.
type Resolved = (Result<Vec<Ipv4Addr>, String>, Option<Ipv4Addr>);
/// A row before the survey: a name, and an address with its secondary (or
/// why it is not probed).
type Planned = (String, Result<(Ipv4Addr, Ipv4Addr), Unprobed>);

/// The servers of a `miredo.conf`: its `ServerAddress` lines in order, or
/// the built-in list when it names none or when the default file is
/// absent. A relay's file has none.
fn configured(path: &Path, explicit: bool) -> Result<Vec<Entry>, String> {
    let built_in = || {
        DEFAULT_SERVERS
            .iter()
            .map(|n| Entry {
                name: n.to_string(),
                secondary: None,
            })
            .collect()
    };
    let conf = match MiredoConfig::load(path) {
        Ok(c) => c,
        Err(LoadError::Unreadable { source, .. })
            if !explicit && source.kind() == ErrorKind::NotFound =>
        {
            eprintln!(
                "{} does not exist: probing the built-in list of servers",
                path.display()
            );
            return Ok(built_in());
        }
        Err(e) => return Err(e.to_string()),
    };
    if conf.relay_type.is_relay() {
        return Err(format!(
            "{}: RelayType {}: a relay uses no Teredo server; name the servers to probe \
             on the command line",
            path.display(),
            conf.relay_type.as_str()
        ));
    }
    if conf.server_address_is_default {
        eprintln!(
            "{} names no ServerAddress: probing the built-in list of servers",
            path.display()
        );
        return Ok(built_in());
    }
    let mut second = conf.server_address2;
    Ok(conf
        .server_addresses
        .into_iter()
        .map(|name| Entry {
            name,
            secondary: second.take(),
        })
        .collect())
}

/// The rows of a name: one per address to probe (with its secondary), or
/// one saying why there is none.
fn rows_of(
    entry: &Entry,
    resolved: Result<Vec<Ipv4Addr>, String>,
    secondary: Option<Ipv4Addr>,
) -> Vec<Planned> {
    let name = entry.name.clone();
    let addrs = match resolved {
        Ok(a) => a,
        Err(error) => {
            return vec![(
                name,
                Err(Unprobed {
                    address: None,
                    error,
                }),
            )]
        }
    };
    if addrs.len() > MAX_ADDRESSES_PER_NAME {
        eprintln!(
            "{name} has {} IPv4 addresses: probing the first {MAX_ADDRESSES_PER_NAME}",
            addrs.len()
        );
    }
    addrs
        .into_iter()
        .take(MAX_ADDRESSES_PER_NAME)
        .enumerate()
        .map(|(i, a)| {
            let pair = unicast(a)
                .and_then(|a| {
                    let s = match secondary.filter(|_| i == 0) {
                        Some(s) => Some(s),
                        None => next_ipv4(a),
                    };
                    s.map(|s| (a, s))
                        .ok_or_else(|| format!("{a} has no next address for a secondary"))
                })
                .map_err(|error| Unprobed {
                    address: Some(a),
                    error,
                });
            (name.clone(), pair)
        })
        .collect()
}

/// Resolves every name (and secondary name) at once, a thread each: a
/// slow resolver costs its longest answer, not their sum.
fn resolve_entries(entries: &[Entry]) -> Vec<Resolved> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .iter()
            .map(|e| {
                scope.spawn(move || {
                    let second = e.secondary.as_ref().and_then(|s| {
                        match resolve_all(s).and_then(|v| {
                            v.first()
                                .copied()
                                .ok_or_else(|| format!("{s} has no IPv4 address"))
                        }) {
                            Ok(a) => Some(a),
                            Err(why) => {
                                eprintln!("ServerAddress2: {why}: using {}'s address + 1", e.name);
                                None
                            }
                        }
                    });
                    (resolve_all(&e.name), second)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Err("the resolver failed".to_string()), None))
            })
            .collect()
    })
}

pub fn run(o: &Options) -> Result<(), String> {
    let entries: Vec<Entry> = if o.names.is_empty() {
        let (path, explicit) = match &o.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        configured(&path, explicit)?
    } else {
        o.names
            .iter()
            .map(|n| Entry {
                name: n.clone(),
                secondary: None,
            })
            .collect()
    };
    if entries.len() > MAX_NAMES {
        return Err(format!(
            "{} names: at most {MAX_NAMES} at a time",
            entries.len()
        ));
    }
    let resolved = resolve_entries(&entries);
    let named: Vec<Planned> = entries
        .iter()
        .zip(resolved)
        .flat_map(|(e, (addrs, second))| rows_of(e, addrs, second))
        .collect();

    let (sock, port) = ephemeral_socket()?;
    let mut targets: Vec<Target> = Vec::new();
    for (_, pair) in &named {
        if let Ok((primary, secondary)) = pair {
            if !targets
                .iter()
                .any(|t| t.primary == *primary && t.secondary == *secondary)
            {
                let local = crate::portmap::local_address_towards(*primary)
                    .ok()
                    .map(|a| SocketAddrV4::new(a, port));
                targets.push(Target {
                    primary: *primary,
                    secondary: *secondary,
                    local,
                });
            }
        }
    }
    eprintln!(
        "probing {} address{} of {} name{} from port {port} (at most {} s)",
        targets.len(),
        if targets.len() == 1 { "" } else { "es" },
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        o.timeout.as_secs_f64()
    );
    let (outcomes, send_errors) = if targets.is_empty() {
        (Vec::new(), HashMap::new())
    } else {
        survey(&sock, &targets, o.timeout)?
    };

    let rows: Vec<Row> = named
        .into_iter()
        .map(|(name, pair)| {
            let probe = pair.map(|(address, secondary)| {
                let i = targets
                    .iter()
                    .position(|t| t.primary == address && t.secondary == secondary);
                let mut outcome = i.and_then(|i| outcomes.get(i).cloned()).unwrap_or_default();
                for a in [address, secondary] {
                    if let Some(e) = send_errors.get(&a) {
                        outcome
                            .problems
                            .push(format!("cannot send to {a} from here: {e}"));
                    }
                }
                Probed {
                    address,
                    secondary,
                    outcome,
                }
            });
            Row { name, probe }
        })
        .collect();
    match o.format {
        Format::Table => print!("{}", render::table(&rows)),
        Format::Json => print!("{}", render::json(&rows)),
    }
    let answered = outcomes.iter().filter(|o| o.answered).count();
    eprintln!(
        "{answered} of {} address{} answered",
        targets.len(),
        if targets.len() == 1 { "" } else { "es" }
    );
    if answered == 0 {
        return Err("no Teredo server answered".to_string());
    }
    Ok(())
}

/// One UDP socket on a port the kernel chooses, never the Teredo port
/// (the kernel never gives one that is in use, such as a running client's:
/// no option to share ports is set).
fn ephemeral_socket() -> Result<(UdpSocket, u16), String> {
    for _ in 0..4 {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        match sock.local_addr() {
            Ok(SocketAddr::V4(a)) if a.port() != TEREDO_PORT => return Ok((sock, a.port())),
            Ok(SocketAddr::V4(_)) => continue,
            Ok(a) => return Err(format!("unexpected local address {a}")),
            Err(e) => return Err(format!("cannot read the local address: {e}")),
        }
    }
    Err(format!(
        "the kernel keeps giving port {TEREDO_PORT}: check net.ipv4.ip_local_port_range"
    ))
}

/// Runs the survey on `sock` until it ends: the outcomes, in the order of
/// `targets`, and the errors sending to each address met.
fn survey(
    sock: &UdpSocket,
    targets: &[Target],
    timeout: Duration,
) -> Result<(Vec<survey::Outcome>, HashMap<Ipv4Addr, String>), String> {
    let rng = OsRandom::new()?;
    let start = Instant::now();
    let mut s = Survey::new(targets, start, timeout, Box::new(rng));
    let mut out = Vec::new();
    let mut send_errors = HashMap::new();
    let mut buf = vec![0u8; 65536];
    s.handle_timeout(start, &mut out);
    loop {
        for o in out.drain(..) {
            match o {
                Output::Send {
                    to,
                    payload,
                    purpose,
                    attempt,
                } => {
                    if attempt > 1 {
                        eprintln!(
                            "sending a router solicitation to {to} again ({}, attempt {attempt})",
                            purpose.describe()
                        );
                    }
                    if let Err(e) = sock.send_to(&payload, to) {
                        if send_errors.insert(*to.ip(), e.to_string()).is_none() {
                            eprintln!("cannot send to {to}: {e}");
                        }
                    }
                }
                Output::Progress(line) => eprintln!("{line}"),
            }
        }
        let now = Instant::now();
        if s.is_done(now) {
            return Ok((s.outcomes(now), send_errors));
        }
        let wake = s.poll_timeout().unwrap_or(now);
        // A zero timeout would mean "block forever".
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait))
            .map_err(|e| format!("cannot set the socket timeout: {e}"))?;
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => {
                if let Some(d) = buf.get(..n) {
                    s.handle_udp(Instant::now(), from, d, &mut out);
                }
            }
            Ok(_) => {}
            // Timeouts, and ICMP errors some kernels report on the socket:
            // the survey's own timers decide.
            Err(_) => {}
        }
        let now = Instant::now();
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now, &mut out);
        }
    }
}
