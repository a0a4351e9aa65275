//! Running commands with a bound on time: on the host, or inside a network
//! namespace through `ip netns exec`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The default bound for one setup command (`ip`, `nft`, `sysctl`).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a finished (or timed-out) command left behind.
#[derive(Debug)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub argv: Vec<String>,
    /// `None` when the command was killed because it ran out of time.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CmdOutput {
    /// Whether the command finished in time with exit status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// `Ok(stdout)` on success, else one sentence with the command, its
    /// status and its stderr.
    pub fn ok(self) -> Result<String, String> {
        if self.success() {
            return Ok(self.stdout);
        }
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("timed out after {:?}", self.elapsed),
        };
        Err(format!(
            "`{}` failed ({status}): {}{}",
            self.argv.join(" "),
            self.stderr.trim(),
            if self.stdout.trim().is_empty() {
                String::new()
            } else {
                format!(" [stdout: {}]", self.stdout.trim())
            }
        ))
    }
}

/// Runs `argv` on the host, killing its whole process group when it
/// outlives `timeout`.
pub fn run_with_timeout<S: AsRef<str>>(argv: &[S], timeout: Duration) -> CmdOutput {
    let argv: Vec<String> = argv.iter().map(|s| s.as_ref().to_string()).collect();
    let start = Instant::now();
    let failed = |argv: Vec<String>, why: String| CmdOutput {
        argv,
        status: None,
        stdout: String::new(),
        stderr: why,
        elapsed: start.elapsed(),
    };
    let Some((program, args)) = argv.split_first() else {
        return failed(argv, "empty command line".into());
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot start {program}: {e}");
            return failed(argv, why);
        }
    };
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    let status = wait_timeout(&mut child, timeout);
    if status.is_none() {
        kill_group(child.id(), "KILL");
        let _ = child.wait();
    }
    CmdOutput {
        argv,
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// Runs `argv` on the host with [`CMD_TIMEOUT`]; `Ok(stdout)` on success.
pub fn host<S: AsRef<str>>(argv: &[S]) -> Result<String, String> {
    run_with_timeout(argv, CMD_TIMEOUT).ok()
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` at most `timeout`; `None` when it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Sends `signal` (a name such as `TERM` or `KILL`) to the process group
/// `pgid`. Uses kill(1) so that the harness needs no libc binding.
pub fn kill_group(pgid: u32, signal: &str) {
    if pgid <= 1 {
        return;
    }
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Like [`wait_until`] for a condition that yields a value.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
