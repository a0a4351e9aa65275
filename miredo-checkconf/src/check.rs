//! Checks one file and reports on a writer.

use std::io::{ErrorKind, Write};
use std::path::Path;

use libteredo::conf::miredo::{MiredoConfig, DEFAULT_SERVERS};
use libteredo::conf::server::ServerConfig;
use libteredo::conf::{ConfError, LoadError};

/// Which file format to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Miredo,
    Server,
}

/// The exit status, as documented in miredo-checkconf(8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Valid = 0,
    Invalid = 1,
    Unreadable = 2,
}

/// Checks the file `path` that was named on the command line as `kind` and
/// writes every error and warning to `out`. A named file must exist.
pub fn run(kind: Kind, path: &Path, out: &mut impl Write) -> Status {
    check(kind, path, false, out)
}

/// Checks the default file `path` of `kind` (no file was named) as the
/// daemon reads it. miredo runs on its built-in defaults when its default
/// file does not exist, so that is valid, said in one line on `out`.
/// miredo-server has no such fallback (it needs ServerBindAddress from its
/// file): its default file must exist. A default file that exists but
/// cannot be read, or is invalid, is reported as [`run`] does.
pub fn run_default(kind: Kind, path: &Path, out: &mut impl Write) -> Status {
    check(kind, path, kind == Kind::Miredo, out)
}

fn check(kind: Kind, path: &Path, may_be_absent: bool, out: &mut impl Write) -> Status {
    // Errors and warnings both, whether the file is valid or not: one
    // line each, in line order, a warning after an error of the same line.
    let checked = match kind {
        Kind::Miredo => MiredoConfig::load_checked(path).map(|c| {
            let default_servers = matches!(&c.config, Ok(m) if m.server_address_is_default);
            let note = default_servers.then(|| {
                format!(
                    "{}: ServerAddress: note: not given; the client uses the default servers {}",
                    path.display(),
                    DEFAULT_SERVERS.join(", ")
                )
            });
            (c.config.err(), c.warnings, note)
        }),
        Kind::Server => {
            ServerConfig::load_checked(path).map(|c| (c.config.err(), c.warnings, None))
        }
    };
    // A closed stderr must not turn a verdict into a panic: writes are
    // best effort, the exit status carries the answer.
    match checked {
        Ok((errors, warnings, note)) => {
            let status = if errors.is_some() {
                Status::Invalid
            } else {
                Status::Valid
            };
            let mut lines: Vec<(Option<usize>, String)> = errors
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.line, e.to_string()))
                .chain(warnings.iter().map(warning))
                .collect();
            // A stable sort: problems of the whole file (no line) first,
            // then by line, an error before a warning of the same line.
            lines.sort_by_key(|(line, _)| *line);
            for (_, l) in lines.into_iter().chain(note.map(|n| (None, n))) {
                let _ = writeln!(out, "{l}");
            }
            status
        }
        // The daemon's own test (miredo's load_config): reading the default
        // file fails with "not found" (a dangling link too), nothing else.
        Err(LoadError::Unreadable { ref source, .. })
            if may_be_absent && source.kind() == ErrorKind::NotFound =>
        {
            let d = MiredoConfig::default();
            let _ = writeln!(
                out,
                "{} is absent: miredo runs on its built-in defaults (client mode, \
                 interface {}, servers {}), which are valid",
                path.display(),
                d.interface_name,
                d.server_addresses.join(", ")
            );
            Status::Valid
        }
        Err(e) => {
            let _ = writeln!(out, "{e}");
            Status::Unreadable
        }
    }
}

