//! Privilege separation on the file system, against real daemon starts
//! (issue: "privilege separation that holds on the file system").
//!
//! - A user with the daemon's uid who planted links and directories in the
//!   run directory an earlier version gave it (and keeps swapping them
//!   while the daemon starts) makes root write, chmod or remove nothing
//!   outside the daemon's own files: the files the links aim at stay as
//!   they were, and the run directory, the chroot and everything in them
//!   end up root's.
//! - No daemon of ours keeps a descriptor of a directory (what
//!   `openat(fd, "..")` would leave the chroot through); each runs chrooted;
//!   miredo-privproc runs as another user, with a clean environment; the
//!   configuration readers run as their daemon's user (never privproc's);
//!   each helper holds only its own descriptors.
//! - Detached start-up reports failure with a non-zero exit status, and
//!   success with 0.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use teredo_lab::named::{relay_conf, unique_iface};
use teredo_lab::procstat::{children, comm, status_field};
use teredo_lab::{report, wait_until, Impl, NatKind, World};

const NOBODY: u32 = 65534;

/// Runs `script` with `sh -c` as user nobody, on the host.
fn as_nobody(script: &str) {
    let out = teredo_lab::cmd::run_with_timeout(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ],
        Duration::from_secs(10),
    );
    assert!(out.success(), "as nobody: {script}: {}", out.stderr);
}

/// `stat` of each path in `pid`'s mount namespace: uid, gid, octal mode
/// and type, one line each.
fn stat_in(pid: u32, paths: &[&str]) -> Vec<String> {
    let mut argv = vec![
        "nsenter".to_string(),
        "-m".into(),
        "-t".into(),
        pid.to_string(),
        "stat".into(),
        "-c".into(),
        "%n %u %g %a %F".into(),
    ];
    argv.extend(paths.iter().map(|s| s.to_string()));
    let out = teredo_lab::cmd::run_with_timeout(&argv, Duration::from_secs(5));
    out.stdout.lines().map(str::to_string).collect()
}

/// The victim: a file of root's, mode 0600, that the planted links aim at.
fn victim(w: &World) -> std::path::PathBuf {
    let v = w.write_file("victim", "the victim's bytes\n");
    fs::set_permissions(&v, fs::Permissions::from_mode(0o600)).unwrap();
    v
}

fn assert_victim_intact(v: &Path) {
    let m = fs::symlink_metadata(v).expect("the victim still exists");
    assert!(m.is_file(), "the victim is no longer a regular file");
    assert_eq!(m.mode() & 0o7777, 0o600, "the victim's mode changed");
    assert_eq!((m.uid(), m.gid()), (0, 0), "the victim's owner changed");
    assert_eq!(
        fs::read_to_string(v).unwrap(),
        "the victim's bytes\n",
        "the victim was written"
    );
}

