//! UPnP IGD port mapping, the wire side: the SSDP search for an Internet
//! Gateway Device, its description (to find the WANIPConnection or
//! WANPPPConnection service and its control URL), and the SOAP actions
//! AddPortMapping, DeletePortMapping and GetExternalIPAddress over
//! HTTP/1.1. Builders and strict parsers only, no I/O: the sockets are
//! libteredo::sys::upnp's, driven by the daemon's port mapping thread
//! (miredo/src/portmap.rs).
//!
//! Everything read comes from the LAN, which is not trusted: answers are
//! bounded ([`MAX_SSDP`], [`MAX_HTTP`]), URLs must be `http://` with an
//! IPv4 literal host (the daemon further requires it to be the gateway
//! that answered the search), values are short printable ASCII, and
//! anything else is refused rather than guessed at. The XML is read by
//! element names alone (namespace prefixes ignored), which is what the
//! IGD documents need; no entity other than the five predefined ones is
//! expanded.
//!
//! Own implementation rather than the igd-next crate: igd-next's blocking
//! client pulls in an HTTP client (attohttpc, with url and http) and an
//! XML tree parser (xmltree and xml-rs) for four exchanges, reads whole
//! bodies without a bound of ours, and follows whatever host a LAN
//! device names; this file is a few hundred lines, bounded, and fuzzed
//! (libteredo/fuzz target `upnp`).

use std::net::{Ipv4Addr, SocketAddrV4};

/// Where SSDP searches go (UPnP Device Architecture 1.1, 1.3.2).
pub const SSDP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);
/// The device type searched for.
pub const IGD: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";
/// The largest SSDP answer read.
pub const MAX_SSDP: usize = 2048;
/// The largest HTTP answer read (headers and body).
pub const MAX_HTTP: usize = 64 * 1024;
/// The longest value taken from a document (a URL, a service type, an
/// address).
pub const MAX_VALUE: usize = 256;

/// The services that map ports, most wanted first.
pub const SERVICES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];

/// The M-SEARCH datagram.
pub fn m_search() -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {IGD}\r\n\r\n"
    )
    .into_bytes()
}

/// An `http://` URL whose host is an IPv4 literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub addr: SocketAddrV4,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.addr, self.path)
    }
}

/// Whether `s` is short printable ASCII without spaces (a URL, a token).
fn plain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VALUE && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses `http://A.B.C.D[:PORT]/path`.
pub fn parse_url(s: &str) -> Option<HttpUrl> {
    if !plain(s) {
        return None;
    }
    let rest = s
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("http://"))
        .map(|_| &s[7..])?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => (authority, 80),
    };
    let ip: Ipv4Addr = host.parse().ok()?;
    Some(HttpUrl {
        addr: SocketAddrV4::new(ip, port),
        path: path.to_string(),
    })
}

/// Resolves a URL found in a description against the description's own:
/// an absolute `http://` URL, an absolute path, or a path relative to the
/// base's directory.
pub fn resolve(base: &HttpUrl, reference: &str) -> Option<HttpUrl> {
    if !plain(reference) {
        return None;
    }
    if reference.len() >= 7 && reference[..7].eq_ignore_ascii_case("http://") {
        return parse_url(reference);
    }
    let path = if reference.starts_with('/') {
        reference.to_string()
    } else {
        let dir = match base.path.rfind('/') {
            Some(i) => &base.path[..=i],
            None => "/",
        };
        format!("{dir}{reference}")
    };
    Some(HttpUrl {
        addr: base.addr,
        path,
    })
}

/// The LOCATION of an SSDP answer for an Internet Gateway Device; `None`
/// unless it is a `200 OK` naming [`IGD`] (or a WAN connection service)
/// with an `http://` location.
pub fn parse_ssdp(b: &[u8]) -> Option<HttpUrl> {
    if b.len() > MAX_SSDP {
        return None;
    }
    let text = std::str::from_utf8(b).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?;
    let mut words = status.split(' ');
    if !words.next()?.starts_with("HTTP/1.") || words.next()? != "200" {
        return None;
    }
    let (mut location, mut st_ok) = (None, false);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("LOCATION") {
            location = parse_url(v);
        } else if k.eq_ignore_ascii_case("ST") {
            st_ok = v == IGD || SERVICES.contains(&v);
        }
    }
    location.filter(|_| st_ok)
}

