//! The two implementations a lab world runs: the C reference from Debian
//! and this workspace's daemons. Both take the same command lines.
//!
//! The C reference is found at its path, `/usr/sbin`, and recognised by
//! what it says of itself: with our package installed over Debian's, the
//! programs at that path are ours, and a "C" comparison would run ours
//! against ours. Such a machine has no C reference (the need is unmet).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::cmd::run_with_timeout;

/// What Debian's C `miredo -V` and `miredo-server -V` print first
/// (`Miredo: Teredo IPv6 tunneling software 1.2.6 (N/A)`, from miredo's
/// `src/main.c`); ours print `miredo 0.1.0`.
const C_BANNER: &str = "Teredo IPv6 tunneling software";

/// Which implementation of a Teredo daemon to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Debian's C miredo 1.2.x (`/usr/sbin/miredo`, `/usr/sbin/miredo-server`).
    C,
    /// This workspace's binaries, found in the cargo target directory of the
    /// running test (`<target>/<profile>/miredo`), or in the directory named
    /// by `$TEREDO_LAB_BIN_DIR`.
    Ours,
}

impl Impl {
    /// A short name for logs and labels: `c` or `rs`.
    pub fn tag(self) -> &'static str {
        match self {
            Impl::C => "c",
            Impl::Ours => "rs",
        }
    }

    /// The path of `program` (`miredo`, `miredo-server`, ...) of this
    /// implementation, whether or not it exists.
    pub fn path(self, program: &str) -> PathBuf {
        match self {
            Impl::C => PathBuf::from("/usr/sbin").join(program),
            Impl::Ours => our_bin_dir().join(program),
        }
    }

    /// The client and relay daemon.
    pub fn miredo(self) -> PathBuf {
        self.path("miredo")
    }

    /// The server daemon.
    pub fn miredo_server(self) -> PathBuf {
        self.path("miredo-server")
    }

    /// `None` when both daemons are there, else why the test must skip.
    pub fn unavailable(self) -> Option<String> {
        let missing: Vec<String> = [self.miredo(), self.miredo_server()]
            .into_iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return match self {
                Impl::C => c_reference_is_ours(),
                Impl::Ours => None,
            };
        }
        Some(match self {
            Impl::C => format!(
                "C miredo not installed (no {}; apt-get install miredo miredo-server)",
                missing.join(", ")
            ),
            Impl::Ours => format!(
                "our daemons not built (no {}; cargo build --release --workspace)",
                missing.join(", ")
            ),
        })
    }
}

/// `None` when the programs at the C reference's path are Debian's C
/// miredo (their `-V` says [`C_BANNER`]), else why not: the C reference
/// is absent. Probed once per process.
fn c_reference_is_ours() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            [Impl::C.miredo(), Impl::C.miredo_server()]
                .iter()
                .find_map(|p| not_the_c_reference(p))
        })
        .clone()
}

/// Why `program` is not Debian's C program, `None` when it is.
fn not_the_c_reference(program: &Path) -> Option<String> {
    let out = run_with_timeout(
        &[program.display().to_string(), "-V".into()],
        Duration::from_secs(5),
    );
    let said = format!("{}{}", out.stdout, out.stderr);
    if said.contains(C_BANNER) {
        return None;
    }
    let first = said.lines().next().unwrap_or("").trim();
    Some(format!(
        "needs Debian's C miredo, but {} is not it (`-V` says `{first}`, not `{C_BANNER}`: \
         our package installed over Debian's? apt-get install --reinstall miredo miredo-server)",
        program.display()
    ))
}

/// Where this workspace's binaries are: `$TEREDO_LAB_BIN_DIR`, else the
/// profile directory holding this test executable (`<target>/release`
/// for `<target>/release/deps/c_reference-HASH`).
pub fn our_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEREDO_LAB_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}
