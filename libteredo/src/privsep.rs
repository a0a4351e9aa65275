//! The messages between `miredo` (unprivileged) and `miredo-privproc`
//! (the only long-lived privileged process), and the rules that decide
//! whether a request is acceptable.
//!
//! The same [`Policy::check`] runs on both sides: the engine checks before it
//! asks, the privileged side checks again before it acts, and anything the
//! rules do not describe is refused.
//!
//! # Framing
//!
//! ```text
//! | length (u16, big-endian) | postcard body (length bytes, at most MAX_FRAME) |
//! ```
//!
//! A frame is refused when its length exceeds [`MAX_FRAME`], when the stream
//! ends inside it, when its body does not decode, or when bytes remain in the
//! body after the message.

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::addr::{TeredoAddr, LINK_LOCAL_CONE, LINK_LOCAL_RESTRICTED, TEREDO_PREFIX};

/// Largest body accepted or sent, in bytes. A request needs about 25.
pub const MAX_FRAME: usize = 256;

/// Size of the big-endian length that precedes each body.
pub const LEN_PREFIX: usize = 2;

/// Smallest MTU an IPv6 link may have (RFC 8200 section 5).
pub const MIN_MTU: u16 = 1280;

/// What the unprivileged side asks for. Nothing else can be asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The client qualified or changed address: the interface must carry
    /// `address` (and nothing older), with `mtu`, and be up.
    Up {
        /// Index of the Teredo interface; must be the one privproc serves.
        ifindex: u32,
        /// The new Teredo address.
        address: Ipv6Addr,
        /// The link MTU (RFC 4380 default 1280, or the server's RA option).
        mtu: u16,
    },
    /// The client lost its server: no address, no route, link down.
    Down {
        /// Index of the Teredo interface; must be the one privproc serves.
        ifindex: u32,
    },
}

impl Request {
    /// The interface index the request names.
    pub fn ifindex(&self) -> u32 {
        match *self {
            Request::Up { ifindex, .. } | Request::Down { ifindex } => ifindex,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The request names an interface other than the one privproc serves.
    WrongInterface {
        /// The index privproc serves.
        expected: u32,
        /// The index in the request.
        got: u32,
    },
    /// The address lies outside the configured Teredo prefix.
    OutsidePrefix,
    /// The address carries no server (server IPv4 0.0.0.0); no qualified
    /// client has such an address.
    NoServer,
    /// The MTU is below 1280.
    MtuTooSmall(u16),
    /// The frame could not be decoded (oversized, truncated, garbage).
    Malformed,
    /// A relay's interface is configured once, as root: its helper takes
    /// no request (it is there to take the interface down at the end).
    Relay,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongInterface { expected, got } => {
                write!(f, "interface index {got} is not ours ({expected})")
            }
            Refusal::OutsidePrefix => f.write_str("address outside the Teredo prefix"),
            Refusal::NoServer => f.write_str("address without a Teredo server"),
            Refusal::MtuTooSmall(mtu) => write!(f, "MTU {mtu} below {MIN_MTU}"),
            Refusal::Malformed => f.write_str("malformed request"),
            Refusal::Relay => f.write_str("a relay's helper takes no request"),
        }
    }
}

/// The answer of privproc to each request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The settings are applied.
    Ok,
    /// The request broke a rule; privproc closes the connection after this.
    Refused(Refusal),
    /// The request was valid but applying it failed (netlink error, hook
    /// exit status); the text says why. Privproc keeps serving.
    Failed(String),
}

/// What miredo-privproc says first, before any request: that it is the
/// helper of this miredo, speaking this protocol. A helper that says
/// anything else, or nothing (the C miredo's waits for a request), is not
/// ours, and miredo stops it at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always [`HELLO_MAGIC`].
    pub magic: [u8; 8],
    /// [`PROTOCOL_VERSION`] of the helper.
    pub version: u16,
}

/// The first bytes of every hello.
pub const HELLO_MAGIC: [u8; 8] = *b"miredors";

/// The version of these messages; the two sides must agree on it.
pub const PROTOCOL_VERSION: u16 = 1;

impl Hello {
    /// The hello of this build.
    pub fn ours() -> Hello {
        Hello {
            magic: HELLO_MAGIC,
            version: PROTOCOL_VERSION,
        }
    }
}

/// A Teredo prefix: always a /32, kept as its first 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TeredoPrefix(pub u32);

impl Default for TeredoPrefix {
    /// 2001::/32 (RFC 4380 section 2.6).
    fn default() -> Self {
        TeredoPrefix(TEREDO_PREFIX)
    }
}

impl TeredoPrefix {
    /// Whether `address` lies inside this /32.
    pub fn contains(&self, address: &Ipv6Addr) -> bool {
        TeredoAddr::from_ipv6(address).prefix == self.0
    }
}

