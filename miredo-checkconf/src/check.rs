//! Checks one file and reports on a writer.

use std::io::Write;
use std::path::Path;

use libteredo::conf::miredo::{MiredoConfig, DEFAULT_SERVER};
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

/// Checks `path` as `kind` and writes every error and warning to `out`.
pub fn run(kind: Kind, path: &Path, out: &mut impl Write) -> Status {
    let result = match kind {
        Kind::Miredo => MiredoConfig::load(path).map(|c| {
            let mut notes = c.warnings.iter().map(warning).collect::<Vec<_>>();
            if c.server_address_is_default {
                notes.push(format!(
                    "{}: ServerAddress: note: not given; the client uses the default server {DEFAULT_SERVER}",
                    path.display()
                ));
            }
            notes
        }),
        Kind::Server => ServerConfig::load(path).map(|c| c.warnings.iter().map(warning).collect()),
    };
    // A closed stderr must not turn a verdict into a panic: writes are
    // best effort, the exit status carries the answer.
    match result {
        Ok(notes) => {
            for n in notes {
                let _ = writeln!(out, "{n}");
            }
            Status::Valid
        }
        Err(LoadError::Invalid(errors)) => {
            for e in errors {
                let _ = writeln!(out, "{e}");
            }
            Status::Invalid
        }
        Err(e @ LoadError::Unreadable { .. }) => {
            let _ = writeln!(out, "{e}");
            Status::Unreadable
        }
    }
}

fn warning(w: &ConfError) -> String {
    let mut w = w.clone();
    w.reason = format!("warning: {}", w.reason);
    w.to_string()
}
