//! Faults (issue 6 part 4): processes killed, a relay restarted under
//! traffic, an invalid configuration on SIGHUP. Our daemons are held to
//! the expected behaviour; the C miredo's behaviour under the same fault is
//! recorded on `LAB` lines, not asserted.
//!
//! `cargo test --release -p teredo-lab --test lab -- faults::`

use std::fmt;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use teredo_lab::cmd::kill_group;
use teredo_lab::named::{self, client_conf, unique_iface};
use teredo_lab::procstat::{self, alive, comm};
use teredo_lab::{
    ping6_stats, report, teredo_addr_of, wait_until, Daemon, Impl, NatKind, Netns, World, NATIVE_V6,
};

const QUALIFY: Duration = Duration::from_secs(15);

/// What a Teredo interface looks like at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IfState {
    /// No such interface.
    Absent,
    /// The interface exists, up, with a Teredo address.
    Configured,
    /// The interface exists without a Teredo address, or down: fine while
    /// it starts or stops, wrong once things settle.
    Half(String),
}

impl fmt::Display for IfState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfState::Absent => write!(f, "absent"),
            IfState::Configured => write!(f, "configured"),
            IfState::Half(why) => write!(f, "half-configured ({why})"),
        }
    }
}

fn if_state(ns: &Netns, iface: &str) -> IfState {
    let Ok(link) = ns.ip(&format!("-o link show dev {iface}")) else {
        return IfState::Absent;
    };
    let up = link
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"));
    let addr = teredo_addr_of(ns, iface);
    match (up, addr) {
        (true, Some(_)) => IfState::Configured,
        (false, Some(_)) => IfState::Half("address on a down link".into()),
        (true, None) => IfState::Half("up without a Teredo address".into()),
        (false, None) => IfState::Half("down without a Teredo address".into()),
    }
}

/// Samples the interface every 20 ms while `during` runs and for `settle`
/// after it; returns its result and the distinct states in order with the
/// time each began.
fn watch_iface<T>(
    ns: &Netns,
    iface: &str,
    settle: Duration,
    during: impl FnOnce() -> T,
) -> (T, Vec<(Duration, IfState)>) {
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut seen: Vec<(Duration, IfState)> = Vec::new();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                let st = if_state(ns, iface);
                if seen.last().map(|(_, l)| l) != Some(&st) {
                    seen.push((t0.elapsed(), st));
                }
                thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        let r = during();
        thread::sleep(settle);
        stop.store(true, Ordering::Relaxed);
        (r, sampler.join().unwrap_or_default())
    })
}