/// `GET` of `url`, closing the connection after the answer.
pub fn http_get(url: &HttpUrl) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        url.path, url.addr
    )
    .into_bytes()
}

/// Escapes the five XML special characters.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// The SOAP `POST` of `action` of `service` at `url` with `args`.
pub fn soap_request(
    url: &HttpUrl,
    service: &str,
    action: &str,
    args: &[(&str, String)],
) -> Vec<u8> {
    let mut body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{service}\">"
    );
    for (k, v) in args {
        body += &format!("<{k}>{}</{k}>", escape(v));
    }
    body += &format!("</u:{action}></s:Body></s:Envelope>\r\n");
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"{service}#{action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.addr,
        body.len()
    );
    req += &body;
    req.into_bytes()
}

/// AddPortMapping of UDP `external_port` to `internal` for `lifetime`
/// seconds (0: as long as the device keeps it).
pub fn add_port_mapping(
    url: &HttpUrl,
    service: &str,
    external_port: u16,
    internal: SocketAddrV4,
    lifetime: u32,
) -> Vec<u8> {
    soap_request(
        url,
        service,
        "AddPortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external_port.to_string()),
            ("NewProtocol", "UDP".into()),
            ("NewInternalPort", internal.port().to_string()),
            ("NewInternalClient", internal.ip().to_string()),
            ("NewEnabled", "1".into()),
            ("NewPortMappingDescription", "Teredo (miredo)".into()),
            ("NewLeaseDuration", lifetime.to_string()),
        ],
    )
}

/// DeletePortMapping of UDP `external_port`.
pub fn delete_port_mapping(url: &HttpUrl, service: &str, external_port: u16) -> Vec<u8> {
    soap_request(
        url,
        service,
        "DeletePortMapping",
        &[
            ("NewRemoteHost", String::new()),
            ("NewExternalPort", external_port.to_string()),
            ("NewProtocol", "UDP".into()),
        ],
    )
}

/// GetExternalIPAddress.
pub fn get_external_ip(url: &HttpUrl, service: &str) -> Vec<u8> {
    soap_request(url, service, "GetExternalIPAddress", &[])
}

/// An HTTP answer: its status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Parses an HTTP/1.x answer read so far. `complete`: the connection was
/// closed (a body without a length ends there). `Ok(None)`: more is
/// needed. Bodies with Content-Length or chunked are read; anything over
/// [`MAX_HTTP`] or malformed is an error.
pub fn parse_http(b: &[u8], complete: bool) -> Result<Option<HttpAnswer>, String> {
    if b.len() > MAX_HTTP {
        return Err(format!("an answer over {MAX_HTTP} bytes"));
    }
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if complete {
            Err("an answer without a complete header".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&b[..end]).map_err(|_| "a header that is not text")?;
    let body = &b[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or("");
    let status: u16 = words
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or("no status code")?;
    if !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1 answer".into());
    }
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err("a malformed header line".into());
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("Content-Length") {
            length = Some(v.parse::<usize>().map_err(|_| "a bad Content-Length")?);
        } else if k.eq_ignore_ascii_case("Transfer-Encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
            if !chunked {
                return Err(format!("transfer encoding {v:.32}"));
            }
        }
    }
    if chunked {
        return match dechunk(body)? {
            Some(body) => Ok(Some(HttpAnswer { status, body })),
            None if complete => Err("a chunked body cut short".into()),
            None => Ok(None),
        };
    }
    match length {
        Some(n) if body.len() >= n => Ok(Some(HttpAnswer {
            status,
            body: body[..n].to_vec(),
        })),
        Some(_) if complete => Err("a body shorter than its Content-Length".into()),
        Some(_) => Ok(None),
        None if complete => Ok(Some(HttpAnswer {
            status,
            body: body.to_vec(),
        })),
        None => Ok(None),
    }
}

/// A chunked body; `Ok(None)` while incomplete.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line = std::str::from_utf8(&b[..eol]).map_err(|_| "a bad chunk size")?;
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        if size_hex.is_empty() || size_hex.len() > 8 {
            return Err("a bad chunk size".into());
        }
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "a bad chunk size")?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        let need = size.checked_add(2).ok_or("a bad chunk size")?;
        if b.len() < need {
            return Ok(None);
        }
        if &b[size..size + 2] != b"\r\n" {
            return Err("a chunk without its end of line".into());
        }
        out.extend_from_slice(&b[..size]);
        if out.len() > MAX_HTTP {
            return Err("a body too long".into());
        }
        b = &b[size + 2..];
    }
}

