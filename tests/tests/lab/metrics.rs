//! Issue 17, metrics an operator scrapes: the daemons' opt-in HTTP
//! listener (`MetricsListen`), read by `promtool check metrics` and by a
//! real Prometheus server (Debian's `prometheus` package) that the test
//! starts in the relay's namespace and stops by its pid; its query API
//! must show the relay's packet counter rising with the traffic the test
//! sends through the relay.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use teredo_lab::named::{start_relay_with, unique_iface};
use teredo_lab::steps::{mostly, ping, qualify};
use teredo_lab::{
    report, wait_for, wait_until, Impl, NatKind, Netns, World, SERVER2_V4, SERVER_V4,
};

/// Where the relay serves its metrics, inside its namespace.
const RELAY_METRICS: &str = "127.0.0.1:9731";
/// Where Prometheus listens, inside the relay's namespace.
const PROMETHEUS: &str = "127.0.0.1:9732";

/// Prometheus and promtool, from Debian's `prometheus` package.
fn prometheus() -> Option<String> {
    for tool in ["prometheus", "promtool", "curl"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("needs {tool} (apt-get install prometheus curl)"));
        }
    }
    None
}

/// `curl` inside `ns`: (HTTP status code, body).
fn http_get(ns: &Netns, url: &str) -> (String, String) {
    let out = ns.exec(
        &["curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", url],
        Duration::from_secs(8),
    );
    let text = out.stdout;
    match text.rsplit_once('\n') {
        Some((body, code)) => (code.trim().to_string(), body.to_string()),
        None => (text.trim().to_string(), String::new()),
    }
}

/// `promtool check metrics` on `text`: `Err(what it said)` on a problem.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("promtool stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The first sample's value of an instant query to Prometheus' HTTP API
/// (`None`: no answer, or no sample yet).
fn query(ns: &Netns, promql: &str) -> Option<f64> {
    let url = format!(
        "http://{PROMETHEUS}/api/v1/query?query={}",
        promql
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    );
    let (code, body) = http_get(ns, &url);
    if code != "200" || !body.contains("\"status\":\"success\"") {
        return None;
    }
    // {"status":"success","data":{"resultType":"vector","result":
    //  [{"metric":{...},"value":[1733330000.123,"42"]}]}}
    let after = body.split("\"value\":[").nth(1)?;
    let v = after.split(',').nth(1)?;
    v.trim_matches(|c| c == '"' || c == ']' || c == '}')
        .parse()
        .ok()
}

