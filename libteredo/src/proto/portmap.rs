//! Port mapping with the home gateway, sans-IO: PCP (RFC 6887) and its
//! predecessor NAT-PMP (RFC 6886), both spoken to the default gateway on UDP
//! port 5351. The mapper asks for a UDP mapping of the client's Teredo
//! service port, renews it before it lapses, deletes it when told to, and
//! reports the external endpoint it got.
//!
//! Like the other engines, it owns no socket and no clock: the caller hands
//! it the datagrams from the gateway and the current time, and sends what it
//! returns. (Hence our own code rather than the crab_nat crate, which is
//! asynchronous on the tokio runtime and owns its sockets and timeouts: the
//! daemon has no async runtime, and neither the simulator nor the fuzzer
//! could drive it.) Answers come from the LAN, which is not trusted: a datagram is
//! taken only from the gateway's address and port, only if its length,
//! version, opcode, result, nonce (PCP), protocol and internal port match
//! what was asked; anything else is counted and ignored.
//!
//! In [`Mode::Auto`] the mapper asks in PCP first; a gateway that answers
//! "unsupported version" (which is how a NAT-PMP gateway answers PCP, and a
//! PCP server answers a version it does not speak) is asked again in
//! NAT-PMP at once. Requests are repeated after 250 ms, doubling, as RFC
//! 6886 3.1 has it (RFC 6887 8.1.1 allows starting faster than its 3 s for
//! such a client), [`MAX_TRIES`] times in all; a gateway that never
//! answers is asked again after [`RETRY_LATER`]. A mapping is renewed at
//! half its lifetime (RFC 6887 11.2.1, RFC 6886 3.3); a gateway whose epoch
//! went backwards lost its mappings (RFC 6887 8.5, RFC 6886 3.6), so the
//! mapping is asked for again at once.
//!
//! The mapper can be told the external endpoint the client wants
//! ([`PortMapper::want`]): the one the Teredo server sees, which the
//! client's address embeds. A NAT that gives every flow a random port
//! (symmetric) maps the client's port to another one than the server
//! sees; the mapper then deletes that mapping and asks for the wanted port
//! instead, so that peers can reach the address through the mapping. A
//! gateway that gives another port for it is not asked again for the same
//! endpoint.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

/// The gateway's port for both protocols.
pub const PORT: u16 = 5351;
/// Requests of one exchange, the first included.
pub const MAX_TRIES: u8 = 6;
/// The first wait for an answer; it doubles at each try.
pub const FIRST_WAIT: Duration = Duration::from_millis(250);
/// How long after a gateway that answered nothing (or refused) it is asked
/// again.
pub const RETRY_LATER: Duration = Duration::from_secs(600);
/// The lifetime asked for by default (seconds).
pub const DEFAULT_LIFETIME: u32 = 3600;
/// The largest datagram a gateway may answer with (RFC 6887 7: 1100).
pub const MAX_ANSWER: usize = 1100;

const PCP_VERSION: u8 = 2;
const PCP_MAP: u8 = 1;
const PCP_RESPONSE: u8 = 0x80;
const PCP_HEADER: usize = 24;
const PCP_MAP_LEN: usize = 36;
const NATPMP_VERSION: u8 = 0;
const NATPMP_EXTERNAL: u8 = 0;
const NATPMP_MAP_UDP: u8 = 1;
const NATPMP_RESPONSE: u8 = 128;
const UDP: u8 = 17;

/// Which protocols to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PCP, then NAT-PMP.
    Auto,
    Pcp,
    NatPmp,
    Off,
}

/// A protocol the gateway speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pcp,
    NatPmp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Pcp => "PCP",
            Protocol::NatPmp => "NAT-PMP",
        })
    }
}

/// What the caller learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The gateway maps `external` to our internal endpoint for `lifetime`
    /// (a new mapping, or a renewed one whose endpoint changed).
    Mapped {
        protocol: Protocol,
        external: SocketAddrV4,
        lifetime: Duration,
    },
    /// The mapping is gone (the gateway refused to renew it, or lost it and
    /// has not given it back yet).
    Lost { why: String },
    /// The gateway offers no mapping (no answer, or a refusal); asked again
    /// later.
    Unavailable { why: String },
}

/// A datagram to send to the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub to: SocketAddrV4,
    pub payload: Vec<u8>,
}

/// Settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    /// The default gateway.
    pub gateway: Ipv4Addr,
    /// Our LAN address and Teredo service port (what is mapped).
    pub internal: SocketAddrV4,
    /// The lifetime asked for, in seconds.
    pub lifetime: u32,
}

/// Where the exchange stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// NAT-PMP: asking for the external address first.
    External,
    /// Asking for the mapping (or renewing it).
    Map,
    /// Deleting it (lifetime 0).
    Delete,
}

#[derive(Clone, Debug)]
struct Exchange {
    protocol: Protocol,
    step: Step,
    payload: Vec<u8>,
    tries: u8,
    next: Instant,
    wait: Duration,
    /// The wanted endpoint this request suggested (a Map step), if any.
    asked: Option<SocketAddrV4>,
}

/// The mapping we hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub protocol: Protocol,
    pub external: SocketAddrV4,
    pub lifetime: Duration,
    /// When it lapses.
    pub expires: Instant,
}

/// Counters of what came back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub answers: u64,
    /// Datagrams ignored: not from the gateway, malformed, not an answer to
    /// what was asked.
    pub ignored: u64,
}