/// The elements named `name` (any namespace prefix) in `xml`: the text
/// between their tags, in order. Empty elements (`<a/>`) give "".
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let Some(close) = rest.find('>') else { break };
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        if tag.starts_with('/') || tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag_name = tag
            .trim_end_matches('/')
            .split(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or("");
        if local != name {
            continue;
        }
        if self_closing {
            found.push("");
            continue;
        }
        // The matching end tag (same qualified name).
        let end = format!("</{tag_name}>");
        let Some(j) = rest.find(&end) else { break };
        found.push(&rest[..j]);
        rest = &rest[j + end.len()..];
    }
    found
}

/// The text of an element: the predefined entities expanded, trimmed;
/// `None` if it holds markup, another entity, or is not plain.
fn text(raw: &str) -> Option<String> {
    if raw.contains('<') {
        return None;
    }
    let mut o = String::new();
    let mut rest = raw.trim();
    while let Some(i) = rest.find('&') {
        o.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';')?;
        o.push(match &rest[..=end] {
            "&amp;" => '&',
            "&lt;" => '<',
            "&gt;" => '>',
            "&quot;" => '"',
            "&apos;" => '\'',
            _ => return None,
        });
        rest = &rest[end + 1..];
    }
    o.push_str(rest);
    (o.len() <= MAX_VALUE && o.chars().all(|c| c.is_ascii() && !c.is_ascii_control())).then_some(o)
}

/// The WAN connection service of a device description, most wanted first
/// ([`SERVICES`]): its type and control URL (resolved against `base`, the
/// description's URL, or its `URLBase`).
pub fn find_service(xml: &[u8], base: &HttpUrl) -> Option<(String, HttpUrl)> {
    if xml.len() > MAX_HTTP {
        return None;
    }
    let xml = std::str::from_utf8(xml).ok()?;
    let base = elements(xml, "URLBase")
        .first()
        .and_then(|u| parse_url(&text(u)?))
        .unwrap_or_else(|| base.clone());
    let mut best: Option<(usize, String, HttpUrl)> = None;
    for s in elements(xml, "service") {
        let Some(ty) = elements(s, "serviceType").first().and_then(|t| text(t)) else {
            continue;
        };
        let Some(rank) = SERVICES.iter().position(|w| *w == ty) else {
            continue;
        };
        let Some(url) = elements(s, "controlURL")
            .first()
            .and_then(|u| text(u))
            .and_then(|u| resolve(&base, &u))
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(r, _, _)| rank < *r) {
            best = Some((rank, ty, url));
        }
    }
    best.map(|(_, t, u)| (t, u))
}

/// What a SOAP answer says: success with the values asked for, or the
/// UPnP error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SoapAnswer {
    Ok(Vec<(String, String)>),
    Error { code: u16, description: String },
}

