//! A tiny TCP sender and receiver for lab transfers, each fingerprinting
//! the bytes it saw with SHA-256 so that a test compares both ends.
//!
//! ```text
//! teredo-lab-tcp recv PORT TIMEOUT_SECS
//! teredo-lab-tcp send ADDR PORT BYTES SEED TIMEOUT_SECS
//! ```
//!
//! Both print one line `bytes=N sha256=HEX secs=S` when done (the receiver
//! prints `listening on PORT` first), and exit 1 with a sentence on
//! stderr on any failure or when TIMEOUT_SECS passes.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use teredo_lab::sha256::Sha256;

const CHUNK: usize = 64 * 1024;

fn usage() -> String {
    "usage: teredo-lab-tcp recv PORT TIMEOUT_SECS | send ADDR PORT BYTES SEED TIMEOUT_SECS".into()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    let s = args.get(i).ok_or_else(usage)?;
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not valid; {}", usage()))
}

/// Deterministic bytes from `seed` (xorshift64*), so that a transfer is the
/// same every run.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn recv(args: &[String]) -> Result<String, String> {
    let port: u16 = arg(args, 0, "PORT")?;
    let timeout = Duration::from_secs(arg(args, 1, "TIMEOUT_SECS")?);
    let deadline = Instant::now() + timeout;
    let l = TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
        .map_err(|e| format!("bind [::]:{port}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    println!("listening on {port}");
    let _ = std::io::stdout().flush();
    let (mut s, peer) = loop {
        match l.accept() {
            Ok(x) => break x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(format!("no connection within {timeout:?}"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut h = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("only {total} bytes from {peer} within {timeout:?}"));
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read after {total} bytes from {peer}: {e}")),
        }
    }
    Ok(format!(
        "bytes={total} sha256={} secs={:.3}",
        h.finish_hex(),
        start.elapsed().as_secs_f64()
    ))
}

fn send(args: &[String]) -> Result<String, String> {
    let addr: IpAddr = arg(args, 0, "ADDR")?;
    let port: u16 = arg(args, 1, "PORT")?;
    let bytes: u64 = arg(args, 2, "BYTES")?;
    let seed: u64 = arg(args, 3, "SEED")?;
    let timeout = Duration::from_secs(arg(args, 4, "TIMEOUT_SECS")?);
    let to = SocketAddr::new(addr, port);
    let start = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("connect {to}: {e}"))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut gen = Stream(seed | 1);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < bytes {
        if start.elapsed() > timeout {
            return Err(format!(
                "only {sent} of {bytes} bytes sent within {timeout:?}"
            ));
        }
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        gen.fill(&mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| format!("write after {sent} bytes to {to}: {e}"))?;
        h.update(&buf[..n]);
        sent += n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    // Wait for the receiver to close: every byte has then been read.
    s.set_read_timeout(Some(
        timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(1)),
    ))
    .map_err(|e| e.to_string())?;
    let mut rest = [0u8; 64];
    let _ = s.read(&mut rest);
    Ok(format!(
        "bytes={sent} sha256={} secs={:.3}",
        h.finish_hex(),
        start.elapsed().as_secs_f64()
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("recv") => recv(&args[1..]),
        Some("send") => send(&args[1..]),
        _ => Err(usage()),
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("teredo-lab-tcp: {e}");
            ExitCode::FAILURE
        }
    }
}