/// The port mapper.
pub struct PortMapper {
    cfg: Config,
    nonce: [u8; 12],
    /// The protocol that answered (so that renewals use it).
    speaks: Option<Protocol>,
    exchange: Option<Exchange>,
    mapping: Option<Mapping>,
    /// NAT-PMP's external address, once asked.
    external_addr: Option<Ipv4Addr>,
    /// When to start the next exchange (a renewal, or a retry later).
    next_start: Option<Instant>,
    /// The gateway's last epoch and when we saw it.
    epoch: Option<(u32, Instant)>,
    /// Stopped: no further request after the deletion.
    stopping: bool,
    /// The external endpoint the client wants (see [`PortMapper::want`]).
    wanted: Option<SocketAddrV4>,
    /// A wanted endpoint the gateway gave another port for.
    refused: Option<SocketAddrV4>,
    /// A deletion in flight is to be followed by a request for `wanted`.
    remap: bool,
    /// What the gateway said last, for `teredo-mire probe`.
    pub last_result: Option<String>,
    pub counters: Counters,
}

impl PortMapper {
    /// A mapper; `nonce` must be random (PCP uses it to tie answers to our
    /// requests).
    pub fn new(cfg: Config, nonce: [u8; 12], now: Instant) -> Self {
        let start = (cfg.mode != Mode::Off).then_some(now);
        PortMapper {
            cfg,
            nonce,
            speaks: None,
            exchange: None,
            mapping: None,
            external_addr: None,
            next_start: start,
            epoch: None,
            stopping: false,
            wanted: None,
            refused: None,
            remap: false,
            last_result: None,
            counters: Counters::default(),
        }
    }

    pub fn mapping(&self) -> Option<Mapping> {
        self.mapping
    }

    /// The protocol the gateway answered in, if any.
    pub fn protocol(&self) -> Option<Protocol> {
        self.speaks
    }

