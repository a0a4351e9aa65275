//! Dropping every privilege but CAP_NET_ADMIN, and proving it.

use std::os::fd::{AsFd, AsRawFd};

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};

/// CAP_NET_ADMIN as a bit of the masks in /proc/PID/status.
const NET_ADMIN_MASK: u64 = 1 << 12;

/// Whether `fd` is a Unix stream socket.
pub fn is_unix_stream<F: AsFd>(fd: &F) -> bool {
    matches!(getsockopt(fd, sockopt::SockType), Ok(SockType::Stream))
        && getsockname::<UnixAddr>(fd.as_fd().as_raw_fd()).is_ok()
}

/// Keeps CAP_NET_ADMIN in the effective, permitted and bounding sets and
/// nothing else anywhere; sets no_new_privs. The uid stays 0, so a hook run
/// later gets CAP_NET_ADMIN back at exec (the bounding set caps what root
/// receives) and nothing more.
pub fn keep_net_admin_only() -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!("cannot drop privileges ({what}): {e}; miredo-privproc must start as root")
    };
    // The bounding set first: shrinking it needs CAP_SETPCAP, which the
    // next steps drop.
    for cap in caps::runtime::thread_all_supported() {
        if cap != Capability::CAP_NET_ADMIN {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| fail("bounding", &e))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient", &e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable", &e))?;
    let only: CapsHashSet = [Capability::CAP_NET_ADMIN].into_iter().collect();
    caps::set(None, CapSet::Effective, &only).map_err(|e| fail("effective", &e))?;
    caps::set(None, CapSet::Permitted, &only).map_err(|e| fail("permitted", &e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("no_new_privs", &e))?;
    verify()
}

/// Reads the result back from the kernel, bits the caps crate does not
/// know included. Fails closed.
fn verify() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot verify privileges: /proc/self/status: {e}"))?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let value = line.get(name.len()..)?.trim();
        u64::from_str_radix(value, 16).ok()
    };
    let expected = [
        ("CapInh:", 0),
        ("CapPrm:", NET_ADMIN_MASK),
        ("CapEff:", NET_ADMIN_MASK),
        ("CapBnd:", NET_ADMIN_MASK),
        ("CapAmb:", 0),
        ("NoNewPrivs:", 1),
    ];
    for (name, want) in expected {
        match field(name) {
            Some(got) if got == want => {}
            got => {
                return Err(format!(
                    "privileges not dropped: {name} is {got:x?}, expected {want:x}"
                ))
            }
        }
    }
    Ok(())
}
