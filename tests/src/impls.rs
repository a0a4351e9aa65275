//! The two implementations a lab world runs: the C reference from Debian
//! and this workspace's daemons. Both take the same command lines.

use std::path::PathBuf;

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
            return None;
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
