//! `teredo-mire status [IFACE]`, `teredo-mire status --server`: the client
//! side of the daemons' status sockets. miredo writes `key: value` lines on
//! `/run/miredo/IFACE.status` to whoever connects, then closes,
//! miredo-server the same on `/run/miredo/miredo-server.sock`; we print
//! them.

use libteredo::metrics;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_IFACE: &str = "teredo";
/// Where miredo puts its status sockets.
pub const STATUS_DIR: &str = "/run/miredo";
/// miredo-server's status socket.
pub const SERVER_SOCKET: &str = "/run/miredo/miredo-server.sock";
/// How long the whole exchange may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// A status is a few dozen lines; more than this is not one.
const MAX_STATUS: usize = 1 << 20;

/// The status socket of an interface. The name must be a valid Linux
/// interface name (1 to 15 bytes, no `/`, no white space), which also keeps
/// the path inside [`STATUS_DIR`].
pub fn socket_path(iface: &str) -> Result<PathBuf, String> {
    let ok = !iface.is_empty()
        && iface.len() <= 15
        && iface != "."
        && iface != ".."
        && iface
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok {
        return Err(format!("{iface:?} is not a valid interface name"));
    }
    Ok(Path::new(STATUS_DIR).join(format!("{iface}.status")))
}

/// How `teredo-mire status` prints the status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The daemon's `key: value` lines.
    Text,
    /// One JSON object.
    Json,
    /// The Prometheus text exposition format.
    Prometheus,
}

/// Whose status to read.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// miredo's, for this interface.
    Miredo(&'a str),
    /// miredo-server's.
    Server,
}

pub fn run(target: Target<'_>, socket: Option<&Path>, format: Format) -> Result<(), String> {
    let path = match (socket, target) {
        (Some(p), _) => p.to_path_buf(),
        (None, Target::Miredo(iface)) => socket_path(iface)?,
        (None, Target::Server) => PathBuf::from(SERVER_SOCKET),
    };
    let who = match target {
        Target::Miredo(iface) => format!("miredo running for interface {iface}"),
        Target::Server => "miredo-server running".into(),
    };
    let text = fetch(&path, TIMEOUT).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            format!("cannot connect to {}: {e}; is {who}?", path.display())
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
            "no complete status from {} within {} s",
            path.display(),
            TIMEOUT.as_secs()
        ),
        _ => format!("cannot read the status from {}: {e}", path.display()),
    })?;
    match format {
        Format::Text => {
            print!("{}", printable(&text));
            if !text.is_empty() && !text.ends_with('\n') {
                println!();
            }
        }
        Format::Json => print!("{}", metrics::to_json(&metrics::parse_status(&text))),
        Format::Prometheus => print!("{}", metrics::to_prometheus(&metrics::parse_status(&text))),
    }
    Ok(())
}

/// Reads everything the socket sends until it closes, within `timeout`.
pub fn fetch(path: &Path, timeout: Duration) -> std::io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut s = UnixStream::connect(path)?;
    // We have nothing to say: the daemon speaks first and last.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if buf.len() > MAX_STATUS {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidData,
                        "the status is larger than 1 MiB",
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The text with control characters (other than newline and tab) shown as
/// `?`, so that a status cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            socket_path("teredo").unwrap(),
            PathBuf::from("/run/miredo/teredo.status")
        );
        for bad in ["", "..", "a/b", "a b", "0123456789abcdef", "x:1"] {
            assert!(socket_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn control_characters() {
        assert_eq!(printable("a: b\x1b[2J\n\tc\r"), "a: b?[2J\n\tc?");
    }
}
