//! The configuration parsers.

use libteredo::conf::miredo::MiredoConfig;
use libteredo::conf::server::ServerConfig;

const FILE: &str = "fuzz.conf";

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Every error renders, names the file, and points at a line of the text
/// (0 for an error about the whole file).
fn check_errors<E: std::fmt::Display>(errors: &[E], text: &str) {
    let lines = text.lines().count().max(1);
    for e in errors {
        let s = e.to_string();
        assert!(s.contains(FILE), "error without the file name: {s}");
        // "fuzz.conf:LINE: ..." when there is a line.
        if let Some(rest) = s.strip_prefix("fuzz.conf:") {
            if let Some(n) = rest.split(':').next().and_then(|n| n.parse::<usize>().ok()) {
                assert!(n <= lines + 1, "line {n} of a {lines}-line file: {s}");
            }
        }
    }
}

pub fn check_miredo(data: &[u8]) {
    let Some(text) = text(data) else { return };
    match MiredoConfig::parse(text, FILE) {
        Ok(c) => {
            let _ = format!("{c:?}");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error result with no error");
            check_errors(&errors, text);
        }
    }
}

pub fn check_server(data: &[u8]) {
    let Some(text) = text(data) else { return };
    match ServerConfig::parse(text, FILE) {
        Ok(c) => {
            let _ = format!("{c:?}");
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error result with no error");
            check_errors(&errors, text);
        }
    }
}
