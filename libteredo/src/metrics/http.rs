//! The metrics listener's protocol (`MetricsListen`), without its socket:
//! a strict parser of what a client sends ([`parse_request`], fuzzed) and
//! the whole answer to it ([`answer`]), given the daemon's status lines.
//!
//! It answers `GET` (and `HEAD`) of three paths and nothing else:
//! `/metrics` (the status in the Prometheus text exposition format,
//! [`super::to_prometheus`]), `/status.json` ([`super::to_json`]) and `/`
//! (a line naming the other two). Whoever can connect is untrusted: what
//! it sends is parsed here, pure code, and the listener that reads it
//! (`libteredo::sys::http`) bounds its size ([`MAX_REQUEST`]) and time.

/// The largest request (request line and headers) read.
pub const MAX_REQUEST: usize = 8192;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/`: a line naming the other paths.
    Index,
    /// `/metrics`: the Prometheus text format.
    Metrics,
    /// `/status.json`: the status as one JSON object.
    Json,
}

/// A valid request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `HEAD`: the headers of the answer, not its body.
    pub head: bool,
    /// `None`: a path this server does not have (404).
    pub target: Option<Target>,
}

/// Why a request is refused, with the status code it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: not HTTP/1.x as RFC 9112 writes it.
    BadRequest,
    /// 405: a method other than GET and HEAD.
    MethodNotAllowed,
    /// 431: more than [`MAX_REQUEST`] bytes without the end of the headers.
    TooLarge,
    /// 505: not HTTP/1.0 or 1.1.
    VersionNotSupported,
}

impl Refusal {
    fn status(self) -> &'static str {
        match self {
            Refusal::BadRequest => "400 Bad Request",
            Refusal::MethodNotAllowed => "405 Method Not Allowed",
            Refusal::TooLarge => "431 Request Header Fields Too Large",
            Refusal::VersionNotSupported => "505 HTTP Version Not Supported",
        }
    }
}

/// A header field name: an RFC 9110 token.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses what a client sent so far. `Ok(None)`: the headers are not
/// complete yet (read more, unless the buffer is full). Lines end with
/// CRLF; header values are visible ASCII, spaces and tabs; a request body
/// is not expected and not read (GET and HEAD have none).
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, Refusal> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_REQUEST {
            Err(Refusal::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end + 4 > MAX_REQUEST {
        return Err(Refusal::TooLarge);
    }
    // Each line with its CR, the LF of the last one left out.
    let mut lines = buf[..=end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").ok_or(Refusal::BadRequest));
    // The request line: METHOD SP TARGET SP HTTP/1.x
    let first = lines.next().ok_or(Refusal::BadRequest)??;
    let mut parts = first.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::BadRequest);
    };
    if !is_token(method) {
        return Err(Refusal::BadRequest);
    }
    if !target.starts_with(b"/") || !target.iter().all(|b| b.is_ascii_graphic()) {
        return Err(Refusal::BadRequest);
    }
    match version {
        b"HTTP/1.1" | b"HTTP/1.0" => {}
        v if v.starts_with(b"HTTP/") && v.len() == 8 && v[6] == b'.' => {
            return Err(Refusal::VersionNotSupported)
        }
        _ => return Err(Refusal::BadRequest),
    }
    for line in lines {
        let line = line?;
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Refusal::BadRequest)?;
        if !is_token(&line[..colon]) {
            return Err(Refusal::BadRequest);
        }
        if !line[colon + 1..]
            .iter()
            .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(Refusal::BadRequest);
        }
    }
    let head = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Err(Refusal::MethodNotAllowed),
    };
    // The query, if any, is ignored (Prometheus may add none or its own).
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    let target = match path {
        b"/" => Some(Target::Index),
        b"/metrics" => Some(Target::Metrics),
        b"/status.json" => Some(Target::Json),
        _ => None,
    };
    Ok(Some(Request { head, target }))
}

/// The whole answer to what a client sent, given the daemon's status
/// lines.
pub fn answer(parsed: Result<Option<Request>, Refusal>, status_lines: &str) -> Vec<u8> {
    let (code, ctype, body, head) = match parsed {
        Ok(Some(Request { head, target })) => match target {
            Some(Target::Metrics) => {
                let status = super::parse_status(status_lines);
                (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    super::to_prometheus(&status),
                    head,
                )
            }
            Some(Target::Json) => {
                let status = super::parse_status(status_lines);
                let mut j = super::to_json(&status);
                if !j.ends_with('\n') {
                    j.push('\n');
                }
                ("200 OK", "application/json", j, head)
            }
            Some(Target::Index) => (
                "200 OK",
                "text/plain; charset=utf-8",
                "Teredo daemon: /metrics (Prometheus text format), /status.json\n".to_owned(),
                head,
            ),
            None => (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "not found: try /metrics\n".to_owned(),
                head,
            ),
        },
        // Incomplete at the deadline: the client said too little.
        Ok(None) => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "incomplete request\n".to_owned(),
            false,
        ),
        Err(r) => (
            r.status(),
            "text/plain; charset=utf-8",
            format!("{}\n", r.status()),
            false,
        ),
    };
    let allow = if code.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<Request>, Refusal> {
        parse_request(s.as_bytes())
    }

    #[test]
    fn requests() {
        let get = |t| {
            Ok(Some(Request {
                head: false,
                target: t,
            }))
        };
        assert_eq!(
            req("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            get(Some(Target::Metrics))
        );
        assert_eq!(
            req("GET /metrics?name[]=x HTTP/1.1\r\nAccept: text/plain;q=0.5, */*;q=0.1\r\nUser-Agent: Prometheus/2.42.0\r\n\r\n"),
            get(Some(Target::Metrics))
        );
        assert_eq!(req("GET / HTTP/1.0\r\n\r\n"), get(Some(Target::Index)));
        assert_eq!(
            req("GET /status.json HTTP/1.1\r\n\r\n"),
            get(Some(Target::Json))
        );
        assert_eq!(req("GET /etc/passwd HTTP/1.1\r\n\r\n"), get(None));
        assert_eq!(
            req("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Ok(Some(Request {
                head: true,
                target: Some(Target::Metrics)
            }))
        );
        // Incomplete.
        assert_eq!(req(""), Ok(None));
        assert_eq!(req("GET /metrics HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        // Refused.
        assert_eq!(
            req("POST /metrics HTTP/1.1\r\n\r\n"),
            Err(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            req("GET /metrics HTTP/2.0\r\n\r\n"),
            Err(Refusal::VersionNotSupported)
        );
        for bad in [
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1 x\r\n\r\n",
            "GET /metrics HTTP/1.1\nHost: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHo st: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: \x01\r\n\r\n",
            "GET /m\u{e9}trics HTTP/1.1\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics SPDY/3\r\n\r\n",
        ] {
            assert_eq!(req(bad), Err(Refusal::BadRequest), "{bad:?}");
        }
        let big = format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_REQUEST)
        );
        assert_eq!(req(&big), Err(Refusal::TooLarge));
        assert_eq!(
            parse_request(&vec![b'a'; MAX_REQUEST]),
            Err(Refusal::TooLarge)
        );
    }

    #[test]
    fn answers() {
        let lines = "interface: teredo\nmode: cone\nuptime: 5s\nudp-rx-packets: 7\n";
        let a = String::from_utf8(answer(req("GET /metrics HTTP/1.1\r\n\r\n"), lines)).unwrap();
        let (head, body) = a.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(
            body.contains("teredo_udp_received_packets_total 7\n"),
            "{body}"
        );
        let a = String::from_utf8(answer(req("HEAD /metrics HTTP/1.1\r\n\r\n"), lines)).unwrap();
        assert!(a.ends_with("\r\n\r\n"));
        assert!(a.contains("Content-Length: ") && !a.contains("Content-Length: 0"));
        let a = String::from_utf8(answer(req("GET /status.json HTTP/1.1\r\n\r\n"), lines)).unwrap();
        assert!(
            a.contains("application/json") && a.contains("\"udp-rx-packets\""),
            "{a}"
        );
        let a = String::from_utf8(answer(req("PUT / HTTP/1.1\r\n\r\n"), lines)).unwrap();
        assert!(a.starts_with("HTTP/1.1 405 ") && a.contains("Allow: GET, HEAD\r\n"));
        let a = String::from_utf8(answer(req("GET /x HTTP/1.1\r\n\r\n"), lines)).unwrap();
        assert!(a.starts_with("HTTP/1.1 404 "));
        let a = String::from_utf8(answer(Ok(None), lines)).unwrap();
        assert!(a.starts_with("HTTP/1.1 400 "));
    }
}