/// An earlier version left /run/miredo to the daemon's user. That user
/// planted links where root writes (the status socket, the chroot, the
/// chroot's copies of the resolver's files, the pid file) and keeps
/// swapping the chroot for its own while our relay starts. The relay runs
/// in a mount namespace of its own with a fresh /run, so that this world
/// does not disturb the host's /run/miredo.
fn planted_links_and_swapped_directories_are_never_followed() {
    let w = World::build("sec_links", &[NatKind::PortRestricted]);
    let v = victim(&w);
    let vdir = w.dir().join("victim-dir");
    fs::create_dir(&vdir).unwrap();
    fs::write(vdir.join("keep"), "kept\n").unwrap();
    fs::set_permissions(&vdir, fs::Permissions::from_mode(0o700)).unwrap();
    // The pid file's directory is the daemon user's too (an administrator's
    // -p): the link planted there must be replaced, not followed.
    let piddir = w.dir().join("piddir");
    fs::create_dir(&piddir).unwrap();
    chown_to(&piddir, NOBODY);
    fs::set_permissions(w.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    as_nobody(&format!(
        "ln -s {} {}/relay.pid",
        v.display(),
        piddir.display()
    ));

    let iface = unique_iface(&w, "sl");
    let conf = w.write_file("relay.conf", &relay_conf("cone", &iface));
    let attacker_pid = w.dir().join("attacker.pid");
    let (vs, vds) = (v.display(), vdir.display());
    let plant = format!(
        "ln -s {vs} /run/miredo/{iface}.status; \
         ln -s {vds} /run/miredo/chroot; \
         mkdir -p /run/miredo/c2/etc; ln -s {vs} /run/miredo/c2/etc/resolv.conf; \
         ln -s {vs} /run/miredo/c2/etc/hosts; ln -s {vs} /run/miredo/empty"
    );
    // Bounded: 10 s or 100,000 rounds, and killed with the daemon's group.
    let swap = format!(
        "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); \
         mv -T /run/miredo/chroot /run/miredo/old$i 2>/dev/null; \
         ln -sfn {vds} /run/miredo/chroot 2>/dev/null; \
         mkdir -p /run/miredo/x/etc 2>/dev/null && ln -sf {vs} /run/miredo/x/etc/resolv.conf 2>/dev/null \
           && mv -T /run/miredo/x /run/miredo/chroot 2>/dev/null; \
         ln -sf {vs} /run/miredo/{iface}.status 2>/dev/null; \
         done"
    );
    let nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    let script = format!(
        "set -e; mount -t tmpfs -o mode=0755 tmpfs /run; mkdir /run/miredo; \
         chown {NOBODY}:{NOBODY} /run/miredo; \
         {nobody} sh -c '{plant}'; \
         timeout 10 {nobody} sh -c '{swap}' & echo $! > {ap}; sleep 0.3; \
         exec {miredo} -f -c {conf} -p {piddir}/relay.pid --privproc {pp}",
        ap = attacker_pid.display(),
        miredo = Impl::Ours.miredo().display(),
        conf = conf.display(),
        piddir = piddir.display(),
        pp = Impl::Ours.path("miredo-privproc").display(),
    );
    let relay = w.spawn(
        w.relay(),
        "relay-sec",
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ],
    );
    let up = wait_until(Duration::from_secs(8), || {
        !w.relay()
            .routes6(&format!("2001::/32 dev {iface}"))
            .is_empty()
    });
    assert!(up, "our relay did not start:\n{}", w.log_of(&relay));
    let stats = stat_in(
        relay.pid,
        &[
            "/run/miredo",
            "/run/miredo/chroot",
            "/run/miredo/chroot/etc",
            "/run/miredo/chroot/etc/resolv.conf",
            &format!("/run/miredo/{iface}.status"),
        ],
    );
    // Let the attacker go on a little against the running daemon, then
    // stop it (its pid, then the daemon's group at the world's end).
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(p) = fs::read_to_string(&attacker_pid) {
        // timeout(1) leads a process group of its own: all of it.
        let _ = teredo_lab::cmd::host(&["kill", "-s", "KILL", "--", &format!("-{}", p.trim())]);
    }
    let log = w.log_of(&relay);
    report(
        w.test_name(),
        &format!("after the start: {}", stats.join("; ")),
    );
    assert_victim_intact(&v);
    let m = fs::metadata(&vdir).unwrap();
    assert_eq!(
        m.mode() & 0o7777,
        0o700,
        "the victim directory's mode changed"
    );
    let names: Vec<String> = fs::read_dir(&vdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["keep"],
        "something was made in the victim directory"
    );
    assert_eq!(fs::read_to_string(vdir.join("keep")).unwrap(), "kept\n");
    let expect = [
        ("/run/miredo", "0 0 755 directory"),
        ("/run/miredo/chroot", "0 0 555 directory"),
        ("/run/miredo/chroot/etc", "0 0 555 directory"),
        ("/run/miredo/chroot/etc/resolv.conf", "0 0 444 regular file"),
    ];
    for (path, want) in expect {
        assert!(
            stats.iter().any(|l| l == &format!("{path} {want}")),
            "{path}: want {want}, got {stats:?}\n{log}"
        );
    }
    let sock = format!("/run/miredo/{iface}.status 0 0 666 socket");
    assert!(stats.contains(&sock), "{sock}: got {stats:?}");
    let pid = fs::read_to_string(piddir.join("relay.pid")).unwrap_or_default();
    assert_eq!(pid.trim(), relay.pid.to_string(), "the pid file");
    assert!(
        log.contains("not made by root") || log.contains("removed and made again"),
        "the log says the run directory was replaced:\n{log}"
    );
    w.signal(&relay, "TERM");
    assert!(wait_until(Duration::from_secs(3), || !w.is_running(&relay)));
    assert_victim_intact(&v);
}

