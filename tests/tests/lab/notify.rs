//! Issue 19, the daemons' side of their systemd units (`Type=notify`,
//! `WatchdogSec=`): the test plays the service manager. It owns a Unix
//! datagram socket per daemon (`NOTIFY_SOCKET`, with SO_PASSCRED so that
//! each message comes with its sender's pid, which must be the daemon's
//! own: units use `NotifyAccess=main`), starts our server, relay and
//! client in a lab world with `NOTIFY_SOCKET` and `WATCHDOG_USEC` set,
//! and checks what they say: `READY=1`, `STATUS=` lines that follow their
//! state and counts, `RELOADING=1` then `READY=1` around SIGHUP,
//! `WATCHDOG=1` at half the period asked, `STOPPING=1` at SIGTERM. A
//! client whose server name does not resolve is running all the same:
//! `READY=1`, and a status saying what it waits for. miredo-server's
//! status socket answers with router solicitation and advertisement
//! counters that rise once a client qualified.

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use teredo_lab::steps::{teredo_mire, teredo_mire_built};
use teredo_lab::{
    report, teredo_addr_of, wait_for, wait_until, Daemon, Impl, NatKind, World, NATIVE_V6,
    SERVER2_V4, SERVER_V4, TEREDO_IFACE,
};

/// The watchdog period the daemons are given: a pet every second.
const WATCHDOG_USEC: u64 = 2_000_000;

/// A message received on a notification socket.
#[derive(Clone, Debug)]
struct Msg {
    at: Instant,
    pid: Option<i32>,
    text: String,
}

