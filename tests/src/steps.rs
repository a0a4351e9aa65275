//! Steps shared by the lab's tests (`tests/tests/lab/`): qualify a client
//! or fail with its log, ping and count the echoes, read a status through
//! `teredo-mire`, sample a client's addresses while something happens.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{is_teredo, ping6_stats, report, Daemon, Impl, Netns, World};

pub const QUALIFY_TIMEOUT: Duration = Duration::from_secs(15);
pub const PING_TIMEOUT: Duration = Duration::from_secs(8);

/// Waits for client `n` to qualify; panics with its log otherwise.
pub fn qualify(w: &World, d: &Daemon, n: usize, who: &str) -> (Ipv6Addr, Duration) {
    match w.wait_qualified(d, n, QUALIFY_TIMEOUT) {
        Some((addr, took)) => {
            report(
                w.test_name(),
                &format!("{who} qualified in {took:?} as {addr}"),
            );
            (addr, took)
        }
        None => panic!(
            "{who} did not qualify in {QUALIFY_TIMEOUT:?}:\n{}",
            w.log_of(d)
        ),
    }
}

/// The Teredo addresses (2001:0::/32) on `iface` in `ns`.
pub fn teredo_addrs(ns: &Netns, iface: &str) -> Vec<Ipv6Addr> {
    ns.ipv6_addrs(iface).into_iter().filter(is_teredo).collect()
}

/// Pings `to` from `from` `count` times; reports and returns (sent, got).
pub fn ping(w: &World, what: &str, from: &Netns, to: Ipv6Addr, count: u32) -> (u32, u32) {
    let (sent, got) = ping6_stats(from, to, count, PING_TIMEOUT);
    report(
        w.test_name(),
        &format!("{what}: {got}/{sent} echoes answered"),
    );
    (sent, got)
}

/// Whether at most one echo in `count` was lost (the first may wait for a
/// bubble exchange) and at least one came back.
pub fn mostly(r: (u32, u32)) -> bool {
    r.1 > 0 && r.1 + 1 >= r.0
}

/// Our `teredo-mire` (the status client).
pub fn teredo_mire() -> PathBuf {
    Impl::Ours.path("teredo-mire")
}

/// A need of `lab_tests!`: our `teredo-mire` built.
pub fn teredo_mire_built() -> Option<String> {
    let t = teredo_mire();
    (!t.is_file()).then(|| {
        format!(
            "{} not built (cargo build --release -p teredo-mire)",
            t.display()
        )
    })
}

/// `teredo-mire status IFACE` as key/value pairs (empty when it fails):
/// the status page as an operator reads it, through the status client
/// (`named::status_of` reads the socket itself).
pub fn mire_status(iface: &str) -> Vec<(String, String)> {
    let out = crate::cmd::run_with_timeout(
        &[
            teredo_mire().display().to_string(),
            "status".into(),
            "--all".into(),
            iface.into(),
        ],
        Duration::from_secs(5),
    );
    crate::named::status_pairs(&out.stdout)
}

/// One field of [`mire_status`].
pub fn mire_status_field(iface: &str, key: &str) -> Option<String> {
    mire_status(iface)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Samples the Teredo addresses of `iface` in `ns` every 100 ms while
/// `during` runs; returns its result and the samples (time since start,
/// addresses).
pub fn sample_addrs<T>(
    ns: &Netns,
    iface: &str,
    during: impl FnOnce() -> T,
) -> (T, Vec<(Duration, Vec<Ipv6Addr>)>) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let start = Instant::now();
    /// Stops the sampler however `during` ends (a failed assertion inside
    /// it must not leave the scope waiting for the sampler forever).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            // At most 10 minutes of samples, whatever happens.
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(600)
            {
                let t = Instant::now();
                samples.push((start.elapsed(), teredo_addrs(ns, iface)));
                let spent = t.elapsed();
                std::thread::sleep(Duration::from_millis(100).saturating_sub(spent));
            }
            samples
        });
        let guard = Stop(&stop);
        let result = during();
        drop(guard);
        let samples = sampler.join().unwrap_or_default();
        (result, samples)
    })
}

/// Pings, all at once, from client `from` to `addr` for each
/// `(from, to, addr)`; returns ("client A -> client B", (sent, got)) in
/// order, and reports each.
pub fn ping_pairs(w: &World, pairs: &[(usize, usize, Ipv6Addr)]) -> Vec<(String, (u32, u32))> {
    let results: Vec<(String, (u32, u32))> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .iter()
            .map(|&(from, to, addr)| {
                s.spawn(move || {
                    let r = ping6_stats(w.client(from), addr, 4, PING_TIMEOUT);
                    (format!("client {from} -> client {to}"), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| ("ping thread panicked".into(), (0, 0)))
            })
            .collect()
    });
    for (what, r) in &results {
        report(
            w.test_name(),
            &format!("{what}: {}/{} echoes answered", r.1, r.0),
        );
    }
    results
}
