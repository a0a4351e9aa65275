//! The Debian packages (issue 19): `cargo deb` builds `miredo` and
//! `miredo-server` from the release binaries this test build made,
//! `lintian` finds no error in them, and they install over Debian's own C
//! packages in a fresh Debian 12 root made with `mmdebstrap` from this
//! machine's apt mirror, keeping an administrator's edits to the conffiles.
//! There the installed programs run, the packaged configurations pass
//! `miredo-checkconf`, the units are in place and pass `systemd-analyze
//! verify`, the system users exist, and `systemd-analyze security` rates
//! our units against Debian's. Last, the root is booted with
//! `systemd-nspawn` and the units started, reloaded and stopped in it;
//! where this machine cannot boot it, the test is ignored (said loudly,
//! and why), since what the units do would go unchecked.
//!
//! Everything happens in a temporary directory that the test removes; the
//! only traffic is to the configured apt mirror (mmdebstrap).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use teredo_lab::cmd::{run_with_timeout, CmdOutput};
use teredo_lab::impls::our_bin_dir;
use teredo_lab::report;
use teredo_lab::skip::{loud, which};

/// The Debian release the packages are for, and whose C packages they
/// replace.
const SUITE: &str = "bookworm";
const TEST: &str = "debs_install_over_debian_packages";

/// What each package must hold (paths in the package, without the `./`).
const MIREDO_FILES: [&str; 12] = [
    "usr/sbin/miredo",
    "usr/sbin/miredo-checkconf",
    "usr/bin/teredo-mire",
    "usr/libexec/miredo/miredo-privproc",
    "etc/miredo.conf",
    "etc/miredo/client-hook",
    "usr/lib/systemd/system/miredo.service",
    "usr/share/man/man8/miredo.8.gz",
    "usr/share/man/man8/miredo-privproc.8.gz",
    "usr/share/man/man8/miredo-checkconf.8.gz",
    "usr/share/man/man5/miredo.conf.5.gz",
    "usr/share/man/man1/teredo-mire.1.gz",
];
const SERVER_FILES: [&str; 5] = [
    "usr/sbin/miredo-server",
    "etc/miredo-server.conf",
    "usr/lib/systemd/system/miredo-server.service",
    "usr/share/man/man8/miredo-server.8.gz",
    "usr/share/man/man5/miredo-server.conf.5.gz",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace directory")
}

/// The Debian version of our packages: epoch 1, since the workspace's 0.x
/// sorts below the C packages' 1.2.6 (see the crates' Cargo.toml).
fn deb_version() -> String {
    format!("1:{}-1", env!("CARGO_PKG_VERSION"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// A need of `lab_tests!`: the cargo-deb subcommand.
fn cargo_deb() -> Option<String> {
    let out = run_with_timeout(&[cargo().as_str(), "deb", "--version"], secs(30));
    if out.success() {
        None
    } else {
        Some("cargo-deb is not installed (cargo install --locked cargo-deb)".into())
    }
}

/// A need of `lab_tests!`: the Debian tools the test drives.
fn debian_tools() -> Option<String> {
    for (tool, package) in [
        ("lintian", "lintian"),
        ("mmdebstrap", "mmdebstrap"),
        ("systemd-analyze", "systemd"),
        ("systemd-nspawn", "systemd-container"),
        ("dpkg-deb", "dpkg"),
    ] {
        if which(tool).is_none() {
            return Some(format!(
                "{tool} is not installed (apt-get install {package})"
            ));
        }
    }
    None
}

/// A need of `lab_tests!`: root (mmdebstrap's root mode, chroot, nspawn).
fn superuser() -> Option<String> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2));
    if euid == Some("0") {
        None
    } else {
        Some("needs root (mmdebstrap, chroot, systemd-nspawn)".into())
    }
}