impl fmt::Display for TeredoPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0.to_be_bytes();
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&p);
        write!(f, "{}/32", Ipv6Addr::from(o))
    }
}

/// Why a prefix given on the command line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// Not an IPv6 address.
    NotAnAddress(String),
    /// A length other than 32.
    NotSlash32(String),
    /// Bits set beyond the first 32.
    HostBits,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::NotAnAddress(s) => write!(f, "\"{s}\" is not an IPv6 prefix"),
            PrefixError::NotSlash32(s) => write!(f, "prefix length \"{s}\" is not 32"),
            PrefixError::HostBits => f.write_str("a Teredo prefix has no bits beyond the first 32"),
        }
    }
}

impl std::error::Error for PrefixError {}

impl FromStr for TeredoPrefix {
    type Err = PrefixError;

    /// Accepts `2001::/32` and, as miredo.conf writes it, `2001::`.
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        if let Some(len) = len {
            if len != "32" {
                return Err(PrefixError::NotSlash32(len.to_owned()));
            }
        }
        let addr: Ipv6Addr = addr
            .parse()
            .map_err(|_| PrefixError::NotAnAddress(s.to_owned()))?;
        if u128::from(addr) & ((1u128 << 96) - 1) != 0 {
            return Err(PrefixError::HostBits);
        }
        Ok(TeredoPrefix(TeredoAddr::from_ipv6(&addr).prefix))
    }
}

/// What privproc serves: one interface, one prefix. Fixed at startup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Index of the Teredo interface.
    pub ifindex: u32,
    /// The Teredo prefix addresses must lie in.
    pub prefix: TeredoPrefix,
}

impl Policy {
    /// The rules, used by both sides: the interface is ours; an address
    /// lies inside the prefix and names a server; the MTU is at least 1280
    /// (and at most 65535, which `u16` already guarantees).
    pub fn check(&self, request: &Request) -> Result<(), Refusal> {
        if request.ifindex() != self.ifindex {
            return Err(Refusal::WrongInterface {
                expected: self.ifindex,
                got: request.ifindex(),
            });
        }
        match *request {
            Request::Down { .. } => Ok(()),
            Request::Up { address, mtu, .. } => {
                if !self.prefix.contains(&address) {
                    return Err(Refusal::OutsidePrefix);
                }
                if TeredoAddr::from_ipv6(&address).server.is_unspecified() {
                    return Err(Refusal::NoServer);
                }
                if mtu < MIN_MTU {
                    return Err(Refusal::MtuTooSmall(mtu));
                }
                Ok(())
            }
        }
    }
}

/// The link-local address that goes with a Teredo address: the cone form
/// if the address carries the cone flag, `fe80::ffff:ffff:ffff` otherwise
/// (what the C miredo passes to its hook as `LLADDRESS`).
pub fn link_local(address: &Ipv6Addr) -> Ipv6Addr {
    if TeredoAddr::from_ipv6(address).is_cone() {
        LINK_LOCAL_CONE
    } else {
        LINK_LOCAL_RESTRICTED
    }
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended cleanly, between two frames.
    Closed,
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes the frame needed (prefix included).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The announced (or produced) body is longer than [`MAX_FRAME`].
    Oversized(usize),
    /// The body is not a valid message.
    Malformed(postcard::Error),
    /// Bytes remain in the body after the message.
    Trailing(usize),
    /// The underlying read or write failed.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::Truncated { expected, got } => {
                write!(f, "truncated frame ({got} of {expected} bytes)")
            }
            FrameError::Oversized(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            FrameError::Malformed(e) => write!(f, "malformed frame: {e}"),
            FrameError::Trailing(n) => write!(f, "{n} trailing bytes after the message"),
            FrameError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes `msg` as one frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = [0u8; LEN_PREFIX + MAX_FRAME];
    let (head, body) = buf.split_at_mut(LEN_PREFIX);
    let len = match postcard::to_slice(msg, body) {
        Ok(used) => used.len(),
        Err(postcard::Error::SerializeBufferFull) => {
            // Measure only to report the size.
            let n = postcard::to_allocvec(msg).map_or(usize::MAX, |v| v.len());
            return Err(FrameError::Oversized(n));
        }
        Err(e) => return Err(FrameError::Malformed(e)),
    };
    let len16 = u16::try_from(len).map_err(|_| FrameError::Oversized(len))?;
    head.copy_from_slice(&len16.to_be_bytes());
    Ok(buf.get(..LEN_PREFIX + len).unwrap_or_default().to_vec())
}

/// Decodes one frame body: exactly one message, nothing after it.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::Oversized(body.len()));
    }
    let (msg, rest) = postcard::take_from_bytes::<T>(body).map_err(FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::Trailing(rest.len()));
    }
    Ok(msg)
}

