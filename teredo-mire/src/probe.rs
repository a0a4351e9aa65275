//! `teredo-mire probe`: qualification with a Teredo server (RFC 4380
//! 5.2.1) over a plain UDP socket, without any interface: the client engine
//! of libteredo driven by a blocking loop. Results go to standard output as
//! `key: value` lines, progress to standard error.

use crate::names::resolve;
use crate::random::OsRandom;
use libteredo::addr::{LINK_LOCAL_CONE, TEREDO_PORT};
use libteredo::proto::{
    Client, ClientConfig, DropReason, Event, NatBehaviour, Output, Stats, Transmit,
    CONE_PROBE_ATTEMPTS, RS_ATTEMPTS, RS_TIMEOUT,
};
use libteredo::wire::icmpv6::msg_type;
use libteredo::wire::ipv6::next_header;
use libteredo::wire::teredo::TeredoPacket;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// The first of the client's built-in servers (miredo.conf(5)); the C
/// miredo's default, teredo.remlab.net, was switched off.
pub const DEFAULT_SERVER: &str = libteredo::conf::miredo::DEFAULT_SERVERS[0];

/// How long the NAT test takes at most after qualification: the engine
/// sends at most two solicitations with the cone bit, then three to the
/// secondary address, each waited for 4 s: 20 s. What `--help`, the
/// progress line and the page say (a test keeps them together).
pub const NAT_TEST_TIME: Duration =
    Duration::from_secs(RS_TIMEOUT.as_secs() * (CONE_PROBE_ATTEMPTS as u64 + RS_ATTEMPTS as u64));

/// How long the probe waits for the NAT test's verdict before it calls
/// the NAT undetermined: twice what the test takes, for slow answers.
const NAT_TEST_LIMIT: Duration = Duration::from_secs(2 * NAT_TEST_TIME.as_secs());

pub struct Options {
    /// Ask the default gateway what port mapping it offers (`None`: do
    /// not ask; `Some(None)`: the default route's gateway).
    pub gateway: Option<Option<Ipv4Addr>>,
    pub server: String,
    pub server2: Option<String>,
    pub bind: SocketAddrV4,
    pub timeout: Duration,
    pub nat_test: bool,
}

/// What a solicitation the engine sends is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Qualification,
    Maintenance,
    ConeTest,
    SecondaryTest,
}

/// Progress of the run, as seen from outside the engine.
struct Run {
    nat_test: bool,
    server: Ipv4Addr,
    server2: Ipv4Addr,
    first_rs: Option<Instant>,
    qualified_at: Option<Instant>,
    addr_shown: bool,
    /// Attempts per solicitation nonce.
    attempts: HashMap<[u8; 8], u8>,
    rs_sent: u64,
    last_send_error: Option<String>,
    nat: Option<NatBehaviour>,
}

pub fn run(o: &Options) -> Result<(), String> {
    // A server that cannot be named ends the probe at once: nothing was
    // sent, and the gateway has nothing to add.
    let server = resolve_server(&o.server, o.timeout)?;
    let server2 = match &o.server2 {
        Some(s) => resolve_server(s, o.timeout)?,
        None => Ipv4Addr::from(u32::from(server).wrapping_add(1)),
    };
    let r = qualify(o, server, server2);
    if let Some(g) = o.gateway {
        gateway_offers(g);
    }
    r
}

