//! The daemons' status, as monitoring systems read it: the `key: value`
//! lines of a status socket rendered in the Prometheus text exposition
//! format (version 0.0.4) or as one JSON object.
//!
//! The status lines stay the source of truth (what `teredo-mire status`
//! prints and what the man pages document); this module only knows how each
//! key maps to a metric: its name (prefixed `teredo_`, in base units:
//! seconds, bytes), its type (`_total` counters, gauges), and its help
//! text. Drop counters become one counter with a `reason` label; the state
//! and NAT behaviour become one gauge per possible value (1 for the current
//! one); the identity of the instance (interface, mode, address, server)
//! becomes an `_info` gauge whose labels carry it. Keys this module does
//! not know are left out of the metrics (and kept in JSON): a newer daemon
//! never makes an older tool print invalid exposition text.

pub mod http;
pub mod lines;

use std::fmt::Write as _;

/// A metric made from one status key.
struct Metric {
    key: &'static str,
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

const fn counter(key: &'static str, name: &'static str, help: &'static str) -> Metric {
    Metric {
        key,
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(key: &'static str, name: &'static str, help: &'static str) -> Metric {
    Metric {
        key,
        name,
        kind: Kind::Gauge,
        help,
    }
}

/// Status keys with a number (a unit suffix `s` or `ms` is converted to
/// seconds).
const METRICS: &[Metric] = &[
    gauge(
        "uptime",
        "teredo_uptime_seconds",
        "Seconds since the daemon started.",
    ),
    gauge("mtu", "teredo_mtu_bytes", "MTU of the Teredo interface."),
    gauge(
        "peers",
        "teredo_peers",
        "Entries in the list of recent peers.",
    ),
    gauge(
        "peers-trusted",
        "teredo_peers_trusted",
        "Peers that answered (trusted).",
    ),
    gauge(
        "peers-on-probation",
        "teredo_peers_on_probation",
        "New peers held without bubbles by admission.",
    ),
    gauge(
        "queued-bytes",
        "teredo_queued_bytes",
        "Bytes of packets waiting for their peers.",
    ),
    gauge(
        "qualified-after",
        "teredo_qualification_duration_seconds",
        "How long the first qualification took.",
    ),
    counter(
        "udp-rx-packets",
        "teredo_udp_received_packets_total",
        "UDP datagrams received on the Teredo port.",
    ),
    counter(
        "udp-rx-bytes",
        "teredo_udp_received_bytes_total",
        "Bytes of UDP datagrams received on the Teredo port.",
    ),
    counter(
        "udp-tx-packets",
        "teredo_udp_sent_packets_total",
        "UDP datagrams sent from the Teredo port.",
    ),
    counter(
        "udp-tx-bytes",
        "teredo_udp_sent_bytes_total",
        "Bytes of UDP datagrams sent from the Teredo port.",
    ),
    counter(
        "tun-rx-packets",
        "teredo_tunnel_received_packets_total",
        "IPv6 packets read from the Teredo interface.",
    ),
    counter(
        "tun-rx-bytes",
        "teredo_tunnel_received_bytes_total",
        "Bytes of IPv6 packets read from the Teredo interface.",
    ),
    counter(
        "tun-tx-packets",
        "teredo_tunnel_sent_packets_total",
        "IPv6 packets written to the Teredo interface.",
    ),
    counter(
        "tun-tx-bytes",
        "teredo_tunnel_sent_bytes_total",
        "Bytes of IPv6 packets written to the Teredo interface.",
    ),
    counter("bubbles-sent", "teredo_bubbles_sent_total", "Bubbles sent."),
    counter(
        "bubbles-received",
        "teredo_bubbles_received_total",
        "Bubbles received.",
    ),
    counter(
        "icmp-errors-sent",
        "teredo_icmpv6_errors_sent_total",
        "ICMPv6 error messages sent.",
    ),
    counter(
        "peers-held",
        "teredo_peers_held_total",
        "New peers held on probation by admission.",
    ),
    counter(
        "peers-admitted-late",
        "teredo_peers_admitted_late_total",
        "Held peers admitted on a later packet.",
    ),
    counter(
        "peers-evicted",
        "teredo_peers_evicted_total",
        "Peer entries evicted to make room for others.",
    ),
    // A server's (miredo-server's status socket).
    gauge(
        "workers",
        "teredo_server_workers",
        "Worker threads of the server (each with a socket of its own).",
    ),
    counter(
        "rs-received",
        "teredo_server_router_solicitations_received_total",
        "Router solicitations received from clients.",
    ),
    counter(
        "ra-sent",
        "teredo_server_router_advertisements_sent_total",
        "Router advertisements sent to clients.",
    ),
    counter(
        "relayed-to-clients",
        "teredo_server_relayed_to_clients_packets_total",
        "Bubbles and echo packets relayed to Teredo clients.",
    ),
    counter(
        "relayed-to-native",
        "teredo_server_relayed_to_native_packets_total",
        "Echo requests relayed from clients to native IPv6.",
    ),
    gauge(
        "port-mapping-lifetime-left",
        "teredo_port_mapping_lifetime_seconds",
        "Seconds until the gateway's port mapping lapses unless renewed.",
    ),
];

/// Status keys with a word, rendered as one gauge per possible value:
/// key, metric, label, help, values.
const ENUMS: &[(&str, &str, &str, &str, &[&str])] = &[
    (
        "state",
        "teredo_state",
        "state",
        "The daemon's state (1 for the current one).",
        &[
            "waiting",
            "probing",
            "qualified",
            "offline",
            "relaying",
            "serving",
        ],
    ),
    (
        "nat",
        "teredo_nat_behaviour",
        "nat",
        "The NAT behaviour the client observed (1 for the current one).",
        &["unknown", "none", "cone", "restricted", "symmetric"],
    ),
    (
        "port-mapping",
        "teredo_port_mapping",
        "port_mapping",
        "Where the port mapping with the home gateway stands (1 for the current state).",
        &["off", "asking", "mapped", "unavailable"],
    ),
];

/// Status keys that identify the instance: labels of `teredo_info`.
const INFO: &[(&str, &str)] = &[
    ("interface", "interface"),
    ("mode", "mode"),
    ("address", "address"),
    ("server", "server"),
    ("prefix", "prefix"),
    ("mapped-address", "mapped_address"),
    ("mapped-port", "mapped_port"),
    ("server-address", "server_address"),
    ("server-address2", "server_address2"),
    ("port-mapping-protocol", "port_mapping_protocol"),
    ("port-mapping-external", "port_mapping_external"),
];

/// The prefix of the per-reason drop counters.
const DROP: &str = "drop-";

/// Parses `key: value` lines (what a status socket sends).
pub fn parse_status(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// A status value as a number: plain, or with a unit suffix (`s`, `ms`)
/// converted to seconds.
fn number(v: &str) -> Option<f64> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(|n| n as f64 / 1000.0);
    }
    if let Some(s) = v.strip_suffix('s') {
        return s.parse::<u64>().ok().map(|n| n as f64);
    }
    v.parse::<u64>().ok().map(|n| n as f64)
}

/// A label value as the exposition format writes it.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c if c.is_control() => s.push('?'),
            c => s.push(c),
        }
    }
    s
}

fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
}

/// The status in the Prometheus text exposition format.
pub fn to_prometheus(status: &[(String, String)]) -> String {
    render(&[Instance {
        labels: &[],
        status,
    }])
}

/// `(name, value)` pairs: a status as [`parse_status`] gives it, or the
/// labels of an instance.
pub type Pairs = Vec<(String, String)>;

/// Several instances' statuses (several servers on one host) in one
/// exposition: each metric family declared once, with one series per
/// instance, told apart by the instance's `labels` (name, value: a valid
/// label name, and any text), which come first in each series. A label of
/// `teredo_info` that the status already carries is not repeated there.
/// One instance without labels gives what [`to_prometheus`] gives.
pub fn to_prometheus_labeled(instances: &[(Pairs, Pairs)]) -> String {
    let views: Vec<Instance<'_>> = instances
        .iter()
        .map(|(labels, status)| Instance { labels, status })
        .collect();
    render(&views)
}

/// One instance's status, and the labels that set its series apart.
struct Instance<'a> {
    labels: &'a [(String, String)],
    status: &'a [(String, String)],
}

/// `name="value",...` of `labels`, escaped.
fn label_list(labels: &[(String, String)]) -> Vec<String> {
    labels
        .iter()
        .map(|(n, v)| format!("{n}=\"{}\"", label(v)))
        .collect()
}

/// A sample line: `name{labels} value`, or `name value` without labels.
fn sample(out: &mut String, name: &str, labels: &[String], value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
    }
}