    fn gateway(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.cfg.gateway, PORT)
    }

    /// The external endpoint the client wants: the one its Teredo server
    /// sees and its address embeds (`None`: not qualified, no wish). A
    /// mapping held on another port of the same external address is
    /// deleted and the wanted port asked for; the gateway's answer is
    /// taken whatever it is, and a wanted endpoint it did not give is not
    /// asked for again (until another is wanted). A mapping on another
    /// external address (the gateway is not the outermost NAT) is kept as
    /// it is.
    pub fn want(&mut self, wanted: Option<SocketAddrV4>, now: Instant, out: &mut Vec<Request>) {
        if self.wanted == wanted {
            return;
        }
        self.wanted = wanted;
        self.maybe_remap(now, out);
    }

    /// Starts a remapping if the mapping held is not the wanted one and
    /// the gateway may give it, once no exchange is in flight (else when it
    /// ends, so that no answer is taken for another's): the mapping is
    /// deleted (both protocols
    /// return the existing mapping of an internal port whatever external
    /// port is suggested), then the wanted port asked for.
    fn maybe_remap(&mut self, now: Instant, out: &mut Vec<Request>) {
        let (Some(w), Some(m)) = (self.wanted, self.mapping) else {
            return;
        };
        if self.stopping
            || self.remap
            || m.external == w
            || m.external.ip() != w.ip()
            || self.refused == Some(w)
            || self.exchange.is_some()
        {
            return;
        }
        let payload = self.request(m.protocol, Step::Delete);
        self.mapping = None;
        self.remap = true;
        self.begin(m.protocol, Step::Delete, payload, now, out);
    }

    /// A deletion ended (answered, refused or unanswered): a remapping
    /// goes on with the request for the wanted port.
    fn deleted(&mut self, protocol: Protocol, now: Instant, out: &mut Vec<Request>) {
        self.exchange = None;
        if std::mem::take(&mut self.remap) && !self.stopping {
            self.ask(protocol, now, out);
        }
    }

    /// When [`PortMapper::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.exchange {
            Some(x) => Some(x.next),
            None => self.next_start,
        }
    }

    /// Deletes the mapping (shutdown, or a change of gateway or LAN
    /// address): a request with lifetime 0, repeated like any other; no
    /// further request afterwards.
    pub fn stop(&mut self, now: Instant, out: &mut Vec<Request>) {
        self.stopping = true;
        self.next_start = None;
        let Some(m) = self.mapping else {
            self.exchange = None;
            return;
        };
        // Built while the mapping is known: it names the external port.
        let payload = self.request(m.protocol, Step::Delete);
        self.mapping = None;
        self.remap = false;
        self.begin(m.protocol, Step::Delete, payload, now, out);
    }

    /// The first protocol to try.
    fn first_protocol(&self) -> Option<Protocol> {
        match (self.cfg.mode, self.speaks) {
            (Mode::Off, _) => None,
            (_, Some(p)) => Some(p),
            (Mode::Auto | Mode::Pcp, None) => Some(Protocol::Pcp),
            (Mode::NatPmp, None) => Some(Protocol::NatPmp),
        }
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Request>) {
        let Some(p) = self.first_protocol() else {
            return;
        };
        self.ask(p, now, out);
    }

    /// Starts asking for the mapping in `p` (NAT-PMP first asks for the
    /// external address, once).
    fn ask(&mut self, p: Protocol, now: Instant, out: &mut Vec<Request>) {
        let step = if p == Protocol::NatPmp && self.external_addr.is_none() {
            Step::External
        } else {
            Step::Map
        };
        let payload = self.request(p, step);
        self.begin(p, step, payload, now, out);
        let asked = self.suggests_wanted().filter(|_| step == Step::Map);
        if let Some(x) = self.exchange.as_mut() {
            x.asked = asked;
        }
    }

    /// The wanted endpoint, when a request for a new mapping suggests it
    /// (no mapping held, and the gateway has not given another port for
    /// it).
    fn suggests_wanted(&self) -> Option<SocketAddrV4> {
        self.wanted
            .filter(|w| self.mapping.is_none() && self.refused != Some(*w))
    }

    fn begin(
        &mut self,
        protocol: Protocol,
        step: Step,
        payload: Vec<u8>,
        now: Instant,
        out: &mut Vec<Request>,
    ) {
        out.push(Request {
            to: self.gateway(),
            payload: payload.clone(),
        });
        self.counters.requests += 1;
        self.exchange = Some(Exchange {
            protocol,
            step,
            payload,
            tries: 1,
            next: now + FIRST_WAIT,
            wait: FIRST_WAIT,
            asked: None,
        });
    }

    /// The request for `step` in `protocol`.
    fn request(&self, protocol: Protocol, step: Step) -> Vec<u8> {
        let lifetime = if step == Step::Delete {
            0
        } else {
            self.cfg.lifetime
        };
        let internal = self.cfg.internal;
        match protocol {
            Protocol::Pcp => {
                let mut v = Vec::with_capacity(PCP_HEADER + PCP_MAP_LEN);
                v.extend_from_slice(&[PCP_VERSION, PCP_MAP, 0, 0]);
                v.extend_from_slice(&lifetime.to_be_bytes());
                v.extend_from_slice(&internal.ip().to_ipv6_mapped().octets());
                v.extend_from_slice(&self.nonce);
                v.extend_from_slice(&[UDP, 0, 0, 0]);
                v.extend_from_slice(&internal.port().to_be_bytes());
                // Suggest what we hold (a renewal), else the endpoint the
                // client wants, else the same port.
                let (port, addr) = match (self.mapping, self.suggests_wanted()) {
                    (Some(m), _) => (m.external.port(), *m.external.ip()),
                    (None, Some(w)) => (w.port(), *w.ip()),
                    (None, None) => (internal.port(), Ipv4Addr::UNSPECIFIED),
                };
                v.extend_from_slice(&port.to_be_bytes());
                // The unspecified IPv4 address, IPv4-mapped (RFC 6887 11.1).
                v.extend_from_slice(&addr.to_ipv6_mapped().octets());
                v
            }
            Protocol::NatPmp => match step {
                Step::External => vec![NATPMP_VERSION, NATPMP_EXTERNAL],
                Step::Map | Step::Delete => {
                    let suggested = match (step, self.mapping, self.suggests_wanted()) {
                        (Step::Delete, _, _) => 0,
                        (_, Some(m), _) => m.external.port(),
                        (_, None, Some(w)) => w.port(),
                        (_, None, None) => internal.port(),
                    };
                    let mut v = vec![NATPMP_VERSION, NATPMP_MAP_UDP, 0, 0];
                    v.extend_from_slice(&internal.port().to_be_bytes());
                    v.extend_from_slice(&suggested.to_be_bytes());
                    v.extend_from_slice(&lifetime.to_be_bytes());
                    v
                }
            },
        }
    }

    pub fn handle_timeout(
        &mut self,
        now: Instant,
        out: &mut Vec<Request>,
        events: &mut Vec<Event>,
    ) {
        if let Some(m) = self.mapping {
            if m.expires <= now && self.exchange.as_ref().is_none_or(|x| x.step != Step::Map) {
                self.mapping = None;
                events.push(Event::Lost {
                    why: "its lifetime ran out without a renewal".into(),
                });
            }
        }
        if let Some(mut x) = self.exchange.take() {
            if x.next > now {
                self.exchange = Some(x);
                return;
            }
            if x.tries < MAX_TRIES {
                out.push(Request {
                    to: self.gateway(),
                    payload: x.payload.clone(),
                });
                self.counters.requests += 1;
                x.tries += 1;
                x.wait *= 2;
                x.next = now + x.wait;
                self.exchange = Some(x);
                return;
            }
            // No answer.
            if x.step == Step::Delete {
                self.deleted(x.protocol, now, out);
                return;
            }
            let why = format!(
                "the gateway {} did not answer {} ({} requests)",
                self.cfg.gateway, x.protocol, x.tries
            );
            if x.protocol == Protocol::Pcp && self.cfg.mode == Mode::Auto && self.speaks.is_none() {
                // Some NAT-PMP gateways ignore PCP rather than refuse it.
                self.ask(Protocol::NatPmp, now, out);
                return;
            }
            self.unavailable(now, why, events);
            return;
        }
        if let Some(at) = self.next_start {
            if at <= now && !self.stopping {
                self.next_start = None;
                self.start(now, out);
            }
        }
    }

    fn unavailable(&mut self, now: Instant, why: String, events: &mut Vec<Event>) {
        self.exchange = None;
        self.speaks = None;
        self.last_result = Some(why.clone());
        if self.mapping.take().is_some() {
            events.push(Event::Lost { why: why.clone() });
        }
        events.push(Event::Unavailable { why });
        if !self.stopping {
            self.next_start = Some(now + RETRY_LATER);
        }
    }

    /// A datagram received from `from` on the socket the requests left
    /// from.
    pub fn handle_udp(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        bytes: &[u8],
        out: &mut Vec<Request>,
        events: &mut Vec<Event>,
    ) {
        let Some(x) = self.exchange.clone() else {
            self.counters.ignored += 1;
            return;
        };
        if from != self.gateway() || bytes.len() > MAX_ANSWER || bytes.len() < 2 {
            self.counters.ignored += 1;
            return;
        }
        let answer = match (bytes[0], x.protocol) {
            (PCP_VERSION, Protocol::Pcp) => self.pcp_answer(bytes),
            // A NAT-PMP gateway answers a PCP request in NAT-PMP, with
            // "unsupported version" (RFC 6887 9).
            (NATPMP_VERSION, Protocol::Pcp) => match parse_natpmp_header(bytes) {
                Some((_, 1, _)) => Some(Answer::UnsupportedVersion),
                _ => None,
            },
            (NATPMP_VERSION, Protocol::NatPmp) => self.natpmp_answer(x.step, bytes),
            _ => None,
        };
        let Some(answer) = answer else {
            self.counters.ignored += 1;
            return;
        };
        self.counters.answers += 1;
        match answer {
            Answer::UnsupportedVersion => {
                if x.protocol == Protocol::Pcp && self.cfg.mode == Mode::Auto {
                    self.ask(Protocol::NatPmp, now, out);
                } else {
                    self.unavailable(
                        now,
                        format!(
                            "the gateway {} does not speak {}",
                            self.cfg.gateway, x.protocol
                        ),
                        events,
                    );
                }
            }
            Answer::Refused(why) => {
                if x.step == Step::Delete {
                    self.deleted(x.protocol, now, out);
                    return;
                }
                self.unavailable(
                    now,
                    format!(
                        "the gateway {} refused ({}): {why}",
                        self.cfg.gateway, x.protocol
                    ),
                    events,
                );
            }
            Answer::External { addr, epoch } => {
                self.check_epoch(epoch, now, events);
                self.speaks = Some(Protocol::NatPmp);
                self.external_addr = Some(addr);
                self.ask(Protocol::NatPmp, now, out);
            }
            Answer::Mapped {
                external,
                lifetime,
                epoch,
            } => {
                if lifetime == 0 && x.step == Step::Map && x.asked.is_some() {
                    // A late answer to the deletion that came before
                    // (repeated, or answered twice): not this answer.
                    self.counters.answers -= 1;
                    self.counters.ignored += 1;
                    return;
                }
                self.check_epoch(epoch, now, events);
                self.exchange = None;
                self.speaks = Some(x.protocol);
                if x.step == Step::Delete {
                    self.deleted(x.protocol, now, out);
                    return;
                }
                if lifetime == 0 {
                    self.unavailable(now, "the gateway gave a lifetime of 0".into(), events);
                    return;
                }
                let lifetime = Duration::from_secs(u64::from(lifetime));
                let changed = self.mapping.is_none_or(|m| m.external != external);
                self.mapping = Some(Mapping {
                    protocol: x.protocol,
                    external,
                    lifetime,
                    expires: now + lifetime,
                });
                self.last_result = Some(format!(
                    "{} mapping {external} for {}s",
                    x.protocol,
                    lifetime.as_secs()
                ));
                // Renew at half the lifetime.
                self.next_start = Some(now + lifetime / 2);
                if let Some(a) = x.asked.filter(|a| *a != external) {
                    self.refused = Some(a);
                }
                if changed {
                    events.push(Event::Mapped {
                        protocol: x.protocol,
                        external,
                        lifetime,
                    });
                }
                // Wanted while this request was in flight.
                self.maybe_remap(now, out);
            }
        }
    }

    /// RFC 6887 8.5 / RFC 6886 3.6: a gateway whose epoch is less than
    /// expected restarted and lost its mappings.
    fn check_epoch(&mut self, epoch: u32, now: Instant, events: &mut Vec<Event>) {
        if let Some((last, at)) = self.epoch {
            let elapsed = now.saturating_duration_since(at).as_secs() as u32;
            // Expected at least last + 7/8 of the time elapsed, less 2 s.
            let expected = last.saturating_add(elapsed - elapsed / 8).saturating_sub(2);
            if epoch < expected && self.mapping.take().is_some() {
                events.push(Event::Lost {
                    why: "the gateway restarted (its epoch went back)".into(),
                });
            }
        }
        self.epoch = Some((epoch, now));
    }

    /// A PCP answer to our MAP request.
    fn pcp_answer(&self, b: &[u8]) -> Option<Answer> {
        if b.len() < PCP_HEADER || !b.len().is_multiple_of(4) {
            return None;
        }
        let opcode = b[1];
        let result = b[3];
        if opcode & PCP_RESPONSE == 0 {
            return None;
        }
        if result == 1 {
            // UNSUPP_VERSION: the header alone tells.
            return Some(Answer::UnsupportedVersion);
        }
        if opcode & 0x7F != PCP_MAP || b.len() < PCP_HEADER + PCP_MAP_LEN {
            return None;
        }
        let lifetime = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        let epoch = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let m = &b[PCP_HEADER..];
        if m[..12] != self.nonce || m[12] != UDP {
            return None;
        }
        let internal = u16::from_be_bytes([m[16], m[17]]);
        if internal != self.cfg.internal.port() {
            return None;
        }
        if result != 0 {
            return Some(Answer::Refused(pcp_result(result).to_string()));
        }
        let port = u16::from_be_bytes([m[18], m[19]]);
        let mut a = [0u8; 16];
        a.copy_from_slice(&m[20..36]);
        let addr = Ipv6Addr::from(a).to_ipv4_mapped()?;
        if port == 0 || addr.is_unspecified() {
            return None;
        }
        Some(Answer::Mapped {
            external: SocketAddrV4::new(addr, port),
            lifetime,
            epoch,
        })
    }

    /// A NAT-PMP answer to `step`.
    fn natpmp_answer(&self, step: Step, b: &[u8]) -> Option<Answer> {
        let (op, result, epoch) = parse_natpmp_header(b)?;
        let want = match step {
            Step::External => NATPMP_EXTERNAL,
            Step::Map | Step::Delete => NATPMP_MAP_UDP,
        };
        if op != want {
            return None;
        }
        if result != 0 {
            return Some(Answer::Refused(natpmp_result(result).to_string()));
        }
        match step {
            Step::External => {
                let a = b.get(8..12)?;
                let addr = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(Answer::External { addr, epoch })
            }
            Step::Map | Step::Delete => {
                let r = b.get(8..16)?;
                let internal = u16::from_be_bytes([r[0], r[1]]);
                if internal != self.cfg.internal.port() {
                    return None;
                }
                let port = u16::from_be_bytes([r[2], r[3]]);
                let lifetime = u32::from_be_bytes([r[4], r[5], r[6], r[7]]);
                let addr = self.external_addr?;
                if step == Step::Map && (port == 0 || addr.is_unspecified()) {
                    return None;
                }
                Some(Answer::Mapped {
                    external: SocketAddrV4::new(addr, port),
                    lifetime,
                    epoch,
                })
            }
        }
    }
}

