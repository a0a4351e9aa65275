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