/// A warning's line number and its line of output.
fn warning(w: &ConfError) -> (Option<usize>, String) {
    let mut w = w.clone();
    w.reason = format!("warning: {}", w.reason);
    (w.line, w.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory of this test's own.
    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "miredo-checkconf-unit-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(out)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn an_absent_default_miredo_conf_is_valid_in_one_line() {
        let d = dir("absent");
        let path = d.join("miredo.conf");
        let mut out = Vec::new();
        assert_eq!(run_default(Kind::Miredo, &path, &mut out), Status::Valid);
        assert_eq!(
            lines(&out),
            vec![format!(
                "{} is absent: miredo runs on its built-in defaults (client mode, \
                 interface teredo, servers win10.ipv6.microsoft.com, win1710.ipv6.microsoft.com, \
             win1711.ipv6.microsoft.com, teredo.iks-jena.de), which are valid",
                path.display()
            )]
        );
        // A dangling link is absent for the daemon too (Debian's
        // /etc/miredo/miredo.conf is a link to ../miredo.conf).
        let link = d.join("link.conf");
        std::os::unix::fs::symlink(d.join("nowhere.conf"), &link).expect("symlink");
        let mut out = Vec::new();
        assert_eq!(run_default(Kind::Miredo, &link, &mut out), Status::Valid);
        assert_eq!(lines(&out).len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_built_in_defaults_are_what_an_empty_file_gives() {
        // "which are valid": the defaults are the configuration of a valid
        // (empty) file.
        assert_eq!(
            MiredoConfig::parse("", "empty.conf"),
            Ok(MiredoConfig::default())
        );
    }

    #[test]
    fn an_invalid_file_shows_its_warnings_too() {
        let d = dir("warnings");
        let path = d.join("miredo.conf");
        std::fs::write(
            &path,
            "RelayType restricted\nServerAdress 192.0.2.1\nBindPort 70000\n",
        )
        .expect("write");
        let mut out = Vec::new();
        assert_eq!(run(Kind::Miredo, &path, &mut out), Status::Invalid);
        let p = path.display();
        assert_eq!(
            lines(&out),
            vec![
                format!("{p}:1: RelayType: warning: restricted is deprecated: direct bubbles make NAT traversal unreliable; use cone"),
                format!("{p}:2: ServerAdress: unknown directive; did you mean ServerAddress?"),
                format!("{p}:3: BindPort: 70000 is out of range: must be between 0 and 65535"),
            ]
        );
        // An error and a warning of the same line: the error first.
        std::fs::write(
            &path,
            "RelayType cone\nInterfaceMTU 1400\nInterfaceMTU 1500\n",
        )
        .expect("write");
        let mut out = Vec::new();
        assert_eq!(run(Kind::Miredo, &path, &mut out), Status::Invalid);
        assert_eq!(
            lines(&out),
            vec![
                format!("{p}:2: InterfaceMTU: warning: an MTU other than 1280 with the standard prefix 2001:0:: breaks other Teredo implementations"),
                format!("{p}:3: InterfaceMTU: given twice (first at line 2)"),
            ]
        );
        // The server's file likewise.
        let path = d.join("miredo-server.conf");
        std::fs::write(
            &path,
            "ServerBindAddress 192.0.2.1\nInterfaceMTU 1400\nServerBindAdress2 192.0.2.9\n",
        )
        .expect("write");
        let mut out = Vec::new();
        assert_eq!(run(Kind::Server, &path, &mut out), Status::Invalid);
        let p = path.display();
        assert_eq!(
            lines(&out),
            vec![
                format!("{p}:2: InterfaceMTU: warning: an MTU other than 1280 with the standard prefix 2001:0:: breaks other Teredo implementations"),
                format!("{p}:3: ServerBindAdress2: unknown directive; did you mean ServerBindAddress2?"),
            ]
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_named_file_that_is_absent_stays_an_error() {
        let d = dir("named");
        let path = d.join("miredo.conf");
        let mut out = Vec::new();
        assert_eq!(run(Kind::Miredo, &path, &mut out), Status::Unreadable);
        assert!(
            lines(&out)[0].ends_with("cannot read: No such file or directory (os error 2)"),
            "{:?}",
            lines(&out)
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_absent_default_server_conf_stays_an_error() {
        // miredo-server has no built-in defaults: it does not start
        // without its file.
        let d = dir("server");
        let path = d.join("miredo-server.conf");
        let mut out = Vec::new();
        assert_eq!(
            run_default(Kind::Server, &path, &mut out),
            Status::Unreadable
        );
        assert_eq!(lines(&out).len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_default_file_that_exists_is_checked_as_ever() {
        let d = dir("exists");
        // Invalid.
        let path = d.join("miredo.conf");
        std::fs::write(&path, "Bogus 1\n").expect("write");
        let mut out = Vec::new();
        assert_eq!(run_default(Kind::Miredo, &path, &mut out), Status::Invalid);
        // Unreadable: a directory.
        let sub = d.join("sub.conf");
        std::fs::create_dir(&sub).expect("mkdir");
        let mut out = Vec::new();
        assert_eq!(
            run_default(Kind::Miredo, &sub, &mut out),
            Status::Unreadable
        );
        assert!(
            lines(&out)[0].contains("Is a directory"),
            "{:?}",
            lines(&out)
        );
        // Unreadable: not a directory on the way (ENOTDIR, not "not found").
        let through = path.join("miredo.conf");
        let mut out = Vec::new();
        assert_eq!(
            run_default(Kind::Miredo, &through, &mut out),
            Status::Unreadable
        );
        // Valid.
        std::fs::write(&path, "ServerAddress 192.0.2.1\n").expect("write");
        let mut out = Vec::new();
        assert_eq!(run_default(Kind::Miredo, &path, &mut out), Status::Valid);
        assert!(out.is_empty(), "{:?}", lines(&out));
        let _ = std::fs::remove_dir_all(&d);
    }
}
