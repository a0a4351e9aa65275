//! Wire formats: views over bytes that validate once, and builders.
//!
//! Nothing here allocates unless a function says it builds a `Vec`, and no
//! input can make a parser panic.

pub mod checksum;
pub mod icmpv6;
pub mod ipv6;
pub mod teredo;
pub mod trailer;

use std::fmt;

/// Why a packet was refused by a parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header or the declared length requires.
    Truncated,
    /// The IP version field is not 6.
    BadVersion,
    /// A length field disagrees with the bytes present.
    BadLength,
    /// The ICMPv6 checksum is wrong.
    BadChecksum,
    /// A Teredo encapsulation header is malformed (unknown type, bad lengths).
    BadEncapsulation,
    /// An ICMPv6 message is malformed (bad code, bad option length, ...).
    BadIcmp,
    /// An IPv6 extension header chain is malformed.
    BadExtensionHeader,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Error::Truncated => "truncated packet",
            Error::BadVersion => "not an IPv6 packet",
            Error::BadLength => "length field disagrees with packet size",
            Error::BadChecksum => "bad ICMPv6 checksum",
            Error::BadEncapsulation => "malformed Teredo encapsulation",
            Error::BadIcmp => "malformed ICMPv6 message",
            Error::BadExtensionHeader => "malformed IPv6 extension header",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
