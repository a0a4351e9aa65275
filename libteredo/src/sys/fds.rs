//! Descriptor hygiene: what a daemon inherited from whoever started it is
//! closed at once, and what a child is given is exactly what it is meant
//! to get (OpenSSH's closefrom before exec).

use nix::libc;
use std::io;

/// `close_range(2)`'s flag: mark the descriptors close-on-exec instead of
/// closing them (Linux 5.11).
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Closes every descriptor from `first` up, at the start of a program: a
/// descriptor left open by the parent (a shell, a service manager, a
/// sloppy caller) must reach neither our privileged steps nor the children
/// we start.
pub fn close_from(first: i32) -> io::Result<()> {
    let first =
        libc::c_uint::try_from(first).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: close_range takes two integers and flags and touches nothing
    // but the descriptor table; the caller owns no descriptor at or above
    // `first` it still means to use.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.9: close them one by one.
    let max = open_max();
    for fd in first..max {
        // SAFETY: closing a descriptor number; EBADF for unused ones is
        // ignored.
        unsafe { libc::close(fd as i32) };
    }
    Ok(())
}

/// Marks every descriptor from `first` up close-on-exec. Meant for
/// `CommandExt::pre_exec`, between fork and exec: async-signal-safe (one
/// system call, or a loop of `fcntl` on older kernels), and unlike closing
/// it leaves the standard library's own exec-error pipe working until the
/// exec itself.
pub fn cloexec_from(first: i32) -> io::Result<()> {
    let Ok(first) = libc::c_uint::try_from(first) else {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    };
    // SAFETY: as in `close_from`; the flag only sets FD_CLOEXEC.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let max = open_max();
    for fd in first..max {
        // SAFETY: fcntl on a descriptor number; EBADF for unused ones.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// The descriptor limit, for the fallbacks (no allocation: callable after
/// fork).
fn open_max() -> libc::c_uint {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
    if ok && rl.rlim_cur != libc::RLIM_INFINITY {
        rl.rlim_cur.min(1 << 20) as libc::c_uint
    } else {
        1 << 16
    }
}

/// The descriptors this process has open, from /proc/self/fd (tests and
/// start-up checks).
pub fn open_descriptors() -> io::Result<Vec<i32>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd")? {
        if let Some(n) = e?.file_name().to_str().and_then(|s| s.parse().ok()) {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_child_gets_no_descriptor_above_two() {
        // A descriptor without close-on-exec, as a careless parent leaves.
        let f = std::fs::File::open("/dev/null").unwrap();
        let raw = nix::unistd::dup(&f).unwrap().into_raw_fd();
        let out = unsafe {
            std::process::Command::new("/bin/ls")
                .arg("/proc/self/fd")
                .pre_exec(|| cloexec_from(3))
                .output()
                .unwrap()
        };
        let listed: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        // ls itself opens one descriptor for the directory it lists.
        assert!(!listed.contains(&raw), "fd {raw} leaked: {listed:?}");
        assert!(listed.iter().filter(|&&n| n > 2).count() <= 1, "{listed:?}");
        // Without the hook, the same descriptor does reach the child.
        let out = std::process::Command::new("/bin/ls")
            .arg("/proc/self/fd")
            .output()
            .unwrap();
        let listed: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        assert!(
            listed.contains(&raw),
            "control: {raw} not inherited: {listed:?}"
        );
        unsafe { libc::close(raw) };
        let _ = f.as_raw_fd();
    }
}
