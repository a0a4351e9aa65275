//! `teredo-mire status [IFACE]`, `teredo-mire status --server [ADDRESS]`:
//! the client side of the daemons' status sockets. miredo writes `key:
//! value` lines on `/run/miredo/IFACE.status` to whoever connects, then
//! closes; miredo-server the same on `/run/miredo/miredo-server-ADDR.sock`
//! (ADDR its primary address), or `/run/miredo/miredo-server.sock` for the
//! host's default instance; we print them.

use libteredo::metrics;
use std::io::{ErrorKind, Read};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const DEFAULT_IFACE: &str = "teredo";
/// Where miredo and miredo-server put their status sockets.
pub const STATUS_DIR: &str = "/run/miredo";
/// The status socket of the host's default miredo-server (the one started
/// with the default configuration file and no address on its command
/// line); the others are `miredo-server-ADDR.sock`.
pub const SERVER_SOCKET_NAME: &str = "miredo-server.sock";
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
    /// miredo's page for a person (`crate::summary`): the default of
    /// `status` without `--all`; not a `--format` of its own.
    #[value(skip)]
    Summary,
}

/// Whose status to read.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// miredo's, for this interface.
    Miredo(&'a str),
    /// miredo-server's: every one whose socket is in [`STATUS_DIR`], or
    /// only the one that serves this address.
    Server(Option<Ipv4Addr>),
}

pub fn run(target: Target<'_>, socket: Option<&Path>, format: Format) -> Result<(), String> {
    let path = match (socket, target) {
        (Some(p), Target::Server(Some(want))) => {
            // The one socket named, if it serves that address.
            return show(
                servers_at(vec![p.to_path_buf()], Some(want), TIMEOUT)?,
                format,
            );
        }
        (Some(p), _) => p.to_path_buf(),
        (None, Target::Miredo(iface)) => socket_path(iface)?,
        (None, Target::Server(want)) => {
            return show(servers(Path::new(STATUS_DIR), want, TIMEOUT)?, format);
        }
    };
    let who = match (target, socket) {
        // Named by its socket: the interface is not known.
        (_, Some(_)) => "the daemon that serves it running".to_string(),
        (Target::Miredo(iface), None) => format!("miredo running for interface {iface}"),
        (Target::Server(_), None) => "miredo-server running".into(),
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
    print!("{}", render(format, &[(path, text)]));
    Ok(())
}

/// Prints what [`servers`] found, and on standard error the notes.
fn show(found: Found, format: Format) -> Result<(), String> {
    for note in &found.notes {
        eprintln!("teredo-mire: {note}");
    }
    print!("{}", render(format, &found.answers));
    Ok(())
}

/// The statuses to print, each with the socket it came from, and what to
/// say on standard error about the sockets that gave none.
#[derive(Debug)]
pub struct Found {
    pub answers: Vec<(PathBuf, String)>,
    pub notes: Vec<String>,
}

/// Whether `name` is the name of a miredo-server status socket:
/// `miredo-server*.sock`.
fn is_server_socket_name(name: &str) -> bool {
    name.len() >= SERVER_SOCKET_NAME.len()
        && name.starts_with("miredo-server")
        && name.ends_with(".sock")
}

/// The order sockets are asked and shown in: the default instance's, then
/// by primary address, then any other name.
fn sort_key(path: &Path) -> (u8, u32, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == SERVER_SOCKET_NAME {
        return (0, 0, name);
    }
    let addr = name
        .strip_prefix("miredo-server-")
        .and_then(|n| n.strip_suffix(".sock"))
        .and_then(|a| a.parse::<Ipv4Addr>().ok());
    match addr {
        Some(a) => (1, u32::from(a), name),
        None => (2, 0, name),
    }
}

/// The status sockets of miredo-server in `dir`: every socket (not a link,
/// not a file) named `miredo-server*.sock`, in [`sort_key`] order. A
/// directory that does not exist holds none.
pub fn server_sockets(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_server_socket_name))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .collect();
    found.sort_by_key(|p| sort_key(p));
    Ok(found)
}

