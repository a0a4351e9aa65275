//! What a daemon costs, read from /proc: CPU time and resident memory of a
//! process and all its descendants (the C miredo forks a worker).

use std::fs;

/// The pids of `pid` and every process below it.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(pp) = stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse().ok())) {
                parents.push((p, pp));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == cur).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// The fields of /proc/PID/stat after the command name: state is [0],
/// ppid [1], utime [11], stime [12].
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU time (user + system) of one process in nanoseconds: the sum of its
/// threads' run time from schedstat (nanosecond precision), else utime +
/// stime from stat (clock ticks, assumed 100 Hz).
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0u64;
    let mut any = false;
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let path = e.path().join("schedstat");
            if let Some(ns) = fs::read_to_string(path).ok().and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
            }) {
                total += ns;
                any = true;
            }
        }
    }
    if any {
        return total;
    }
    stat_fields(pid)
        .and_then(|f| {
            let u: u64 = f.get(11)?.parse().ok()?;
            let s: u64 = f.get(12)?.parse().ok()?;
            Some((u + s) * 10_000_000)
        })
        .unwrap_or(0)
}

/// CPU nanoseconds used so far by `pid` and its descendants.
pub fn tree_cpu_ns(pid: u32) -> u64 {
    tree(pid).into_iter().map(cpu_ns).sum()
}

/// CPU nanoseconds of `pid` and its descendants from /proc/PID/stat
/// (utime + stime in clock ticks, assumed 100 Hz): a cross-check of
/// [`tree_cpu_ns`] with 10 ms resolution.
pub fn tree_ticks_ns(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| {
            let f = stat_fields(p)?;
            let u: u64 = f.get(11)?.parse().ok()?;
            let s: u64 = f.get(12)?.parse().ok()?;
            Some((u + s) * 10_000_000)
        })
        .sum()
}

/// VmRSS in bytes of `pid` and its descendants.
pub fn tree_rss(pid: u32) -> u64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| {
            let s = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .sum()
}

/// The inodes of the UDP sockets (IPv4 and IPv6) bound to local `port` in
/// the network namespace of `pid`.
fn udp_inodes(pid: u32, port: u16) -> Vec<u64> {
    let want = format!(":{port:04X}");
    ["udp", "udp6"]
        .iter()
        .filter_map(|t| fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.get(1)?.ends_with(&want)).then_some(())?;
                    f.get(9)?.parse().ok()
                })
                .collect::<Vec<u64>>()
        })
        .collect()
}

/// Sets the receive buffer of every UDP socket bound to `port` that `pid`
/// or a process below it holds to `bytes` (SO_RCVBUFFORCE, beyond
/// net.core.rmem_max), through a copy of its descriptor taken with
/// pidfd_getfd(2): the daemon is not changed, only how much the kernel
/// queues for it when it falls behind. Returns the sockets set, each with
/// the size the kernel reports (twice what was asked: it counts its
/// overhead).
pub fn raise_udp_rcvbuf(pid: u32, port: u16, bytes: i32) -> Result<Vec<i32>, String> {
    use nix::libc;
    let inodes = udp_inodes(pid, port);
    let mut done: Vec<u64> = Vec::new();
    let mut sizes = Vec::new();
    for p in tree(pid) {
        let Ok(rd) = fs::read_dir(format!("/proc/{p}/fd")) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(target) = fs::read_link(e.path()) else {
                continue;
            };
            let inode = target
                .to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok());
            let Some(inode) = inode.filter(|i| inodes.contains(i) && !done.contains(i)) else {
                continue;
            };
            let Ok(their_fd) = e.file_name().to_string_lossy().parse::<libc::c_int>() else {
                continue;
            };
            // SAFETY: plain system calls; the descriptors they return are
            // closed below.
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, p as libc::pid_t, 0) };
            if pidfd < 0 {
                return Err(format!(
                    "pidfd_open({p}): {}",
                    std::io::Error::last_os_error()
                ));
            }
            let pidfd = pidfd as libc::c_int;
            // SAFETY: as above.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, their_fd, 0) };
            let err = std::io::Error::last_os_error();
            // SAFETY: pidfd is ours.
            unsafe { libc::close(pidfd) };
            if fd < 0 {
                return Err(format!("pidfd_getfd({p}, {their_fd}): {err}"));
            }
            let fd = fd as libc::c_int;
            let mut got: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: int options of the right size on a descriptor we own.
            let r = unsafe {
                let r = libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&bytes as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&mut got as *mut libc::c_int).cast(),
                    &mut len,
                );
                libc::close(fd);
                r
            };
            if r != 0 {
                return Err(format!(
                    "SO_RCVBUFFORCE on {p}'s socket: {}",
                    std::io::Error::last_os_error()
                ));
            }
            done.push(inode);
            sizes.push(got);
        }
    }
    Ok(sizes)
}
