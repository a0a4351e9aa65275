//! The daemons' metrics listener (`MetricsListen`): a minimal HTTP/1.1
//! server for monitoring systems, off unless configured.
//!
//! It answers `GET` (and `HEAD`) of three paths and nothing else:
//! `/metrics` (the status in the Prometheus text exposition format,
//! [`crate::metrics::to_prometheus`]), `/status.json`
//! ([`crate::metrics::to_json`]) and `/` (a line naming the other two).
//! One request per connection, then the connection is closed.
//!
//! Whoever can connect is untrusted: the request is read into a fixed
//! buffer of [`MAX_REQUEST`] bytes with a deadline of [`DEADLINE`], parsed
//! strictly ([`parse_request`], fuzzed), and answered by one worker thread
//! fed through a queue of [`QUEUE`] connections; a connection that arrives
//! when the queue is full is closed at once. A slow or silent client thus
//! delays scrapes by at most the deadline per queued connection and costs
//! no memory beyond the queue; the event loop that accepts never blocks.
//!
//! The event loop owns the listening socket ([`Exporter::as_fd`] in its
//! poll set): it accepts, renders its status lines (which only it can do),
//! and hands both to the worker, which reads the request and converts the
//! lines to what was asked.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The largest request (request line and headers) read.
pub const MAX_REQUEST: usize = 8192;
/// The time a client has to send its request, and to read the answer.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Connections accepted and waiting for the worker.
pub const QUEUE: usize = 8;

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
                let status = crate::metrics::parse_status(status_lines);
                (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    crate::metrics::to_prometheus(&status),
                    head,
                )
            }
            Some(Target::Json) => {
                let status = crate::metrics::parse_status(status_lines);
                let mut j = crate::metrics::to_json(&status);
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

/// Reads a request within the deadline and answers it.
fn serve(mut stream: TcpStream, status_lines: &str) {
    let start = Instant::now();
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let parsed = loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break Ok(None);
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) => break parse_request(&buf[..len]),
            Ok(n) => {
                len += n;
                match parse_request(&buf[..len]) {
                    Ok(None) => continue,
                    done => break done,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break Ok(None),
        }
    };
    if len == 0 {
        // Connected and said nothing (a port scan, a health check of the
        // TCP port): nothing to answer.
        return;
    }
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let _ = stream.write_all(&answer(parsed, status_lines));
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The listening socket and its worker.
pub struct Exporter {
    listener: TcpListener,
    /// The worker's queue, made at the first connection: a daemon binds
    /// before it detaches (fork keeps no thread), and one never scraped
    /// has no thread at all.
    jobs: OnceLock<Option<SyncSender<(TcpStream, String)>>>,
    addr: SocketAddr,
}

impl Exporter {
    /// Binds `addr` (done before the daemon drops its privileges, so a
    /// port below 1024 works too).
    pub fn bind(addr: SocketAddr) -> io::Result<Exporter> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(Exporter {
            listener,
            jobs: OnceLock::new(),
            addr,
        })
    }

    /// What a daemon does with its `MetricsListen`: nothing when unset,
    /// else binds and logs where; the error names the directive.
    pub fn configured(addr: Option<SocketAddr>) -> Result<Option<Exporter>, String> {
        let Some(addr) = addr else { return Ok(None) };
        let ex = Exporter::bind(addr).map_err(|e| format!("MetricsListen {addr}: {e}"))?;
        log::info!(
            "metrics served on http://{}/metrics (Prometheus text format)",
            ex.local_addr()
        );
        Ok(Some(ex))
    }

    fn worker(&self) -> Option<&SyncSender<(TcpStream, String)>> {
        self.jobs
            .get_or_init(|| {
                let (jobs, rx) = mpsc::sync_channel::<(TcpStream, String)>(QUEUE);
                let spawned = thread::Builder::new()
                    .name("metrics".into())
                    .spawn(move || {
                        for (stream, lines) in rx {
                            serve(stream, &lines);
                        }
                    });
                match spawned {
                    Ok(_) => Some(jobs),
                    Err(e) => {
                        log::error!("metrics listener: no worker thread ({e}): not answering");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts the connections waiting (at most [`QUEUE`] at a time) and
    /// queues each with the status lines `render` makes for it. Never
    /// blocks.
    pub fn accept(&self, mut render: impl FnMut() -> String) {
        for _ in 0..QUEUE {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            // Accepted sockets do not inherit O_NONBLOCK on Linux; say it
            // anyway, the worker relies on blocking reads with timeouts.
            if stream.set_nonblocking(false).is_err() {
                continue;
            }
            // Without a worker, connections are closed as they come (left
            // in the backlog they would keep the poll loop awake).
            let Some(jobs) = self.worker() else { continue };
            match jobs.try_send((stream, render())) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    log::debug!(
                        "metrics listener: {QUEUE} connections waiting already, one closed"
                    );
                }
                Err(TrySendError::Disconnected(_)) => {
                    log::warn!("metrics listener: its worker is gone");
                    return;
                }
            }
        }
    }
}

impl AsFd for Exporter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
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

    /// Over a real socket: a scrape, and a silent client that delays the
    /// next one by no more than the deadline.
    #[test]
    fn serves_over_tcp() {
        let ex = Exporter::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = ex.local_addr();
        let fetch = |req: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            // The loop accepts once the connection is there.
            let t = Instant::now();
            let mut out = String::new();
            while t.elapsed() < Duration::from_secs(8) {
                ex.accept(|| "udp-rx-packets: 42\n".to_owned());
                std::thread::sleep(Duration::from_millis(10));
                s.set_nonblocking(true).unwrap();
                let mut b = [0u8; 4096];
                match s.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => out.push_str(&String::from_utf8_lossy(&b[..n])),
                    Err(_) => {}
                }
            }
            out
        };
        let a = fetch("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(a.contains("teredo_udp_received_packets_total 42"), "{a}");
        // A client that connects and stays silent, then a scrape: answered
        // once the silent one's deadline passed.
        let _silent = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        ex.accept(String::new);
        let t = Instant::now();
        let a = fetch("GET /metrics HTTP/1.1\r\n\r\n");
        assert!(a.contains("teredo_udp_received_packets_total 42"), "{a}");
        assert!(t.elapsed() < DEADLINE + Duration::from_secs(5));
    }
}