/// Reads a SOAP answer to an action, taking the values of `names`.
pub fn parse_soap(a: &HttpAnswer, names: &[&str]) -> Option<SoapAnswer> {
    let xml = std::str::from_utf8(&a.body).ok()?;
    if a.status == 200 {
        let mut values = Vec::new();
        for n in names {
            let v = elements(xml, n).first().and_then(|t| text(t))?;
            values.push((n.to_string(), v));
        }
        return Some(SoapAnswer::Ok(values));
    }
    let code = elements(xml, "errorCode")
        .first()
        .and_then(|t| text(t))
        .and_then(|t| t.parse().ok())?;
    let description = elements(xml, "errorDescription")
        .first()
        .and_then(|t| text(t))
        .unwrap_or_default();
    Some(SoapAnswer::Error { code, description })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        parse_url(s).unwrap()
    }

    #[test]
    fn urls() {
        assert_eq!(
            url("http://192.168.1.1:5000/rootDesc.xml"),
            HttpUrl {
                addr: "192.168.1.1:5000".parse().unwrap(),
                path: "/rootDesc.xml".into()
            }
        );
        assert_eq!(url("HTTP://10.0.0.1").path, "/");
        assert_eq!(url("http://10.0.0.1").addr.port(), 80);
        for bad in [
            "https://10.0.0.1/",
            "http://router.lan/",
            "http://10.0.0.1:0/",
            "http://10.0.0.1:99999/",
            "http://10.0.0.1/a b",
            "ftp://10.0.0.1/",
            "",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
        let base = url("http://192.168.1.1:5000/dev/root.xml");
        assert_eq!(resolve(&base, "/ctl/IPConn").unwrap().path, "/ctl/IPConn");
        assert_eq!(resolve(&base, "ctl").unwrap().path, "/dev/ctl");
        assert_eq!(
            resolve(&base, "http://192.168.1.1:6000/x")
                .unwrap()
                .addr
                .port(),
            6000
        );
    }

    #[test]
    fn ssdp_answers() {
        let ok = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x\r\nEXT:\r\nSERVER: Debian UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.168.1.1:40591/rootDesc.xml\r\n\r\n";
        assert_eq!(
            parse_ssdp(ok),
            Some(url("http://192.168.1.1:40591/rootDesc.xml"))
        );
        let other = String::from_utf8_lossy(ok).replace("InternetGatewayDevice", "MediaServer");
        assert_eq!(parse_ssdp(other.as_bytes()), None);
        assert_eq!(parse_ssdp(b"NOTIFY * HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_ssdp(&[0xff; 100]), None);
        assert_eq!(parse_ssdp(&[b'a'; 3000]), None);
    }

    #[test]
    fn http_answers() {
        let a = parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).unwrap();
        assert_eq!(a.unwrap().body, b"hello");
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false),
            Ok(None)
        );
        assert!(parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", true).is_err());
        let c = parse_http(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.body, b"abcde");
        let closed = parse_http(b"HTTP/1.0 500 Internal\r\n\r\n<x/>", true)
            .unwrap()
            .unwrap();
        assert_eq!((closed.status, closed.body), (500, b"<x/>".to_vec()));
        assert!(parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", true).is_err());
        assert!(parse_http(b"SIP/2.0 200 OK\r\n\r\n", true).is_err());
        assert!(parse_http(&vec![b'a'; MAX_HTTP + 1], false).is_err());
        assert!(parse_http(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffff\r\n",
            false
        )
        .is_err());
    }

    const DESC: &str = r#"<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceList><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ctl/PPP</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>"#;

    #[test]
    fn descriptions() {
        let base = url("http://192.168.1.1:40591/rootDesc.xml");
        let (ty, ctl) = find_service(DESC.as_bytes(), &base).unwrap();
        assert_eq!(ty, "urn:schemas-upnp-org:service:WANIPConnection:1");
        assert_eq!(ctl, url("http://192.168.1.1:40591/ctl/IPConn"));
        let with_base = DESC.replace(
            "<device>",
            "<URLBase>http://192.168.1.1:6000/</URLBase><device>",
        );
        assert_eq!(
            find_service(with_base.as_bytes(), &base)
                .unwrap()
                .1
                .addr
                .port(),
            6000
        );
        assert_eq!(find_service(b"<root/>", &base), None);
        assert_eq!(find_service(b"<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>&xxe;</controlURL></service>", &base), None);
        assert_eq!(find_service(&[0xc3, 0x28], &base), None);
    }

    #[test]
    fn soap() {
        let u = url("http://192.168.1.1:40591/ctl/IPConn");
        let req = String::from_utf8(add_port_mapping(
            &u,
            SERVICES[1],
            3544,
            "192.168.1.2:3544".parse().unwrap(),
            60,
        ))
        .unwrap();
        assert!(req.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.1.1:40591\r\n"));
        assert!(req.contains(
            "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping\""
        ));
        assert!(req.contains("<NewInternalClient>192.168.1.2</NewInternalClient>"));
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let ok = HttpAnswer {
            status: 200,
            body: b"<s:Envelope><s:Body><u:GetExternalIPAddressResponse><NewExternalIPAddress>11.0.1.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>".to_vec(),
        };
        assert_eq!(
            parse_soap(&ok, &["NewExternalIPAddress"]),
            Some(SoapAnswer::Ok(vec![(
                "NewExternalIPAddress".into(),
                "11.0.1.1".into()
            )]))
        );
        let err = HttpAnswer {
            status: 500,
            body: b"<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>".to_vec(),
        };
        assert_eq!(
            parse_soap(&err, &[]),
            Some(SoapAnswer::Error {
                code: 718,
                description: "ConflictInMappingEntry".into()
            })
        );
        assert_eq!(
            parse_soap(
                &HttpAnswer {
                    status: 500,
                    body: b"oops".to_vec()
                },
                &[]
            ),
            None
        );
    }
}