/// A need of `lab_tests!`: the release binaries the packages hold.
fn our_programs() -> Option<String> {
    [
        "miredo",
        "miredo-server",
        "miredo-checkconf",
        "miredo-privproc",
        "teredo-mire",
    ]
    .iter()
    .map(|b| our_bin_dir().join(b))
    .find(|p| !p.is_file())
    .map(|p| {
        format!(
            "{} not built (cargo build --release --workspace)",
            p.display()
        )
    })
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs `argv` within `timeout`; its stdout, or the test fails with the
/// command, its status and its output.
fn run(argv: &[&str], timeout: Duration) -> String {
    match run_with_timeout(argv, timeout).ok() {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// A temporary directory removed at the end, also when the test fails.
/// Nothing is ever mounted in it by the test itself (mmdebstrap and
/// systemd-nspawn mount in namespaces of their own); if something is
/// found mounted under it anyway, it is unmounted first, and the
/// directory is left in place (said loudly) rather than removed through a
/// mount.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("teredo-packaging-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temporary directory");
        Scratch { dir }
    }

    fn mounts_under(&self) -> Vec<String> {
        let prefix = self.dir.display().to_string();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.mounts_under().iter().rev() {
            let _ = run_with_timeout(&["umount", "-l", m.as_str()], secs(10));
        }
        let left = self.mounts_under();
        if left.is_empty() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                loud(&format!(
                    "packaging: cannot remove {}: {e}",
                    self.dir.display()
                ));
            }
        } else {
            loud(&format!(
                "packaging: {} left in place, still mounted: {}",
                self.dir.display(),
                left.join(", ")
            ));
        }
    }
}

/// The Debian archive this machine's apt uses: the first `URIs:` (deb822)
/// or `deb` line (one-line format) serving `SUITE` from a `/debian` path
/// (not security, not a third-party repository).
fn apt_mirror() -> Option<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        // deb822 stanzas
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find(|l| l.starts_with(name))
                    .map(|l| l[name.len()..].trim().to_string())
            };
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:")) {
                let suites: Vec<&str> = suites.split_whitespace().collect();
                if suites.contains(&SUITE) {
                    if let Some(u) = uris.split_whitespace().find(|u| is_debian_archive(u)) {
                        return Some(u.to_string());
                    }
                }
            }
        }
        // one-line format: deb [options] URI SUITE COMPONENTS
        for line in text.lines() {
            let words: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with('[') && !w.ends_with(']'))
                .collect();
            if words.len() >= 3
                && words[0] == "deb"
                && words[2] == SUITE
                && is_debian_archive(words[1])
            {
                return Some(words[1].to_string());
            }
        }
    }
    None
}

fn is_debian_archive(uri: &str) -> bool {
    uri.trim_end_matches('/').ends_with("/debian")
}

/// `chroot ROOT argv...` with a sane environment.
fn in_root(root: &Path, argv: &[&str], timeout: Duration) -> CmdOutput {
    let root = root.display().to_string();
    let mut full = vec![
        "env",
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND=noninteractive",
        "LC_ALL=C",
        "chroot",
        root.as_str(),
    ];
    full.extend_from_slice(argv);
    run_with_timeout(&full, timeout)
}

fn in_root_ok(root: &Path, argv: &[&str], timeout: Duration) -> String {
    match in_root(root, argv, timeout).ok() {
        Ok(out) => out,
        Err(e) => panic!("in the Debian root: {e}"),
    }
}

/// `systemd-analyze security --offline=true` of a unit file: its overall
/// exposure (0.0 safest to 10.0), and the line that says it.
fn exposure(unit: &Path) -> (f64, String) {
    let unit = unit.display().to_string();
    let out = run_with_timeout(
        &[
            "systemd-analyze",
            "security",
            "--offline=true",
            "--no-pager",
            unit.as_str(),
        ],
        secs(60),
    );
    let line = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "systemd-analyze security {unit}: no overall exposure level in its output: {}{}",
                out.stdout, out.stderr
            )
        })
        .trim()
        .to_string();
    // "→ Overall exposure level for miredo.service: 9.6 UNSAFE 😨"
    let score = line
        .split(':')
        .next_back()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read a score in {line:?}"));
    (score, line)
}

/// Builds one package with `cargo deb --no-build` into `out`; its path,
/// named as Debian names its files (`PACKAGE_VERSION_ARCH.deb`, the epoch
/// left out: apt-get ignores a path with a colon in it).
fn build_deb(package: &str, out: &Path) -> PathBuf {
    let version = deb_version();
    let arch = run(&["dpkg", "--print-architecture"], secs(10));
    let file = out.join(format!(
        "{package}_{}_{}.deb",
        version.split_once(':').map_or(version.as_str(), |(_, v)| v),
        arch.trim()
    ));
    let out_s = file.display().to_string();
    let manifest = workspace().join("Cargo.toml").display().to_string();
    run(
        &[
            cargo().as_str(),
            "deb",
            "--no-build",
            // Lighter compression: these packages are checked, not shipped.
            "--fast",
            "--manifest-path",
            manifest.as_str(),
            "-p",
            package,
            "--deb-version",
            version.as_str(),
            "--output",
            out_s.as_str(),
        ],
        secs(120),
    );
    assert!(file.is_file(), "cargo deb made no {out_s}");
    file
}