/// What a gateway offers, asked without creating anything (`teredo-mire
/// probe`): a PCP ANNOUNCE (RFC 6887 14.1) and a NAT-PMP request for the
/// external address (RFC 6886 3.2), both to [`PORT`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// A PCP server answered the ANNOUNCE.
    Pcp {
        epoch: u32,
    },
    /// A PCP answer that is not a success (a NAT-PMP gateway answers PCP
    /// with "unsupported version").
    NotPcp(String),
    /// A NAT-PMP gateway gave its external address.
    NatPmp {
        external: Ipv4Addr,
        epoch: u32,
    },
    NatPmpRefused(String),
}

/// The PCP ANNOUNCE request from `client` (our address towards the
/// gateway: PCP servers check it against the source).
pub fn pcp_announce(client: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![PCP_VERSION, 0, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(&client.to_ipv6_mapped().octets());
    v
}

/// The NAT-PMP request for the external address.
pub fn natpmp_external_request() -> Vec<u8> {
    vec![NATPMP_VERSION, NATPMP_EXTERNAL]
}

/// Reads an answer to [`pcp_announce`] or [`natpmp_external_request`];
/// `None` for anything else.
pub fn parse_offer(b: &[u8]) -> Option<Offer> {
    if b.len() > MAX_ANSWER || b.len() < 2 {
        return None;
    }
    match b[0] {
        PCP_VERSION => {
            if b.len() < PCP_HEADER || !b.len().is_multiple_of(4) || b[1] != PCP_RESPONSE {
                return None;
            }
            let epoch = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            match b[3] {
                0 => Some(Offer::Pcp { epoch }),
                r => Some(Offer::NotPcp(pcp_result(r).to_string())),
            }
        }
        NATPMP_VERSION => {
            let (op, result, epoch) = parse_natpmp_header(b)?;
            if result == 1 {
                // The answer to a PCP request (any opcode).
                return Some(Offer::NotPcp(natpmp_result(1).to_string()));
            }
            if op != NATPMP_EXTERNAL {
                return None;
            }
            if result != 0 {
                return Some(Offer::NatPmpRefused(natpmp_result(result).to_string()));
            }
            let a = b.get(8..12)?;
            Some(Offer::NatPmp {
                external: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
                epoch,
            })
        }
        _ => None,
    }
}

/// What a valid answer says.
enum Answer {
    UnsupportedVersion,
    Refused(String),
    External {
        addr: Ipv4Addr,
        epoch: u32,
    },
    Mapped {
        external: SocketAddrV4,
        lifetime: u32,
        epoch: u32,
    },
}

/// A NAT-PMP answer's opcode (without the response bit), result code and
/// epoch; None unless it is an answer of at least 8 bytes.
fn parse_natpmp_header(b: &[u8]) -> Option<(u8, u16, u32)> {
    if b.len() < 8 || b[0] != NATPMP_VERSION || b[1] & NATPMP_RESPONSE == 0 {
        return None;
    }
    let result = u16::from_be_bytes([b[2], b[3]]);
    let epoch = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    Some((b[1] & 0x7F, result, epoch))
}

/// RFC 6887 7.4's result codes.
fn pcp_result(code: u8) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized",
        3 => "malformed request",
        4 => "unsupported opcode",
        5 => "unsupported option",
        6 => "malformed option",
        7 => "network failure",
        8 => "no resources",
        9 => "unsupported protocol",
        10 => "user exceeded quota",
        11 => "cannot provide the external address or port",
        12 => "address mismatch",
        13 => "excessive remote peers",
        _ => "unknown result code",
    }
}