fn render(instances: &[Instance<'_>]) -> String {
    let get = |status: &[(String, String)], key: &str| -> Option<String> {
        status
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let mut out = String::new();
    // Identity.
    header(
        &mut out,
        "teredo_info",
        Kind::Gauge,
        "The instance: interface, mode, addresses and server (always 1).",
    );
    for &Instance {
        labels: extra,
        status,
    } in instances
    {
        let own: Vec<(String, String)> = INFO
            .iter()
            .filter_map(|(key, name)| get(status, key).map(|v| (name.to_string(), v)))
            .collect();
        let mut labels: Vec<(String, String)> = extra
            .iter()
            .filter(|(n, _)| !own.iter().any(|(o, _)| o == n))
            .cloned()
            .collect();
        labels.extend(own);
        let _ = writeln!(out, "teredo_info{{{}}} 1", label_list(&labels).join(","));
    }
    for m in METRICS {
        let samples: Vec<(Vec<String>, f64)> = instances
            .iter()
            .filter_map(
                |&Instance {
                     labels: extra,
                     status,
                 }| {
                    let v = get(status, m.key).as_deref().and_then(number)?;
                    Some((label_list(extra), v))
                },
            )
            .collect();
        if samples.is_empty() {
            continue;
        }
        header(&mut out, m.name, m.kind, m.help);
        for (labels, v) in samples {
            sample(&mut out, m.name, &labels, v);
        }
    }
    for (key, name, l, help, values) in ENUMS {
        let present: Vec<(Vec<String>, String)> = instances
            .iter()
            .filter_map(
                |&Instance {
                     labels: extra,
                     status,
                 }| Some((label_list(extra), get(status, key)?)),
            )
            .collect();
        if present.is_empty() {
            continue;
        }
        header(&mut out, name, Kind::Gauge, help);
        for (labels, current) in present {
            for v in values.iter().copied() {
                let mut all = labels.clone();
                all.push(format!("{l}=\"{v}\""));
                sample(&mut out, name, &all, u8::from(v == current));
            }
            if !values.contains(&current.as_str()) {
                let mut all = labels.clone();
                all.push(format!("{l}=\"{}\"", label(&current)));
                sample(&mut out, name, &all, 1);
            }
        }
    }
    let drops: Vec<(Vec<String>, f64)> = instances
        .iter()
        .flat_map(
            |&Instance {
                 labels: extra,
                 status,
             }| {
                status.iter().filter_map(|(k, v)| {
                    let reason = k.strip_prefix(DROP)?;
                    let n = number(v)?;
                    let mut all = label_list(extra);
                    all.push(format!("reason=\"{}\"", label(reason)));
                    Some((all, n))
                })
            },
        )
        .collect();
    if !drops.is_empty() {
        header(
            &mut out,
            "teredo_dropped_packets_total",
            Kind::Counter,
            "Packets dropped, by reason.",
        );
        for (labels, n) in drops {
            sample(&mut out, "teredo_dropped_packets_total", &labels, n);
        }
    }
    out
}

/// A string as a JSON string literal (RFC 8259: quote, backslash and
/// control characters escaped). `teredo-mire servers` writes its JSON with
/// it too.
pub fn json_string(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// The status as one JSON object: every key, numbers as numbers (a value
/// with a unit suffix in seconds, as a number of seconds), the rest as
/// strings.
pub fn to_json(status: &[(String, String)]) -> String {
    let fields: Vec<String> = status
        .iter()
        .map(|(k, v)| {
            let value = match number(v) {
                Some(n) => format!("{n}"),
                None => json_string(v),
            };
            format!("{}: {value}", json_string(k))
        })
        .collect();
    format!("{{{}}}\n", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELAY: &str = "interface: teredo\nmode: cone\nuptime: 12s\nservice-port: 0.0.0.0:3545\n\
        state: relaying\nprefix: 2001::/32\nmtu: 1280\npeers: 3\nudp-rx-packets: 10\n\
        drop-malformed: 2\ndrop-rate-limited: 0\nsomething-new: 7\n";

    #[test]
    fn prometheus_names_types_and_labels() {
        let m = to_prometheus(&parse_status(RELAY));
        assert!(m.contains("# TYPE teredo_udp_received_packets_total counter\nteredo_udp_received_packets_total 10\n"), "{m}");
        assert!(m.contains("teredo_uptime_seconds 12\n"), "{m}");
        assert!(m.contains("teredo_peers 3\n"));
        assert!(m.contains("teredo_dropped_packets_total{reason=\"malformed\"} 2\n"));
        assert!(m.contains("teredo_state{state=\"relaying\"} 1\n"));
        assert!(m.contains("teredo_state{state=\"qualified\"} 0\n"));
        assert!(
            m.contains("teredo_info{interface=\"teredo\",mode=\"cone\",prefix=\"2001::/32\"} 1"),
            "{m}"
        );
        // Unknown keys stay out; every sample line belongs to a declared
        // metric family.
        assert!(!m.contains("something"));
        let declared: Vec<&str> = m
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for l in m.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            assert!(declared.contains(&name), "{l}");
        }
    }

    #[test]
    fn client_values_and_hostile_text() {
        let s = parse_status(
            "interface: te\"\\x\nstate: qualified\nnat: restricted\nqualified-after: 250ms\n\
             address: 2001:0:c612:101::1\nwaiting-for: no answer from server\n",
        );
        let m = to_prometheus(&s);
        assert!(m.contains("interface=\"te\\\"\\\\x\""), "{m}");
        assert!(
            m.contains("teredo_nat_behaviour{nat=\"restricted\"} 1"),
            "{m}"
        );
        assert!(m.contains("teredo_qualification_duration_seconds 0.25\n"));
        assert!(m.contains("address=\"2001:0:c612:101::1\""));
        let j = to_json(&s);
        assert!(j.starts_with("{\"interface\": \"te\\\"\\\\x\""), "{j}");
        assert!(j.contains("\"qualified-after\": 0.25"));
        assert!(j.contains("\"waiting-for\": \"no answer from server\""));
    }

    #[test]
    fn server_keys() {
        let m = to_prometheus(&parse_status(
            "mode: server\nstate: serving\nuptime: 3s\nserver-address: 198.18.1.1\n\
             server-address2: 198.18.1.2\nworkers: 4\nrs-received: 5\nra-sent: 5\n\
             relayed-to-clients: 2\nrelayed-to-native: 1\ndrop-spoofed: 1\n",
        ));
        assert!(m.contains("# TYPE teredo_server_router_solicitations_received_total counter\nteredo_server_router_solicitations_received_total 5\n"), "{m}");
        assert!(m.contains("teredo_server_router_advertisements_sent_total 5\n"));
        assert!(m.contains("teredo_server_relayed_to_clients_packets_total 2\n"));
        assert!(m.contains("teredo_server_relayed_to_native_packets_total 1\n"));
        assert!(m.contains("teredo_server_workers 4\n"));
        assert!(m.contains("teredo_state{state=\"serving\"} 1\n"));
        assert!(
            m.contains("server_address=\"198.18.1.1\",server_address2=\"198.18.1.2\""),
            "{m}"
        );
        assert!(m.contains("teredo_dropped_packets_total{reason=\"spoofed\"} 1\n"));
    }

    #[test]
    fn several_servers_in_one_exposition() {
        let a = parse_status(
            "mode: server\nstate: serving\nserver-address: 198.18.1.1\n\
             server-address2: 198.18.1.2\nrs-received: 5\ndrop-spoofed: 1\n",
        );
        let b = parse_status(
            "mode: server\nstate: serving\nserver-address: 198.18.1.3\n\
             server-address2: 198.18.1.4\nrs-received: 7\n",
        );
        let with = |addr: &str, s: &Vec<(String, String)>| {
            (
                vec![("server_address".to_string(), addr.to_string())],
                s.clone(),
            )
        };
        let m = to_prometheus_labeled(&[with("198.18.1.1", &a), with("198.18.1.3", &b)]);
        // Each family once, a series per server.
        for family in [
            "teredo_info",
            "teredo_server_router_solicitations_received_total",
            "teredo_state",
            "teredo_dropped_packets_total",
        ] {
            assert_eq!(
                m.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}: {m}"
            );
        }
        assert!(m.contains(
            "teredo_server_router_solicitations_received_total{server_address=\"198.18.1.1\"} 5\n\
             teredo_server_router_solicitations_received_total{server_address=\"198.18.1.3\"} 7\n"
        ), "{m}");
        assert!(m.contains("teredo_state{server_address=\"198.18.1.3\",state=\"serving\"} 1\n"));
        assert!(m.contains(
            "teredo_dropped_packets_total{server_address=\"198.18.1.1\",reason=\"spoofed\"} 1\n"
        ));
        // The status's own server_address is not repeated in teredo_info.
        assert!(
            m.contains("teredo_info{mode=\"server\",server_address=\"198.18.1.3\",server_address2=\"198.18.1.4\"} 1\n"),
            "{m}"
        );
        // A label the status does not carry goes first.
        let m = to_prometheus_labeled(&[(
            vec![("status_socket".to_string(), "/run/x\"y".to_string())],
            b.clone(),
        )]);
        assert!(
            m.contains("teredo_info{status_socket=\"/run/x\\\"y\",mode=\"server\""),
            "{m}"
        );
        // One instance without labels: as to_prometheus.
        assert_eq!(
            to_prometheus_labeled(&[(Vec::new(), a.clone())]),
            to_prometheus(&a)
        );
        assert_eq!(
            to_prometheus_labeled(&[(Vec::new(), parse_status(RELAY))]),
            to_prometheus(&parse_status(RELAY))
        );
    }

    #[test]
    fn empty_and_garbage() {
        assert_eq!(to_json(&parse_status("")), "{}\n");
        let m = to_prometheus(&parse_status("no colon here\n: empty key\n"));
        assert!(m.contains("teredo_info{} 1"));
    }
}