/// A service manager's notification socket for one daemon, read by a
/// thread of its own into a list of messages; removed when dropped.
struct NotifySocket {
    path: PathBuf,
    msgs: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl NotifySocket {
    fn new(dir: &Path, name: &str) -> NotifySocket {
        let path = dir.join(format!("{name}.notify"));
        let _ = fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path)
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", path.display()));
        nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::PassCred, &true)
            .expect("SO_PASSCRED");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, st) = (Arc::clone(&msgs), Arc::clone(&stop));
        let reader = std::thread::spawn(move || {
            use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
            let mut buf = vec![0u8; 4096];
            while !st.load(Ordering::Relaxed) {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
                let Ok(r) = recvmsg::<UnixAddr>(
                    sock.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::empty(),
                ) else {
                    continue;
                };
                let pid = r.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(u) => Some(u.pid()),
                        _ => None,
                    })
                });
                let n = r.bytes;
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                m.lock().unwrap().push(Msg {
                    at: Instant::now(),
                    pid,
                    text,
                });
            }
        });
        NotifySocket {
            path,
            msgs,
            stop,
            reader: Some(reader),
        }
    }

    /// `NOTIFY_SOCKET=...` and `WATCHDOG_USEC=...` for env(1).
    fn env(&self) -> Vec<String> {
        vec![
            format!("NOTIFY_SOCKET={}", self.path.display()),
            format!("WATCHDOG_USEC={WATCHDOG_USEC}"),
        ]
    }

    fn all(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// The messages received since `since` holding the line `line`
    /// (`READY=1`) or starting with it (`STATUS=`).
    fn lines_since(&self, since: Instant, line: &str) -> Vec<(Instant, String)> {
        self.all()
            .into_iter()
            .filter(|m| m.at >= since)
            .flat_map(|m| {
                m.text
                    .lines()
                    .filter(|l| l.starts_with(line))
                    .map(|l| (m.at, l.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits (at most `timeout`) for a line since `since` that starts with
    /// `line` and satisfies `ok`; returns it.
    fn wait_line(
        &self,
        since: Instant,
        line: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        wait_for(timeout, || {
            self.lines_since(since, line)
                .into_iter()
                .find(|(_, l)| ok(l))
        })
    }

    /// Every message came from `pid`.
    fn check_sender(&self, who: &str, pid: i32) {
        for m in self.all() {
            assert_eq!(
                m.pid,
                Some(pid),
                "{who}: {:?} did not come from the daemon's pid {pid}",
                m.text
            );
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// The daemon's pid, from its pid file (what `-f` under systemd makes the
/// unit's main process).
fn pid_of(w: &World, d: &Daemon) -> i32 {
    let file = w.dir().join(format!("{}.pid", d.label));
    wait_for(Duration::from_secs(10), || {
        fs::read_to_string(&file).ok()?.trim().parse::<i32>().ok()
    })
    .unwrap_or_else(|| panic!("{}: no pid file\n{}", d.label, w.log_of(d)))
}

/// A number in a status line right before `what` (`12 peers`).
fn count_before(line: &str, what: &str) -> Option<u64> {
    let i = line.find(what)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

fn server_status(path: &Path) -> Vec<(String, String)> {
    teredo_lab::named::status_at(path)
}

fn field(status: &[(String, String)], key: &str) -> Option<u64> {
    status
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// Checks READY then RELOADING/READY around a SIGHUP, the watchdog's pace,
/// and STOPPING at SIGTERM, for one daemon.
fn reload_watchdog_stop(w: &World, who: &str, d: &Daemon, n: &NotifySocket, pid: i32) {
    let test = w.test_name().to_string();
    // The watchdog: WATCHDOG_USEC 2 s asks for a pet every second.
    let window = Duration::from_secs(6);
    let from = Instant::now();
    std::thread::sleep(window);
    let pets = n.lines_since(from, "WATCHDOG=1").len();
    report(
        &test,
        &format!(
            "{who}: {pets} WATCHDOG=1 in {} s with WATCHDOG_USEC={WATCHDOG_USEC}",
            window.as_secs()
        ),
    );
    assert!(
        (3..=9).contains(&pets),
        "{who}: {pets} watchdog pets in {window:?}, expected about 6\n{}",
        w.log_of(d)
    );
    if let Some((_, last)) = n
        .all()
        .first()
        .map(|m| m.at)
        .and_then(|t| n.lines_since(t, "STATUS=").pop())
    {
        report(&test, &format!("{who}: last status before SIGHUP: {last}"));
    }
    // SIGHUP: RELOADING=1, then READY=1.
    let before_hup = Instant::now();
    w.signal(d, "HUP");
    let (reloading_at, _) = n
        .wait_line(before_hup, "RELOADING=1", Duration::from_secs(5), |_| true)
        .unwrap_or_else(|| panic!("{who}: no RELOADING=1 after SIGHUP\n{}", w.log_of(d)));
    assert!(
        n.lines_since(before_hup, "MONOTONIC_USEC=").len() == 1,
        "{who}: RELOADING=1 without MONOTONIC_USEC"
    );
    n.wait_line(reloading_at, "READY=1", Duration::from_secs(5), |_| true)
        .unwrap_or_else(|| panic!("{who}: no READY=1 after RELOADING=1\n{}", w.log_of(d)));
    assert!(w.is_running(d), "{who} stopped at SIGHUP\n{}", w.log_of(d));
    // SIGTERM: STOPPING=1.
    let before_term = Instant::now();
    let status = w.stop(d, Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{who} did not exit cleanly at SIGTERM: {status:?}\n{}",
        w.log_of(d)
    );
    assert!(
        n.wait_line(before_term, "STOPPING=1", Duration::from_secs(2), |_| true)
            .is_some(),
        "{who}: no STOPPING=1 at SIGTERM\n{}",
        w.log_of(d)
    );
    n.check_sender(who, pid);
}

fn notify_server_relay_and_client() {
    let test = "notify_server_relay_and_client";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let dir = w.trusted_dir();
    let (ns_srv, ns_rel, ns_cli) = (
        NotifySocket::new(&dir, "server"),
        NotifySocket::new(&dir, "relay"),
        NotifySocket::new(&dir, "client"),
    );
    let t0 = Instant::now();

    // The server.
    let env = ns_srv.env();
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let srv = w.spawn_daemon_with_env(
        w.srv(),
        "server-rs",
        &Impl::Ours.miredo_server(),
        &format!("ServerBindAddress {SERVER_V4}\nServerBindAddress2 {SERVER2_V4}\n"),
        &[],
        &env,
    );
    let srv_pid = pid_of(&w, &srv);
    assert!(
        ns_srv
            .wait_line(t0, "READY=1", Duration::from_secs(10), |_| true)
            .is_some(),
        "the server sent no READY=1\n{}",
        w.log_of(&srv)
    );
    let (_, s) = ns_srv
        .wait_line(t0, "STATUS=", Duration::from_secs(5), |l| {
            l.contains("Serving on")
        })
        .unwrap_or_else(|| panic!("no server STATUS\n{}", w.log_of(&srv)));
    report(test, &format!("server: {s}"));
    let status_path = w.server_status_socket("server-rs");
    let before = server_status(&status_path);
    assert_eq!(
        before
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.as_str()),
        Some("serving"),
        "the server's status socket: {before:?}"
    );
    let rs_before = field(&before, "rs-received").expect("rs-received");
    let ra_before = field(&before, "ra-sent").expect("ra-sent");

    // The relay.
    let env = ns_rel.env();
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let t_rel = Instant::now();
    let rel = w.spawn_daemon_with_env(
        w.relay(),
        "relay-rs",
        &Impl::Ours.miredo(),
        &format!("RelayType cone\nInterfaceName {TEREDO_IFACE}\n"),
        &[],
        &env,
    );
    let rel_pid = pid_of(&w, &rel);
    assert!(
        ns_rel
            .wait_line(t_rel, "READY=1", Duration::from_secs(10), |_| true)
            .is_some(),
        "the relay sent no READY=1\n{}",
        w.log_of(&rel)
    );
    assert!(
        ns_rel
            .wait_line(t_rel, "STATUS=", Duration::from_secs(5), |l| l
                .contains("Relaying for 2001::/32"))
            .is_some(),
        "no relay STATUS\n{}",
        w.log_of(&rel)
    );

    // The client.
    let env = ns_cli.env();
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let t_cli = Instant::now();
    let cli = w.spawn_daemon_with_env(
        w.client(1),
        "client1-rs",
        &Impl::Ours.miredo(),
        &format!("RelayType client\nServerAddress {SERVER_V4}\nInterfaceName {TEREDO_IFACE}\n"),
        &[],
        &env,
    );
    let cli_pid = pid_of(&w, &cli);
    let (ready_at, _) = ns_cli
        .wait_line(t_cli, "READY=1", Duration::from_secs(10), |_| true)
        .unwrap_or_else(|| panic!("the client sent no READY=1\n{}", w.log_of(&cli)));
    let addr = wait_for(Duration::from_secs(30), || {
        teredo_addr_of(w.client(1), TEREDO_IFACE)
    })
    .unwrap_or_else(|| panic!("the client does not qualify\n{}", w.log_of(&cli)));
    let (_, s) = ns_cli
        .wait_line(t_cli, "STATUS=", Duration::from_secs(5), |l| {
            l.contains("Qualified") && l.contains(&addr.to_string())
        })
        .unwrap_or_else(|| {
            panic!(
                "no client STATUS with {addr}: {:?}\n{}",
                ns_cli.lines_since(t_cli, "STATUS="),
                w.log_of(&cli)
            )
        });
    report(
        test,
        &format!(
            "client: READY=1 after {} ms; {s}",
            ready_at.duration_since(t_cli).as_millis()
        ),
    );
    assert!(s.contains("NAT "), "no NAT behaviour in {s}");

    // The server counted the client's solicitation and its answer.
    let after = wait_for(Duration::from_secs(5), || {
        let st = server_status(&status_path);
        (field(&st, "ra-sent")? > ra_before).then_some(st)
    })
    .unwrap_or_else(|| {
        panic!(
            "the server's RA counter did not rise: {:?}",
            server_status(&status_path)
        )
    });
    let (rs, ra) = (field(&after, "rs-received"), field(&after, "ra-sent"));
    report(
        test,
        &format!("server status socket: rs-received {rs_before} -> {rs:?}, ra-sent {ra_before} -> {ra:?}"),
    );
    assert!(rs.is_some_and(|r| r > rs_before), "{after:?}");
    // teredo-mire reads it too, and its Prometheus rendering passes
    // promtool (both needs of this test).
    let out = std::process::Command::new(teredo_mire())
        .args(["status", "--server", "--socket"])
        .arg(&status_path)
        .args(["--format", "prometheus"])
        .output()
        .expect("teredo-mire");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success()
            && text.contains("teredo_server_router_advertisements_sent_total ")
            && text.contains("teredo_state{state=\"serving\"} 1"),
        "teredo-mire status --server: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut p = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    {
        use std::io::Write;
        let _ = p.stdin.take().map(|mut i| i.write_all(text.as_bytes()));
    }
    let checked = p.wait_with_output().expect("promtool");
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool on the server's metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    report(
        test,
        "teredo-mire status --server --format prometheus: promtool check metrics clean",
    );
    // The service manager's view follows within a few seconds.
    assert!(
        ns_srv
            .wait_line(t_cli, "STATUS=", Duration::from_secs(8), |l| {
                count_before(l, "router solicitations").is_some_and(|n| n > rs_before)
            })
            .is_some(),
        "the server's STATUS did not count the solicitations: {:?}",
        ns_srv.lines_since(t0, "STATUS=")
    );

    // Traffic through the relay shows in its status.
    let t_ping = Instant::now();
    let (sent, got) = teredo_lab::steps::ping(&w, "client to native", w.client(1), NATIVE_V6, 3);
    assert!(got > 0, "no ping through the relay ({got}/{sent})");
    let (_, s) = ns_rel
        .wait_line(t_ping, "STATUS=", Duration::from_secs(8), |l| {
            count_before(l, "packets in").is_some_and(|n| n > 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "the relay's STATUS shows no packets: {:?}",
                ns_rel.lines_since(t_rel, "STATUS=")
            )
        });
    report(test, &format!("relay: {s}"));

    reload_watchdog_stop(&w, "client", &cli, &ns_cli, cli_pid);
    reload_watchdog_stop(&w, "relay", &rel, &ns_rel, rel_pid);
    reload_watchdog_stop(&w, "server", &srv, &ns_srv, srv_pid);
}

/// `/etc/netns/NS/`: a hosts file without the server's name, and a
/// resolver that fails at once; removed when dropped.
struct NetnsEtc {
    dir: PathBuf,
}

impl NetnsEtc {
    fn new(ns: &str) -> NetnsEtc {
        let dir = PathBuf::from("/etc/netns").join(ns);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let etc = NetnsEtc { dir };
        for (name, text) in [
            ("hosts", "127.0.0.1 localhost\n"),
            (
                "resolv.conf",
                "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
            ),
        ] {
            let p = etc.dir.join(name);
            fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
        etc
    }
}

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A boot without network must not fail the unit: a client whose server
/// cannot be reached yet is running, says READY=1, and its status says
/// what it waits for.
fn notify_client_waiting_is_ready() {
    let test = "notify_client_waiting_is_ready";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _etc = NetnsEtc::new(w.client(1).name());
    let n = NotifySocket::new(&w.trusted_dir(), "client");
    let env = n.env();
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let name = format!("teredo-{}.lab.test", w.prefix());
    let t0 = Instant::now();
    let cli = w.spawn_daemon_with_env(
        w.client(1),
        "client1-rs",
        &Impl::Ours.miredo(),
        &format!("RelayType client\nServerAddress {name}\nInterfaceName {TEREDO_IFACE}\n"),
        &[],
        &env,
    );
    let pid = pid_of(&w, &cli);
    assert!(
        n.wait_line(t0, "READY=1", Duration::from_secs(10), |_| true)
            .is_some(),
        "a client without its server sent no READY=1\n{}",
        w.log_of(&cli)
    );
    let (at, s) = n
        .wait_line(t0, "STATUS=", Duration::from_secs(15), |l| {
            l.contains("Waiting for the Teredo server") && l.contains("does not resolve")
        })
        .unwrap_or_else(|| {
            panic!(
                "no waiting STATUS: {:?}\n{}",
                n.lines_since(t0, "STATUS="),
                w.log_of(&cli)
            )
        });
    report(
        test,
        &format!("after {} ms: {s}", at.duration_since(t0).as_millis()),
    );
    assert!(w.is_running(&cli), "the client stopped\n{}", w.log_of(&cli));
    // Alive while it waits: the watchdog is petted.
    let from = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || n
            .lines_since(from, "WATCHDOG=1")
            .len()
            >= 2),
        "no watchdog pets while waiting"
    );
    n.check_sender("waiting client", pid);
}

/// The watchdog pets only while every thread moves: a client hook that
/// takes 4 s (at each of its runs) holds the main thread, which waits for
/// miredo-privproc's answer, for longer than half the 2 s period, and the
/// pets stop for good, with the thread named in the log (systemd would
/// restart the daemon).
fn notify_watchdog_stops_when_a_thread_is_stuck() {
    let test = "notify_watchdog_stops_when_a_thread_is_stuck";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let n = NotifySocket::new(&w.trusted_dir(), "client");
    let hook = w.write_hook("slow-hook", "#!/bin/sh\nsleep 4\n");
    let iface = teredo_lab::named::unique_iface(&w, "slow");
    let t0 = Instant::now();
    let cli =
        teredo_lab::named::start_client_with_hook_env(&w, 1, &iface, &hook, "client1-rs", &n.env());
    let pid = pid_of(&w, &cli);
    let said = "watchdog: the main thread made no progress";
    assert!(
        wait_until(Duration::from_secs(40), || w.log_of(&cli).contains(said)),
        "no watchdog complaint while the hook holds the main thread: {} pets\n{}",
        n.lines_since(t0, "WATCHDOG=1").len(),
        w.log_of(&cli)
    );
    let seen = Instant::now();
    let before = n.lines_since(t0, "WATCHDOG=1").len();
    assert!(before >= 1, "no pet before the hook ran");
    // Stopped for good, though the hook has returned since.
    std::thread::sleep(Duration::from_secs(6));
    let after = n.lines_since(seen, "WATCHDOG=1").len();
    report(
        test,
        &format!("{before} pets, then \"{said}\", then {after} pets in 6 s"),
    );
    assert_eq!(after, 0, "the pets went on after the complaint");
    assert!(
        w.is_running(&cli),
        "the client stopped by itself\n{}",
        w.log_of(&cli)
    );
    // It runs on: qualified once the hook returned (the hook, which
    // configures the interface in privproc's place, does nothing here).
    assert!(
        n.wait_line(t0, "STATUS=", Duration::from_secs(5), |l| l
            .starts_with("STATUS=Qualified"))
            .is_some(),
        "the client did not qualify once its hook returned: {:?}\n{}",
        n.lines_since(t0, "STATUS="),
        w.log_of(&cli)
    );
    n.check_sender("client with a slow hook", pid);
}

/// A need of `lab_tests!`: Prometheus's `promtool` (apt-get install
/// prometheus).
fn promtool() -> Option<String> {
    teredo_lab::skip::which("promtool")
        .is_none()
        .then(|| "needs promtool (apt-get install prometheus)".into())
}

teredo_lab::lab_tests! {
    needs(root, ours, teredo_mire_built, promtool): [notify_server_relay_and_client],
    needs(root, ours): [
        notify_client_waiting_is_ready,
        notify_watchdog_stops_when_a_thread_is_stuck,
    ],
}
