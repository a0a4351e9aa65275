//! Becoming the unprivileged user with CAP_NET_ADMIN alone, and proving it.

use std::os::fd::{AsFd, AsRawFd};

use caps::{CapSet, Capability, CapsHashSet};
use nix::libc::c_int;
use nix::sys::prctl;
use nix::sys::socket::{getsockname, getsockopt, sockopt, SockType, UnixAddr};
use nix::unistd::{setgroups, setresgid, setresuid};

use libteredo::sys::privileges;

/// CAP_NET_ADMIN as a bit of the masks in /proc/PID/status.
pub const NET_ADMIN_MASK: u64 = 1 << 12;

/// Whether `fd` is a Unix stream socket.
pub fn is_unix_stream<F: AsFd>(fd: &F) -> bool {
    matches!(getsockopt(fd, sockopt::SockType), Ok(SockType::Stream))
        && getsockname::<UnixAddr>(fd.as_fd().as_raw_fd()).is_ok()
}

/// The user privproc runs as once set up.
pub use libteredo::sys::privileges::Target as User;

/// Looks `user` up (a name, or a numeric uid with an entry in the user
/// database); refuses root's user or group: privproc exists to run as
/// somebody that owns nothing of the system.
pub fn lookup(user: &str) -> Result<User, String> {
    let t = privileges::lookup(user).map_err(|e| format!("user {user}: {e}"))?;
    if t.uid.is_root() {
        return Err(format!(
            "user {user}: uid 0 refused: miredo-privproc must run as an unprivileged user (--user)"
        ));
    }
    if t.gid.as_raw() == 0 {
        return Err(format!(
            "user {user}: primary group 0 refused: miredo-privproc must run as an unprivileged user (--user)"
        ));
    }
    Ok(t)
}

/// The highest capability number tried when shrinking the bounding set:
/// beyond what the kernel knows, `PR_CAPBSET_DROP` fails with EINVAL.
const LAST_CAP: c_int = 63;

