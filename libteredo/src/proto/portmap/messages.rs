//! The messages of PCP (RFC 6887) and NAT-PMP (RFC 6886) the mapper
//! speaks: the MAP request (and its deletion, lifetime 0), NAT-PMP's
//! request for the external address, and their answers, read strictly
//! (length, version, opcode, result, nonce, protocol, internal port);
//! then what `teredo-mire probe` asks a gateway without creating anything.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

/// The largest datagram a gateway may answer with (RFC 6887 7: 1100).
pub const MAX_ANSWER: usize = 1100;

pub(super) const PCP_VERSION: u8 = 2;
pub(super) const PCP_MAP: u8 = 1;
pub(super) const PCP_RESPONSE: u8 = 0x80;
const PCP_HEADER: usize = 24;
const PCP_MAP_LEN: usize = 36;
const NATPMP_VERSION: u8 = 0;
const NATPMP_EXTERNAL: u8 = 0;
const NATPMP_MAP_UDP: u8 = 1;
const NATPMP_RESPONSE: u8 = 128;
pub(super) const UDP: u8 = 17;

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

/// Where the exchange stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// NAT-PMP: asking for the external address first.
    External,
    /// Asking for the mapping (or renewing it).
    Map,
    /// Deleting it (lifetime 0).
    Delete,
}

/// The request for `step` in `protocol`: for the mapping of `internal`
/// for `lifetime` seconds (0 deletes it), with PCP's `nonce`, suggesting
/// the external endpoint `suggested` (NAT-PMP: its port).
pub(super) fn request(
    protocol: Protocol,
    step: Step,
    lifetime: u32,
    internal: SocketAddrV4,
    nonce: &[u8; 12],
    suggested: SocketAddrV4,
) -> Vec<u8> {
    match protocol {
        Protocol::Pcp => {
            let mut v = Vec::with_capacity(PCP_HEADER + PCP_MAP_LEN);
            v.extend_from_slice(&[PCP_VERSION, PCP_MAP, 0, 0]);
            v.extend_from_slice(&lifetime.to_be_bytes());
            v.extend_from_slice(&internal.ip().to_ipv6_mapped().octets());
            v.extend_from_slice(nonce);
            v.extend_from_slice(&[UDP, 0, 0, 0]);
            v.extend_from_slice(&internal.port().to_be_bytes());
            v.extend_from_slice(&suggested.port().to_be_bytes());
            // The address IPv4-mapped, the unspecified one when none is
            // suggested (RFC 6887 11.1).
            v.extend_from_slice(&suggested.ip().to_ipv6_mapped().octets());
            v
        }
        Protocol::NatPmp => match step {
            Step::External => vec![NATPMP_VERSION, NATPMP_EXTERNAL],
            Step::Map | Step::Delete => {
                let suggested = if step == Step::Delete {
                    0
                } else {
                    suggested.port()
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

/// What `bytes` (from the gateway, at most [`MAX_ANSWER`]) answer to our
/// request for `step` in `protocol` (with PCP's `nonce`, for the internal
/// port `internal`; NAT-PMP's external address `external` once known),
/// if they answer it at all.
pub(super) fn answer(
    protocol: Protocol,
    step: Step,
    bytes: &[u8],
    nonce: &[u8; 12],
    internal: u16,
    external: Option<Ipv4Addr>,
) -> Option<Answer> {
    match (*bytes.first()?, protocol) {
        (PCP_VERSION, Protocol::Pcp) => pcp_answer(bytes, nonce, internal),
        // A NAT-PMP gateway answers a PCP request in NAT-PMP, with
        // "unsupported version" (RFC 6887 9).
        (NATPMP_VERSION, Protocol::Pcp) => match parse_natpmp_header(bytes) {
            Some((_, 1, _)) => Some(Answer::UnsupportedVersion),
            _ => None,
        },
        (NATPMP_VERSION, Protocol::NatPmp) => natpmp_answer(step, bytes, internal, external),
        _ => None,
    }
}

/// A PCP answer to our MAP request.
fn pcp_answer(b: &[u8], nonce: &[u8; 12], internal_port: u16) -> Option<Answer> {
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
    if m[..12] != *nonce || m[12] != UDP {
        return None;
    }
    let internal = u16::from_be_bytes([m[16], m[17]]);
    if internal != internal_port {
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
fn natpmp_answer(
    step: Step,
    b: &[u8],
    internal_port: u16,
    external: Option<Ipv4Addr>,
) -> Option<Answer> {
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
            if internal != internal_port {
                return None;
            }
            let port = u16::from_be_bytes([r[2], r[3]]);
            let lifetime = u32::from_be_bytes([r[4], r[5], r[6], r[7]]);
            let addr = external?;
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

/// What a gateway offers, asked without creating anything (`teredo-mire
/// probe`): a PCP ANNOUNCE (RFC 6887 14.1) and a NAT-PMP request for the
/// external address (RFC 6886 3.2), both to [`PORT`](super::PORT).
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
pub(super) enum Answer {
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
