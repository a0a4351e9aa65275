//! privproc's descendants: the hook and whatever it started. privproc is a
//! child subreaper (`PR_SET_CHILD_SUBREAPER`), so a descendant whose parent
//! dies, one that left the hook's process group or session included
//! (`setsid`, a double fork), becomes privproc's child instead of init's:
//! listing privproc's children therefore finds every descendant still
//! running, generation by generation, and none can outlive a sweep.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a sweep keeps killing generations of descendants at most.
const SWEEP_LIMIT: Duration = Duration::from_secs(1);

/// The pause between two rounds of a sweep (a SIGKILLed process takes a
/// moment to die and hand its own children to privproc).
const SWEEP_PAUSE: Duration = Duration::from_millis(2);

/// Makes privproc the reaper of its orphaned descendants.
pub fn become_subreaper() -> Result<(), String> {
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("cannot become a child subreaper: {e}"))
}

/// Reaps every child that has exited, without waiting: no descendant of a
/// hook stays a zombie. Returns how many were reaped.
pub fn reap_zombies() -> usize {
    let mut n = 0;
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return n,
            Ok(_) => n += 1,
            Err(Errno::EINTR) => {}
            Err(_) => return n,
        }
    }
}

/// Kills every descendant of privproc and reaps it: children first, then
/// the grandchildren the kernel hands over as their parents die, and so on,
/// for at most [`SWEEP_LIMIT`]. Returns the number of processes reaped and
/// the number still alive at the end (0 unless something resists SIGKILL,
/// such as a process stuck in the kernel).
///
/// privproc has no child but hooks and what they leave, and a pid read as
/// privproc's child stays privproc's until privproc reaps it, so no signal
/// can reach a process that took a recycled pid.
pub fn kill_descendants() -> (usize, usize) {
    let start = Instant::now();
    let me = std::process::id() as i32;
    let mut reaped = 0;
    loop {
        reaped += reap_zombies();
        let kids: Vec<i32> = children().into_iter().filter(|&p| p != me).collect();
        if kids.is_empty() {
            return (reaped, 0);
        }
        if start.elapsed() >= SWEEP_LIMIT {
            return (reaped, kids.len());
        }
        for pid in kids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(SWEEP_PAUSE);
    }
}

/// The pids of privproc's children, zombies included: from
/// `/proc/self/task/*/children` where the kernel has it
/// (CONFIG_PROC_CHILDREN), else from the parent pid of every process in
/// /proc.
pub fn children() -> Vec<i32> {
    children_from_tasks().unwrap_or_else(children_from_scan)
}

fn children_from_tasks() -> Option<Vec<i32>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("children");
        let text = std::fs::read_to_string(path).ok()?;
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    Some(pids)
}

fn children_from_scan() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        (parent_in_stat(&stat)? == me).then_some(pid)
    })
    .collect()
}

/// The parent pid in the text of /proc/PID/stat: `pid (comm) state ppid
/// ...`, where comm may hold spaces and parentheses (hence the last `)`).
fn parent_in_stat(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parent_past_an_awkward_name() {
        let stat = "4242 (a) b (c) S 17 4242 4242 0 -1 4194560 1 0";
        assert_eq!(parent_in_stat(stat), Some(17));
        assert_eq!(parent_in_stat("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parent_in_stat("garbage"), None);
    }

    #[test]
    fn the_scan_finds_a_child() {
        let mut c = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        assert!(children_from_scan().contains(&pid));
        if let Some(from_tasks) = children_from_tasks() {
            assert!(from_tasks.contains(&pid));
        }
        c.kill().unwrap();
        c.wait().unwrap();
        assert!(!children_from_scan().contains(&pid));
    }
}