fn chown_to(p: &Path, uid: u32) {
    teredo_lab::cmd::host(&["chown", &format!("{uid}:{uid}"), &p.display().to_string()])
        .expect("chown");
}

/// Every descriptor of `pid` that leads to a directory, as its link.
fn directory_fds(pid: u32) -> Vec<String> {
    let mut v = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if fs::metadata(e.path()).is_ok_and(|m| m.is_dir()) {
            let to = fs::read_link(e.path()).unwrap_or_default();
            v.push(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                to.display()
            ));
        }
    }
    v
}

fn fds_of(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            format!(
                "{}={}",
                e.file_name().to_string_lossy(),
                fs::read_link(e.path()).unwrap_or_default().display()
            )
        })
        .collect();
    v.sort();
    v
}

fn uid_of(pid: u32) -> Vec<u32> {
    status_field(pid, "Uid")
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Whether `pid` (not root) is not dumpable: the kernel then gives its
/// /proc files to root instead of to its own user, and nobody but root may
/// trace it or read its memory.
fn not_dumpable(pid: u32) -> bool {
    let own = uid_of(pid).first().copied().unwrap_or(0);
    own != 0 && fs::metadata(format!("/proc/{pid}/status")).is_ok_and(|m| m.uid() == 0)
}

fn hex(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, key).unwrap_or_default(), 16).unwrap_or(u64::MAX)
}

/// The daemons of a whole world of ours: no directory descriptor, chrooted,
/// helpers apart.
fn no_daemon_keeps_a_way_out_of_its_chroot() {
    let w = World::build("sec_fds", &[NatKind::PortRestricted]);
    let srv = w.start_server(Impl::Ours);
    let relay = w.start_relay(Impl::Ours, "cone");
    let cli = w.start_client(1, Impl::Ours, "");
    let q = w.wait_qualified(&cli, 1, Duration::from_secs(15));
    assert!(
        q.is_some(),
        "our client did not qualify:\n{}",
        w.log_of(&cli)
    );
    for (d, what, root) in [
        (&srv, "miredo-server", "/run/miredo/empty"),
        (&relay, "miredo relay", "/run/miredo/chroot"),
        (&cli, "miredo client", "/run/miredo/chroot"),
    ] {
        let dirs = directory_fds(d.pid);
        assert!(
            dirs.is_empty(),
            "{what} (pid {}) keeps directory descriptors: {dirs:?}",
            d.pid
        );
        let r = fs::read_link(format!("/proc/{}/root", d.pid)).unwrap();
        assert_eq!(r, Path::new(root), "{what}'s root");
        let c = fs::read_link(format!("/proc/{}/cwd", d.pid)).unwrap();
        assert_eq!(c, Path::new(root), "{what}'s working directory");
        let duid = uid_of(d.pid);
        assert!(duid.iter().all(|&u| u != 0), "{what} uid {duid:?}");
        assert!(not_dumpable(d.pid), "{what} is dumpable");
        // Its configuration reader: another process, unprivileged, with
        // nothing but its socket.
        let kids = children(d.pid);
        let readers: Vec<u32> = kids
            .iter()
            .copied()
            .filter(|&p| comm(p) == "miredo-reader")
            .collect();
        assert_eq!(readers.len(), 1, "{what}'s children: {kids:?}");
        let r = readers[0];
        let ruid = uid_of(r);
        assert!(ruid.iter().all(|&u| u != 0), "{what}'s reader uid {ruid:?}");
        // One user per role: the reader is the daemon's (it may signal
        // the daemon, never miredo-privproc).
        assert_eq!(
            ruid, duid,
            "{what}'s reader runs as another user than the daemon"
        );
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(hex(r, set), 0, "{what}'s reader {set}");
        }
        assert_eq!(status_field(r, "NoNewPrivs").as_deref(), Some("1"));
        let fds = fds_of(r);
        assert_eq!(fds.len(), 4, "{what}'s reader descriptors: {fds:?}");
        assert!(fds.iter().any(|f| f.starts_with("3=socket:")), "{fds:?}");
        assert!(not_dumpable(r), "{what}'s reader is dumpable");
        report(
            w.test_name(),
            &format!(
                "{what} pid {}: uid {duid:?}, root {root}, no directory descriptor; reader pid {r}, uid {ruid:?}, fds {fds:?}",
                d.pid
            ),
        );
    }
    // The client's miredo-privproc: another user than the daemon's, a
    // clean environment, no descriptor of the daemon's.
    let pp: Vec<u32> = children(cli.pid)
        .into_iter()
        .filter(|&p| comm(p) == "miredo-privproc")
        .collect();
    assert_eq!(pp.len(), 1, "the client's miredo-privproc");
    let pp = pp[0];
    let env = fs::read(format!("/proc/{pp}/environ")).unwrap();
    assert!(
        env.is_empty(),
        "miredo-privproc inherited an environment: {:?}",
        String::from_utf8_lossy(&env)
    );
    let ppuid = uid_of(pp);
    assert!(ppuid.iter().all(|&u| u != 0), "privproc uid {ppuid:?}");
    assert_ne!(ppuid, uid_of(cli.pid), "privproc runs as the daemon's user");
    assert!(not_dumpable(pp), "privproc is dumpable");
    let fds = fds_of(pp);
    assert!(directory_fds(pp).is_empty(), "privproc: {fds:?}");
    assert!(
        !fds.iter().any(|f| f.contains("/dev/net/tun")),
        "privproc holds the daemon's TUN device: {fds:?}"
    );
    report(
        w.test_name(),
        &format!("miredo-privproc pid {pp}: uid {ppuid:?}, empty environment, fds {fds:?}"),
    );
}