/// A server's address ([`resolve`]), without waiting more than `limit`
/// for the system resolver (which may wait much longer for a name server
/// that does not answer; the look-up goes on in its thread, which ends
/// with the process). A name under `.invalid` is refused at once without
/// asking anyone (RFC 6761 6.4: it never resolves).
fn resolve_server(host: &str, limit: Duration) -> Result<Ipv4Addr, String> {
    if host.parse::<Ipv4Addr>().is_err() && is_invalid_tld(host) {
        return Err(format!(
            "cannot resolve {host}: a name under .invalid never resolves (RFC 6761)"
        ));
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return resolve(host);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::Builder::new()
        .name("resolver".into())
        .spawn(move || {
            let _ = tx.send(resolve(&name));
        })
        .map_err(|e| format!("cannot start the resolver's thread: {e}"))?;
    rx.recv_timeout(limit).unwrap_or_else(|_| {
        Err(format!(
            "cannot resolve {host}: the resolver gave no answer within {} s",
            limit.as_secs_f64()
        ))
    })
}

/// Whether `host` is `invalid` or a name under it, whatever the case and
/// with or without the final dot.
fn is_invalid_tld(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let tld = host.rsplit('.').next().unwrap_or(host);
    tld.eq_ignore_ascii_case("invalid")
}

/// How long the gateway has to answer (its requests are repeated at 250,
/// 500 and 1000 ms).
const GATEWAY_WAIT: Duration = Duration::from_secs(2);

/// Asks the gateway what port mapping it offers, without creating any: a
/// PCP ANNOUNCE and a NAT-PMP request for the external address (see
/// libteredo::proto::portmap::parse_offer), then an SSDP search for a UPnP
/// IGD and its external address (libteredo::sys::upnp). Prints `gateway*` lines; a
/// gateway that answers nothing is a result, not an error.
fn gateway_offers(g: Option<Ipv4Addr>) {
    use libteredo::proto::portmap::{self, Offer};
    let gw = match g.map_or_else(crate::portmap::default_gateway, Ok) {
        Ok(g) => g,
        Err(e) => {
            println!("gateway: none ({e})");
            return;
        }
    };
    println!("gateway: {gw}");
    let local = match crate::portmap::local_address_towards(gw) {
        Ok(a) => a,
        Err(e) => {
            println!("gateway pcp: not asked ({e})");
            return;
        }
    };
    let sock = match UdpSocket::bind((local, 0)) {
        Ok(s) => s,
        Err(e) => {
            println!("gateway pcp: not asked (cannot bind {local}: {e})");
            return;
        }
    };
    let to = SocketAddrV4::new(gw, portmap::PORT);
    let requests = [
        portmap::pcp_announce(local),
        portmap::natpmp_external_request(),
    ];
    let (mut pcp, mut natpmp): (Option<String>, Option<String>) = (None, None);
    let start = Instant::now();
    let mut next_send = start;
    let mut wait = Duration::from_millis(250);
    let mut buf = vec![0u8; portmap::MAX_ANSWER + 1];
    while start.elapsed() < GATEWAY_WAIT && (pcp.is_none() || natpmp.is_none()) {
        let now = Instant::now();
        if now >= next_send {
            for (i, r) in requests.iter().enumerate() {
                let answered = if i == 0 { &pcp } else { &natpmp };
                if answered.is_none() {
                    let _ = sock.send_to(r, to);
                }
            }
            next_send = now + wait;
            wait *= 2;
        }
        let until = next_send.min(start + GATEWAY_WAIT);
        let _ = sock.set_read_timeout(Some(
            until
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
        ));
        let Ok((n, SocketAddr::V4(from))) = sock.recv_from(&mut buf) else {
            continue;
        };
        if from != to {
            continue;
        }
        match buf.get(..n).and_then(portmap::parse_offer) {
            Some(Offer::Pcp { epoch }) => pcp = Some(format!("yes (epoch {epoch} s)")),
            Some(Offer::NotPcp(why)) => pcp = Some(format!("no ({why})")),
            Some(Offer::NatPmp { external, epoch }) => {
                natpmp = Some(format!(
                    "yes (external address {external}, epoch {epoch} s)"
                ))
            }
            Some(Offer::NatPmpRefused(why)) => natpmp = Some(format!("no ({why})")),
            None => {}
        }
    }
    let silent = || format!("no answer within {} s", GATEWAY_WAIT.as_secs());
    println!("gateway pcp: {}", pcp.unwrap_or_else(silent));
    println!("gateway nat-pmp: {}", natpmp.unwrap_or_else(silent));
    // UPnP IGD: its WAN connection service and external address (nothing
    // is mapped).
    use libteredo::sys::upnp;
    let igd = upnp::discover(gw, local).and_then(|igd| {
        let ip = upnp::external_ip(&igd)?;
        Ok((igd, ip))
    });
    match igd {
        Ok((igd, ip)) => println!(
            "gateway upnp: yes ({}, control {}, external address {ip})",
            igd.service.rsplit(':').nth(1).unwrap_or(&igd.service),
            igd.control
        ),
        Err(e) => println!("gateway upnp: no ({e})"),
    }
}

fn qualify(o: &Options, server: Ipv4Addr, server2: Ipv4Addr) -> Result<(), String> {
    let sock = UdpSocket::bind(o.bind).map_err(|e| format!("cannot bind {}: {e}", o.bind))?;
    let local = match sock.local_addr() {
        Ok(SocketAddr::V4(a)) => a,
        Ok(a) => return Err(format!("unexpected local address {a}")),
        Err(e) => return Err(format!("cannot read the local address: {e}")),
    };
    let rng = OsRandom::new()?;
    let start = Instant::now();
    let mut cfg = ClientConfig::new(server);
    cfg.server2 = server2;
    // The local port tells a port-preserving NAT apart.
    cfg.local = Some(local);
    let mut client = Client::new(cfg, Box::new(rng), start);

    println!("server: {server}");
    println!("secondary server: {server2}");
    println!("local: {local}");

    let mut r = Run {
        nat_test: o.nat_test,
        server,
        server2,
        first_rs: None,
        qualified_at: None,
        addr_shown: false,
        attempts: HashMap::new(),
        rs_sent: 0,
        last_send_error: None,
        nat: None,
    };
    let qualify_deadline = start + o.timeout;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    client.handle_timeout(start, &mut out);
    loop {
        for output in out.drain(..) {
            match output {
                Output::Udp(t) => r.send(&sock, &t),
                Output::Tun(_) => {}
                Output::Event(e) => r.event(&e)?,
            }
        }
        if r.qualified_at.is_some() && (!o.nat_test || r.nat.is_some()) {
            return Ok(());
        }
        let now = Instant::now();
        let deadline = match r.qualified_at {
            None => qualify_deadline,
            Some(q) => q + NAT_TEST_LIMIT,
        };
        if now >= deadline {
            return match r.qualified_at {
                None => Err(r.failure(client.stats(), o.timeout)),
                Some(_) => {
                    println!(
                        "nat: undetermined (no decision within {} s)",
                        NAT_TEST_LIMIT.as_secs()
                    );
                    Ok(())
                }
            };
        }
        let wake = client.poll_timeout().map_or(deadline, |t| t.min(deadline));
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        // A zero timeout would mean "block forever".
        sock.set_read_timeout(Some(wait))
            .map_err(|e| format!("cannot set the socket timeout: {e}"))?;
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => {
                let now = Instant::now();
                if let Some(d) = buf.get(..n) {
                    client.handle_udp(now, from, local, d, &mut out);
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // ICMP errors reported on the socket (e.g. ECONNREFUSED) are
            // noted; the engine's own timeouts decide.
            Err(e) => r.last_send_error = Some(e.to_string()),
        }
        let now = Instant::now();
        if client.poll_timeout().is_some_and(|t| t <= now) {
            client.handle_timeout(now, &mut out);
        }
    }
}

impl Run {
    fn purpose(&self, t: &Transmit) -> Option<Purpose> {
        let pkt = TeredoPacket::parse(&t.payload).ok()?;
        let ip = &pkt.ipv6;
        let is_rs = ip.next_header() == next_header::ICMPV6
            && ip.payload().first() == Some(&msg_type::ROUTER_SOLICIT);
        if !is_rs {
            return None;
        }
        Some(if ip.src_addr() == LINK_LOCAL_CONE {
            Purpose::ConeTest
        } else if *t.to.ip() == self.server2 && self.server2 != self.server {
            Purpose::SecondaryTest
        } else if self.qualified_at.is_some() {
            Purpose::Maintenance
        } else {
            Purpose::Qualification
        })
    }

    fn send(&mut self, sock: &UdpSocket, t: &Transmit) {
        let purpose = self.purpose(t);
        let nonce = TeredoPacket::parse(&t.payload)
            .ok()
            .and_then(|p| p.auth)
            .map(|a| a.nonce);
        if let (Some(p), Some(nonce)) = (purpose, nonce) {
            let n = self.attempts.entry(nonce).or_insert(0);
            *n = n.saturating_add(1);
            let n = *n;
            let (what, max) = match p {
                Purpose::Qualification => ("qualification", RS_ATTEMPTS),
                Purpose::Maintenance => ("maintenance", RS_ATTEMPTS),
                Purpose::ConeTest => ("NAT test: cone bit set", CONE_PROBE_ATTEMPTS),
                Purpose::SecondaryTest => ("NAT test: secondary address", RS_ATTEMPTS),
            };
            eprintln!(
                "sending a router solicitation to {} ({what}, attempt {n} of {max})",
                t.to
            );
        }
        let sent_at = Instant::now();
        match sock.send_to(&t.payload, t.to) {
            Ok(_) => {
                if purpose.is_some() {
                    self.rs_sent += 1;
                    if self.first_rs.is_none() {
                        self.first_rs = Some(sent_at);
                    }
                }
            }
            Err(e) => {
                eprintln!("cannot send to {}: {e}", t.to);
                self.last_send_error = Some(e.to_string());
            }
        }
    }

    fn event(&mut self, e: &Event) -> Result<(), String> {
        match e {
            Event::Qualified {
                addr, mapped, mtu, ..
            } => {
                let now = Instant::now();
                if !self.addr_shown {
                    self.addr_shown = true;
                    self.qualified_at = Some(now);
                    let rtt = self.first_rs.map_or(Duration::ZERO, |t| now - t);
                    println!("rtt: {:.3} ms", rtt.as_secs_f64() * 1000.0);
                    println!("teredo address: {addr}");
                    println!("mapped address: {}", mapped.ip());
                    println!("mapped port: {}", mapped.port());
                    println!("mtu: {mtu}");
                    if self.nat_test {
                        eprintln!(
                            "qualified; now learning the NAT's behaviour (up to about {} s; \
                             --no-nat-test skips this)",
                            NAT_TEST_TIME.as_secs()
                        );
                    }
                } else {
                    eprintln!("the server now sees {mapped}: new Teredo address {addr}, mtu {mtu}");
                }
            }
            Event::NatObserved(n) => {
                self.nat = Some(*n);
                match n {
                    NatBehaviour::Unknown => println!(
                        "nat: unknown (the secondary address {} did not answer)",
                        self.server2
                    ),
                    n => println!("nat: {n}"),
                }
            }
            Event::ServerLost { .. } => {
                return Err(format!(
                    "the server {} stopped answering during the NAT test",
                    self.server
                ));
            }
            Event::ServerChanged { from, to } => {
                eprintln!("the server {from} did not answer; trying {to}");
            }
        }
        Ok(())
    }

    /// Why qualification failed.
    fn failure(&self, stats: &Stats, timeout: Duration) -> String {
        let secs = timeout.as_secs_f64();
        let send = self
            .last_send_error
            .as_ref()
            .map(|e| format!("; last socket error: {e}"))
            .unwrap_or_default();
        if stats.udp_rx_packets == 0 {
            return format!(
                "no answer from {}:{TEREDO_PORT} within {secs} s \
                 ({} router solicitations sent){send}",
                self.server, self.rs_sent
            );
        }
        let reasons: Vec<String> = DropReason::ALL
            .iter()
            .filter(|d| stats.dropped(**d) > 0)
            .map(|d| format!("{}: {}", d.name(), stats.dropped(*d)))
            .collect();
        format!(
            "no valid router advertisement from {}:{TEREDO_PORT} within {secs} s: \
             {} datagrams received, {} dropped ({}){send}",
            self.server,
            stats.udp_rx_packets,
            stats.total_drops(),
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons.join(", ")
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    #[test]
    fn names_under_invalid_are_refused_at_once() {
        for name in [
            "no-such-host.invalid",
            "x.INVALID.",
            "invalid",
            "a.b.Invalid",
        ] {
            let start = Instant::now();
            assert_eq!(
                resolve_server(name, LIMIT),
                Err(format!(
                    "cannot resolve {name}: a name under .invalid never resolves (RFC 6761)"
                ))
            );
            assert!(start.elapsed() < Duration::from_millis(100));
        }
        assert!(!is_invalid_tld("invalid.example"));
        assert!(!is_invalid_tld("teredo.example.net"));
        // Literals and /etc/hosts names as before.
        assert_eq!(
            resolve_server("198.18.1.1", LIMIT),
            Ok(Ipv4Addr::new(198, 18, 1, 1))
        );
        assert!(resolve_server("224.0.0.253", LIMIT)
            .unwrap_err()
            .contains("not a unicast"));
        assert_eq!(resolve_server("localhost", LIMIT), Ok(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn the_nat_test_takes_20_seconds_at_most() {
        // Two cone solicitations and three of the secondary address, 4 s
        // each: what --help, the progress line and the page say.
        assert_eq!(NAT_TEST_TIME, Duration::from_secs(20));
        assert!(NAT_TEST_LIMIT > NAT_TEST_TIME);
    }
}
