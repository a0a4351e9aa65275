//! Deciding whether a lab test can run here, and saying loudly when not.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::cmd;

/// Writes one line straight to the process's stderr, past the test
/// harness's output capture, so that it shows in every CI log.
pub fn loud(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Prints `SKIPPED <test>: <why>` past the output capture.
pub fn skipped(test: &str, why: &str) {
    loud(&format!("SKIPPED {test}: {why}"));
}

/// The name of the running test (libtest names each test's thread after
/// it), without its module path.
pub fn current_test_name() -> String {
    let t = std::thread::current();
    match t.name() {
        Some(n) if n != "main" => n.rsplit("::").next().unwrap_or(n).to_string(),
        _ => "lab".to_string(),
    }
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

/// `None` when this process can build lab worlds (root, and `ip netns`
/// works), else why not. Probed once per process.
pub fn root_unavailable() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            if effective_uid() != Some(0) {
                return Some("needs root for network namespaces".into());
            }
            // Creating one namespace also mounts /run/netns once, before
            // parallel tests race to do it.
            let probe = format!("tlprobe{}", std::process::id());
            if let Err(e) = cmd::host(&["ip", "netns", "add", &probe]) {
                return Some(format!(
                    "needs root for network namespaces (ip netns unusable: {e})"
                ));
            }
            let _ = cmd::host(&["ip", "netns", "del", &probe]);
            for tool in ["nft", "sysctl", "ping", "kill", "ss"] {
                if which(tool).is_none() {
                    return Some(format!(
                        "needs root for network namespaces and `{tool}` (not installed)"
                    ));
                }
            }
            None
        })
        .clone()
}

/// The first `name` on `$PATH` or in the sbin directories.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Skips the calling test (returns from it) unless it runs as root with
/// working `ip netns`.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = $crate::skip::root_unavailable() {
            $crate::skip::skipped(&$crate::skip::current_test_name(), &why);
            return;
        }
    };
}

/// Skips the calling test unless Debian's C `miredo` and `miredo-server`
/// are installed.
#[macro_export]
macro_rules! require_c_miredo {
    () => {
        if let Some(why) = $crate::Impl::C.unavailable() {
            $crate::skip::skipped(&$crate::skip::current_test_name(), &why);
            return;
        }
    };
}

/// Skips the calling test unless this workspace's `miredo` and
/// `miredo-server` have been built (see [`crate::Impl::Ours`]).
#[macro_export]
macro_rules! require_ours {
    () => {
        if let Some(why) = $crate::Impl::Ours.unavailable() {
            $crate::skip::skipped(&$crate::skip::current_test_name(), &why);
            return;
        }
    };
}