/// Kills a detached daemon by its pid when the test ends, however it ends.
struct Detached(Option<u32>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = teredo_lab::cmd::host(&["kill", "-KILL", &p.to_string()]);
        }
    }
}

/// Detached start-up: the process that was started exits with the result
/// of start-up, a failure after the fork included (a pid file that cannot
/// be written), and 0 only once the daemon runs.
fn detached_start_reports_its_result() {
    let w = World::build("sec_detach", &[NatKind::PortRestricted]);
    let iface = unique_iface(&w, "dt");
    let good = w.write_file("good.conf", &relay_conf("cone", &iface));
    let bad = w.write_file("bad.conf", "RelayType cone\nInterfaceMTU 100\n");
    let pp = Impl::Ours.path("miredo-privproc").display().to_string();
    let miredo = Impl::Ours.miredo().display().to_string();
    let pidfile = w.dir().join("detached.pid");
    let run = |args: &[&str]| {
        let mut argv = vec![miredo.as_str()];
        argv.extend_from_slice(args);
        w.relay().exec(&argv, Duration::from_secs(15))
    };
    // A bad file.
    let out = run(&["-c", &bad.display().to_string(), "--privproc", &pp]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out:?}");
    assert!(out.stderr.contains("InterfaceMTU"), "{}", out.stderr);
    // A failure after the fork: the pid file's directory does not exist.
    let out = run(&[
        "-c",
        &good.display().to_string(),
        "-p",
        "/nonexistent-dir/miredo.pid",
        "--privproc",
        &pp,
    ]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out:?}");
    assert!(out.stderr.contains("pid file"), "{}", out.stderr);
    assert!(
        !w.relay().has_iface(&iface),
        "the failed daemon left its interface"
    );
    // The same for miredo-server.
    let srv_conf = w.write_file(
        "srv.conf",
        &format!(
            "ServerBindAddress {}\nServerBindAddress2 {}\n",
            teredo_lab::SERVER_V4,
            teredo_lab::SERVER2_V4
        ),
    );
    let out = w.srv().exec(
        &[
            Impl::Ours.miredo_server().display().to_string(),
            "-c".into(),
            srv_conf.display().to_string(),
            "-p".into(),
            "/nonexistent-dir/miredo-server.pid".into(),
        ],
        Duration::from_secs(15),
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out:?}");
    assert!(out.stderr.contains("pid file"), "{}", out.stderr);
    // Success: 0, and the daemon runs (its pid in the pid file).
    let out = run(&[
        "-c",
        &good.display().to_string(),
        "-p",
        &pidfile.display().to_string(),
        "--privproc",
        &pp,
    ]);
    let pid = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let guard = Detached(pid);
    assert!(out.success(), "{out:?}");
    let pid = pid.expect("a pid in the pid file");
    assert!(teredo_lab::procstat::alive(pid), "the detached daemon runs");
    assert!(
        !w.relay()
            .routes6(&format!("2001::/32 dev {iface}"))
            .is_empty(),
        "the detached relay's route is up when the start command returns"
    );
    report(
        w.test_name(),
        &format!("bad file: exit 1; pid file unwritable after the fork: exit 1 (miredo and miredo-server); good: exit 0, daemon pid {pid} running"),
    );
    let _ = teredo_lab::cmd::host(&["kill", "-TERM", &pid.to_string()]);
    assert!(wait_until(Duration::from_secs(3), || {
        !teredo_lab::procstat::alive(pid)
    }));
    drop(guard);
}

