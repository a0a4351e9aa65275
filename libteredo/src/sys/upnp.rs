//! UPnP IGD port mapping, the I/O side (the wire side is
//! [`crate::proto::upnp`]): blocking exchanges with bounded time, run on
//! miredo's port mapping thread and by `teredo-mire probe`. Only the
//! gateway is listened to: an SSDP answer from another host, or a
//! description or control URL on another host, is ignored.
//!
//! Errors are `io::Error`s whose text says what failed in a sentence (the
//! port mapper logs it, `teredo-mire probe` prints it): the kind is the
//! socket's for a socket error, `TimedOut` for a gateway that did not
//! answer in time, `InvalidData` for an answer that does not do.

use crate::proto::upnp::{self, HttpAnswer, HttpUrl, SoapAnswer, MAX_HTTP, MAX_SSDP};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// How long the search waits for the gateway's answer (it asks twice).
const SEARCH_WAIT: Duration = Duration::from_secs(3);
/// The bound of one HTTP exchange, connection included.
const HTTP_WAIT: Duration = Duration::from_secs(3);

/// An error of `kind` that says `why`.
fn said(kind: ErrorKind, why: String) -> io::Error {
    io::Error::new(kind, why)
}

/// An answer from the gateway that does not do.
fn bad(why: String) -> io::Error {
    said(ErrorKind::InvalidData, why)
}

/// The gateway's WAN connection service.
#[derive(Clone, Debug)]
pub struct Igd {
    pub service: String,
    pub control: HttpUrl,
}

/// Finds the gateway's IGD: an SSDP search (to the multicast group and to
/// the gateway itself), its description, its WAN connection service.
pub fn discover(gateway: Ipv4Addr, source: Ipv4Addr) -> io::Result<Igd> {
    let sock = UdpSocket::bind((source, 0))
        .map_err(|e| said(e.kind(), format!("cannot bind {source}: {e}")))?;
    let search = upnp::m_search();
    let start = Instant::now();
    let mut buf = vec![0u8; MAX_SSDP + 1];
    let mut sent = 0;
    let location = loop {
        let now = Instant::now();
        if now >= start + SEARCH_WAIT {
            return Err(said(
                ErrorKind::TimedOut,
                format!("the gateway {gateway} did not answer an SSDP search for an IGD"),
            ));
        }
        if sent < 2 && now >= start + SEARCH_WAIT / 2 * sent {
            let _ = sock.send_to(&search, upnp::SSDP);
            let _ = sock.send_to(&search, SocketAddrV4::new(gateway, upnp::SSDP.port()));
            sent += 1;
        }
        let next = if sent < 2 {
            start + SEARCH_WAIT / 2
        } else {
            start + SEARCH_WAIT
        };
        let wait = next
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        let _ = sock.set_read_timeout(Some(wait));
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) if *from.ip() == gateway => {
                if let Some(l) = buf.get(..n).and_then(upnp::parse_ssdp) {
                    if *l.addr.ip() == gateway {
                        break l;
                    }
                }
            }
            _ => {}
        }
    };
    let desc = exchange(&location, &upnp::http_get(&location))?;
    if desc.status != 200 {
        return Err(bad(format!("{location} answered HTTP {}", desc.status)));
    }
    let (service, control) = upnp::find_service(&desc.body, &location)
        .ok_or_else(|| bad(format!("{location} describes no WAN connection service")))?;
    if *control.addr.ip() != gateway {
        return Err(bad(format!(
            "the control URL {control} is not on the gateway {gateway}"
        )));
    }
    Ok(Igd { service, control })
}

/// One HTTP exchange: connect, send `req`, read the answer (bounded).
fn exchange(url: &HttpUrl, req: &[u8]) -> io::Result<HttpAnswer> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&SocketAddr::V4(url.addr), HTTP_WAIT)
        .map_err(|e| said(e.kind(), format!("cannot connect to {}: {e}", url.addr)))?;
    let _ = s.set_write_timeout(Some(HTTP_WAIT));
    s.write_all(req)
        .map_err(|e| said(e.kind(), format!("sending to {}: {e}", url.addr)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = (start + HTTP_WAIT).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(said(
                ErrorKind::TimedOut,
                format!("{url} did not answer within {HTTP_WAIT:?}"),
            ));
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => {
                return upnp::parse_http(&buf, true)
                    .map_err(bad)?
                    .ok_or_else(|| bad(format!("{url}: an answer cut short")));
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > MAX_HTTP {
                    return Err(bad(format!("{url}: an answer over {MAX_HTTP} bytes")));
                }
                if let Some(a) = upnp::parse_http(&buf, false).map_err(bad)? {
                    return Ok(a);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(said(e.kind(), format!("reading from {url}: {e}"))),
        }
    }
}

/// One SOAP exchange; an error comes with the device's UPnP error code (0
/// when it gave none).
fn soap(igd: &Igd, req: &[u8], names: &[&str]) -> Result<Vec<(String, String)>, (u16, io::Error)> {
    let a = exchange(&igd.control, req).map_err(|e| (0, e))?;
    match upnp::parse_soap(&a, names) {
        Some(SoapAnswer::Ok(v)) => Ok(v),
        Some(SoapAnswer::Error { code, description }) => Err((
            code,
            said(
                ErrorKind::Other,
                format!("UPnP error {code} ({description:.64})"),
            ),
        )),
        None => Err((
            0,
            bad(format!("an answer that is not SOAP (HTTP {})", a.status)),
        )),
    }
}

/// The gateway's external address.
pub fn external_ip(igd: &Igd) -> io::Result<Ipv4Addr> {
    let req = upnp::get_external_ip(&igd.control, &igd.service);
    let v = soap(igd, &req, &["NewExternalIPAddress"]).map_err(|(_, e)| e)?;
    v.first()
        .and_then(|(_, a)| a.parse().ok())
        .filter(|a: &Ipv4Addr| !a.is_unspecified())
        .ok_or_else(|| bad("no external address".to_string()))
}

/// UPnP error 725: the device only keeps mappings without a lease.
const ONLY_PERMANENT: u16 = 725;

/// Maps UDP `external_port` to `internal` for `lifetime` seconds; a
/// device that only takes permanent mappings gets one (lease 0), deleted
/// on stop like the others. Returns the lease given.
pub fn add(
    igd: &Igd,
    external_port: u16,
    internal: SocketAddrV4,
    lifetime: u32,
) -> io::Result<u32> {
    let req = upnp::add_port_mapping(
        &igd.control,
        &igd.service,
        external_port,
        internal,
        lifetime,
    );
    match soap(igd, &req, &[]) {
        Ok(_) => Ok(lifetime),
        Err((ONLY_PERMANENT, _)) if lifetime != 0 => add(igd, external_port, internal, 0),
        Err((_, e)) => Err(e),
    }
}

pub fn delete(igd: &Igd, external_port: u16) -> io::Result<()> {
    let req = upnp::delete_port_mapping(&igd.control, &igd.service, external_port);
    soap(igd, &req, &[]).map(|_| ()).map_err(|(_, e)| e)
}
