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
//!
//! Here: the mapper and its exchanges; [`messages`]: the requests and
//! answers of both protocols, and the probe of what a gateway offers.

mod messages;
#[cfg(test)]
mod tests;

pub use messages::{
    natpmp_external_request, parse_offer, pcp_announce, Offer, Protocol, MAX_ANSWER,
};

use messages::{Answer, Step};
use std::net::{Ipv4Addr, SocketAddrV4};
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

/// Which protocols to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PCP, then NAT-PMP.
    Auto,
    Pcp,
    NatPmp,
    Off,
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

    /// In [`Mode::Auto`], while PCP is asked for the first mapping and the
    /// gateway has said nothing yet: stop asking in PCP and ask in NAT-PMP
    /// now, rather than after PCP's [`MAX_TRIES`]. For a caller with a
    /// deadline of its own, which shares it between the two protocols
    /// (`teredo-mire portmap --timeout`). Returns whether it did.
    pub fn fall_back(&mut self, now: Instant, out: &mut Vec<Request>) -> bool {
        let asking_pcp = self
            .exchange
            .as_ref()
            .is_some_and(|x| x.protocol == Protocol::Pcp && x.step == Step::Map);
        if self.cfg.mode != Mode::Auto
            || self.speaks.is_some()
            || self.mapping.is_some()
            || self.stopping
            || !asking_pcp
        {
            return false;
        }
        self.ask(Protocol::NatPmp, now, out);
        true
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
        // Suggest what we hold (a renewal), else the endpoint the client
        // wants, else the same port.
        let suggested = match (self.mapping, self.suggests_wanted()) {
            (Some(m), _) => m.external,
            (None, Some(w)) => w,
            (None, None) => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, internal.port()),
        };
        messages::request(protocol, step, lifetime, internal, &self.nonce, suggested)
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
        let answer = messages::answer(
            x.protocol,
            x.step,
            bytes,
            &self.nonce,
            self.cfg.internal.port(),
            self.external_addr,
        );
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
}