/// A service manager's stop (systemd's default KillMode): SIGTERM to every
/// process of the client at once, miredo-privproc included. privproc
/// outlives miredo long enough to run the hook's `down` and `destroy`, and
/// nothing of the interface is left.
fn a_stop_of_the_whole_group_still_runs_the_hook_down() {
    let w = World::build("sec_stop", &[NatKind::PortRestricted]);
    w.start_server(Impl::Ours);
    let relay_if = unique_iface(&w, "sr");
    teredo_lab::named::start_relay(&w, Impl::Ours, &relay_if, "relay-stop").expect("our relay");
    let iface = unique_iface(&w, "ss");
    let hook_log = w.shared_log("hook.log");
    let hook = w.write_hook(
        "client-hook",
        &format!(
            "#!/bin/sh\n\
             echo \"$STATE\" >> {log}\n\
             case \"$STATE\" in\n\
             up) ip link set dev \"$IFACE\" up mtu \"$MTU\"\n\
                 ip -6 addr add \"$ADDRESS/32\" dev \"$IFACE\" ;;\n\
             down) ip -6 addr flush dev \"$IFACE\"\n\
                 ip link set dev \"$IFACE\" down ;;\n\
             esac\n\
             exit 0\n",
            log = hook_log.display()
        ),
    );
    let cli = teredo_lab::named::start_client_with_hook(&w, 1, &iface, &hook, "client-stop");
    let addr = teredo_lab::named::wait_addr(w.client(1), &iface, Duration::from_secs(15));
    assert!(
        addr.is_some(),
        "our client did not qualify:\n{}",
        w.log_of(&cli)
    );
    let mut group = vec![cli.pid];
    group.extend(children(cli.pid));
    assert!(
        group.iter().any(|&p| comm(p) == "miredo-privproc"),
        "privproc among {group:?}"
    );
    // All at once, as a service manager does.
    let mut argv = vec!["kill".to_string(), "-TERM".into()];
    argv.extend(group.iter().map(|p| p.to_string()));
    teredo_lab::cmd::host(&argv).expect("kill");
    let all_gone = wait_until(Duration::from_secs(10), || {
        group.iter().all(|&p| !teredo_lab::procstat::alive(p))
    });
    let calls = fs::read_to_string(&hook_log).unwrap_or_default();
    report(
        w.test_name(),
        &format!(
            "SIGTERM to {group:?} at once: all gone {all_gone}; hook calls: {}",
            calls.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
    );
    assert!(
        all_gone,
        "processes left after the stop:\n{}",
        w.log_of(&cli)
    );
    let states: Vec<&str> = calls.split_whitespace().collect();
    assert_eq!(
        states.last().copied(),
        Some("destroy"),
        "the hook's last call: {states:?}"
    );
    assert!(states.contains(&"down"), "the hook ran no down: {states:?}");
    assert!(
        !w.client(1).has_iface(&iface),
        "the Teredo interface is left after the stop"
    );
}

teredo_lab::lab_tests! {
    needs(root, ours): [
        planted_links_and_swapped_directories_are_never_followed,
        no_daemon_keeps_a_way_out_of_its_chroot,
        detached_start_reports_its_result,
        a_stop_of_the_whole_group_still_runs_the_hook_down,
    ],
}