fn debs_install_over_debian_packages() {
    let started = Instant::now();
    let scratch = Scratch::new();
    let debs = scratch.dir.join("debs");
    fs::create_dir_all(&debs).unwrap();

    // 1. Build.
    let miredo_deb = build_deb("miredo", &debs);
    let server_deb = build_deb("miredo-server", &debs);
    for (deb, files) in [
        (&miredo_deb, &MIREDO_FILES[..]),
        (&server_deb, &SERVER_FILES[..]),
    ] {
        let d = deb.display().to_string();
        let listing = run(&["dpkg-deb", "--contents", d.as_str()], secs(30));
        for f in files {
            assert!(
                listing.lines().any(|l| l.contains(&format!(" ./{f}"))),
                "{d} does not hold /{f}:\n{listing}"
            );
        }
        let version = run(&["dpkg-deb", "--field", d.as_str(), "Version"], secs(30));
        assert_eq!(version.trim(), deb_version(), "{d}: version");
    }
    report(
        TEST,
        &format!(
            "built {} and {} ({:.1} s)",
            miredo_deb.display(),
            server_deb.display(),
            started.elapsed().as_secs_f64()
        ),
    );

    // 2. lintian: no error; warnings and the rest reported.
    let (m, s) = (
        miredo_deb.display().to_string(),
        server_deb.display().to_string(),
    );
    let lint = run_with_timeout(
        &[
            "lintian",
            "--tag-display-limit",
            "0",
            m.as_str(),
            s.as_str(),
        ],
        secs(180),
    );
    let tags: Vec<&str> = lint
        .stdout
        .lines()
        .filter(|l| l.len() > 2 && l.as_bytes()[1] == b':')
        .collect();
    for t in &tags {
        report(TEST, &format!("lintian {t}"));
    }
    let errors: Vec<&&str> = tags.iter().filter(|t| t.starts_with("E:")).collect();
    assert!(
        errors.is_empty(),
        "lintian reports errors: {errors:?} (stderr: {})",
        lint.stderr.trim()
    );
    // Exit status 0: no error (lintian fails on errors only by default);
    // anything else is an error tag or lintian itself failing.
    assert!(
        lint.success(),
        "lintian failed ({:?} after {:.0} s): {}",
        lint.status,
        lint.elapsed.as_secs_f64(),
        lint.stderr.trim()
    );
    report(
        TEST,
        &format!(
            "lintian: 0 errors, {} warnings, {} other tags",
            tags.iter().filter(|t| t.starts_with("W:")).count(),
            tags.iter().filter(|t| !t.starts_with("W:")).count()
        ),
    );

    // 3. A fresh Debian root with Debian's own C packages.
    let mirror = apt_mirror().unwrap_or_else(|| {
        panic!("no Debian archive for {SUITE} in /etc/apt/sources.list*: mmdebstrap needs one")
    });
    let root = scratch.dir.join("root");
    let root_s = root.display().to_string();
    let t0 = Instant::now();
    run(
        &[
            "mmdebstrap",
            "--mode=root",
            "--variant=minbase",
            // Our packages' dependencies too: apt-get in the root has no package
            // lists (mmdebstrap removes them) and installs ours offline.
            "--include=systemd,systemd-sysv,procps,iproute2,adduser,miredo,miredo-server",
            // A mirror that serves a snapshot has Release files past their
            // Valid-Until date.
            "--aptopt=Acquire::Check-Valid-Until \"false\"",
            SUITE,
            root_s.as_str(),
            mirror.as_str(),
        ],
        secs(300),
    );
    report(
        TEST,
        &format!(
            "mmdebstrap --variant=minbase {SUITE} from {mirror} with Debian's miredo and miredo-server: {:.1} s",
            t0.elapsed().as_secs_f64()
        ),
    );
    let c_version = in_root_ok(
        &root,
        &["dpkg-query", "-W", "-f=${Version}", "miredo"],
        secs(30),
    );
    let newer = run_with_timeout(
        &[
            "dpkg",
            "--compare-versions",
            deb_version().as_str(),
            "gt",
            c_version.trim(),
        ],
        secs(10),
    );
    assert!(
        newer.success(),
        "our version {} does not sort above Debian's {}",
        deb_version(),
        c_version.trim()
    );
    let debian_unit = scratch.dir.join("debian-miredo.service");
    fs::copy(root.join("lib/systemd/system/miredo.service"), &debian_unit)
        .expect("Debian's miredo.service in the root");

    // 4. An administrator's edits to the C packages' conffiles, made
    // through the names in /etc/miredo.
    let client_edit = "\n# edited by the administrator\nBindPort 3545\n";
    let server_edit = "\n# edited by the administrator\nServerBindAddress 192.0.2.100\n";
    for (name, edit) in [
        ("etc/miredo/miredo.conf", client_edit),
        ("etc/miredo/miredo-server.conf", server_edit),
    ] {
        let path = root.join(name);
        let old = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        // The server's one directive is replaced, not repeated.
        let kept: String = if name.contains("server") {
            old.lines()
                .filter(|l| !l.starts_with("ServerBindAddress"))
                .map(|l| format!("{l}\n"))
                .collect()
        } else {
            old
        };
        fs::write(&path, kept + edit).unwrap();
    }

    // 5. Ours over theirs, non-interactively, keeping edited conffiles.
    for deb in [&miredo_deb, &server_deb] {
        fs::copy(deb, root.join("tmp").join(deb.file_name().unwrap())).unwrap();
    }
    let apt = |deb: &Path| {
        let inside = format!("/tmp/{}", deb.file_name().unwrap().to_string_lossy());
        let out = in_root(
            &root,
            &[
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                inside.as_str(),
            ],
            secs(180),
        );
        let text = format!("{}{}", out.stdout, out.stderr);
        if let Err(e) = out.ok() {
            panic!("installing our package over Debian's: {e}");
        }
        text
    };
    let t1 = Instant::now();
    let log = apt(&miredo_deb);
    report(
        TEST,
        &format!(
            "apt-get install ./miredo_*.deb over Debian's {}: {:.1} s",
            c_version.trim(),
            t1.elapsed().as_secs_f64()
        ),
    );
    for line in log
        .lines()
        .filter(|l| l.contains("conffile") || l.contains("Configuration file") || l.contains("==>"))
    {
        report(TEST, &format!("apt: {line}"));
    }
    apt(&server_deb);

    // 6. What is installed.
    for pkg in ["miredo", "miredo-server"] {
        let v = in_root_ok(&root, &["dpkg-query", "-W", "-f=${Version}", pkg], secs(30));
        assert_eq!(v.trim(), deb_version(), "installed {pkg}");
    }
    let conf = fs::read_to_string(root.join("etc/miredo.conf")).unwrap();
    assert!(
        conf.ends_with(client_edit),
        "the administrator's edit of /etc/miredo/miredo.conf is lost:\n{conf}"
    );
    let sconf = fs::read_to_string(root.join("etc/miredo-server.conf")).unwrap();
    assert!(
        sconf.ends_with(server_edit),
        "the administrator's edit of /etc/miredo/miredo-server.conf is lost:\n{sconf}"
    );
    // The names in /etc/miredo: links to the conffiles, as in Debian's
    // packages (made by our postinst).
    for (link, target) in [
        ("etc/miredo/miredo.conf", "../miredo.conf"),
        ("etc/miredo/miredo-server.conf", "../miredo-server.conf"),
    ] {
        let to =
            fs::read_link(root.join(link)).unwrap_or_else(|e| panic!("/{link} is not a link: {e}"));
        assert_eq!(to, Path::new(target), "/{link}");
    }
    // The unmodified C hook is replaced by ours, not executable: our
    // miredo-privproc configures the interface itself.
    let hook = root.join("etc/miredo/client-hook");
    let hook_text = fs::read_to_string(&hook).unwrap();
    let ours_hook =
        fs::read_to_string(workspace().join("packaging/etc/miredo/client-hook")).unwrap();
    assert_eq!(hook_text, ours_hook, "/etc/miredo/client-hook is not ours");
    assert_eq!(
        fs::metadata(&hook).unwrap().permissions().mode() & 0o111,
        0,
        "/etc/miredo/client-hook is executable"
    );
    // The C packages' SysV scripts and defaults are gone (unmodified).
    for gone in [
        "etc/init.d/miredo",
        "etc/init.d/miredo-server",
        "etc/default/miredo",
        "etc/default/miredo-server",
        "etc/network/if-up.d/miredo",
    ] {
        assert!(!root.join(gone).exists(), "/{gone} is still there");
    }
    let version = in_root_ok(&root, &["miredo", "--version"], secs(30));
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "miredo --version: {version}"
    );
    report(
        TEST,
        &format!("installed miredo --version: {}", version.trim()),
    );
    in_root_ok(
        &root,
        &["miredo-checkconf", "/etc/miredo/miredo.conf"],
        secs(30),
    );
    in_root_ok(
        &root,
        &["miredo-checkconf", "-s", "/etc/miredo/miredo-server.conf"],
        secs(30),
    );
    in_root_ok(
        &root,
        &["/usr/libexec/miredo/miredo-privproc", "--version"],
        secs(30),
    );
    in_root_ok(&root, &["teredo-mire", "--version"], secs(30));
    for user in ["miredo", "miredo-server", "miredo-privproc"] {
        let entry = in_root_ok(&root, &["getent", "passwd", user], secs(30));
        report(TEST, &format!("user {}", entry.trim()));
    }
    for unit in ["miredo.service", "miredo-server.service"] {
        let installed = fs::read_to_string(root.join("usr/lib/systemd/system").join(unit))
            .unwrap_or_else(|e| panic!("/usr/lib/systemd/system/{unit}: {e}"));
        let repo = fs::read_to_string(workspace().join("packaging/systemd").join(unit)).unwrap();
        assert_eq!(
            installed, repo,
            "the installed {unit} is not the repository's"
        );
    }
    // miredo is enabled, as Debian's; miredo-server waits for its
    // addresses to be set.
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    assert!(
        fs::symlink_metadata(wants.join("miredo.service")).is_ok(),
        "miredo.service is not enabled"
    );
    assert!(
        fs::symlink_metadata(wants.join("miredo-server.service")).is_err(),
        "miredo-server.service is enabled before its addresses are set"
    );

    // 7. systemd-analyze verify, in the root (its binaries, its users).
    for unit in ["miredo.service", "miredo-server.service"] {
        let path = format!("/usr/lib/systemd/system/{unit}");
        let out = in_root(
            &root,
            // --man=no: the minimal root has no man; the pages are
            // checked in the packages' listing above.
            &["systemd-analyze", "verify", "--man=no", path.as_str()],
            secs(60),
        );
        assert!(
            out.success() && out.stderr.trim().is_empty(),
            "systemd-analyze verify {unit}: {}{}",
            out.stdout,
            out.stderr
        );
    }
    report(TEST, "systemd-analyze verify: both units accepted");

    // 8. systemd-analyze security, ours against Debian's.
    let (ours, ours_line) = exposure(&root.join("usr/lib/systemd/system/miredo.service"));
    let (theirs, theirs_line) = exposure(&debian_unit);
    let (server, server_line) =
        exposure(&root.join("usr/lib/systemd/system/miredo-server.service"));
    report(TEST, &format!("ours: {ours_line}"));
    report(TEST, &format!("Debian's: {theirs_line}"));
    report(
        TEST,
        &format!("ours: {server_line} (Debian's miredo-server has no unit: SysV script only)"),
    );
    assert!(
        ours < theirs && server < theirs,
        "our units are not rated safer than Debian's: miredo {ours}, miredo-server {server}, Debian's miredo {theirs}"
    );

    // 9. Boot the root; start, reload and stop the units.
    nspawn_boot(&root, &scratch.dir);

    // 10. Purge, then a fresh install where Debian's packages never were:
    // the conffiles and links go with the purge (the users stay, by
    // design); removed by hand here, the users are made again, each with a
    // group of its own.
    in_root_ok(
        &root,
        &["apt-get", "purge", "-y", "miredo", "miredo-server"],
        secs(120),
    );
    for gone in [
        "etc/miredo.conf",
        "etc/miredo-server.conf",
        "etc/miredo/miredo.conf",
        "etc/miredo/miredo-server.conf",
        "etc/miredo/client-hook",
    ] {
        assert!(
            fs::symlink_metadata(root.join(gone)).is_err(),
            "/{gone} survived the purge"
        );
    }
    for user in ["miredo", "miredo-server", "miredo-privproc"] {
        in_root_ok(&root, &["userdel", user], secs(30));
        let _ = in_root(&root, &["groupdel", user], secs(30));
    }
    apt(&miredo_deb);
    apt(&server_deb);
    for user in ["miredo", "miredo-server", "miredo-privproc"] {
        let entry = in_root_ok(&root, &["getent", "passwd", user], secs(30));
        let group = in_root_ok(&root, &["id", "-gn", user], secs(30));
        assert_eq!(group.trim(), user, "{user}'s primary group: {entry}");
        report(TEST, &format!("fresh install: user {}", entry.trim()));
    }
    assert_eq!(
        fs::read_to_string(root.join("etc/miredo.conf")).unwrap(),
        fs::read_to_string(workspace().join("packaging/etc/miredo.conf")).unwrap(),
        "fresh install: /etc/miredo.conf is not the packaged one"
    );
    assert_eq!(
        fs::read_link(root.join("etc/miredo/miredo.conf")).unwrap(),
        Path::new("../miredo.conf")
    );
    assert_eq!(
        fs::metadata(root.join("etc/miredo/client-hook"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644,
        "fresh install: /etc/miredo/client-hook"
    );
    in_root_ok(
        &root,
        &["miredo-checkconf", "/etc/miredo/miredo.conf"],
        secs(30),
    );
    report(
        TEST,
        "purge, then a fresh install: conffiles and links gone, then back; users made with their own groups",
    );
    report(
        TEST,
        &format!("whole test: {:.1} s", started.elapsed().as_secs_f64()),
    );
}

/// Boots `root` with systemd-nspawn (its own network: loopback only),
/// where a oneshot unit gives loopback the server's two addresses, starts
/// miredo-server and miredo, records their state, and powers off.
fn nspawn_boot(root: &Path, scratch: &Path) {
    let probe = "[Unit]\n\
        Description=packaging test: start the Teredo units and record them\n\
        After=basic.target\n\
        [Service]\n\
        Type=oneshot\n\
        ExecStart=/usr/local/sbin/teredo-probe\n\
        [Install]\n\
        WantedBy=multi-user.target\n";
    // The server's configured pair (the edit above) on loopback; the
    // client cannot reach its server from the container (no network): it
    // must be running and waiting, not failed.
    let script = r#"#!/bin/sh
exec >/var/log/teredo-probe.log 2>&1
ip addr add 192.0.2.100/32 dev lo
ip addr add 192.0.2.101/32 dev lo
systemctl start --no-block miredo-server.service miredo.service
i=0
while [ $i -lt 40 ]; do
    a=$(systemctl is-active miredo-server.service)
    b=$(systemctl is-active miredo.service)
    [ "$a" != activating ] && [ "$b" != activating ] && break
    sleep 0.5; i=$((i+1))
done
sleep 2
echo "STATE miredo-server $(systemctl is-active miredo-server.service)"
echo "STATE miredo $(systemctl is-active miredo.service)"
if systemctl is-active --quiet miredo-server.service miredo.service; then
    systemctl reload miredo-server.service miredo.service
    echo "RELOAD $?"
    sleep 1
    echo "AFTER-RELOAD $(systemctl is-active miredo-server.service miredo.service | tr '\n' ' ')"
fi
systemctl status --no-pager -l miredo-server.service miredo.service
systemctl stop miredo.service miredo-server.service
echo "STOPPED miredo $(systemctl is-active miredo.service) miredo-server $(systemctl is-active miredo-server.service)"
journalctl --no-pager -o cat -b -u miredo.service -u miredo-server.service | sed 's/^/JOURNAL /'
systemctl poweroff
"#;
    fs::write(root.join("etc/systemd/system/teredo-probe.service"), probe).unwrap();
    fs::create_dir_all(root.join("usr/local/sbin")).unwrap();
    let script_path = root.join("usr/local/sbin/teredo-probe");
    fs::write(&script_path, script).unwrap();
    fs::set_permissions(&script_path, fs::Permissions::from_mode(0o755)).unwrap();
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    let _ = std::os::unix::fs::symlink(
        "/etc/systemd/system/teredo-probe.service",
        wants.join("teredo-probe.service"),
    );
    let root_s = root.display().to_string();
    let machine = format!("teredo-pkg-{}", std::process::id());
    let t = Instant::now();
    let out = run_with_timeout(
        &[
            "systemd-nspawn",
            "--quiet",
            "--boot",
            // Neither machined nor a scope of the host's systemd: this
            // host's PID 1 may not be systemd.
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--machine",
            machine.as_str(),
            "--directory",
            root_s.as_str(),
        ],
        secs(120),
    );
    let log = fs::read_to_string(root.join("var/log/teredo-probe.log")).unwrap_or_default();
    let _ = scratch;
    if log.is_empty() {
        let status = match out.status {
            Some(s) => s.to_string(),
            None => format!("killed after {:.0} s", out.elapsed.as_secs_f64()),
        };
        let tail: Vec<&str> = out
            .stderr
            .lines()
            .chain(out.stdout.lines())
            .filter(|l| !l.trim().is_empty())
            .collect();
        let tail = tail[tail.len().saturating_sub(8)..].join(" | ");
        // Without the boot, nothing checks that the units start, reload
        // and stop: the test cannot run here, and says so.
        teredo_lab::harness::unmet(format!(
            "needs systemd-nspawn to boot a Debian root (here: {status}{}{tail})",
            if tail.is_empty() { "" } else { ": " }
        ));
    }
    for line in log.lines() {
        report(TEST, &format!("nspawn: {line}"));
    }
    report(
        TEST,
        &format!(
            "systemd-nspawn boot, start, stop, poweroff: {:.1} s",
            t.elapsed().as_secs_f64()
        ),
    );
    let state = |unit: &str| {
        log.lines()
            .find_map(|l| l.strip_prefix(&format!("STATE {unit} ")))
            .unwrap_or("unknown")
            .to_string()
    };
    // Whatever the readiness protocol, both daemons got through start-up
    // inside the sandbox: the client down to its own user, chrooted, and
    // the server on the two addresses the edited configuration names.
    assert!(
        log.contains("running as miredo (uid"),
        "miredo did not get through its start-up in the unit's sandbox"
    );
    assert!(
        log.contains("serving on 192.0.2.100:3544 and 192.0.2.101:3544"),
        "miredo-server did not get through its start-up in the unit's sandbox"
    );
    // Type=notify: "active" only once the daemon said READY=1.
    assert_eq!(
        state("miredo-server"),
        "active",
        "miredo-server in the container"
    );
    assert_eq!(state("miredo"), "active", "miredo in the container");
    assert!(
        log.lines().any(|l| l == "RELOAD 0"),
        "systemctl reload failed in the container"
    );
    assert!(
        log.lines()
            .any(|l| l.trim() == "AFTER-RELOAD active active"),
        "a unit did not stay active after its reload"
    );
    // Each message once in the journal: the daemons, started with -f,
    // see that their standard error is the journal and log to syslog only
    // (a copy on standard error would show as "miredo[PID]: ...").
    let journal: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("JOURNAL "))
        .collect();
    assert!(
        journal
            .iter()
            .any(|l| l.starts_with("notifying the service manager")),
        "the daemons' messages are not in the journal:\n{}",
        journal.join("\n")
    );
    let doubled: Vec<&&str> = journal
        .iter()
        .filter(|l| {
            ["miredo[", "miredo-server[", "miredo-privproc["]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert!(
        doubled.is_empty(),
        "messages written to the journal twice (syslog and standard error): {doubled:?}"
    );
    assert!(
        log.lines()
            .any(|l| l.trim() == "STOPPED miredo inactive miredo-server inactive"),
        "a unit did not stop (systemctl stop):\n{log}"
    );
    // A clean stop leaves no process for systemd to kill (the reader and
    // miredo-privproc are reaped by the daemon before it exits).
    let killed: Vec<&&str> = journal
        .iter()
        .filter(|l| l.contains("Killing process"))
        .collect();
    assert!(killed.is_empty(), "left behind at stop: {killed:?}");
}

teredo_lab::lab_tests! {
    // mmdebstrap, lintian and a booted container fill the CPU: alone.
    needs(superuser, debian_tools, cargo_deb, our_programs) alone: [debs_install_over_debian_packages],
}
