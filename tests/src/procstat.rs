//! What a daemon costs, read from /proc: CPU time and resident memory of
//! every process of its process group (the C miredo forks, ours spawns
//! miredo-privproc), and the process tree around it.

use std::fs;

/// The fields of /proc/PID/stat after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces or ')'.
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// One line of /proc/PID/status (`key: value`), the value trimmed.
pub fn status_field(pid: u32, key: &str) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|v| v.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// The command name of `pid` (`/proc/PID/comm`), empty when it is gone.
pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The parent of `pid`.
pub fn ppid(pid: u32) -> Option<u32> {
    status_field(pid, "PPid")?.parse().ok()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match status_field(pid, "State") {
        Some(s) => !s.starts_with('Z') && !s.starts_with('X'),
        None => false,
    }
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| ppid(p) == Some(pid))
        .collect()
}

/// `pid` and all its descendants, living ones only.
pub fn tree(pid: u32) -> Vec<u32> {
    let pids = all_pids();
    let parents: Vec<(u32, Option<u32>)> = pids.iter().map(|&p| (p, ppid(p))).collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == Some(parent))
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out.retain(|&p| alive(p));
    out
}

/// CPU time and memory of a set of processes at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// User plus system time, in clock ticks (USER_HZ, 100 per second on
    /// Linux), summed over the processes.
    pub cpu_ticks: u64,
    /// Resident set size, kB, summed over the processes.
    pub rss_kb: u64,
    /// How many processes were measured.
    pub procs: usize,
}

impl Usage {
    /// CPU milliseconds (USER_HZ is 100 on every Linux architecture the
    /// lab runs on).
    pub fn cpu_ms(&self) -> u64 {
        self.cpu_ticks * 10
    }
}

/// The usage of `pid` and its descendants.
pub fn usage_of_tree(pid: u32) -> Usage {
    let mut u = Usage::default();
    for p in tree(pid) {
        let Some(f) = stat_fields(p) else { continue };
        // After the name: state(3) ... utime(14) stime(15), so indexes
        // 11 and 12 counting from field 3.
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        u.cpu_ticks += t(11) + t(12);
        u.rss_kb += status_field(p, "VmRSS")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        u.procs += 1;
    }
    u
}

/// One line per process of the tree under `pid`: pid, parent, command,
/// uids, for reports of what a daemon's processes look like.
pub fn describe_tree(pid: u32) -> String {
    tree(pid)
        .into_iter()
        .map(|p| {
            format!(
                "{p}(ppid {} {} uid {})",
                ppid(p).unwrap_or(0),
                comm(p),
                status_field(p, "Uid")
                    .and_then(|u| u.split_whitespace().nth(1).map(str::to_string))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_this_process() {
        let me = std::process::id();
        let u = usage_of_tree(me);
        assert!(u.procs >= 1);
        assert!(u.rss_kb > 0);
        assert!(alive(me));
        assert!(!comm(me).is_empty());
        assert!(describe_tree(me).contains(&me.to_string()));
    }
}