/// Writes `msg` as one frame, in a single `write_all`.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let frame = encode(msg)?;
    w.write_all(&frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads as many bytes as the stream gives, up to `buf.len()`; returns how
/// many arrived before the end of the stream.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(got)
}

/// Reads one frame and decodes its message. A clean end of stream before
/// the first byte is [`FrameError::Closed`]; an oversized length is refused
/// before its body is read.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut head = [0u8; LEN_PREFIX];
    match read_full(r, &mut head)? {
        0 => return Err(FrameError::Closed),
        LEN_PREFIX => {}
        got => {
            return Err(FrameError::Truncated {
                expected: LEN_PREFIX,
                got,
            })
        }
    }
    let len = usize::from(u16::from_be_bytes(head));
    if len > MAX_FRAME {
        return Err(FrameError::Oversized(len));
    }
    let mut buf = [0u8; MAX_FRAME];
    let body = buf.get_mut(..len).unwrap_or_default();
    let got = read_full(r, body)?;
    if got < len {
        return Err(FrameError::Truncated {
            expected: LEN_PREFIX + len,
            got: LEN_PREFIX + got,
        });
    }
    decode(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    const IFINDEX: u32 = 7;

    fn policy() -> Policy {
        Policy {
            ifindex: IFINDEX,
            prefix: TeredoPrefix::default(),
        }
    }

    /// The example address of RFC 4380 section 4: server 65.54.227.120,
    /// cone, mapped 192.0.2.45:40000.
    fn rfc_addr() -> Ipv6Addr {
        "2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap()
    }

    fn up(address: Ipv6Addr, mtu: u16) -> Request {
        Request::Up {
            ifindex: IFINDEX,
            address,
            mtu,
        }
    }

    #[test]
    fn accepts_valid_requests() {
        assert_eq!(policy().check(&up(rfc_addr(), 1280)), Ok(()));
        assert_eq!(policy().check(&up(rfc_addr(), 65535)), Ok(()));
        assert_eq!(policy().check(&Request::Down { ifindex: IFINDEX }), Ok(()));
    }

    #[test]
    fn refuses_another_interface() {
        let r = Request::Down { ifindex: 8 };
        assert_eq!(
            policy().check(&r),
            Err(Refusal::WrongInterface {
                expected: 7,
                got: 8
            })
        );
        let r = Request::Up {
            ifindex: 1,
            address: rfc_addr(),
            mtu: 1280,
        };
        assert!(matches!(
            policy().check(&r),
            Err(Refusal::WrongInterface { .. })
        ));
    }

    #[test]
    fn refuses_addresses_outside_the_prefix_or_without_server() {
        for a in [
            "2002:c000:22d::1",
            "::1",
            "fe80::ffff:ffff:ffff",
            "2001:1::1",
        ] {
            assert_eq!(
                policy().check(&up(a.parse().unwrap(), 1280)),
                Err(Refusal::OutsidePrefix),
                "{a}"
            );
        }
        for a in ["2001::", "2001::1", "2001:0:0:0:8000:63bf:3fff:fdd2"] {
            assert_eq!(
                policy().check(&up(a.parse().unwrap(), 1280)),
                Err(Refusal::NoServer),
                "{a}"
            );
        }
        // Another prefix, given at startup, moves the rule with it.
        let p = Policy {
            ifindex: IFINDEX,
            prefix: "3ffe:831f::/32".parse().unwrap(),
        };
        assert_eq!(p.check(&up(rfc_addr(), 1280)), Err(Refusal::OutsidePrefix));
        let a = "3ffe:831f:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
        assert_eq!(p.check(&up(a, 1280)), Ok(()));
    }

    #[test]
    fn refuses_small_mtu() {
        assert_eq!(
            policy().check(&up(rfc_addr(), 1279)),
            Err(Refusal::MtuTooSmall(1279))
        );
        assert_eq!(
            policy().check(&up(rfc_addr(), 0)),
            Err(Refusal::MtuTooSmall(0))
        );
    }

    #[test]
    fn parses_prefixes() {
        assert_eq!("2001::/32".parse(), Ok(TeredoPrefix(0x2001_0000)));
        assert_eq!("2001:0::".parse(), Ok(TeredoPrefix(0x2001_0000)));
        assert_eq!("3ffe:831f::/32".parse(), Ok(TeredoPrefix(0x3ffe_831f)));
        assert_eq!(
            "2001::/16".parse::<TeredoPrefix>(),
            Err(PrefixError::NotSlash32("16".into()))
        );
        assert_eq!(
            "3ffe::1:2".parse::<TeredoPrefix>(),
            Err(PrefixError::HostBits)
        );
        assert!(matches!(
            "teredo".parse::<TeredoPrefix>(),
            Err(PrefixError::NotAnAddress(_))
        ));
        assert_eq!(TeredoPrefix::default().to_string(), "2001::/32");
    }

    #[test]
    fn link_local_follows_the_cone_flag() {
        assert_eq!(link_local(&rfc_addr()), LINK_LOCAL_CONE);
        let restricted = "2001:0:4136:e378:3c00:63bf:3fff:fdd2".parse().unwrap();
        assert_eq!(link_local(&restricted), LINK_LOCAL_RESTRICTED);
        assert_eq!(LINK_LOCAL_RESTRICTED.to_string(), "fe80::ffff:ffff:ffff");
    }

    #[test]
    fn round_trips_over_a_stream() {
        let msgs = [up(rfc_addr(), 1280), Request::Down { ifindex: IFINDEX }];
        let mut wire = Vec::new();
        for m in &msgs {
            write_frame(&mut wire, m).unwrap();
        }
        let mut r = Cursor::new(wire);
        for m in &msgs {
            assert_eq!(read_frame::<_, Request>(&mut r).unwrap(), *m);
        }
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(FrameError::Closed)
        ));

        let replies = [
            Reply::Ok,
            Reply::Refused(Refusal::MtuTooSmall(1000)),
            Reply::Failed("RTNETLINK: No such device".into()),
        ];
        let mut wire = Vec::new();
        for m in &replies {
            write_frame(&mut wire, m).unwrap();
        }
        let mut r = Cursor::new(wire);
        for m in &replies {
            assert_eq!(read_frame::<_, Reply>(&mut r).unwrap(), *m);
        }
    }

    #[test]
    fn request_frame_is_small_and_big_endian() {
        let f = encode(&up(rfc_addr(), 1280)).unwrap();
        assert!(f.len() < 32);
        assert_eq!(usize::from(u16::from_be_bytes([f[0], f[1]])), f.len() - 2);
    }

    #[test]
    fn refuses_oversized_frames_both_ways() {
        let r = read_frame::<_, Request>(&mut Cursor::new([0x01, 0x01, 0, 0]));
        assert!(matches!(r, Err(FrameError::Oversized(257))));
        let r = read_frame::<_, Request>(&mut Cursor::new([0xff, 0xff]));
        assert!(matches!(r, Err(FrameError::Oversized(65535))));
        let big = Reply::Failed("x".repeat(MAX_FRAME));
        assert!(matches!(encode(&big), Err(FrameError::Oversized(_))));
        let fits = Reply::Failed("x".repeat(MAX_FRAME - 3));
        assert!(encode(&fits).is_ok());
    }

    #[test]
    fn refuses_truncated_frames() {
        let f = encode(&up(rfc_addr(), 1280)).unwrap();
        for cut in 1..f.len() {
            let r = read_frame::<_, Request>(&mut Cursor::new(&f[..cut]));
            assert!(
                matches!(r, Err(FrameError::Truncated { got, .. }) if got == cut),
                "cut at {cut}: {r:?}"
            );
        }
    }

    #[test]
    fn refuses_trailing_garbage_and_junk() {
        let f = encode(&Request::Down { ifindex: IFINDEX }).unwrap();
        let mut body = f[2..].to_vec();
        body.push(0);
        let mut frame = (body.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let r = read_frame::<_, Request>(&mut Cursor::new(frame));
        assert!(matches!(r, Err(FrameError::Trailing(1))));

        // Unknown variant, empty body.
        for frame in [&[0, 1, 9][..], &[0, 0][..], &[0, 1, 0][..]] {
            let r = read_frame::<_, Request>(&mut Cursor::new(frame));
            assert!(matches!(r, Err(FrameError::Malformed(_))), "{r:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut r = Cursor::new(&bytes);
            for _ in 0..bytes.len() + 1 {
                if read_frame::<_, Request>(&mut r).is_err() {
                    break;
                }
            }
            let mut r = Cursor::new(&bytes);
            for _ in 0..bytes.len() + 1 {
                if read_frame::<_, Reply>(&mut r).is_err() {
                    break;
                }
            }
            let _ = decode::<Request>(&bytes);
        }

        #[test]
        fn requests_round_trip(ifindex in any::<u32>(), a in any::<u128>(), mtu in any::<u16>(), down in any::<bool>()) {
            let req = if down {
                Request::Down { ifindex }
            } else {
                Request::Up { ifindex, address: Ipv6Addr::from(a), mtu }
            };
            let f = encode(&req).unwrap();
            prop_assert_eq!(read_frame::<_, Request>(&mut Cursor::new(f)).unwrap(), req);
        }
    }
}
