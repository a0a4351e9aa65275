//! The chroot root prepares for miredo, made as root does it at start
//! (directories of mode 0555 only root can write in). Reported ignored,
//! never passed, when not run as root.

use libteredo::sys::privileges::prepare_chroot;
use libteredo::sys::rundir::SafeDir;
use libtest_mimic::{Arguments, Trial};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const RESOLVER_FILES: [&str; 4] = [
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
];

/// A scratch directory under the workspace's target directory (reached
/// through directories of root's when run as root).
fn scratch(tag: &str) -> PathBuf {
    let target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .canonicalize()
        .expect("the workspace's target directory");
    let p = target.join(format!("chroot-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn chroot_copies_are_made_then_left_alone_until_they_differ() {
    let base = scratch("copies");
    let run = SafeDir::ensure(&base, 0o755).unwrap();
    let root = prepare_chroot(&run).unwrap();
    let dir = root.path().to_path_buf();
    assert_eq!(dir, base.join("chroot"));
    let present: Vec<(&str, PathBuf)> = RESOLVER_FILES
        .iter()
        .filter(|f| std::fs::read(f).is_ok())
        .map(|f| (*f, dir.join("etc").join(f.trim_start_matches("/etc/"))))
        .collect();
    assert!(!present.is_empty(), "no resolver file in /etc to copy");
    for (f, copy) in &present {
        assert_eq!(
            std::fs::read(f).unwrap(),
            std::fs::read(copy).unwrap(),
            "{f}"
        );
        let m = std::fs::metadata(copy).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o444, "{f}");
        assert_eq!(m.uid(), 0);
    }
    for d in [dir.clone(), dir.join("etc")] {
        let m = std::fs::symlink_metadata(&d).unwrap();
        assert!(
            m.is_dir() && m.uid() == 0 && m.mode() & 0o7777 == 0o555,
            "{}",
            d.display()
        );
    }
    let inodes: Vec<u64> = present
        .iter()
        .map(|(_, c)| std::fs::metadata(c).unwrap().ino())
        .collect();
    // A second start finds the copies current: none is rewritten.
    prepare_chroot(&run).unwrap();
    for ((f, c), ino) in present.iter().zip(&inodes) {
        assert_eq!(std::fs::metadata(c).unwrap().ino(), *ino, "{f} rewritten");
    }
    // A copy that no longer matches (or lost its mode) is replaced.
    let (f, c) = &present[0];
    std::fs::set_permissions(c, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(c, b"stale").unwrap();
    prepare_chroot(&run).unwrap();
    assert_eq!(std::fs::read(f).unwrap(), std::fs::read(c).unwrap(), "{f}");
    assert_eq!(
        std::fs::metadata(c).unwrap().permissions().mode() & 0o7777,
        0o444
    );
    // A link planted in the chroot's etc/ (by whoever could) is replaced.
    let victim = base.join("victim");
    std::fs::write(&victim, b"victim").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(c).unwrap();
    std::os::unix::fs::symlink(&victim, c).unwrap();
    prepare_chroot(&run).unwrap();
    assert!(!std::fs::symlink_metadata(c)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
    assert_eq!(
        std::fs::metadata(&victim).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    for d in [dir.join("etc"), dir.clone()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::remove_dir_all(&base).unwrap();
}

fn main() {
    let args = Arguments::from_args();
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("IGNORED chroot_copies_are_made_then_left_alone_until_they_differ: needs root (directories of mode 0555 that only root can write in)");
    }
    let tests = vec![Trial::test(
        "chroot_copies_are_made_then_left_alone_until_they_differ",
        || {
            chroot_copies_are_made_then_left_alone_until_they_differ();
            Ok(())
        },
    )
    .with_ignored_flag(!root)];
    libtest_mimic::run(&args, tests).exit();
}