/// RFC 6886 3.5's result codes.
fn natpmp_result(code: u16) -> &'static str {
    match code {
        0 => "success",
        1 => "unsupported version",
        2 => "not authorized or refused",
        3 => "network failure",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown result code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 3545);
    const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
    const NONCE: [u8; 12] = [9; 12];

    fn mapper(mode: Mode, t0: Instant) -> PortMapper {
        PortMapper::new(
            Config {
                mode,
                gateway: GW,
                internal: ME,
                lifetime: 7200,
            },
            NONCE,
            t0,
        )
    }

    fn gw() -> SocketAddrV4 {
        SocketAddrV4::new(GW, PORT)
    }

    /// A PCP MAP answer to `req` (our request), as a gateway builds it.
    fn pcp_answer(req: &[u8], result: u8, lifetime: u32, epoch: u32, port: u16) -> Vec<u8> {
        let mut v = vec![PCP_VERSION, PCP_RESPONSE | PCP_MAP, 0, result];
        v.extend_from_slice(&lifetime.to_be_bytes());
        v.extend_from_slice(&epoch.to_be_bytes());
        v.extend_from_slice(&[0; 12]);
        v.extend_from_slice(&req[24..24 + 12]); // nonce
        v.extend_from_slice(&[UDP, 0, 0, 0]);
        v.extend_from_slice(&req[24 + 16..24 + 18]); // internal port
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&EXT.to_ipv6_mapped().octets());
        v
    }

    fn natpmp_external(epoch: u32) -> Vec<u8> {
        let mut v = vec![0, 128, 0, 0];
        v.extend_from_slice(&epoch.to_be_bytes());
        v.extend_from_slice(&EXT.octets());
        v
    }

    fn natpmp_map(result: u16, epoch: u32, port: u16, lifetime: u32) -> Vec<u8> {
        let mut v = vec![0, 129];
        v.extend_from_slice(&result.to_be_bytes());
        v.extend_from_slice(&epoch.to_be_bytes());
        v.extend_from_slice(&ME.port().to_be_bytes());
        v.extend_from_slice(&port.to_be_bytes());
        v.extend_from_slice(&lifetime.to_be_bytes());
        v
    }

    #[test]
    fn pcp_request_layout() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::Auto, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0, &mut out, &mut ev);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.to, gw());
        let p = &r.payload;
        assert_eq!(p.len(), 60);
        assert_eq!(&p[..4], &[2, 1, 0, 0]);
        assert_eq!(&p[4..8], &7200u32.to_be_bytes());
        assert_eq!(&p[8..24], &ME.ip().to_ipv6_mapped().octets());
        assert_eq!(&p[24..36], &NONCE);
        assert_eq!(p[36], 17);
        assert_eq!(&p[40..42], &3545u16.to_be_bytes());
        assert_eq!(&p[42..44], &3545u16.to_be_bytes());
        assert_eq!(&p[44..60], &Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
    }

    #[test]
    fn pcp_maps_renews_at_half_and_deletes() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::Auto, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0, &mut out, &mut ev);
        let req = out.pop().unwrap().payload;
        let t1 = t0 + Duration::from_millis(20);
        m.handle_udp(
            t1,
            gw(),
            &pcp_answer(&req, 0, 600, 1000, 40000),
            &mut out,
            &mut ev,
        );
        let ext = SocketAddrV4::new(EXT, 40000);
        assert_eq!(
            ev,
            vec![Event::Mapped {
                protocol: Protocol::Pcp,
                external: ext,
                lifetime: Duration::from_secs(600)
            }]
        );
        assert_eq!(m.poll_timeout(), Some(t1 + Duration::from_secs(300)));
        ev.clear();
        // The renewal suggests what we hold; the same answer is no event.
        let t2 = t1 + Duration::from_secs(300);
        m.handle_timeout(t2, &mut out, &mut ev);
        let renew = out.pop().unwrap().payload;
        assert_eq!(&renew[42..44], &40000u16.to_be_bytes());
        assert_eq!(&renew[44..60], &EXT.to_ipv6_mapped().octets());
        m.handle_udp(
            t2,
            gw(),
            &pcp_answer(&renew, 0, 600, 1300, 40000),
            &mut out,
            &mut ev,
        );
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(m.mapping().unwrap().external, ext);
        // Shutdown: lifetime 0, and nothing after it.
        m.stop(t2, &mut out);
        let del = out.pop().unwrap().payload;
        assert_eq!(&del[4..8], &[0, 0, 0, 0]);
        assert_eq!(&del[42..44], &40000u16.to_be_bytes());
        assert_eq!(&del[44..60], &EXT.to_ipv6_mapped().octets());
        m.handle_udp(
            t2,
            gw(),
            &pcp_answer(&del, 0, 0, 1300, 40000),
            &mut out,
            &mut ev,
        );
        assert!(ev.is_empty());
        assert_eq!(m.poll_timeout(), None);
        assert!(m.mapping().is_none());
    }

    #[test]
    fn auto_falls_back_to_natpmp_on_unsupported_version() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::Auto, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0, &mut out, &mut ev);
        out.clear();
        // What a NAT-PMP gateway answers to version 2.
        let mut unsupported = vec![0, 128 + 1, 0, 1];
        unsupported.extend_from_slice(&5u32.to_be_bytes());
        m.handle_udp(t0, gw(), &unsupported, &mut out, &mut ev);
        assert_eq!(out.pop().unwrap().payload, vec![0, 0]);
        m.handle_udp(t0, gw(), &natpmp_external(5), &mut out, &mut ev);
        let map = out.pop().unwrap().payload;
        assert_eq!(map.len(), 12);
        assert_eq!(&map[..4], &[0, 1, 0, 0]);
        assert_eq!(&map[4..6], &3545u16.to_be_bytes());
        assert_eq!(&map[8..12], &7200u32.to_be_bytes());
        m.handle_udp(t0, gw(), &natpmp_map(0, 5, 41000, 3600), &mut out, &mut ev);
        assert_eq!(
            ev,
            vec![Event::Mapped {
                protocol: Protocol::NatPmp,
                external: SocketAddrV4::new(EXT, 41000),
                lifetime: Duration::from_secs(3600)
            }]
        );
        assert_eq!(m.protocol(), Some(Protocol::NatPmp));
    }

    #[test]
    fn silence_then_natpmp_then_unavailable_and_retry_later() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::Auto, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        let mut now = t0;
        for _ in 0..100 {
            m.handle_timeout(now, &mut out, &mut ev);
            match m.poll_timeout() {
                Some(t) if t - t0 < RETRY_LATER => now = t,
                _ => break,
            }
        }
        // PCP and NAT-PMP, MAX_TRIES each, 250 ms doubling.
        assert_eq!(out.len(), 2 * usize::from(MAX_TRIES));
        assert_eq!(out[0].payload.len(), 60);
        assert_eq!(out[usize::from(MAX_TRIES)].payload, vec![0, 0]);
        assert!(matches!(ev[..], [Event::Unavailable { .. }]), "{ev:?}");
        assert!(m.poll_timeout().unwrap() >= now + RETRY_LATER - Duration::from_secs(1));
        // 250 ms doubling: 0.25 + 0.5 + ... + 8 s for each protocol.
        assert!(now - t0 < Duration::from_secs(32), "{:?}", now - t0);
    }

    #[test]
    fn strict_about_what_it_takes() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::Pcp, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0, &mut out, &mut ev);
        let req = out.pop().unwrap().payload;
        let good = pcp_answer(&req, 0, 600, 1, 40000);
        // Another host of the LAN, another port, another nonce, another
        // internal port, a request instead of an answer, a truncation, an
        // oversize datagram, garbage: all ignored.
        let other = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 66), PORT);
        m.handle_udp(t0, other, &good, &mut out, &mut ev);
        m.handle_udp(t0, SocketAddrV4::new(GW, 5350), &good, &mut out, &mut ev);
        let mut bad = good.clone();
        bad[24] ^= 1;
        m.handle_udp(t0, gw(), &bad, &mut out, &mut ev);
        let mut bad = good.clone();
        bad[41] ^= 1;
        m.handle_udp(t0, gw(), &bad, &mut out, &mut ev);
        m.handle_udp(t0, gw(), &req, &mut out, &mut ev);
        m.handle_udp(t0, gw(), &good[..59], &mut out, &mut ev);
        m.handle_udp(t0, gw(), &[0u8; 2000], &mut out, &mut ev);
        m.handle_udp(t0, gw(), &[0xff; 7], &mut out, &mut ev);
        m.handle_udp(t0, gw(), &[], &mut out, &mut ev);
        assert!(ev.is_empty() && out.is_empty());
        assert_eq!(m.counters.ignored, 9);
        m.handle_udp(t0, gw(), &good, &mut out, &mut ev);
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn refusal_and_gateway_restart() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::NatPmp, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0, &mut out, &mut ev);
        m.handle_udp(t0, gw(), &natpmp_external(100), &mut out, &mut ev);
        m.handle_udp(t0, gw(), &natpmp_map(0, 100, 41000, 600), &mut out, &mut ev);
        assert_eq!(ev.len(), 1);
        ev.clear();
        // At the renewal, the gateway's epoch is back near 0: it restarted
        // and lost the mapping; it maps again (another port).
        let t1 = t0 + Duration::from_secs(300);
        m.handle_timeout(t1, &mut out, &mut ev);
        m.handle_udp(t1, gw(), &natpmp_map(0, 3, 42000, 600), &mut out, &mut ev);
        assert!(matches!(ev[0], Event::Lost { .. }), "{ev:?}");
        assert!(matches!(ev[1], Event::Mapped { external, .. } if external.port() == 42000));
        ev.clear();
        // Then it refuses: the mapping is lost, the gateway unavailable.
        let t2 = t1 + Duration::from_secs(300);
        m.handle_timeout(t2, &mut out, &mut ev);
        m.handle_udp(t2, gw(), &natpmp_map(2, 303, 0, 0), &mut out, &mut ev);
        assert!(
            matches!(ev[..], [Event::Lost { .. }, Event::Unavailable { .. }]),
            "{ev:?}"
        );
        assert!(m.mapping().is_none());
    }

    /// The gateway answers `req` (a PCP MAP request of `m`'s) with
    /// `lifetime` and `port`, epoch 7.
    fn pcp_reply(
        m: &mut PortMapper,
        t: Instant,
        req: &[u8],
        lifetime: u32,
        port: u16,
    ) -> (Vec<Request>, Vec<Event>) {
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_udp(
            t,
            gw(),
            &pcp_answer(req, 0, lifetime, 7, port),
            &mut out,
            &mut ev,
        );
        (out, ev)
    }

    /// PCP: a mapping on port 40000, then the client wants 50000 (the port
    /// its server sees): deleted, asked for again with 50000 suggested.
    fn pcp_mapped_then_wanting(t0: Instant, wanted: u16) -> (PortMapper, Vec<Request>) {
        let mut m = mapper(Mode::Pcp, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0, &mut out, &mut ev);
        let req = out.pop().unwrap().payload;
        pcp_reply(&mut m, t0, &req, 600, 40000);
        assert_eq!(m.mapping().unwrap().external.port(), 40000);
        m.want(Some(SocketAddrV4::new(EXT, wanted)), t0, &mut out);
        (m, out)
    }

    #[test]
    fn a_mapping_on_another_port_than_wanted_is_remapped() {
        let t0 = Instant::now();
        let (mut m, mut out) = pcp_mapped_then_wanting(t0, 50000);
        assert_eq!(out.len(), 1, "{out:?}");
        let del = out.pop().unwrap().payload;
        assert_eq!(&del[4..8], &[0, 0, 0, 0], "a deletion first");
        assert_eq!(&del[42..44], &40000u16.to_be_bytes());
        assert!(m.mapping().is_none());
        let (out, _) = pcp_reply(&mut m, t0, &del, 0, 40000);
        assert_eq!(out.len(), 1, "then the request for the wanted port");
        let map = out[0].payload.clone();
        assert_eq!(&map[4..8], &7200u32.to_be_bytes());
        assert_eq!(&map[42..44], &50000u16.to_be_bytes());
        assert_eq!(&map[44..60], &EXT.to_ipv6_mapped().octets());
        // A repeated answer to the deletion is not taken for this one.
        let (out, ev) = pcp_reply(&mut m, t0, &del, 0, 40000);
        assert!(ev.is_empty() && out.is_empty(), "{ev:?}");
        assert_eq!(m.counters.ignored, 1);
        let (out, mut ev) = pcp_reply(&mut m, t0, &map, 600, 50000);
        assert_eq!(
            ev,
            vec![Event::Mapped {
                protocol: Protocol::Pcp,
                external: SocketAddrV4::new(EXT, 50000),
                lifetime: Duration::from_secs(600)
            }]
        );
        assert!(out.is_empty());
        // The renewal suggests the port held.
        let t1 = t0 + Duration::from_secs(300);
        let mut out = Vec::new();
        m.handle_timeout(t1, &mut out, &mut ev);
        assert_eq!(&out.pop().unwrap().payload[42..44], &50000u16.to_be_bytes());
    }

    #[test]
    fn a_wanted_port_the_gateway_does_not_give_is_not_asked_again() {
        let t0 = Instant::now();
        let (mut m, out) = pcp_mapped_then_wanting(t0, 50000);
        let (out, _) = pcp_reply(&mut m, t0, &out[0].payload, 0, 40000);
        // Port 50000 is taken: the gateway gives 40001.
        let (mut out, ev) = pcp_reply(&mut m, t0, &out[0].payload, 600, 40001);
        assert!(matches!(ev[..], [Event::Mapped { external, .. }] if external.port() == 40001));
        assert!(out.is_empty(), "no loop: {out:?}");
        m.want(None, t0, &mut out);
        m.want(Some(SocketAddrV4::new(EXT, 50000)), t0, &mut out);
        assert!(out.is_empty(), "50000 was refused: {out:?}");
        // Another wanted port is tried.
        m.want(Some(SocketAddrV4::new(EXT, 50002)), t0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].payload[4..8], &[0, 0, 0, 0]);
    }

    #[test]
    fn no_remapping_for_another_external_address_or_the_same_port() {
        let t0 = Instant::now();
        let (mut m, mut out) = pcp_mapped_then_wanting(t0, 40000);
        assert!(out.is_empty(), "the mapping is the wanted endpoint");
        // The server sees another address: the gateway is not the
        // outermost NAT, its ports are not the server's.
        m.want(
            Some(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 50000)),
            t0,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(m.mapping().unwrap().external.port(), 40000);
    }

    #[test]
    fn natpmp_wanted_before_the_first_answer_then_remapped() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::NatPmp, t0);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0, &mut out, &mut ev);
        m.handle_udp(t0, gw(), &natpmp_external(100), &mut out, &mut ev);
        let first = out.pop().unwrap().payload;
        assert_eq!(&first[6..8], &3545u16.to_be_bytes());
        out.clear();
        // Wanted while that request is in flight: nothing sent yet.
        m.want(Some(SocketAddrV4::new(EXT, 50000)), t0, &mut out);
        assert!(out.is_empty());
        m.handle_udp(t0, gw(), &natpmp_map(0, 100, 3545, 600), &mut out, &mut ev);
        assert_eq!(ev.len(), 1);
        let del = out.pop().unwrap().payload;
        assert_eq!(&del[6..12], &[0, 0, 0, 0, 0, 0], "port 0, lifetime 0");
        // The deletion's answer (NAT-PMP gives port 0), then the request.
        m.handle_udp(t0, gw(), &natpmp_map(0, 100, 0, 0), &mut out, &mut ev);
        let map = out.pop().unwrap().payload;
        assert_eq!(&map[6..8], &50000u16.to_be_bytes());
        m.handle_udp(t0, gw(), &natpmp_map(0, 100, 50000, 600), &mut out, &mut ev);
        assert!(matches!(ev[..], [_, Event::Mapped { external, .. }] if external.port() == 50000));
        // Shutdown deletes the new one.
        m.stop(t0, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn an_unanswered_deletion_still_leads_to_the_request() {
        let t0 = Instant::now();
        let (mut m, mut out) = pcp_mapped_then_wanting(t0, 50000);
        let mut ev = Vec::new();
        out.clear();
        let mut now = t0;
        for _ in 0..20 {
            let Some(t) = m.poll_timeout() else { break };
            now = t;
            m.handle_timeout(now, &mut out, &mut ev);
            if out.last().is_some_and(|r| r.payload[4..8] != [0, 0, 0, 0]) {
                break;
            }
        }
        let last = out.last().unwrap().payload.clone();
        assert_eq!(&last[42..44], &50000u16.to_be_bytes(), "{out:?}");
        assert!(now - t0 < Duration::from_secs(20));
    }

    #[test]
    fn off_sends_nothing() {
        let t0 = Instant::now();
        let mut m = mapper(Mode::Off, t0);
        assert_eq!(m.poll_timeout(), None);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        m.handle_timeout(t0 + Duration::from_secs(5), &mut out, &mut ev);
        assert!(out.is_empty() && ev.is_empty());
    }

    #[test]
    fn offers_are_read_strictly() {
        let a = pcp_announce(Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(a.len(), 24);
        assert_eq!(&a[..4], &[2, 0, 0, 0]);
        assert_eq!(natpmp_external_request(), vec![0, 0]);
        let mut pcp = vec![2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
        pcp.resize(24, 0);
        assert_eq!(parse_offer(&pcp), Some(Offer::Pcp { epoch: 256 }));
        pcp[3] = 1;
        assert!(matches!(parse_offer(&pcp), Some(Offer::NotPcp(_))));
        pcp.push(0);
        assert_eq!(parse_offer(&pcp), None, "not a multiple of 4");
        let nat = [0, 128, 0, 0, 0, 0, 0, 9, 11, 0, 1, 1];
        assert_eq!(
            parse_offer(&nat),
            Some(Offer::NatPmp {
                external: Ipv4Addr::new(11, 0, 1, 1),
                epoch: 9
            })
        );
        assert_eq!(parse_offer(&nat[..10]), None, "truncated");
        let unsupported = [0, 128, 0, 1, 0, 0, 0, 9];
        assert!(matches!(parse_offer(&unsupported), Some(Offer::NotPcp(_))));
        assert_eq!(parse_offer(&[0, 0]), None, "a request");
        assert_eq!(parse_offer(&[0xff; 2000]), None);
        assert_eq!(parse_offer(b"hello"), None);
    }
}