fn write_prometheus_config(w: &World, target: &str) -> std::path::PathBuf {
    w.write_file(
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: teredo-relay\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
}

/// A relay with `MetricsListen`, a client through it, the native host
/// pinging the client: the listener's text passes promtool, a real
/// Prometheus scrapes it, and its query API shows the relay's UDP packet
/// counter rising by at least the echoes the relay carried. The client,
/// without the directive, listens on no TCP port.
fn relay_scraped_by_prometheus() {
    let test = "relay_scraped_by_prometheus";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let _srv = w.start_server(Impl::Ours);
    let iface = unique_iface(&w, "met");
    let relay = start_relay_with(
        &w,
        Impl::Ours,
        &iface,
        "relay-metrics",
        &format!("MetricsListen {RELAY_METRICS}\n"),
    )
    .unwrap_or_else(|| panic!("the relay did not start"));
    let cli = w.start_client(1, Impl::Ours, "");
    let (addr, _) = qualify(&w, &cli, 1, "our client");
    let log = w.log_of(&relay);
    assert!(
        log.contains(&format!("metrics served on http://{RELAY_METRICS}/metrics")),
        "the relay does not say where it serves metrics:\n{log}"
    );

    // Off unless set: the client has no TCP listener.
    let listening = w.client(1).exec(&["ss", "-ltnH"], Duration::from_secs(5));
    assert!(
        listening.stdout.trim().is_empty(),
        "the client listens on TCP without MetricsListen:\n{}",
        listening.stdout
    );

    // The exposition text itself.
    let (code, text) = http_get(w.relay(), &format!("http://{RELAY_METRICS}/metrics"));
    assert_eq!(code, "200", "{text}");
    assert!(
        text.contains("# TYPE teredo_udp_received_packets_total counter")
            && text.contains("teredo_peers_trusted"),
        "{text}"
    );
    if let Err(e) = promtool_check(&text) {
        panic!("promtool check metrics: {e}\n{text}");
    }
    let (code, _) = http_get(w.relay(), &format!("http://{RELAY_METRICS}/nothing"));
    assert_eq!(code, "404");
    let (code, json) = http_get(w.relay(), &format!("http://{RELAY_METRICS}/status.json"));
    assert_eq!(code, "200");
    assert!(json.contains("\"mode\""), "{json}");

    // A real Prometheus, scraping every second.
    let conf = write_prometheus_config(&w, RELAY_METRICS);
    let tsdb = w.dir().join("tsdb");
    let prom = w.spawn(
        w.relay(),
        "prometheus",
        &[
            "prometheus".to_string(),
            format!("--config.file={}", conf.display()),
            format!("--storage.tsdb.path={}", tsdb.display()),
            format!("--web.listen-address={PROMETHEUS}"),
        ],
    );
    let up = wait_until(Duration::from_secs(40), || {
        query(w.relay(), "up{job=\"teredo-relay\"}") == Some(1.0)
    });
    assert!(
        up,
        "Prometheus does not see the relay up:\n{}",
        tail(&w.dir().join("prometheus.log"))
    );
    let counter = "teredo_udp_received_packets_total{job=\"teredo-relay\"}";
    let before = wait_for(Duration::from_secs(10), || query(w.relay(), counter))
        .unwrap_or_else(|| panic!("no sample of {counter}"));
    let echoes = ping(&w, "native -> client through the relay", w.v6h(), addr, 10);
    assert!(mostly(echoes), "{echoes:?}");
    // Each echo reply reached the relay as a UDP datagram from the client.
    let want = before + f64::from(echoes.1);
    let after = wait_for(Duration::from_secs(15), || {
        query(w.relay(), counter).filter(|v| *v >= want)
    });
    let trusted = query(w.relay(), "teredo_peers_trusted{job=\"teredo-relay\"}");
    w.stop(&prom, Duration::from_secs(10));
    let after = after.unwrap_or_else(|| {
        panic!(
            "{counter} did not rise from {before} to {want} in Prometheus (last {:?})",
            query(w.relay(), counter)
        )
    });
    assert!(
        trusted.is_some_and(|t| t >= 1.0),
        "peers_trusted {trusted:?}"
    );
    report(
        test,
        &format!(
            "Prometheus scraped {RELAY_METRICS}: {counter} {before} -> {after} after {} echoes; teredo_peers_trusted {}",
            echoes.1,
            trusted.unwrap_or_default()
        ),
    );
}

/// Our server with `MetricsListen` on its own address (not loopback: the
/// scrape comes from another namespace, the relay's): the router
/// solicitations of a client that qualified are counted, in text that
/// promtool accepts.
fn server_scraped() {
    let test = "server_scraped";
    let w = World::build(test, &[NatKind::PortRestricted]);
    let listen = format!("{SERVER_V4}:9733");
    let srv = w.spawn_daemon(
        w.srv(),
        "server-metrics",
        &Impl::Ours.miredo_server(),
        &format!(
            "ServerBindAddress {SERVER_V4}\nServerBindAddress2 {SERVER2_V4}\nMetricsListen {listen}\n"
        ),
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(5), || w.srv().udp_listening(3544)),
        "the server does not listen:\n{}",
        w.log_of(&srv)
    );
    let scrape = || {
        let (code, text) = http_get(w.relay(), &format!("http://{listen}/metrics"));
        assert_eq!(code, "200", "{text}\n{}", w.log_of(&srv));
        text
    };
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let rs = "teredo_server_router_solicitations_received_total";
    let ra = "teredo_server_router_advertisements_sent_total";
    let before = scrape();
    let (rs0, ra0) = (value(&before, rs), value(&before, ra));
    let cli = w.start_client(1, Impl::Ours, "");
    qualify(&w, &cli, 1, "our client");
    let after = scrape();
    if let Err(e) = promtool_check(&after) {
        panic!("promtool check metrics: {e}\n{after}");
    }
    let (rs1, ra1) = (value(&after, rs), value(&after, ra));
    // Qualification: at least one solicitation to each server address.
    assert!(
        rs1 >= rs0 + 2.0 && ra1 >= ra0 + 2.0,
        "{rs0}->{rs1}, {ra0}->{ra1}"
    );
    report(
        test,
        &format!("server scraped from the relay's namespace at {listen}: {rs} {rs0} -> {rs1}, {ra} {ra0} -> {ra1}"),
    );
}

/// The operator's files in deploy/prometheus: the scrape configuration and
/// the alerting rules pass `promtool check`, and the rules' unit tests
/// (`promtool test rules`) pass: each alert fires for the series meant to
/// fire it and for no other.
fn operator_files_pass_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "teredo-alerts.yml"],
        &["test", "rules", "teredo-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("promtool: {e}"));
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn tail(p: &Path) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

teredo_lab::lab_tests! {
    needs(prometheus): [
        operator_files_pass_promtool,
    ],
    needs(root, ours, prometheus): [
        relay_scraped_by_prometheus,
        server_scraped,
    ],
}