fn states_line(states: &[(Duration, IfState)]) -> String {
    states
        .iter()
        .map(|(t, s)| format!("{:.2}s {s}", t.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(" -> ")
}

fn last_lines(s: &str, n: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(n)..].join(" | ")
}

/// The privileged helper of a client: ours is a child of miredo; the C
/// miredo's may sit one level further down.
fn find_privproc(pid: u32) -> Option<u32> {
    procstat::tree(pid)
        .into_iter()
        .find(|&p| p != pid && comm(p) == "miredo-privproc")
}

fn kill(pid: u32, sig: &str) {
    let _ = teredo_lab::cmd::host(&["kill", "-s", sig, &pid.to_string()]);
}

/// A world with our server and our relay, and `imp`'s client on site 1
/// with interface `iface`; returns the world, the client and its address.
fn client_world(test: &str, imp: Impl, stem: &str) -> (World, Daemon, String, std::net::Ipv6Addr) {
    let w = World::build(test, &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let relay_if = unique_iface(&w, "rl");
    named::start_relay(&w, Impl::Ours, &relay_if, "relay-rs").expect("our relay starts");
    let iface = unique_iface(&w, stem);
    let (cli, addr) = named::start_client(
        &w,
        1,
        imp,
        &iface,
        &format!("client1-{}", imp.tag()),
        QUALIFY,
    );
    let addr =
        addr.unwrap_or_else(|| panic!("{} client did not qualify:\n{}", imp.tag(), w.log_of(&cli)));
    report(
        test,
        &format!("{} client qualified as {addr} on {iface}", imp.tag()),
    );
    (w, cli, iface, addr)
}

/// SIGKILL of the privileged helper: what the client does, and the
/// interface over time.
fn kill_privproc(imp: Impl) -> (bool, Vec<(Duration, IfState)>, String) {
    let test = format!("fault_privproc_{}", imp.tag());
    let (w, cli, iface, _addr) = client_world(&test, imp, "kp");
    let tree = procstat::describe_tree(cli.pid);
    let Some(pp) = find_privproc(cli.pid) else {
        report(
            &test,
            &format!("no miredo-privproc under {}: [{tree}]", cli.pid),
        );
        return (false, Vec::new(), tree);
    };
    report(
        &test,
        &format!("processes [{tree}]; SIGKILL miredo-privproc {pp}"),
    );
    let t0 = Instant::now();
    let (outcome, states) = watch_iface(w.client(1), &iface, Duration::from_secs(1), || {
        kill(pp, "KILL");
        // Settled: the client gone, or a new privproc serving it.
        let settled = wait_until(Duration::from_secs(6), || {
            !w.is_running(&cli) || find_privproc(cli.pid).is_some_and(|p| p != pp)
        });
        (settled, w.is_running(&cli), t0.elapsed())
    });
    let (settled, running, took) = outcome;
    let restarted = running && find_privproc(cli.pid).is_some_and(|p| p != pp);
    let what = if !running {
        format!("miredo exited {took:?} after the kill")
    } else if restarted {
        format!("miredo restarted miredo-privproc within {took:?}")
    } else {
        "miredo kept running without miredo-privproc".to_string()
    };
    let status = if running {
        "running".to_string()
    } else {
        w.stop(&cli, Duration::from_millis(10))
            .map_or("unknown".to_string(), |s| s.to_string())
    };
    let what = format!("{what} ({status})");
    let final_state = states
        .last()
        .map(|(_, s)| s.clone())
        .unwrap_or(IfState::Absent);
    report(
        &test,
        &format!(
            "{}: {what}; settled: {settled}; interface: {}; processes now [{}]; log tail: {}",
            imp.tag(),
            states_line(&states),
            procstat::describe_tree(cli.pid),
            last_lines(&w.log_of(&cli), 4)
        ),
    );
    let ok = settled && !matches!(final_state, IfState::Half(_));
    (ok, states, w.log_of(&cli))
}

fn fault_sigkill_privproc() {
    let (ok, states, log) = kill_privproc(Impl::Ours);
    if teredo_lab::impls::Impl::C.unavailable().is_none() {
        let _ = kill_privproc(Impl::C);
    }
    assert!(
        ok,
        "ours: after SIGKILL of miredo-privproc the client did not settle cleanly: {}\n{log}",
        states_line(&states)
    );
    // The daemon's own line (miredo-privproc's lines, "miredo-privproc[PID]:
    // serving ...", share the log and must not count).
    assert!(
        log.contains(
            "miredo-privproc exited: stopping (the interface cannot be managed without it)"
        ),
        "ours: the log does not say why miredo stopped:\n{log}"
    );
}

/// Writes an executable file (root-owned, mode 755).
fn fault_sigkill_client_runs_hook_down() {
    let test = "fault_sigkill_client_runs_hook_down";
    let w = World::build(test, &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let relay_if = unique_iface(&w, "rl");
    named::start_relay(&w, Impl::Ours, &relay_if, "relay-rs").expect("our relay starts");
    let iface = unique_iface(&w, "kh");
    // The hook logs every call and configures the interface as Debian's
    // does. It and its log live in a directory of root's: miredo-privproc
    // refuses a hook another user could change, and runs it as its own
    // unprivileged user, which must be able to write the log.
    let hook_log = w.shared_log("hook.log");
    let hook = w.write_hook(
        "client-hook",
        &format!(
            "#!/bin/sh\n\
             echo \"$STATE $IFACE $ADDRESS old=$OLD_STATE\" >> {log}\n\
             case \"$STATE\" in\n\
             up)\n\
               ip link set dev \"$IFACE\" up mtu \"$MTU\"\n\
               ip -6 addr flush dev \"$IFACE\"\n\
               ip -6 addr add \"$LLADDRESS/64\" dev \"$IFACE\"\n\
               ip -6 addr add \"$ADDRESS/32\" dev \"$IFACE\"\n\
               ip -6 route replace default dev \"$IFACE\" metric 1029 ;;\n\
             down|destroy)\n\
               ip -6 route flush dev \"$IFACE\" 2>/dev/null\n\
               ip -6 addr flush dev \"$IFACE\" 2>/dev/null\n\
               ip link set dev \"$IFACE\" down 2>/dev/null ;;\n\
             esac\n\
             exit 0\n",
            log = hook_log.display()
        ),
    );
    let cli = named::start_client_with_hook(&w, 1, &iface, &hook, "client1-hook");
    let addr = named::wait_addr(w.client(1), &iface, QUALIFY).unwrap_or_else(|| {
        panic!(
            "our client with a hook did not qualify:\n{}",
            w.log_of(&cli)
        )
    });
    let hook_calls = || fs::read_to_string(&hook_log).unwrap_or_default();
    report(
        test,
        &format!(
            "qualified as {addr}; hook calls: {}",
            hook_calls().trim().replace('\n', " | ")
        ),
    );
    let pp = find_privproc(cli.pid).expect("miredo-privproc runs under our client");
    let ping = ping6_stats(w.v6h(), addr, 3, Duration::from_secs(6));
    report(
        test,
        &format!("native -> client {}/{} before the kill", ping.1, ping.0),
    );

    let t0 = Instant::now();
    let (pp_gone, states) = watch_iface(w.client(1), &iface, Duration::from_millis(500), || {
        kill(cli.pid, "KILL");
        wait_until(Duration::from_secs(5), || !alive(pp))
    });
    let took = t0.elapsed();
    let calls = hook_calls();
    report(
        test,
        &format!(
            "ours: SIGKILL of miredo {}: privproc gone: {pp_gone} ({took:?}); interface: {}; hook calls: {}",
            cli.pid,
            states_line(&states),
            calls.trim().replace('\n', " | ")
        ),
    );
    // The netlink path (no hook) is exercised by every other lab test; the
    // TUN device goes with miredo's last descriptor either way.
    let c_line = if Impl::C.unavailable().is_none() {
        c_sigkill_client()
    } else {
        "C miredo not installed".to_string()
    };
    report(test, &format!("C: {c_line}"));
    assert!(
        pp_gone,
        "miredo-privproc outlived a SIGKILLed miredo by 5 s"
    );
    let after_up: Vec<&str> = calls
        .lines()
        .skip_while(|l| !l.starts_with("up "))
        .skip(1)
        .collect();
    assert!(
        after_up.iter().any(|l| l.starts_with("down ")),
        "the hook did not see `down` after miredo was killed: {calls}"
    );
    assert!(
        after_up.iter().any(|l| l.starts_with("destroy ")),
        "the hook did not see `destroy` after miredo was killed: {calls}"
    );
    assert!(
        !w.client(1).has_iface(&iface),
        "the interface outlived miredo"
    );
}

/// The C client under SIGKILL of its main process: recorded.
fn c_sigkill_client() -> String {
    let test = "fault_sigkill_client_c";
    let (w, cli, iface, _) = client_world(test, Impl::C, "kc");
    let before = procstat::describe_tree(cli.pid);
    let others: Vec<u32> = procstat::tree(cli.pid)
        .into_iter()
        .filter(|&p| p != cli.pid)
        .collect();
    let (_, states) = watch_iface(w.client(1), &iface, Duration::from_secs(2), || {
        kill(cli.pid, "KILL");
    });
    let left: Vec<String> = others
        .iter()
        .filter(|&&p| alive(p))
        .map(|&p| format!("{p}({})", comm(p)))
        .collect();
    // The C miredo's main process is a supervisor; the tunnel belongs to
    // its unprivileged child. Kill that one too, as ours is killed.
    let worker = others
        .iter()
        .copied()
        .find(|&p| alive(p) && comm(p) == "miredo");
    let worker_line = match worker {
        Some(wpid) => {
            let pp = find_privproc(wpid);
            let (_, st) = watch_iface(w.client(1), &iface, Duration::from_secs(2), || {
                kill(wpid, "KILL");
            });
            format!(
                "then SIGKILL of the worker {wpid}: interface {}; its miredo-privproc {} after 2 s",
                states_line(&st),
                match pp {
                    Some(p) if alive(p) => format!("{p} still runs"),
                    Some(p) => format!("{p} gone"),
                    None => "not found".to_string(),
                }
            )
        }
        None => "no worker left to kill".to_string(),
    };
    let line = format!(
        "processes [{before}]; SIGKILL of the main process {}: interface {}; processes left after 2 s: [{}]; {worker_line}",
        cli.pid,
        states_line(&states),
        left.join(", ")
    );
    report(test, &line);
    // The world's teardown reaps the C processes (same process group).
    line
}

/// (seconds of the longest gap between echo replies, sent, received,
/// replies after the restart).
struct Gap {
    longest: f64,
    sent: u32,
    received: u32,
    after_restart: u32,
}

/// Pings native -> `addr` every 50 ms for `secs`, while `fault` runs at
/// `at` seconds; measures the longest gap between replies.
fn ping_through(
    w: &World,
    addr: std::net::Ipv6Addr,
    secs: u64,
    at: Duration,
    fault: impl FnOnce() -> Instant,
) -> Gap {
    let (out, restarted) = thread::scope(|s| {
        let v6h = w.v6h().clone();
        let ping = s.spawn(move || {
            v6h.exec(
                &[
                    "ping",
                    "-6",
                    "-n",
                    "-D",
                    "-i",
                    "0.05",
                    // -c, not -w: with a deadline, ping stops at the first
                    // ICMPv6 error (the dead relay's routing loop sends
                    // some).
                    "-W",
                    "1",
                    "-c",
                    &(secs * 20).to_string(),
                    &addr.to_string(),
                ],
                Duration::from_secs(secs * 2 + 5),
            )
        });
        thread::sleep(at);
        let restarted = fault();
        let out = ping.join().map(|o| o.stdout).unwrap_or_default();
        (out, restarted)
    });
    // The last echo was sent about 1 s (-W) before ping ended.
    let end_wall = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        - 1.0;
    let since_epoch = |i: Instant| {
        let now_wall = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        now_wall.as_secs_f64() - i.elapsed().as_secs_f64()
    };
    let restart_wall = since_epoch(restarted);
    let tail: Vec<&str> = out.lines().rev().take(6).collect();
    report(
        w.test_name(),
        &format!(
            "ping tail: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ),
    );
    let mut stamps = Vec::new();
    let (mut sent, mut received) = (0, 0);
    for line in out.lines() {
        if line.contains("bytes from") {
            if let Some(t) = line
                .strip_prefix('[')
                .and_then(|r| r.split_once(']'))
                .and_then(|(t, _)| t.parse::<f64>().ok())
            {
                stamps.push(t);
            }
        }
        if let Some((s, rest)) = line.split_once(" packets transmitted, ") {
            sent = s.trim().parse().unwrap_or(0);
            received = rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    // The longest silence: between two replies, or from the last reply
    // to the end when replies never came back.
    let longest = stamps
        .windows(2)
        .map(|p| p[1] - p[0])
        .chain(stamps.last().map(|&l| end_wall - l))
        .fold(0.0f64, f64::max);
    let after_restart = stamps.iter().filter(|&&t| t > restart_wall).count() as u32;
    Gap {
        longest,
        sent,
        received,
        after_restart,
    }
}

/// Kills `imp`'s relay (SIGKILL to its whole process group) while the
/// native host pings our client through it, restarts it at once, and
/// measures the gap.
fn relay_restart(imp: Impl, others: Impl) -> (Gap, bool) {
    let test = format!("fault_relay_restart_{}_{}", imp.tag(), others.tag());
    let w = World::build(&test, &[NatKind::PortRestricted]);
    w.start_server(others);
    let relay_if = unique_iface(&w, "rr");
    let relay = named::start_relay(&w, imp, &relay_if, &format!("relay-{}", imp.tag()))
        .unwrap_or_else(|| panic!("{} relay has no route", imp.tag()));
    let cli_if = unique_iface(&w, "rc");
    let (_cli, addr) = named::start_client(
        &w,
        1,
        others,
        &cli_if,
        &format!("client1-{}", others.tag()),
        QUALIFY,
    );
    let addr = addr.expect("the client qualifies");
    let warm = ping6_stats(w.v6h(), addr, 3, Duration::from_secs(6));
    report(
        &test,
        &format!("client {addr}; warm-up {}/{}", warm.1, warm.0),
    );
    let mut restarted_ok = false;
    let gap = ping_through(&w, addr, ping_secs(), Duration::from_secs(2), || {
        kill_group(relay.pid, "KILL");
        // The TUN device (and its route) goes with the last descriptor.
        wait_until(Duration::from_secs(3), || !w.relay().has_iface(&relay_if));
        let again = named::start_relay(&w, imp, &relay_if, &format!("relay-{}-2", imp.tag()));
        restarted_ok = again.is_some();
        Instant::now()
    });
    report(
        &test,
        &format!(
            "{} relay SIGKILLed and restarted (route back: {restarted_ok}): longest gap between replies {:.2} s; {}/{} echoes answered, {} after the restart",
            imp.tag(),
            gap.longest,
            gap.received,
            gap.sent,
            gap.after_restart
        ),
    );
    (gap, restarted_ok)
}

fn assert_resumed(who: &str, ok: bool, gap: &Gap) {
    assert!(ok, "{who}: our relay did not come back");
    assert!(
        gap.after_restart > 0,
        "{who}: no echo came back after our relay restarted"
    );
    assert!(
        gap.longest < 8.0,
        "{who}: flows resumed only after {:.2} s",
        gap.longest
    );
}

/// Our relay restarted under a ping to a C client (so that only the relay
/// is ours); the C relay with a C client alongside, recorded.
fn fault_relay_restart_under_traffic() {
    let (ours, ok) = relay_restart(Impl::Ours, Impl::C);
    let (c, c_ok) = relay_restart(Impl::C, Impl::C);
    report(
        "fault_relay_restart_under_traffic",
        &format!(
            "longest gap: our relay {:.2} s ({}/{} answered), C relay {:.2} s ({}/{} answered; restarted: {c_ok})",
            ours.longest, ours.received, ours.sent, c.longest, c.received, c.sent
        ),
    );
    assert_resumed("our relay, C client", ok, &ours);
}

/// The same with our client: it resumes only when its entry for the native
/// host expires (30 s, RFC 4380 5.2.4 validity), where the C client
/// resumes at once.
fn fault_relay_restart_our_client() {
    let (ours, ok) = relay_restart(Impl::Ours, Impl::Ours);
    assert_resumed("our relay, our client", ok, &ours);
}

/// Rewrites the client's configuration with an unknown directive, sends
/// SIGHUP, and records what happens.
fn sighup_invalid(imp: Impl) -> (bool, bool, bool, String) {
    let test = format!("fault_sighup_invalid_{}", imp.tag());
    let (w, cli, iface, addr) = client_world(&test, imp, "hu");
    let label = format!("client1-{}", imp.tag());
    let bad = client_conf(&iface, "Frobnicate yes\nServerAddress 198.18.1.1\n");
    w.write_file(&format!("{label}.conf"), &bad);
    let before = w.log_of(&cli).len();
    w.signal(&cli, "HUP");
    // Wait for the reload's outcome (or the client's end) rather than a
    // fixed time, at most 10 s: see `reload_said`.
    let answered = wait_until(Duration::from_secs(10), || {
        !w.is_running(&cli)
            || (reload_said(imp, w.log_of(&cli).get(before..).unwrap_or(""))
                && teredo_addr_of(w.client(1), &iface).is_some())
    });
    let running = w.is_running(&cli);
    let now = teredo_addr_of(w.client(1), &iface);
    // The C miredo may come back with a new address: ping whichever it has.
    let ping_in = ping6_stats(w.v6h(), now.unwrap_or(addr), 4, Duration::from_secs(6));
    let ping_out = ping6_stats(w.client(1), NATIVE_V6, 4, Duration::from_secs(6));
    let pings = ping_in.1 + 1 >= ping_in.0
        && ping_in.1 > 0
        && ping_out.1 + 1 >= ping_out.0
        && ping_out.1 > 0;
    let log = w.log_of(&cli);
    report(
        &test,
        &format!(
            "{}: after SIGHUP with an invalid file (answered: {answered}): running {running}, address {} (was {addr}), native->client {}/{}, client->native {}/{}; log tail: {}",
            imp.tag(),
            now.map_or("none".to_string(), |a| a.to_string()),
            ping_in.1,
            ping_in.0,
            ping_out.1,
            ping_out.0,
            last_lines(&log, 3)
        ),
    );
    let said: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("frobnicate") || l.contains("config") || l.contains("reload")
        })
        .collect();
    report(
        &test,
        &format!(
            "{}: log lines about the file: {}",
            imp.tag(),
            said.join(" | ")
        ),
    );
    (running, now == Some(addr), pings, log)
}

/// Whether `said` (what the client logged since the SIGHUP) holds the
/// reload's outcome: for ours, the line saying the new file is refused;
/// for the C miredo, which restarts its worker on the new file, the new
/// worker's tunnel started (its address follows, which the caller waits
/// for too).
fn reload_said(imp: Impl, said: &str) -> bool {
    match imp {
        Impl::Ours => said.contains("is invalid; keeping the running configuration"),
        Impl::C => said.contains("Teredo pseudo-tunnel started"),
    }
}

fn fault_sighup_invalid_config_keeps_old() {
    let (running, kept, pings, log) = sighup_invalid(Impl::Ours);
    if Impl::C.unavailable().is_none() {
        let _ = sighup_invalid(Impl::C);
    }
    assert!(
        running,
        "our client stopped on SIGHUP with an invalid file:\n{log}"
    );
    assert!(kept, "our client lost its address:\n{log}");
    assert!(pings, "pings fail after the refused reload:\n{log}");
    assert!(
        log.to_ascii_lowercase().contains("frobnicate") && reload_said(Impl::Ours, &log),
        "the log does not say why the new file was refused:\n{log}"
    );
}

/// How long the relay restart test pings: 10 s, or `$FAULTS_PING_SECS`
/// (at most 60) to watch a longer outage.
fn ping_secs() -> u64 {
    std::env::var("FAULTS_PING_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64)
        .clamp(5, 60)
}

teredo_lab::lab_tests! {
    needs(root, ours): [
        fault_sigkill_privproc,
        fault_sigkill_client_runs_hook_down,
        fault_relay_restart_our_client,
        fault_sighup_invalid_config_keeps_old,
    ],
    needs(root, ours, c_miredo): [
        fault_relay_restart_under_traffic,
    ],
}
