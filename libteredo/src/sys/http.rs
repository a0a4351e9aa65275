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
//! strictly by the pure code of [`crate::metrics::http`] (fuzzed), and
//! answered by one worker thread fed through a queue of [`QUEUE`]
//! connections; a connection that arrives when the queue is full is closed
//! at once. A slow or silent client thus
//! delays scrapes by at most the deadline per queued connection and costs
//! no memory beyond the queue; the event loop that accepts never blocks.
//!
//! The event loop owns the listening socket ([`Exporter::as_fd`] in its
//! poll set): it accepts, renders its status lines (which only it can do),
//! and hands both to the worker, which reads the request and converts the
//! lines to what was asked.

use crate::metrics::http::{answer, parse_request, MAX_REQUEST};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The time a client has to send its request, and to read the answer.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Connections accepted and waiting for the worker.
pub const QUEUE: usize = 8;

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
    pub fn configured(addr: Option<SocketAddr>) -> io::Result<Option<Exporter>> {
        let Some(addr) = addr else { return Ok(None) };
        let ex = Exporter::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("MetricsListen {addr}: {e}")))?;
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