/// A status's `key` as an IPv4 address.
fn address_of(text: &str, key: &str) -> Option<Ipv4Addr> {
    metrics::parse_status(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

/// Why a socket gave no status, in a few words.
fn why(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => {
            "nobody answers: a server that stopped leaves its socket behind".into()
        }
        ErrorKind::NotFound => "gone".into(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("no complete status within {} s", TIMEOUT.as_secs())
        }
        _ => e.to_string(),
    }
}

/// Asks every miredo-server status socket in `dir`; keeps the statuses of
/// the servers that answer, or, with `want`, of those whose primary or
/// secondary address it is. An error names every socket tried and what it
/// gave when none qualifies.
pub fn servers(dir: &Path, want: Option<Ipv4Addr>, timeout: Duration) -> Result<Found, String> {
    let mut sockets = server_sockets(dir)?;
    if sockets.is_empty() {
        return Err(format!(
            "no status socket of miredo-server in {} (looked for {} and miredo-server-ADDRESS.sock); is miredo-server running? (one given --status-socket elsewhere: name that socket with --socket)",
            dir.display(),
            dir.join(SERVER_SOCKET_NAME).display()
        ));
    }
    // The socket named after the address asked for first.
    if let Some(a) = want {
        let named = dir.join(format!("miredo-server-{a}.sock"));
        sockets.sort_by_key(|p| *p != named);
    }
    servers_at(sockets, want, timeout)
}

/// Like [`servers`], over the sockets `sockets`, in this order.
fn servers_at(
    sockets: Vec<PathBuf>,
    want: Option<Ipv4Addr>,
    timeout: Duration,
) -> Result<Found, String> {
    let mut answers = Vec::new();
    let mut tried = Vec::new();
    let mut notes = Vec::new();
    for path in sockets {
        match fetch(&path, timeout) {
            Ok(text) => {
                let primary = address_of(&text, "server-address");
                let secondary = address_of(&text, "server-address2");
                let serves = match want {
                    None => true,
                    Some(a) => primary == Some(a) || secondary == Some(a),
                };
                if serves {
                    answers.push((path, text));
                } else {
                    let what = match primary {
                        Some(p) => format!("serves {p}"),
                        None => "names no server address".into(),
                    };
                    tried.push(format!("{} ({what})", path.display()));
                }
            }
            Err(e) => {
                if want.is_none() {
                    notes.push(format!("{}: {}", path.display(), why(&e)));
                }
                tried.push(format!("{} ({})", path.display(), why(&e)));
            }
        }
    }
    if answers.is_empty() {
        return Err(match want {
            None => format!(
                "no miredo-server answers on its status socket; tried {}; is miredo-server running?",
                tried.join(", ")
            ),
            Some(a) => format!(
                "no miredo-server serving {a} answers on its status socket; tried {}",
                tried.join(", ")
            ),
        });
    }
    Ok(Found { answers, notes })
}

/// How statuses are shown: one alone as it came (text), as one JSON object
/// or as one exposition; several each under a header `==> ADDRESS (PATH)
/// <==` (text), as a JSON array of objects, or as one exposition whose
/// series carry the label `server_address` (`status_socket` too, when two
/// servers have the same address).
pub fn render(format: Format, answers: &[(PathBuf, String)]) -> String {
    if let [(_, text)] = answers {
        return match format {
            Format::Summary if text.lines().any(|l| l.starts_with("state:")) => {
                printable(&crate::summary::summary(&metrics::parse_status(text)))
            }
            Format::Summary => render(Format::Text, answers),
            Format::Text => {
                let mut out = printable(text);
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                out
            }
            Format::Json => metrics::to_json(&metrics::parse_status(text)),
            Format::Prometheus => metrics::to_prometheus(&metrics::parse_status(text)),
        };
    }
    match format {
        Format::Text | Format::Summary => {
            let mut out = String::new();
            for (i, (path, text)) in answers.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let path = printable(&path.display().to_string());
                match address_of(text, "server-address") {
                    Some(a) => out.push_str(&format!("==> {a} ({path}) <==\n")),
                    None => out.push_str(&format!("==> {path} <==\n")),
                }
                out.push_str(&printable(text));
                if !text.is_empty() && !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            out
        }
        Format::Json => {
            let objects: Vec<String> = answers
                .iter()
                .map(|(_, t)| {
                    metrics::to_json(&metrics::parse_status(t))
                        .trim_end()
                        .to_string()
                })
                .collect();
            format!("[{}]\n", objects.join(",\n "))
        }
        Format::Prometheus => {
            let addresses: Vec<Option<Ipv4Addr>> = answers
                .iter()
                .map(|(_, t)| address_of(t, "server-address"))
                .collect();
            let distinct = addresses
                .iter()
                .enumerate()
                .all(|(i, a)| a.is_some() && !addresses[..i].contains(a));
            let instances: Vec<(metrics::Pairs, metrics::Pairs)> = answers
                .iter()
                .zip(&addresses)
                .map(|((path, text), addr)| {
                    let mut labels = Vec::new();
                    if let Some(a) = addr {
                        labels.push(("server_address".to_string(), a.to_string()));
                    }
                    if !distinct {
                        labels.push(("status_socket".to_string(), path.display().to_string()));
                    }
                    (labels, metrics::parse_status(text))
                })
                .collect();
            metrics::to_prometheus_labeled(&instances)
        }
    }
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

    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// A directory of its own under the system's temporary directory,
    /// removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("mire-status-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Answers `text` to every connection on `dir/name` until the test
    /// process ends.
    fn serve(dir: &Path, name: &str, text: &'static str) {
        let l = UnixListener::bind(dir.join(name)).unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let _ = s.write_all(text.as_bytes());
            }
        });
    }

    /// A socket nobody listens on any more (a server that stopped).
    fn stale(dir: &Path, name: &str) {
        drop(UnixListener::bind(dir.join(name)).unwrap());
    }

    const A: &str =
        "mode: server\nserver-address: 198.18.1.1\nserver-address2: 198.18.1.2\nrs-received: 3\n";
    const B: &str =
        "mode: server\nserver-address: 198.18.1.3\nserver-address2: 198.18.1.4\nrs-received: 5\n";
    const C: &str =
        "mode: server\nserver-address: 198.18.0.9\nserver-address2: 198.18.0.10\nrs-received: 0\n";

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn server_sockets_are_the_sockets_named_miredo_server_star_sock() {
        let d = Scratch::new("list");
        assert!(server_sockets(&d.0.join("absent")).unwrap().is_empty());
        for n in [
            "miredo-server-198.18.1.3.sock",
            "miredo-server-198.18.1.1.sock",
            "miredo-server-10.0.0.1.sock",
            "miredo-server.sock",
            "miredo-server-lab.sock",
            "teredo.status",
            "miredo-server.sock.old",
        ] {
            stale(&d.0, n);
        }
        // Not sockets: a file and a link with the right names.
        std::fs::write(d.0.join("miredo-server-198.18.9.9.sock"), "").unwrap();
        std::os::unix::fs::symlink(
            d.0.join("miredo-server.sock"),
            d.0.join("miredo-server-198.18.8.8.sock"),
        )
        .unwrap();
        let found = server_sockets(&d.0).unwrap();
        assert_eq!(
            names(&found),
            [
                "miredo-server.sock",
                "miredo-server-10.0.0.1.sock",
                "miredo-server-198.18.1.1.sock",
                "miredo-server-198.18.1.3.sock",
                "miredo-server-lab.sock",
            ]
        );
    }

    #[test]
    fn every_server_that_answers_and_the_one_asked_for() {
        let d = Scratch::new("servers");
        let t = Duration::from_secs(2);
        // None at all: the error names where it looked.
        let e = servers(&d.0, None, t).unwrap_err();
        assert!(
            e.contains(&d.0.join("miredo-server.sock").display().to_string())
                && e.contains("miredo-server-ADDRESS.sock")
                && e.contains("is miredo-server running?"),
            "{e}"
        );
        // Only a stale one: the error names it and why.
        stale(&d.0, "miredo-server-198.18.1.5.sock");
        let e = servers(&d.0, None, t).unwrap_err();
        assert!(
            e.contains("miredo-server-198.18.1.5.sock (nobody answers"),
            "{e}"
        );
        serve(&d.0, "miredo-server-198.18.1.3.sock", B);
        serve(&d.0, "miredo-server-198.18.1.1.sock", A);
        // The default instance's socket, whose name says no address.
        serve(&d.0, "miredo-server.sock", C);
        let found = servers(&d.0, None, t).unwrap();
        let got: Vec<&str> = found.answers.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(got, [C, A, B]);
        assert_eq!(found.notes.len(), 1, "{:?}", found.notes);
        assert!(found.notes[0].contains("miredo-server-198.18.1.5.sock: nobody answers"));
        // By address: primary or secondary, whatever the socket's name.
        for (want, text) in [
            ("198.18.1.3", B),
            ("198.18.1.2", A),
            ("198.18.0.9", C),
            ("198.18.0.10", C),
        ] {
            let found = servers(&d.0, Some(want.parse().unwrap()), t).unwrap();
            assert_eq!(found.answers.len(), 1, "{want}");
            assert_eq!(found.answers[0].1, text, "{want}");
            assert!(found.notes.is_empty());
        }
        let e = servers(&d.0, Some(Ipv4Addr::new(198, 18, 7, 7)), t).unwrap_err();
        for said in [
            "no miredo-server serving 198.18.7.7",
            "miredo-server-198.18.1.1.sock (serves 198.18.1.1)",
            "miredo-server.sock (serves 198.18.0.9)",
            "miredo-server-198.18.1.5.sock (nobody answers",
        ] {
            assert!(e.contains(said), "{said}: {e}");
        }
    }

    fn answers(texts: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        texts
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect()
    }

    #[test]
    fn one_status_is_shown_as_it_came() {
        let one = answers(&[("/run/miredo/miredo-server.sock", A)]);
        assert_eq!(render(Format::Text, &one), A);
        assert_eq!(render(Format::Text, &answers(&[("/x", "a: b")])), "a: b\n");
        assert!(render(Format::Json, &one).starts_with("{\"mode\": \"server\""));
        assert!(render(Format::Prometheus, &one)
            .contains("teredo_server_router_solicitations_received_total 3\n"));
    }

    #[test]
    fn several_statuses_each_under_its_address() {
        let two = answers(&[
            ("/run/miredo/miredo-server-198.18.1.1.sock", A),
            ("/run/miredo/miredo-server-198.18.1.3.sock", B),
        ]);
        let text = render(Format::Text, &two);
        assert_eq!(
            text,
            format!(
                "==> 198.18.1.1 (/run/miredo/miredo-server-198.18.1.1.sock) <==\n{A}\n\
                 ==> 198.18.1.3 (/run/miredo/miredo-server-198.18.1.3.sock) <==\n{B}"
            )
        );
        let json = render(Format::Json, &two);
        assert!(
            json.starts_with("[{\"mode\": \"server\", \"server-address\": \"198.18.1.1\""),
            "{json}"
        );
        assert!(
            json.contains("\"server-address\": \"198.18.1.3\""),
            "{json}"
        );
        assert!(json.ends_with("}]\n"), "{json}");
        let m = render(Format::Prometheus, &two);
        assert!(m.contains("teredo_server_router_solicitations_received_total{server_address=\"198.18.1.3\"} 5\n"), "{m}");
        assert_eq!(m.matches("# TYPE teredo_info ").count(), 1);
        assert!(!m.contains("status_socket"));
        // Two with one address (two network namespaces): the sockets tell
        // them apart.
        let same = answers(&[("/run/miredo/miredo-server.sock", A), ("/run/x.sock", A)]);
        let m = render(Format::Prometheus, &same);
        assert!(
            m.contains("{server_address=\"198.18.1.1\",status_socket=\"/run/x.sock\"} 3\n"),
            "{m}"
        );
        // No address in a status: headed by its socket.
        let text = render(
            Format::Text,
            &answers(&[("/a.sock", "x: 1\n"), ("/b.sock", A)]),
        );
        assert!(
            text.starts_with("==> /a.sock <==\nx: 1\n\n==> 198.18.1.1 (/b.sock) <==\n"),
            "{text}"
        );
    }

    #[test]
    fn control_characters() {
        assert_eq!(printable("a: b\x1b[2J\n\tc\r"), "a: b?[2J\n\tc?");
    }
}
