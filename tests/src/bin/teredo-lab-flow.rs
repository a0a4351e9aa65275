//! One end of a two-way UDP flow for failover measurements: sends a
//! numbered datagram to its peer every INTERVAL_MS on a fixed schedule, and
//! logs every datagram it receives from the peer.
//!
//! ```text
//! teredo-lab-flow LOCAL_ADDR PORT PEER_ADDR PEER_PORT INTERVAL_MS DURATION_SECS OUT_FILE
//! ```
//!
//! Writes to OUT_FILE `start T0_NS INTERVAL_NS` first (datagram K is sent
//! at T0 + K * INTERVAL, wall clock in nanoseconds since the epoch, which
//! every network namespace of a host shares), then one line
//! `SEQ SENT_NS RECV_NS` per datagram received, flushed every 100 ms; exits
//! 0 after DURATION_SECS, printing `sent N received M` (1 with a sentence on
//! stderr on any failure).

use std::io::{BufWriter, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn usage() -> String {
    "usage: teredo-lab-flow LOCAL_ADDR PORT PEER_ADDR PEER_PORT INTERVAL_MS DURATION_SECS OUT_FILE"
        .into()
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    let s = args.get(i).ok_or_else(usage)?;
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not valid; {}", usage()))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn run(args: &[String]) -> Result<(), String> {
    let local: IpAddr = arg(args, 1, "LOCAL_ADDR")?;
    let port: u16 = arg(args, 2, "PORT")?;
    let peer: IpAddr = arg(args, 3, "PEER_ADDR")?;
    let peer_port: u16 = arg(args, 4, "PEER_PORT")?;
    let interval_ms: u64 = arg(args, 5, "INTERVAL_MS")?;
    let duration: u64 = arg(args, 6, "DURATION_SECS")?;
    let path: String = arg(args, 7, "OUT_FILE")?;
    let file = std::fs::File::create(&path).map_err(|e| format!("cannot create {path}: {e}"))?;
    if interval_ms == 0 {
        return Err(format!("INTERVAL_MS must be at least 1; {}", usage()));
    }
    let sock = UdpSocket::bind(SocketAddr::new(local, port))
        .map_err(|e| format!("cannot bind {local} port {port}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| format!("socket: {e}"))?;
    let rx = sock.try_clone().map_err(|e| format!("socket: {e}"))?;
    let to = SocketAddr::new(peer, peer_port);
    let interval = Duration::from_millis(interval_ms);
    let t0 = now_ns();
    let start = Instant::now();
    let end = start + Duration::from_secs(duration);
    let mut out = BufWriter::new(file);
    writeln!(out, "start {t0} {}", interval.as_nanos()).map_err(|e| format!("{path}: {e}"))?;
    out.flush().map_err(|e| format!("{path}: {e}"))?;
    let receiver = thread::spawn(move || {
        let mut received = 0u64;
        let mut buf = [0u8; 1500];
        let mut flushed = Instant::now();
        while Instant::now() < end {
            if let Ok((n, from)) = rx.recv_from(&mut buf) {
                if n >= 16 && from.ip() == peer {
                    let seq = u64::from_be_bytes(buf[..8].try_into().unwrap_or_default());
                    let sent = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
                    let _ = writeln!(out, "{seq} {sent} {}", now_ns());
                    received += 1;
                }
            }
            if flushed.elapsed() >= Duration::from_millis(100) {
                let _ = out.flush();
                flushed = Instant::now();
            }
        }
        let _ = out.flush();
        received
    });
    let mut seq: u64 = 0;
    let mut send_errors = 0u64;
    loop {
        let due = start + interval * (seq as u32);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        let mut pkt = [0u8; 64];
        pkt[..8].copy_from_slice(&seq.to_be_bytes());
        pkt[8..16].copy_from_slice(&now_ns().to_be_bytes());
        // A send may fail while there is no route (a relay gone): the
        // datagram counts as lost, as on the wire, and the error is told.
        if let Err(e) = sock.send_to(&pkt, to) {
            send_errors += 1;
            if send_errors <= 5 {
                eprintln!("teredo-lab-flow: datagram {seq} not sent: {e}");
            }
        }
        seq += 1;
    }
    let received = receiver
        .join()
        .map_err(|_| "the receiving thread panicked".to_string())?;
    println!("sent {seq} received {received} send errors {send_errors}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("teredo-lab-flow: {e}");
            ExitCode::FAILURE
        }
    }
}
