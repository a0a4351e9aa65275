//! Teredo encapsulation (RFC 4380 section 5.1.1): the optional
//! authentication and origin indication headers in front of an IPv6 packet.

use super::ipv6::Ipv6Packet;
use super::{Error, Result};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Length of the origin indication.
pub const ORIGIN_LEN: usize = 8;
/// Length of an authentication header with empty client id and auth value.
pub const AUTH_MIN_LEN: usize = 13;

/// The authentication encapsulation (RFC 4380 5.1.1, 5.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auth<'a> {
    pub client_id: &'a [u8],
    pub auth_value: &'a [u8],
    pub nonce: [u8; 8],
    pub confirmation: u8,
}

impl Auth<'_> {
    /// Encoded length (client id and auth value count at most 255 bytes
    /// each, as [`Auth::emit`] writes them).
    pub fn len(&self) -> usize {
        AUTH_MIN_LEN + self.client_id.len().min(255) + self.auth_value.len().min(255)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the encoding to `out`. Client id and auth value longer than
    /// 255 bytes are truncated to 255.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let id = &self.client_id[..self.client_id.len().min(255)];
        let au = &self.auth_value[..self.auth_value.len().min(255)];
        out.extend_from_slice(&[0, 1, id.len() as u8, au.len() as u8]);
        out.extend_from_slice(id);
        out.extend_from_slice(au);
        out.extend_from_slice(&self.nonce);
        out.push(self.confirmation);
    }
}

/// The origin indication, de-obfuscated: where the server received the
/// packet from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin(pub SocketAddrV4);

impl Origin {
    /// The 8 bytes on the wire (port and address obfuscated).
    pub fn to_bytes(&self) -> [u8; ORIGIN_LEN] {
        let p = (!self.0.port()).to_be_bytes();
        let a = self.0.ip().octets();
        [0, 0, p[0], p[1], !a[0], !a[1], !a[2], !a[3]]
    }

    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// Decodes the 8 bytes on the wire; `None` unless they start with the
    /// two zero octets of an origin indication.
    pub fn from_bytes(b: &[u8; ORIGIN_LEN]) -> Option<Self> {
        let [0, 0, p0, p1, a0, a1, a2, a3] = *b else {
            return None;
        };
        let port = !u16::from_be_bytes([p0, p1]);
        Some(Origin(SocketAddrV4::new(
            Ipv4Addr::new(!a0, !a1, !a2, !a3),
            port,
        )))
    }
}

/// A parsed Teredo UDP payload. The IPv6 packet is validated by
/// [`Ipv6Packet::new_checked`]; any bytes after it are its trailer.
#[derive(Clone, Copy, Debug)]
pub struct TeredoPacket<'a> {
    pub auth: Option<Auth<'a>>,
    pub origin: Option<Origin>,
    pub ipv6: Ipv6Packet<&'a [u8]>,
    /// Offset of the IPv6 packet within the UDP payload.
    pub ipv6_offset: usize,
}

impl<'a> TeredoPacket<'a> {
    /// Parses a UDP payload received on a Teredo port.
    pub fn parse(mut b: &'a [u8]) -> Result<Self> {
        let mut auth = None;
        let mut origin = None;
        let mut off = 0usize;
        if b.first() == Some(&0) && b.get(1) == Some(&1) {
            // Authentication encapsulation first (RFC 4380 5.1.1).
            let idl = usize::from(*b.get(2).ok_or(Error::Truncated)?);
            let aul = usize::from(*b.get(3).ok_or(Error::Truncated)?);
            let total = AUTH_MIN_LEN + idl + aul;
            let h = b.get(..total).ok_or(Error::Truncated)?;
            let client_id = &h[4..4 + idl];
            let auth_value = &h[4 + idl..4 + idl + aul];
            let mut nonce = [0u8; 8];
            nonce.copy_from_slice(&h[4 + idl + aul..12 + idl + aul]);
            auth = Some(Auth {
                client_id,
                auth_value,
                nonce,
                confirmation: h[total - 1],
            });
            b = &b[total..];
            off += total;
        }
        if b.first() == Some(&0) && b.get(1) == Some(&0) {
            let h: &[u8; ORIGIN_LEN] = b
                .get(..ORIGIN_LEN)
                .and_then(|h| h.try_into().ok())
                .ok_or(Error::Truncated)?;
            origin = Some(Origin::from_bytes(h).ok_or(Error::BadEncapsulation)?);
            b = &b[ORIGIN_LEN..];
            off += ORIGIN_LEN;
        }
        match b.first() {
            // RFC 4380 5.1.1: a leading zero octet announces an
            // encapsulation header, and none is valid here (unknown type,
            // or a second or misplaced header).
            Some(0) => return Err(Error::BadEncapsulation),
            Some(v) if v >> 4 != 6 => return Err(Error::BadVersion),
            _ => {}
        }
        let ipv6 = Ipv6Packet::new_checked(b)?;
        Ok(TeredoPacket {
            auth,
            origin,
            ipv6,
            ipv6_offset: off,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::build_bubble;

    #[test]
    fn origin_rfc_example() {
        let o = Origin(SocketAddrV4::new(Ipv4Addr::new(1, 2, 3, 4), 337));
        assert_eq!(o.to_bytes(), [0, 0, 0xfe, 0xae, 0xfe, 0xfd, 0xfc, 0xfb]);
    }

    #[test]
    fn origin_from_c_miredo_server() {
        // The origin indication the C miredo-server put on the relay's
        // bubble in the lab (`tests/vectors/bubble-forwarded-origin.hex`).
        let b = [0, 0, 0x18, 0xa8, 0x39, 0xed, 0xfd, 0xfe];
        let o = Origin(SocketAddrV4::new(Ipv4Addr::new(198, 18, 2, 1), 59223));
        assert_eq!(Origin::from_bytes(&b), Some(o));
        assert_eq!(o.to_bytes(), b);
        assert_eq!(Origin::from_bytes(&[0, 1, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn auth_origin_ipv6() {
        let mut v = Vec::new();
        Auth {
            client_id: b"",
            auth_value: b"",
            nonce: [1, 2, 3, 4, 5, 6, 7, 8],
            confirmation: 0,
        }
        .emit(&mut v);
        let o = Origin(SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 4096));
        o.emit(&mut v);
        v.extend_from_slice(&build_bubble(
            "fe80::1".parse().unwrap(),
            "fe80::2".parse().unwrap(),
        ));
        let p = TeredoPacket::parse(&v).unwrap();
        assert_eq!(p.auth.unwrap().nonce, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(p.origin, Some(o));
        assert!(p.ipv6.is_bubble());
        assert_eq!(p.ipv6_offset, AUTH_MIN_LEN + ORIGIN_LEN);
    }

    #[test]
    fn truncated_and_garbage() {
        assert_eq!(TeredoPacket::parse(&[]).unwrap_err(), Error::Truncated);
        assert_eq!(
            TeredoPacket::parse(&[0, 1, 5]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TeredoPacket::parse(&[0, 0, 1]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TeredoPacket::parse(&[0, 2, 0, 0]).unwrap_err(),
            Error::BadEncapsulation
        );
        assert_eq!(
            TeredoPacket::parse(&[0x45; 60]).unwrap_err(),
            Error::BadVersion
        );
    }
}