/// Leaves root for `user` (its primary group only) keeping CAP_NET_ADMIN
/// in the effective, permitted and bounding sets and nothing else; with
/// `for_hook`, CAP_NET_ADMIN is also put in the inheritable and ambient
/// sets so that a hook (a plain script, not set-user-ID, no file
/// capabilities) receives it at exec, and nothing else: without, both stay
/// empty. Then no_new_privs and not dumpable, and everything read back from
/// /proc/self/status. Must be called as root with every capability.
pub fn become_user(user: &User, for_hook: bool) -> Result<(), String> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "cannot drop privileges to {} ({what}): {e}; miredo-privproc must start as root",
            user.name
        )
    };
    // The bounding set first, while CAP_SETPCAP is still effective: every
    // capability the kernel knows, not only those the caps crate does.
    for cap in 0..=LAST_CAP {
        if cap == Capability::CAP_NET_ADMIN.index() as c_int {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let r = unsafe { nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if r != 0 {
            let e = nix::errno::Errno::last();
            if e == nix::errno::Errno::EINVAL {
                break; // past the last capability of this kernel
            }
            return Err(fail("bounding set", &e));
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| fail("ambient", &e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| fail("inheritable", &e))?;

    // Keep the permitted set across the change of uid (the kernel clears
    // it when the last uid 0 goes, unless asked not to), then stop asking.
    prctl::set_keepcaps(true).map_err(|e| fail("PR_SET_KEEPCAPS", &e))?;
    let (gid, uid) = (user.gid, user.uid);
    setgroups(&[gid]).map_err(|e| fail("setgroups", &e))?;
    setresgid(gid, gid, gid).map_err(|e| fail("setresgid", &e))?;
    setresuid(uid, uid, uid).map_err(|e| fail("setresuid", &e))?;
    prctl::set_keepcaps(false).map_err(|e| fail("PR_SET_KEEPCAPS", &e))?;

    let only: CapsHashSet = [Capability::CAP_NET_ADMIN].into_iter().collect();
    caps::set(None, CapSet::Effective, &only).map_err(|e| fail("effective", &e))?;
    caps::set(None, CapSet::Permitted, &only).map_err(|e| fail("permitted", &e))?;
    if for_hook {
        caps::set(None, CapSet::Inheritable, &only).map_err(|e| fail("inheritable", &e))?;
        caps::raise(None, CapSet::Ambient, Capability::CAP_NET_ADMIN)
            .map_err(|e| fail("ambient", &e))?;
    }
    prctl::set_no_new_privs().map_err(|e| fail("no_new_privs", &e))?;
    // Nobody, not even a process of the same user (a hook's leftover, the
    // configuration reader), may trace it or read its memory.
    prctl::set_dumpable(false).map_err(|e| fail("PR_SET_DUMPABLE", &e))?;
    verify(user, for_hook)
}

/// Reads the result back from the kernel, bits the caps crate does not
/// know included. Fails closed.
fn verify(user: &User, for_hook: bool) -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot verify privileges: /proc/self/status: {e}"))?;
    check_status(&status, user, for_hook)?;
    match prctl::get_dumpable() {
        Ok(false) => {}
        Ok(true) => return Err("privileges not dropped: still dumpable".into()),
        Err(e) => return Err(format!("cannot verify privileges: PR_GET_DUMPABLE: {e}")),
    }
    match prctl::get_keepcaps() {
        Ok(false) => Ok(()),
        Ok(true) => Err("privileges not dropped: PR_SET_KEEPCAPS still set".into()),
        Err(e) => Err(format!("cannot verify privileges: PR_GET_KEEPCAPS: {e}")),
    }
}

/// Checks the text of /proc/self/status: every uid and gid `user`'s (none
/// 0), its group alone, CAP_NET_ADMIN alone in the effective, permitted
/// and bounding sets, in the inheritable and ambient sets only for a hook,
/// no_new_privs.
fn check_status(status: &str, user: &User, for_hook: bool) -> Result<(), String> {
    let line = |name: &str| -> Option<&str> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let ids = |name: &str, want: u32| -> Result<(), String> {
        let got: Vec<&str> = line(name).unwrap_or("").split_whitespace().collect();
        let want_s = want.to_string();
        if want != 0 && got.len() == 4 && got.iter().all(|g| *g == want_s) {
            Ok(())
        } else {
            Err(format!(
                "privileges not dropped: {name} is {got:?}, expected {want} four times"
            ))
        }
    };
    ids("Uid:", user.uid.as_raw())?;
    ids("Gid:", user.gid.as_raw())?;
    let groups = line("Groups:").unwrap_or("");
    if groups != user.gid.as_raw().to_string() {
        return Err(format!(
            "privileges not dropped: Groups: is {groups:?}, expected {}",
            user.gid
        ));
    }
    let passed_on = if for_hook { NET_ADMIN_MASK } else { 0 };
    let expected = [
        ("CapInh:", passed_on),
        ("CapPrm:", NET_ADMIN_MASK),
        ("CapEff:", NET_ADMIN_MASK),
        ("CapBnd:", NET_ADMIN_MASK),
        ("CapAmb:", passed_on),
        ("NoNewPrivs:", 1),
    ];
    for (name, want) in expected {
        match line(name).and_then(|v| u64::from_str_radix(v, 16).ok()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{Gid, Uid};

    const STATUS: &str = "Name:\tmiredo-privproc\nUid:\t999\t999\t999\t999\n\
        Gid:\t995\t995\t995\t995\nGroups:\t995 \nNoNewPrivs:\t1\n\
        CapInh:\t0000000000001000\nCapPrm:\t0000000000001000\n\
        CapEff:\t0000000000001000\nCapBnd:\t0000000000001000\n\
        CapAmb:\t0000000000001000\n";

    fn user() -> User {
        User {
            name: "miredo-privproc".into(),
            uid: Uid::from_raw(999),
            gid: Gid::from_raw(995),
        }
    }

    #[test]
    fn accepts_exactly_the_expected_status() {
        check_status(STATUS, &user(), true).unwrap();
        // Without a hook, nothing may be passed on.
        let e = check_status(STATUS, &user(), false).unwrap_err();
        assert!(e.contains("CapInh"), "{e}");
        let no_hook = STATUS
            .replace("CapInh:\t0000000000001000", "CapInh:\t0000000000000000")
            .replace("CapAmb:\t0000000000001000", "CapAmb:\t0000000000000000");
        check_status(&no_hook, &user(), false).unwrap();
    }

    #[test]
    fn refuses_any_root_id_extra_capability_or_group() {
        for (from, to, what) in [
            ("Uid:\t999\t999\t999\t999", "Uid:\t999\t999\t0\t999", "Uid"),
            ("Gid:\t995\t995\t995\t995", "Gid:\t995\t0\t995\t995", "Gid"),
            ("Groups:\t995 ", "Groups:\t995 0", "Groups"),
            (
                "CapEff:\t0000000000001000",
                "CapEff:\t0000000000001001",
                "CapEff",
            ),
            (
                "CapPrm:\t0000000000001000",
                "CapPrm:\t0000000000003000",
                "CapPrm",
            ),
            (
                "CapBnd:\t0000000000001000",
                "CapBnd:\t000001ffffffffff",
                "CapBnd",
            ),
            (
                "CapAmb:\t0000000000001000",
                "CapAmb:\t0000000000000000",
                "CapAmb",
            ),
            ("NoNewPrivs:\t1", "NoNewPrivs:\t0", "NoNewPrivs"),
        ] {
            let s = STATUS.replace(from, to);
            assert_ne!(s, STATUS, "{what}");
            let e = check_status(&s, &user(), true).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
        let mut root = user();
        root.uid = Uid::from_raw(0);
        let s = STATUS.replace("Uid:\t999\t999\t999\t999", "Uid:\t0\t0\t0\t0");
        assert!(check_status(&s, &root, true).is_err());
    }

    #[test]
    fn refuses_root_as_the_user() {
        let e = lookup("root").unwrap_err();
        assert!(e.contains("uid 0"), "{e}");
        let e = lookup("0").unwrap_err();
        assert!(e.contains("uid 0"), "{e}");
        let e = lookup("no-such-user-for-privproc").unwrap_err();
        assert!(e.contains("no-such-user-for-privproc"), "{e}");
    }
}
