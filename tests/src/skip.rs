//! Deciding whether a lab test can run here (see [`crate::harness`], which
//! reports a test that cannot as ignored, with the reason), and lines
//! written past any output capture.

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

/// The name of the running test, without its module path: libtest and
/// [`crate::harness`] both name each test's thread after it. `"lab"` on a
/// thread without a name (one a test spawned) or on `main`.
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

/// `None` when this process is root and `ip netns` works, else why not.
/// Probed once per process.
pub fn netns_unavailable() -> Option<String> {
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
            None
        })
        .clone()
}

/// `None` when this process can build lab worlds (root, `ip netns` works,
/// and the tools worlds use are installed), else why not.
pub fn root_unavailable() -> Option<String> {
    if let Some(why) = netns_unavailable() {
        return Some(why);
    }
    for tool in ["nft", "sysctl", "ping", "kill", "ss"] {
        if which(tool).is_none() {
            return Some(format!(
                "needs root for network namespaces and `{tool}` (not installed)"
            ));
        }
    }
    None
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
