//! The survey's results for standard output: an aligned table (a row per
//! address, the problems on lines of their own beneath it, so that rows
//! stay within 100 columns) or a JSON array, an object per row.

use super::survey::Outcome;
use libteredo::metrics::json_string;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// One row: a name and one of its addresses, or why it has none.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub probe: Result<Probed, Unprobed>,
}

/// An address that was probed.
#[derive(Clone, Debug, PartialEq)]
pub struct Probed {
    pub address: Ipv4Addr,
    pub secondary: Ipv4Addr,
    pub outcome: Outcome,
}

/// Why a row was not probed: the name does not resolve (no address), or
/// its address cannot be a server's.
#[derive(Clone, Debug, PartialEq)]
pub struct Unprobed {
    pub address: Option<Ipv4Addr>,
    pub error: String,
}

/// Names longer than this go on a line of their own above their row.
const NAME_WIDTH: usize = 24;
const HEADERS: [&str; 7] = [
    "NAME",
    "ADDRESS",
    "ANSWERS",
    "RTT",
    "MAPPED",
    "SECONDARY",
    "NAT",
];

/// The text with control characters shown as `?`: a name from a file or a
/// resolver must not drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A round trip in milliseconds, with the digits that mean something.
pub fn rtt_text(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The cells of a row, but its name, and the lines to show beneath it.
fn cells(row: &Row) -> ([String; 6], Vec<String>) {
    let dash = || "-".to_string();
    match &row.probe {
        Ok(p) => {
            let o = &p.outcome;
            (
                [
                    p.address.to_string(),
                    yes_no(o.answered).to_string(),
                    o.rtt
                        .map_or_else(dash, |d| rtt_text(d.as_secs_f64() * 1000.0)),
                    o.mapped.map_or_else(dash, |m| m.to_string()),
                    o.secondary_answered
                        .map_or_else(dash, |b| yes_no(b).to_string()),
                    o.nat.map_or_else(dash, |n| n.as_str().to_string()),
                ],
                o.problems.clone(),
            )
        }
        Err(u) => (
            [
                u.address
                    .map_or_else(|| "unresolved".to_string(), |a| a.to_string()),
                "no".to_string(),
                dash(),
                dash(),
                dash(),
                dash(),
            ],
            vec![u.error.clone()],
        ),
    }
}

/// The table: a header, a row per address, each problem (or error) on an
/// indented line beneath its row.
pub fn table(rows: &[Row]) -> String {
    let names: Vec<String> = rows.iter().map(|r| printable(&r.name)).collect();
    let all: Vec<([String; 6], Vec<String>)> = rows.iter().map(cells).collect();
    let name_width = names
        .iter()
        .map(|n| n.chars().count())
        .filter(|n| *n <= NAME_WIDTH)
        .chain([HEADERS[0].len()])
        .max()
        .unwrap_or(0);
    let mut widths = [0usize; 6];
    for (i, w) in widths.iter_mut().enumerate() {
        *w = all
            .iter()
            .map(|(c, _)| c[i].chars().count())
            .chain([HEADERS[i + 1].len()])
            .max()
            .unwrap_or(0);
    }
    let mut out = String::new();
    let line = |out: &mut String, name: &str, c: &[String]| {
        let mut l = format!("{name:<name_width$}");
        for (i, cell) in c.iter().enumerate() {
            let _ = write!(l, "  {cell:<w$}", w = widths[i]);
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    let headers: Vec<String> = HEADERS[1..].iter().map(|h| h.to_string()).collect();
    line(&mut out, HEADERS[0], &headers);
    for (name, (c, notes)) in names.iter().zip(&all) {
        if name.chars().count() > name_width {
            out.push_str(name);
            out.push('\n');
            line(&mut out, "", c);
        } else {
            line(&mut out, name, c);
        }
        for n in notes {
            out.push_str(&wrap(&printable(n), "  - ", "    "));
        }
    }
    out
}

/// The width the table's notes are wrapped at.
const WIDTH: usize = 100;

/// `text` on lines of at most [`WIDTH`] characters (a longer word stays
/// whole), the first after `first`, the others after `then`.
fn wrap(text: &str, first: &str, then: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = line.chars().count() + 1 + word.chars().count();
        if !empty && len > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = then.to_string();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

fn json_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| json_string(&v.to_string()))
}

fn json_bool(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    }
}

/// One row as a JSON object on one line.
fn json_row(row: &Row) -> String {
    let mut f: Vec<(&str, String)> = vec![("name", json_string(&row.name))];
    match &row.probe {
        Ok(p) => {
            let o = &p.outcome;
            let problems: Vec<String> = o.problems.iter().map(|s| json_string(s)).collect();
            f.extend([
                ("address", json_string(&p.address.to_string())),
                ("answered", json_bool(Some(o.answered)).to_string()),
                (
                    "rtt_ms",
                    o.rtt.map_or_else(
                        || "null".to_string(),
                        |d| format!("{:.3}", d.as_secs_f64() * 1000.0),
                    ),
                ),
                ("mapped", json_opt(o.mapped)),
                ("secondary", json_string(&p.secondary.to_string())),
                ("secondary_answered", json_bool(o.secondary_answered).into()),
                ("secondary_mapped", json_opt(o.secondary_mapped)),
                ("nat", json_opt(o.nat.map(|n| n.as_str()))),
                (
                    "prefix",
                    json_opt(o.prefix.map(|(p, len)| format!("{p}/{len}"))),
                ),
                (
                    "mtu",
                    o.mtu.map_or_else(|| "null".into(), |m| m.to_string()),
                ),
                ("problems", format!("[{}]", problems.join(", "))),
                ("error", "null".to_string()),
            ]);
        }
        Err(u) => {
            f.extend([
                ("address", json_opt(u.address)),
                ("answered", "false".to_string()),
                ("rtt_ms", "null".to_string()),
                ("mapped", "null".to_string()),
                ("secondary", "null".to_string()),
                ("secondary_answered", "null".to_string()),
                ("secondary_mapped", "null".to_string()),
                ("nat", "null".to_string()),
                ("prefix", "null".to_string()),
                ("mtu", "null".to_string()),
                ("problems", "[]".to_string()),
                ("error", json_string(&u.error)),
            ]);
        }
    }
    let fields: Vec<String> = f
        .into_iter()
        .map(|(k, v)| format!("{}: {v}", json_string(k)))
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// The rows as a JSON array, an object per line.
pub fn json(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "[]\n".to_string();
    }
    let objects: Vec<String> = rows.iter().map(|r| format!("  {}", json_row(r))).collect();
    format!("[\n{}\n]\n", objects.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::super::survey::Nat;
    use super::*;
    use std::net::SocketAddrV4;
    use std::time::Duration;
    use teredo_lab::json::{self as j, Value};

    fn rows() -> Vec<Row> {
        let mapped = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 40123);
        vec![
            Row {
                name: "ours.teredo.test".into(),
                probe: Ok(Probed {
                    address: Ipv4Addr::new(198, 18, 1, 1),
                    secondary: Ipv4Addr::new(198, 18, 1, 2),
                    outcome: Outcome {
                        answered: true,
                        rtt: Some(Duration::from_micros(412)),
                        mapped: Some(mapped),
                        prefix: Some(("2001:0:c612:101::".parse().unwrap(), 64)),
                        mtu: Some(1280),
                        secondary_answered: Some(true),
                        secondary_mapped: Some(mapped),
                        nat: Some(Nat::Restricted),
                        problems: vec![],
                    },
                }),
            },
            Row {
                name: "a-rather-long-name.of.a.teredo.server.example".into(),
                probe: Ok(Probed {
                    address: Ipv4Addr::new(198, 18, 1, 3),
                    secondary: Ipv4Addr::new(198, 18, 1, 4),
                    outcome: Outcome {
                        answered: true,
                        rtt: Some(Duration::from_millis(23)),
                        mapped: Some(mapped),
                        prefix: Some(("3ffe:831f:c612:103::".parse().unwrap(), 64)),
                        mtu: Some(1400),
                        secondary_answered: Some(false),
                        secondary_mapped: None,
                        nat: Some(Nat::Unknown),
                        problems: vec![
                            "prefix in 3ffe:831f::/32, not the Teredo prefix 2001::/32".into(),
                            "MTU 1400, not Teredo's 1280".into(),
                        ],
                    },
                }),
            },
            Row {
                name: "silent".into(),
                probe: Ok(Probed {
                    address: Ipv4Addr::new(198, 18, 1, 9),
                    secondary: Ipv4Addr::new(198, 18, 1, 10),
                    outcome: Outcome::default(),
                }),
            },
            Row {
                name: "no\"such\\host\n.invalid".into(),
                probe: Err(Unprobed {
                    address: None,
                    error: "cannot resolve no\"such\\host\n.invalid: not found".into(),
                }),
            },
        ]
    }

    #[test]
    fn table_is_aligned_and_fits_100_columns() {
        let t = table(&rows());
        let want = "\
NAME                   ADDRESS     ANSWERS  RTT      MAPPED            SECONDARY  NAT
ours.teredo.test       198.18.1.1  yes      0.41 ms  198.18.3.1:40123  yes        restricted
a-rather-long-name.of.a.teredo.server.example
                       198.18.1.3  yes      23.0 ms  198.18.3.1:40123  no         unknown
  - prefix in 3ffe:831f::/32, not the Teredo prefix 2001::/32
  - MTU 1400, not Teredo's 1280
silent                 198.18.1.9  no       -        -                 -          -
no\"such\\host?.invalid  unresolved  no       -        -                 -          -
  - cannot resolve no\"such\\host?.invalid: not found
";
        assert_eq!(t, want, "\n{t}");
        assert!(t.lines().all(|l| l.chars().count() <= 100), "{t}");
    }

    #[test]
    fn table_of_nothing_is_its_header() {
        assert_eq!(
            table(&[]),
            "NAME  ADDRESS  ANSWERS  RTT  MAPPED  SECONDARY  NAT\n"
        );
    }

    #[test]
    fn json_parses_and_says_it_all() {
        let text = json(&rows());
        let v = j::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let Value::Array(a) = v else {
            panic!("not an array: {text}")
        };
        assert_eq!(a.len(), 4);
        let ours = &a[0];
        assert_eq!(ours.get("name"), Some(&Value::from("ours.teredo.test")));
        assert_eq!(ours.get("address"), Some(&Value::from("198.18.1.1")));
        assert_eq!(ours.get("answered"), Some(&Value::Bool(true)));
        assert_eq!(ours.get("rtt_ms"), Some(&Value::Number(0.412)));
        assert_eq!(ours.get("mapped"), Some(&Value::from("198.18.3.1:40123")));
        assert_eq!(ours.get("secondary"), Some(&Value::from("198.18.1.2")));
        assert_eq!(ours.get("secondary_answered"), Some(&Value::Bool(true)));
        assert_eq!(
            ours.get("secondary_mapped"),
            Some(&Value::from("198.18.3.1:40123"))
        );
        assert_eq!(ours.get("nat"), Some(&Value::from("restricted")));
        assert_eq!(
            ours.get("prefix"),
            Some(&Value::from("2001:0:c612:101::/64"))
        );
        assert_eq!(ours.get("mtu"), Some(&Value::Number(1280.0)));
        assert_eq!(ours.get("problems"), Some(&Value::Array(vec![])));
        assert_eq!(ours.get("error"), Some(&Value::Null));
        let bad = &a[1];
        assert_eq!(
            bad.get("problems"),
            Some(&Value::Array(vec![
                Value::from("prefix in 3ffe:831f::/32, not the Teredo prefix 2001::/32"),
                Value::from("MTU 1400, not Teredo's 1280"),
            ]))
        );
        let silent = &a[2];
        assert_eq!(silent.get("answered"), Some(&Value::Bool(false)));
        for k in [
            "rtt_ms",
            "mapped",
            "nat",
            "secondary_answered",
            "prefix",
            "mtu",
        ] {
            assert_eq!(silent.get(k), Some(&Value::Null), "{k}");
        }
        let unresolved = &a[3];
        assert_eq!(
            unresolved.get("name"),
            Some(&Value::from("no\"such\\host\n.invalid"))
        );
        assert_eq!(unresolved.get("address"), Some(&Value::Null));
        assert_eq!(unresolved.get("answered"), Some(&Value::Bool(false)));
        assert_eq!(
            unresolved.get("error"),
            Some(&Value::from(
                "cannot resolve no\"such\\host\n.invalid: not found"
            ))
        );
        // One object per line, for line-oriented tools.
        assert_eq!(text.lines().count(), 6);
        assert_eq!(json(&[]), "[]\n");
    }

    #[test]
    fn notes_wrap_at_100_columns() {
        let text = "cannot resolve nowhere.invalid: failed to lookup address information: \
                    Temporary failure in name resolution";
        let w = wrap(text, "  - ", "    ");
        assert_eq!(
            w,
            "  - cannot resolve nowhere.invalid: failed to lookup address information: Temporary failure in \
             name\n    resolution\n"
        );
        assert!(w.lines().all(|l| l.chars().count() <= WIDTH));
        let long = "x".repeat(120);
        assert_eq!(wrap(&long, "  - ", "    "), format!("  - {long}\n"));
        assert_eq!(wrap("", "  - ", "    "), "  -\n");
    }

    #[test]
    fn round_trips() {
        assert_eq!(rtt_text(0.4123), "0.41 ms");
        assert_eq!(rtt_text(23.04), "23.0 ms");
        assert_eq!(rtt_text(345.6), "346 ms");
    }
}
