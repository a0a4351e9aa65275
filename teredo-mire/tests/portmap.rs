//! `teredo-mire portmap --timeout`: the time is shared between the
//! protocols. A fake gateway on 127.0.0.1:5351 inside a namespace of its
//! own (so that nothing of the host is asked): one that speaks NAT-PMP and
//! ignores PCP, as some do, and one that answers nothing.

mod common;

use common::{run, Netns, BIN};
use std::net::UdpSocket;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The external address the fake gateway gives.
const EXTERNAL: [u8; 4] = [203, 0, 113, 7];
/// The external port it maps.
const EXTERNAL_PORT: u16 = 41000;

/// The fake gateway's answer to a NAT-PMP request, or `None` (PCP and
/// anything else are ignored, not refused).
fn natpmp_answer(req: &[u8]) -> Option<Vec<u8>> {
    let epoch = 100u32.to_be_bytes();
    match req {
        [0, 0] => {
            let mut v = vec![0, 128, 0, 0];
            v.extend_from_slice(&epoch);
            v.extend_from_slice(&EXTERNAL);
            Some(v)
        }
        [0, 1, 0, 0, i0, i1, _, _, l0, l1, l2, l3] => {
            let lifetime = [*l0, *l1, *l2, *l3];
            let port = if lifetime == [0; 4] { 0 } else { EXTERNAL_PORT };
            let mut v = vec![0, 129, 0, 0];
            v.extend_from_slice(&epoch);
            v.extend_from_slice(&[*i0, *i1]);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&lifetime);
            Some(v)
        }
        _ => None,
    }
}

/// Runs `teredo-mire portmap ARGS` in a fresh namespace whose 127.0.0.1:5351
/// is a gateway answering NAT-PMP (`speaks_natpmp`) or nothing; returns
/// the output and how long the command took.
fn portmap(speaks_natpmp: bool, args: &[&str]) -> (Output, Duration) {
    let ns = Netns::new("mirep");
    let mut cmd = ns.command(BIN);
    cmd.args(["portmap", "--gateway", "127.0.0.1", "--port", "40000"])
        .args(args);
    ns.run_in(move || {
        let gateway = UdpSocket::bind("127.0.0.1:5351").expect("bind the fake gateway");
        gateway
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let done = Arc::new(AtomicBool::new(false));
        let done2 = done.clone();
        let fake = thread::spawn(move || {
            let mut buf = [0u8; 1100];
            while !done2.load(Ordering::Relaxed) {
                let Ok((n, from)) = gateway.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(a) = natpmp_answer(&buf[..n]).filter(|_| speaks_natpmp) {
                    let _ = gateway.send_to(&a, from);
                }
            }
        });
        let start = Instant::now();
        let out = run(&mut cmd, Duration::from_secs(60));
        let took = start.elapsed();
        done.store(true, Ordering::Relaxed);
        let _ = fake.join();
        (out, took)
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A gateway that ignores PCP and speaks NAT-PMP: with a timeout shorter
/// than PCP's six requests (15.75 s), NAT-PMP still gets its turn, after
/// half the timeout.
fn natpmp_gets_its_share_of_a_short_timeout() {
    let (out, took) = portmap(true, &["--timeout", "4"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("protocol: NAT-PMP\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("external: 203.0.113.7:{EXTERNAL_PORT}\n")),
        "{stdout}"
    );
    assert!(stdout.contains("deleted: yes\n"), "{stdout}");
    assert!(
        stderr.contains("no answer in PCP within 2 s, half the timeout: asking in NAT-PMP"),
        "{stderr}"
    );
    // PCP for 2 s, then NAT-PMP answers at once.
    assert!(took < Duration::from_secs(4), "took {took:?}\n{stderr}");
}

/// A gateway that answers nothing: both protocols are tried, and the
/// command ends at the timeout, not later.
fn the_timeout_bounds_both_protocols() {
    let (out, took) = portmap(false, &["--timeout", "3"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let pcp = stderr.matches("sending a PCP MAP request").count();
    let natpmp = stderr
        .matches("sending a NAT-PMP external address request")
        .count();
    // PCP at 0, 0.25, 0.75 s (1.5 s share), NAT-PMP at 1.5, 1.75, 2.25 s.
    assert!(
        pcp >= 3 && natpmp >= 3,
        "{pcp} PCP, {natpmp} NAT-PMP:\n{stderr}"
    );
    assert!(
        stderr.contains("no answer within 3 s, in PCP then NAT-PMP"),
        "{stderr}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(4500),
        "took {took:?}"
    );
}

/// One protocol asked for: it has the whole timeout.
fn one_protocol_has_the_whole_timeout() {
    let (out, _) = portmap(false, &["--timeout", "2", "--protocol", "pcp"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("NAT-PMP"), "{stderr}");
    assert!(stderr.contains("no answer within 2 s ("), "{stderr}");
}

teredo_lab::lab_main! {
    needs(netns): [
        natpmp_gets_its_share_of_a_short_timeout,
        the_timeout_bounds_both_protocols,
        one_protocol_has_the_whole_timeout,
    ],
}
