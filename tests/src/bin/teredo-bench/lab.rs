//! The measurements, each in a lab world of its own: the subject's relay
//! (or the floor) in the relay namespace, load from the native host and
//! from the client's site, counts taken at the far end or on the wire.

use std::collections::HashMap;
use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use libteredo::addr::TeredoAddr;
use teredo_lab::{
    ping6_stats, teredo_addr_of, wait_for, wait_until, Daemon, Impl, Netns, World, NATIVE_V6,
    RELAY_V4, SERVER_V4,
};

use crate::procfs;
use crate::{interrupted, Samples, Subject};

/// UDP ports of the benchmark's traffic (inner UDP, inside IPv6).
const PORT_N2C: u16 = 9000;
const PORT_C2N: u16 = 9001;
const PORT_SAT: u16 = 9009;
const PORT_PEERS: u16 = 9010;
/// The trusted-peer memory test: the clients' answers to the native host,
/// and the native host's datagrams to the clients.
const PORT_TRUSTED: u16 = 9011;
const PORT_TRUSTED_NATIVE: u16 = 9012;
const PORT_IPERF: u16 = 5201;
/// Paced load: packets per second.
pub const PACED_RATE: f64 = 20_000.0;
/// The spoofed sources of the router-solicitation flood (198.19.0.0/16),
/// routed back to the native host's namespace.
const RS_NET: &str = "198.19";
/// The native host's IPv4 side, added for the RS flood.
const V6H_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
/// A Teredo server that never answers (blackholed), and the mapped
/// addresses of the flooded peers (blackholed too).
const DEAD_SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 1);
/// The trusted-peer memory test's clients: mapped to TRUSTED_NET.0.0.0/12,
/// one global unicast IPv4 address each (outside the lab's 198.18.0.0/15,
/// which a stricter is-global check might refuse), and their Teredo server
/// in the same /8, which the lab routes to the native host to be dropped.
const TRUSTED_NET: u8 = 11;
const TRUSTED_SERVER: Ipv4Addr = Ipv4Addr::new(TRUSTED_NET, 255, 0, 1);
/// The relay's interface where what it sends the trusted-peer test's
/// clients is discarded: a TUN device nobody reads (no carrier: the
/// kernel drops what is routed there, and the sender sees no error).
const SINK: &str = "tbsink";
/// The relays' UDP receive buffer in the trusted-peer test.
const RELAY_RCVBUF: i32 = 64 << 20;
/// Where the floor and the relays listen.
const RELAY_PORT: u16 = 3544;
/// The C relay's peer cap: libteredo's MAX_PEERS when built with libJudy,
/// as Debian's miredo is (`ldd /usr/sbin/miredo` shows libJudy).
pub const C_PEER_CAP: u64 = 1_048_576;

/// Options every measurement shares.
pub struct Opts {
    /// Seconds of load per measured point.
    pub secs: f64,
    /// Qualification samples per client start-up block.
    pub quals: usize,
    /// Peers offered in the memory measurement.
    pub peers: u64,
    /// Packets per second offered in the memory measurement.
    pub peers_rate: f64,
    /// Peers per second offered in the trusted-peer memory measurement.
    pub trusted_rate: f64,
    /// Which metric groups to run.
    pub only: Vec<String>,
    /// The helper binaries' directory.
    pub bin_dir: PathBuf,
    /// Print what happens.
    pub verbose: bool,
}

impl Opts {
    pub fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
    fn gen(&self) -> String {
        self.bin_dir.join("teredo-bench-gen").display().to_string()
    }
    fn floor(&self) -> String {
        self.bin_dir
            .join("teredo-bench-floor")
            .display()
            .to_string()
    }
}

fn say(o: &Opts, msg: &str) {
    if o.verbose {
        eprintln!("  {msg}");
    }
}

fn check_interrupt() {
    if interrupted() {
        panic!("interrupted");
    }
}

/// The `key=value` words of the last line of `out` that has any.
fn kv(out: &str) -> HashMap<String, String> {
    out.lines()
        .rev()
        .find(|l| l.contains('='))
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> f64 {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// Runs a helper in `ns` to completion; its result line as a map.
fn run_helper(
    ns: &Netns,
    argv: &[String],
    timeout: Duration,
) -> Result<HashMap<String, String>, String> {
    let out = ns.exec(argv, timeout);
    if !out.success() {
        return Err(format!(
            "`{}` failed: {}{}",
            argv.join(" "),
            out.stderr.trim(),
            out.stdout.trim()
        ));
    }
    Ok(kv(&out.stdout))
}

/// A receiver spawned in the background; `finish` waits for its count.
struct Receiver {
    d: Daemon,
}

impl Receiver {
    fn start(
        w: &World,
        o: &Opts,
        ns: &Netns,
        label: &str,
        port: u16,
        secs: f64,
        punch: Option<SocketAddrV4>,
    ) -> Receiver {
        let mut argv = vec![
            o.gen(),
            "recv".into(),
            "--port".into(),
            port.to_string(),
            "--secs".into(),
            format!("{secs:.3}"),
            "--idle-ms".into(),
            "400".into(),
        ];
        if let Some(p) = punch {
            argv.push("--punch".into());
            argv.push(p.to_string());
        }
        let d = w.spawn(ns, label, &argv);
        let ready = wait_until(Duration::from_secs(5), || w.log_of(&d).contains("ready"));
        assert!(ready, "receiver {label} not ready: {}", w.log_of(&d));
        Receiver { d }
    }

    fn finish(self, w: &World, within: Duration) -> u64 {
        let done = wait_until(within, || !w.is_running(&self.d));
        if !done {
            w.stop(&self.d, Duration::from_millis(500));
        }
        num(&kv(&w.log_of(&self.d)), "received") as u64
    }
}

/// The name of a world's veth `suffix` (`i-r`, `h-i`, ...).
fn ifname(w: &World, suffix: &str) -> String {
    format!("{}{suffix}", w.prefix())
}

/// Additions to the standard world for the benchmark, all inside its own
/// namespaces: an IPv4 leg for the native host (the RS flood's spoofed
/// sources are routed back there, where an nftables counter takes the
/// RAs), blackholes for the flooded peers, and counters at the relay's
/// exit for the saturation runs.
fn prepare(w: &World) -> Result<(), String> {
    let (inet, v6h) = (w.inet(), w.v6h());
    let (i_h, h_i, i_r) = (ifname(w, "i-h"), ifname(w, "h-i"), ifname(w, "i-r"));
    inet.ip(&format!("addr add 198.18.200.254/24 dev {i_h}"))?;
    v6h.ip(&format!("addr add {V6H_V4}/24 dev {h_i}"))?;
    v6h.ip("route add 198.18.0.0/15 via 198.18.200.254")?;
    inet.ip(&format!("route add {RS_NET}.0.0/16 via {V6H_V4}"))?;
    inet.ip("route add blackhole 198.18.250.0/24")?;
    inet.ip("route add blackhole 198.18.252.0/22")?;
    for ns in [inet, v6h] {
        ns.run(&[
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        ])?;
    }
    // Saturation traffic leaves the relay and is counted and dropped at
    // once, so that nothing downstream competes for the CPUs. The inner
    // UDP port (after the 8-byte UDP header and the 40-byte IPv6 header)
    // tells it from the paced traffic, which goes all the way.
    inet.nft(&format!(
        "add table inet bench\n\
         add counter inet bench n2c\n\
         add counter inet bench c2n\n\
         add chain inet bench pre {{ type filter hook prerouting priority -300 ; }}\n\
         add rule inet bench pre iifname \"{i_r}\" ip saddr {RELAY_V4} udp length >= 100 @th,400,16 {PORT_SAT} counter name n2c drop\n\
         add rule inet bench pre iifname \"{i_r}\" ip6 daddr {NATIVE_V6} udp dport {PORT_SAT} counter name c2n drop\n"
    ))?;
    v6h.nft(
        "add table ip bench\n\
         add counter ip bench ra\n\
         add chain ip bench pre { type filter hook prerouting priority -300 ; }\n\
         add rule ip bench pre ip saddr 198.18.1.0/24 udp sport 3544 counter name ra drop\n",
    )?;
    Ok(())
}

/// Packets counted by the named nftables counter.
fn counter(ns: &Netns, family: &str, name: &str) -> u64 {
    counter_both(ns, family, name).0
}

/// Packets and bytes counted by the named nftables counter.
fn counter_both(ns: &Netns, family: &str, name: &str) -> (u64, u64) {
    let out = ns
        .run(&["nft", "list", "counter", family, "bench", name])
        .unwrap_or_default();
    let field = |f: &str| {
        out.split_whitespace()
            .skip_while(|w| *w != f)
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("packets"), field("bytes"))
}

/// Datagrams of `size` bytes (IP header included, `headers` bytes of IP
/// and UDP headers) that passed the named counter. A relay that sends with
/// UDP GSO hands the next hop one super-packet for many datagrams (it is
/// cut later): it counts as one packet of `headers` plus each datagram's
/// payload, so the bytes tell how many datagrams it holds; for plain
/// datagrams this is the packet count.
fn counter_datagrams(ns: &Netns, family: &str, name: &str, size: u64, headers: u64) -> u64 {
    let (packets, bytes) = counter_both(ns, family, name);
    bytes.saturating_sub(headers * packets) / (size - headers).max(1)
}

/// The interface names of this run (per-namespace, but our daemons'
/// status sockets live in /run/miredo/IFACE.status for all to see, so
/// they must not clash with other labs running on the machine).
pub fn iface(role: char) -> String {
    format!("tb{role}{}", std::process::id() % 100_000)
}

fn relay_config(iface: &str) -> String {
    format!("RelayType cone\nInterfaceName {iface}\nBindPort {RELAY_PORT}\n")
}

/// Starts the relay of `imp` with its own interface name and `extra`
/// configuration lines; waits for its 2001::/32 route.
fn start_relay(w: &World, imp: Impl, iface: &str, extra: &str) -> Daemon {
    let label = format!("relay-{}", imp.tag());
    let config = relay_config(iface) + extra;
    let d = w.spawn_daemon(w.relay(), &label, &imp.miredo(), &config, &[]);
    let up = wait_until(Duration::from_secs(5), || {
        !w.relay()
            .routes6(&format!("2001::/32 dev {iface}"))
            .is_empty()
    });
    assert!(
        up,
        "{label} has no 2001::/32 route after 5 s: {}",
        w.log_of(&d)
    );
    d
}

/// Starts the floor in the relay's namespace, with the route a relay sets.
fn start_floor(w: &World, o: &Opts, mode: &str, iface: &str) -> Daemon {
    let label = format!("floor-{mode}");
    let bind = SocketAddrV4::new(RELAY_V4, RELAY_PORT).to_string();
    let argv = [
        o.floor(),
        "--tun".into(),
        iface.into(),
        "--bind".into(),
        bind,
        "--mode".into(),
        mode.into(),
    ];
    let d = w.spawn(w.relay(), &label, &argv);
    let ready = wait_until(Duration::from_secs(5), || w.log_of(&d).contains("ready"));
    assert!(ready, "{label} not ready: {}", w.log_of(&d));
    let r = w.relay();
    r.ip(&format!("link set {iface} mtu 1280 up"))
        .unwrap_or_else(|e| panic!("{e}"));
    r.ip(&format!("-6 route add 2001::/32 dev {iface}"))
        .unwrap_or_else(|e| panic!("{e}"));
    d
}

fn start_client(w: &World, imp: Impl, iface: &str, label: &str) -> Daemon {
    let config = format!("RelayType client\nServerAddress {SERVER_V4}\nInterfaceName {iface}\n");
    let client = w.client(1).clone();
    w.spawn_daemon(&client, label, &imp.miredo(), &config, &[])
}

/// How a measurement reaches the client: through the subject's relay to a
/// real Teredo client, or through the floor to a plain receiver.
struct Path2 {
    /// The relay or floor process.
    relay: Daemon,
    /// The destination of native -> client traffic.
    client_addr: Ipv6Addr,
    /// For the floor: the receiver must punch the NAT towards it.
    punch: Option<SocketAddrV4>,
}

/// CPU per forwarded packet at the paced rate, native -> client.
fn cpu_n2c(w: &World, o: &Opts, p: &Path2, size: usize) -> Result<(f64, String), String> {
    let rx = Receiver::start(
        w,
        o,
        w.client(1),
        &format!("rx-n2c-{size}"),
        PORT_N2C,
        o.secs + 4.0,
        p.punch,
    );
    sleep(Duration::from_millis(150));
    let cpu0 = procfs::tree_cpu_ns(p.relay.pid);
    let tick0 = procfs::tree_ticks_ns(p.relay.pid);
    let g = run_helper(
        w.v6h(),
        &[
            o.gen(),
            "udp6".into(),
            "--dst".into(),
            p.client_addr.to_string(),
            "--port".into(),
            PORT_N2C.to_string(),
            "--size".into(),
            size.to_string(),
            "--rate".into(),
            PACED_RATE.to_string(),
            "--secs".into(),
            o.secs.to_string(),
        ],
        Duration::from_secs_f64(o.secs + 10.0),
    )?;
    sleep(Duration::from_millis(100));
    let cpu1 = procfs::tree_cpu_ns(p.relay.pid);
    let tick1 = procfs::tree_ticks_ns(p.relay.pid);
    let got = rx.finish(w, Duration::from_secs(6));
    let sent = num(&g, "sent");
    let secs = num(&g, "secs");
    if got == 0 {
        return Err(format!(
            "native -> client {size} B: nothing arrived of {sent}"
        ));
    }
    let us = (cpu1 - cpu0) as f64 / 1000.0 / got as f64;
    let tick_us = (tick1 - tick0) as f64 / 1000.0 / got as f64;
    Ok((
        us,
        format!(
            "{got}/{sent} arrived, offered {:.0}/s; utime+stime says {tick_us:.2} us",
            sent / secs.max(1e-9)
        ),
    ))
}

/// CPU per forwarded packet at the paced rate, client -> native.
fn cpu_c2n(w: &World, o: &Opts, p: &Path2, size: usize) -> Result<(f64, String), String> {
    let rx = Receiver::start(
        w,
        o,
        w.v6h(),
        &format!("rx-c2n-{size}"),
        PORT_C2N,
        o.secs + 6.0,
        None,
    );
    let (g, cpu) = teredo_load(w, o, p, PORT_C2N, size, PACED_RATE, false)?;
    let got = rx.finish(w, Duration::from_secs(6));
    let sent = num(&g, "sent");
    let secs = num(&g, "secs");
    if got == 0 {
        return Err(format!(
            "client -> native {size} B: nothing arrived of {sent}"
        ));
    }
    let us = cpu as f64 / 1000.0 / got as f64;
    Ok((
        us,
        format!(
            "{got}/{sent} arrived, offered {:.0}/s{}",
            sent / secs.max(1e-9),
            match (p.punch, g.get("introduced")) {
                (None, Some(i)) => format!(", introduced to the relay: {i}"),
                _ => String::new(),
            }
        ),
    ))
}

/// Runs the Teredo-client load generator from the client's site; returns
/// its result and the relay's CPU nanoseconds while it sent (its
/// qualification with the server is not counted: the relay takes no part).
fn teredo_load(
    w: &World,
    o: &Opts,
    p: &Path2,
    port: u16,
    size: usize,
    rate: f64,
    gso: bool,
) -> Result<(HashMap<String, String>, u64), String> {
    let mut argv = vec![
        o.gen(),
        "teredo".into(),
        "--server".into(),
        SERVER_V4.to_string(),
        "--relay".into(),
        SocketAddrV4::new(RELAY_V4, RELAY_PORT).to_string(),
        "--dst".into(),
        NATIVE_V6.to_string(),
        "--port".into(),
        port.to_string(),
        "--size".into(),
        size.to_string(),
        "--rate".into(),
        rate.to_string(),
        "--secs".into(),
        o.secs.to_string(),
    ];
    if p.punch.is_none() {
        argv.push("--introduce".into());
    }
    if gso {
        argv.push("--gso".into());
    }
    let cpu0 = procfs::tree_cpu_ns(p.relay.pid);
    let g = run_helper(w.client(1), &argv, Duration::from_secs_f64(o.secs + 15.0))?;
    sleep(Duration::from_millis(100));
    let cpu1 = procfs::tree_cpu_ns(p.relay.pid);
    Ok((g, cpu1.saturating_sub(cpu0)))
}

/// The saturation datagrams as counted: native -> client, IPv4 (20) + UDP
/// (8) + the 1,240-byte IPv6 packet; client -> native, the IPv6 packet
/// (40 + 8 + 1,192 bytes of payload).
const N2C_SAT_SIZE: u64 = 1268;
const C2N_SAT_SIZE: u64 = 1240;

/// Packets per second forwarded at saturation, native -> client, counted
/// as they leave the relay.
/// With `gso`, the generator sends in UDP GSO messages (it offers more).
fn sat_n2c(w: &World, o: &Opts, p: &Path2, gso: bool) -> Result<(f64, String), String> {
    let c0 = counter_datagrams(w.inet(), "inet", "n2c", N2C_SAT_SIZE, 28);
    let g = run_helper(
        w.v6h(),
        &[
            o.gen(),
            "udp6".into(),
            "--dst".into(),
            p.client_addr.to_string(),
            "--port".into(),
            PORT_SAT.to_string(),
            "--size".into(),
            "1200".into(),
            "--rate".into(),
            "0".into(),
            "--secs".into(),
            o.secs.to_string(),
        ]
        .into_iter()
        .chain(gso.then(|| "--gso".to_string()))
        .collect::<Vec<_>>(),
        Duration::from_secs_f64(o.secs + 10.0),
    )?;
    sleep(Duration::from_millis(100));
    let c1 = counter_datagrams(w.inet(), "inet", "n2c", N2C_SAT_SIZE, 28);
    let secs = num(&g, "secs").max(1e-9);
    let pps = (c1 - c0) as f64 / secs;
    Ok((pps, format!("offered {:.0}/s", num(&g, "sent") / secs)))
}

/// The offered rate of a saturation or flood result note ("offered N/s").
fn offered(note: &str) -> Option<f64> {
    let i = note.find("offered ")?;
    note[i + 8..].split('/').next()?.trim().parse().ok()
}

fn sat_c2n(w: &World, o: &Opts, p: &Path2, gso: bool) -> Result<(f64, String), String> {
    let c0 = counter_datagrams(w.inet(), "inet", "c2n", C2N_SAT_SIZE, 48);
    let (g, _) = teredo_load(w, o, p, PORT_SAT, 1200, 0.0, gso)?;
    let c1 = counter_datagrams(w.inet(), "inet", "c2n", C2N_SAT_SIZE, 48);
    let secs = num(&g, "secs").max(1e-9);
    let pps = (c1 - c0) as f64 / secs;
    Ok((pps, format!("offered {:.0}/s", num(&g, "sent") / secs)))
}

/// TCP goodput in Gb/s by iperf3, native -> client (`reverse` false) or
/// client -> native.
fn tcp(w: &World, o: &Opts, client_addr: Ipv6Addr, reverse: bool) -> Result<(f64, String), String> {
    let srv = w.spawn(
        w.client(1),
        &format!("iperf3-s-{}", if reverse { "rev" } else { "fwd" }),
        &["iperf3", "-s", "-1", "-p", &PORT_IPERF.to_string()],
    );
    // iperf3's "Server listening" sits in its stdout buffer: ask ss.
    let port = format!(":{PORT_IPERF}");
    let ready = wait_until(Duration::from_secs(5), || {
        w.client(1)
            .run(&["ss", "-H", "-t", "-l", "-n"])
            .is_ok_and(|o| o.split_whitespace().any(|f| f.ends_with(&port)))
    });
    if !ready {
        w.stop(&srv, Duration::from_secs(1));
        return Err(format!("iperf3 server not listening: {}", w.log_of(&srv)));
    }
    let secs = o.secs.ceil().max(1.0) as u64;
    let mut argv = vec![
        "iperf3".to_string(),
        "-c".into(),
        client_addr.to_string(),
        "-p".into(),
        PORT_IPERF.to_string(),
        "-t".into(),
        secs.to_string(),
        "-J".into(),
    ];
    if reverse {
        argv.push("-R".into());
    }
    let out = w.v6h().exec(&argv, Duration::from_secs(secs + 15));
    w.stop(&srv, Duration::from_secs(1));
    let j = out.stdout;
    let bps = j
        .find("\"sum_received\"")
        .and_then(|i| j[i..].find("\"bits_per_second\"").map(|k| i + k))
        .and_then(|i| {
            let rest = &j[i + "\"bits_per_second\"".len()..];
            let rest = rest.trim_start().trim_start_matches(':').trim_start();
            let end = rest.find([',', '\n', '}']).unwrap_or(rest.len());
            rest[..end].trim().parse::<f64>().ok()
        })
        .ok_or_else(|| format!("iperf3 gave no result: {}", out.stderr.trim()))?;
    Ok((bps / 1e9, String::new()))
}

/// The fraction of RSs answered when flooded from spoofed sources.
fn rs_flood(w: &World, o: &Opts) -> Result<(f64, String), String> {
    let r0 = counter(w.v6h(), "ip", "ra");
    let g = run_helper(
        w.v6h(),
        &[
            o.gen(),
            "rs".into(),
            "--server".into(),
            SERVER_V4.to_string(),
            "--net".into(),
            RS_NET.into(),
            "--secs".into(),
            o.secs.to_string(),
        ],
        Duration::from_secs_f64(o.secs + 10.0),
    )?;
    sleep(Duration::from_millis(300));
    let r1 = counter(w.v6h(), "ip", "ra");
    let sent = num(&g, "sent");
    if sent <= 0.0 {
        return Err("the RS generator sent nothing".into());
    }
    let secs = num(&g, "secs").max(1e-9);
    Ok((
        (r1 - r0) as f64 / sent,
        format!(
            "{} RAs for {sent} RSs, offered {:.0}/s",
            r1 - r0,
            sent / secs
        ),
    ))
}

fn record(s: &mut Samples, o: &Opts, metric: &str, who: Subject, r: Result<(f64, String), String>) {
    match r {
        Ok((v, note)) => {
            say(o, &format!("{metric} {}: {v:.4} {note}", who.name()));
            s.add(metric, who, v);
            if metric.starts_with("sat_") || metric == "rs" {
                if let Some(x) = offered(&note) {
                    s.add(&format!("{metric}_offered"), who, x);
                }
            }
        }
        Err(e) => {
            eprintln!("  {metric} {}: FAILED: {e}", who.name());
            s.fail(metric, who, &e);
        }
    }
}

/// The load tests through `p`: CPU per packet at the paced rate for both
/// directions and both sizes, then saturation both ways.
fn traffic(w: &World, o: &Opts, p: &Path2, who: Subject, s: &mut Samples) {
    if o.wants("cpu") {
        for size in [1200usize, 64] {
            check_interrupt();
            record(
                s,
                o,
                &format!("cpu_n2c_{size}"),
                who,
                cpu_n2c(w, o, p, size),
            );
            check_interrupt();
            record(
                s,
                o,
                &format!("cpu_c2n_{size}"),
                who,
                cpu_c2n(w, o, p, size),
            );
        }
    }
    if o.wants("sat") {
        check_interrupt();
        if let Some(punch) = p.punch {
            // The floor forgets nothing, but the NAT might: punch again.
            Receiver::start(w, o, w.client(1), "rx-punch", PORT_N2C, 0.3, Some(punch))
                .finish(w, Duration::from_secs(2));
        }
        record(s, o, "sat_n2c", who, sat_n2c(w, o, p, false));
        check_interrupt();
        record(s, o, "sat_c2n", who, sat_c2n(w, o, p, false));
        check_interrupt();
        record(s, o, "sat_n2c_gso", who, sat_n2c(w, o, p, true));
        check_interrupt();
        record(s, o, "sat_c2n_gso", who, sat_c2n(w, o, p, true));
    }
}

fn build(test: &str) -> World {
    let w = World::build(test, &[teredo_lab::NatKind::PortRestricted]);
    if let Err(e) = prepare(&w) {
        panic!("benchmark setup failed: {e}");
    }
    w
}

/// When `ip monitor`'s log (`mon`) first shows a Teredo address (prefix
/// 2001::/32, as in the lab) added on `iface`: the log is read every
/// millisecond.
fn address_event(w: &World, mon: &Daemon, iface: &str, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    let dev = format!(": {iface} ");
    while Instant::now() < deadline {
        let log = w.log_of(mon);
        if log
            .lines()
            .any(|l| !l.starts_with("Deleted") && l.contains(&dev) && l.contains("inet6 2001:0:"))
        {
            return Some(Instant::now());
        }
        sleep(Duration::from_millis(1));
    }
    None
}

/// One block of a round for the C miredo or ours: qualification, the
/// traffic tests through its relay and client, TCP, and the RS flood on
/// its server. The server is the C one except for the RS flood, so that
/// qualification compares clients only.
pub fn relay_block(imp: Impl, who: Subject, o: &Opts, s: &mut Samples) {
    let w = build(&format!("bench_{}", imp.tag()));
    let server = w.start_server(Impl::C);
    let (riface, ciface) = (iface('r'), iface('c'));
    let relay = start_relay(&w, imp, &riface, "");

    let mut client = None;
    let quals = if o.wants("qual") { o.quals.max(1) } else { 1 };
    for q in 0..quals {
        check_interrupt();
        let label = format!("client-{}-{q}", imp.tag());
        // Address events from the kernel, read as they come: polling with
        // `ip addr` would only see the address up to 15 ms late. Only when
        // qualification is measured.
        let mon = o.wants("qual").then(|| {
            let m = w.spawn(
                w.client(1),
                &format!("addr-monitor-{}-{q}", imp.tag()),
                &["ip", "-6", "-o", "monitor", "address"],
            );
            // The monitor subscribes in a few ms; not part of the time taken.
            sleep(Duration::from_millis(200));
            m
        });
        let d = start_client(&w, imp, &ciface, &label);
        let seen = mon
            .as_ref()
            .and_then(|m| address_event(&w, m, &ciface, Duration::from_secs(15)));
        if let Some(m) = &mon {
            w.stop(m, Duration::from_secs(1));
        }
        // After the monitor's 15 s, a short look is enough.
        let wait = if mon.is_some() { 2 } else { 15 };
        let got = wait_for(Duration::from_secs(wait), || {
            teredo_addr_of(w.client(1), &ciface)
        });
        let sample = match (&got, seen) {
            (Some(addr), Some(at)) => Ok((
                at.duration_since(d.started).as_secs_f64() * 1000.0,
                addr.to_string(),
            )),
            // Not a time to record: the monitor missed the event.
            (Some(addr), None) => Err(format!(
                "{addr} configured, but ip monitor reported no address: {}",
                mon.as_ref().map(|m| w.log_of(m)).unwrap_or_default()
            )),
            (None, _) => Err(format!("no address in 15 s: {}", w.log_of(&d))),
        };
        // Without the qual group, only a client that got no address is
        // worth a line (its traffic tests are skipped).
        if o.wants("qual") || got.is_none() {
            record(s, o, "qual", who, sample);
        }
        if q + 1 < quals {
            w.stop(&d, Duration::from_secs(3));
            // The interface goes with the daemon; wait for that.
            wait_until(Duration::from_secs(3), || !w.client(1).has_iface(&ciface));
        } else {
            client = Some(d);
        }
    }
    let Some(addr) = teredo_addr_of(w.client(1), &ciface) else {
        eprintln!(
            "  {}: the client has no Teredo address; skipping its traffic tests",
            who.name()
        );
        return;
    };
    let _ = client;
    // Warm up: the relay learns the client (bubbles), the client the relay.
    let (_, a) = ping6_stats(w.v6h(), addr, 3, Duration::from_secs(5));
    let (_, b) = ping6_stats(w.client(1), NATIVE_V6, 3, Duration::from_secs(5));
    say(
        o,
        &format!("{}: warm-up pings {a}/3 in, {b}/3 out", who.name()),
    );

    let p = Path2 {
        relay: relay.clone(),
        client_addr: addr,
        punch: None,
    };
    traffic(&w, o, &p, who, s);
    if o.wants("tcp") {
        check_interrupt();
        record(s, o, "tcp_n2c", who, tcp(&w, o, addr, false));
        check_interrupt();
        record(s, o, "tcp_c2n", who, tcp(&w, o, addr, true));
    }
    if !w.is_running(&relay) {
        eprintln!(
            "  {}: the relay DIED during the tests: {}",
            who.name(),
            w.log_of(&relay)
        );
    }
    if o.wants("rs") {
        check_interrupt();
        w.stop(&server, Duration::from_secs(3));
        let _srv = w.start_server_labeled(imp, &format!("server-bench-{}", imp.tag()));
        record(s, o, "rs", who, rs_flood(&w, o));
    }
}

/// One block of a round for the floor: both variants in turn.
pub fn floor_block(o: &Opts, s: &mut Samples) {
    if !(o.wants("cpu") || o.wants("sat")) {
        return;
    }
    let w = build("bench_floor");
    // The load generator learns its mapped address from a Teredo server,
    // as it does with the real relays.
    let _server = w.start_server(Impl::C);
    let riface = iface('f');
    for (mode, who) in [
        ("single", Subject::FloorSingle),
        ("batch", Subject::FloorBatch),
    ] {
        check_interrupt();
        let floor = start_floor(&w, o, mode, &riface);
        // Any Teredo address will do: the floor sends everything to the
        // receiver that punched its NAT.
        let fake = TeredoAddr {
            prefix: 0x2001_0000,
            server: SERVER_V4,
            flags: 0,
            mapped_port: PORT_N2C,
            mapped_addr: w.nat_wan_v4(1),
        }
        .to_ipv6();
        let p = Path2 {
            relay: floor.clone(),
            client_addr: fake,
            punch: Some(SocketAddrV4::new(RELAY_V4, RELAY_PORT)),
        };
        traffic(&w, o, &p, who, s);
        w.stop(&floor, Duration::from_secs(2));
        wait_until(Duration::from_secs(3), || !w.relay().has_iface(&riface));
    }
}

/// Reads a number from our relay's status socket (the C one has none).
fn status_value(iface: &str, key: &str) -> Option<u64> {
    let path = Path::new("/run/miredo").join(format!("{iface}.status"));
    let mut s = UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

fn tun_stat(w: &World, iface: &str, what: &str) -> u64 {
    w.relay()
        .run(&["cat", &format!("/sys/class/net/{iface}/statistics/{what}")])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Relay memory per peer: RSS growth after one packet to each of many
/// distinct Teredo addresses whose server never answers.
pub fn memory_block(imp: Impl, who: Subject, o: &Opts, s: &mut Samples) {
    let w = build(&format!("bench_mem_{}", imp.tag()));
    let riface = iface('m');
    // Our relay admits 100 new peers per second per source (/64 on the
    // native side) by default, and the flood comes from one host: lift
    // that to measure what a peer costs (the C relay has no such limit).
    // Likewise its 64 MiB cap on queued packets, all peers together: a
    // million 104-byte packets need more.
    let extra = match imp {
        Impl::Ours => "PeerRateLimit 0\nGlobalPeerRateLimit 0\nMaxQueuedBytes 268435456\n",
        Impl::C => "",
    };
    let relay = start_relay(&w, imp, &riface, extra);
    // Let the kernel queue more for a relay that falls behind.
    let _ = w
        .relay()
        .ip(&format!("link set {riface} txqueuelen 100000"));
    sleep(Duration::from_millis(500));
    let rss0 = procfs::tree_rss(relay.pid);
    let cpu0 = procfs::tree_cpu_ns(relay.pid);
    let tx0 = tun_stat(&w, &riface, "tx_packets");
    let drop0 = tun_stat(&w, &riface, "tx_dropped");
    let t0 = Instant::now();
    let g = run_helper(
        w.v6h(),
        &[
            o.gen(),
            "peers".into(),
            "--count".into(),
            o.peers.to_string(),
            "--rate".into(),
            o.peers_rate.to_string(),
            "--secs".into(),
            "60".into(),
            "--server".into(),
            DEAD_SERVER.to_string(),
            "--port".into(),
            PORT_PEERS.to_string(),
            "--size".into(),
            "64".into(),
        ],
        Duration::from_secs(70),
    );
    let g = match g {
        Ok(g) => g,
        Err(e) => {
            s.fail("mem", who, &e);
            return;
        }
    };
    // Wait until the relay has read everything the kernel queued for it.
    let last = settled(|| tun_stat(&w, &riface, "tx_packets"));
    let rss1 = procfs::tree_rss(relay.pid);
    let cpu = procfs::tree_cpu_ns(relay.pid).saturating_sub(cpu0);
    let took = t0.elapsed();
    let delivered = last.saturating_sub(tx0);
    let dropped = tun_stat(&w, &riface, "tx_dropped").saturating_sub(drop0);
    let held = match imp {
        Impl::Ours => status_value(&riface, "peers").unwrap_or(delivered),
        Impl::C => delivered.min(C_PEER_CAP),
    };
    let not_queued = match imp {
        Impl::Ours => status_value(&riface, "drop-queue-full")
            .map_or(String::new(), |n| format!(", {n} packets not queued (cap)")),
        Impl::C => String::new(),
    };
    let grew = rss1.saturating_sub(rss0);
    let alive = w.is_running(&relay);
    let note = format!(
        "RSS {:.1} -> {:.1} MiB; {} sent, {delivered} read by the relay, {dropped} dropped by the TUN queue, {held} peers held{}{not_queued}; {:.1} s, relay CPU {:.2} s ({:.1} us per packet read){}",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        num(&g, "sent"),
        if imp == Impl::Ours {
            " (status socket; PeerRateLimit 0, MaxQueuedBytes 256 MiB)"
        } else {
            " (assumed: all read, up to the cap)"
        },
        took.as_secs_f64(),
        cpu as f64 / 1e9,
        cpu as f64 / 1000.0 / delivered.max(1) as f64,
        if alive { "" } else { "; THE RELAY DIED" }
    );
    if held == 0 {
        s.fail("mem", who, &format!("no peer held: {note}"));
        return;
    }
    record(
        s,
        o,
        "mem",
        who,
        Ok((grew as f64 / held as f64, note.clone())),
    );
    s.note(&format!("memory {}: {note}", who.name()));
}

/// A field of the `Udp:` lines of /proc/net/snmp in `ns` (RcvbufErrors:
/// datagrams a full socket buffer dropped).
fn udp_snmp(ns: &Netns, field: &str) -> u64 {
    let text = ns.run(&["cat", "/proc/net/snmp"]).unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == field)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Packets the kernel dropped for a full input backlog
/// (netdev_max_backlog), all CPUs, the whole machine (the veth pairs of
/// the labs pass through it).
fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok())
        .sum()
}

/// Relay memory per trusted peer: RSS growth once many Teredo clients
/// have each answered, as a relay sees it happen: the native host sends a
/// datagram to each client's Teredo address (the relay creates the peer,
/// queues the datagram and sends bubbles), and a moment later the client's
/// answer arrives from the mapped endpoint its Teredo address names
/// (spoofed, from the native host's namespace), which proves the endpoint
/// (RFC 4380 5.4.2): the peer becomes trusted, its queue is sent, and the
/// answer forwarded to the native side. The C relay drops packets from
/// peers it does not know, hence the native datagram first, for both.
/// The machine has to carry a million of each in less than the 30 s a
/// peer lives: what the relay sends is discarded in its own namespace
/// (to the clients: a TUN device nobody reads; the forwarded answers: counted and
/// dropped by nftables as they come out of its TUN device), so that the
/// lab's forwarding does not take the CPU from the relay.
pub fn trusted_block(imp: Impl, who: Subject, o: &Opts, s: &mut Samples) {
    let w = build(&format!("bench_memt_{}", imp.tag()));
    let riface = iface('t');
    let r = w.relay();
    let r_i = ifname(&w, "r-i");
    let set_up = r
        .ip(&format!("tuntap add dev {SINK} mode tun"))
        .and_then(|_| r.ip(&format!("link set {SINK} up")))
        .and_then(|_| r.ip(&format!("route add {TRUSTED_NET}.0.0.0/8 dev {SINK}")))
        // The answers come from TRUSTED_NET, which the relay routes to the
        // sink: no reverse path filter (the router has the route back).
        .and_then(|_| {
            r.run(&[
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                &format!("net.ipv4.conf.{r_i}.rp_filter=0"),
            ])
        })
        .and_then(|_| {
            w.inet()
                .ip(&format!("route add {TRUSTED_NET}.0.0.0/8 via {V6H_V4}"))
        })
        .and_then(|_| {
            r.nft(&format!(
                "add table ip6 bench\n\
                 add counter ip6 bench answers\n\
                 add chain ip6 bench pre {{ type filter hook prerouting priority -300 ; }}\n\
                 add rule ip6 bench pre iifname \"{riface}\" ip6 daddr {NATIVE_V6} udp dport {PORT_TRUSTED} counter name answers drop\n\
                 add table ip bench\n\
                 add counter ip bench to_clients\n\
                 add chain ip bench out {{ type filter hook output priority 0 ; }}\n\
                 add rule ip bench out ip daddr {TRUSTED_NET}.0.0.0/8 counter name to_clients\n"
            ))
        });
    if let Err(e) = set_up {
        s.fail("memt", who, &format!("lab set-up: {e}"));
        return;
    }
    // Our relay admits 100 new peers per second per source, 500 for all
    // sources together, by default; beyond, a new peer is held (no
    // bubble) until it asks again. Every client here has an IPv4 address
    // of its own, but the native side is one host (one /64), and a million
    // clients in 20 s is 50,000 a second: lift both.
    let extra = match imp {
        Impl::Ours => "PeerRateLimit 0\nGlobalPeerRateLimit 0\n",
        Impl::C => "",
    };
    let relay = start_relay(&w, imp, &riface, extra);
    let _ = r.ip(&format!("link set {riface} txqueuelen 100000"));
    // Likewise for its UDP socket: the C relay keeps the default receive
    // buffer (net.core.rmem_default, 208 KiB: a few hundred datagrams, a
    // few milliseconds of answers), which overflows whenever the relay is
    // not scheduled for that long on a busy machine; an answer lost leaves
    // its peer untrusted with its datagram queued. Both relays get the same.
    let rcvbuf = match procfs::raise_udp_rcvbuf(relay.pid, RELAY_PORT, RELAY_RCVBUF) {
        Ok(sizes) if !sizes.is_empty() => format!(
            "UDP receive buffer set to {} MiB ({} socket(s))",
            RELAY_RCVBUF >> 20,
            sizes.len()
        ),
        Ok(_) => "UDP receive buffer left as it was (no socket found)".to_string(),
        Err(e) => format!("UDP receive buffer left as it was ({e})"),
    };
    sleep(Duration::from_millis(500));
    let answers = || counter(r, "ip6", "answers");
    let rss0 = procfs::tree_rss(relay.pid);
    let cpu0 = procfs::tree_cpu_ns(relay.pid);
    let tx0 = tun_stat(&w, &riface, "tx_packets");
    let drop0 = tun_stat(&w, &riface, "tx_dropped");
    let fwd0 = answers();
    let out0 = counter(r, "ip", "to_clients");
    let rcvbuf0 = udp_snmp(r, "RcvbufErrors");
    let backlog0 = backlog_drops();
    let t0 = Instant::now();
    let g = run_helper(
        w.v6h(),
        &[
            o.gen(),
            "trusted".into(),
            "--count".into(),
            o.peers.to_string(),
            "--rate".into(),
            o.trusted_rate.to_string(),
            "--secs".into(),
            "60".into(),
            "--server".into(),
            TRUSTED_SERVER.to_string(),
            "--relay".into(),
            SocketAddrV4::new(RELAY_V4, RELAY_PORT).to_string(),
            "--dst".into(),
            NATIVE_V6.to_string(),
            "--port".into(),
            PORT_TRUSTED.to_string(),
            "--native-port".into(),
            PORT_TRUSTED_NATIVE.to_string(),
            "--size".into(),
            "16".into(),
            "--net".into(),
            TRUSTED_NET.to_string(),
        ],
        Duration::from_secs(70),
    );
    let g = match g {
        Ok(g) => g,
        Err(e) => {
            s.fail("memt", who, &e);
            return;
        }
    };
    // Wait until the relay has forwarded all it will.
    let last = settled(answers);
    let rss1 = procfs::tree_rss(relay.pid);
    let cpu = procfs::tree_cpu_ns(relay.pid).saturating_sub(cpu0);
    let took = t0.elapsed();
    let forwarded = last.saturating_sub(fwd0);
    let to_clients = counter(r, "ip", "to_clients").saturating_sub(out0);
    let delivered = tun_stat(&w, &riface, "tx_packets").saturating_sub(tx0);
    let dropped = tun_stat(&w, &riface, "tx_dropped").saturating_sub(drop0);
    let rcvbuf_drops = udp_snmp(r, "RcvbufErrors").saturating_sub(rcvbuf0);
    let backlog = backlog_drops().saturating_sub(backlog0);
    let status = |key: &str| status_value(&riface, key);
    // Each answer is sent once: every one forwarded is a peer trusted.
    let (held, detail) = match imp {
        Impl::Ours => (
            status("peers").unwrap_or(forwarded),
            format!(
                "{} entries, {} trusted, {} queued bytes (status socket; PeerRateLimit 0, GlobalPeerRateLimit 0)",
                opt(status("peers")),
                opt(status("peers-trusted")),
                opt(status("queued-bytes")),
            ),
        ),
        Impl::C => (
            forwarded.min(C_PEER_CAP),
            "as many trusted as answers forwarded, up to the cap".to_string(),
        ),
    };
    let grew = rss1.saturating_sub(rss0);
    let alive = w.is_running(&relay);
    let note = format!(
        "RSS {:.1} -> {:.1} MiB for {held} peers ({detail}); {} native datagrams sent, {delivered} read by the relay, {dropped} dropped by the TUN queue; {} answers sent ({rcvbuf}), {rcvbuf_drops} dropped by the relay's full socket buffer, {forwarded} forwarded; {backlog} packets dropped by full input backlogs (whole machine); {to_clients} datagrams to the clients and their server (queued datagrams, bubbles); {:.1} s, relay CPU {:.2} s ({:.1} us per peer){}",
        rss0 as f64 / 1048576.0,
        rss1 as f64 / 1048576.0,
        num(&g, "sent"),
        num(&g, "answered"),
        took.as_secs_f64(),
        cpu as f64 / 1e9,
        cpu as f64 / 1000.0 / held.max(1) as f64,
        if alive { "" } else { "; THE RELAY DIED" }
    );
    if held == 0 || forwarded == 0 {
        s.fail("memt", who, &format!("no trusted peer: {note}"));
        return;
    }
    record(
        s,
        o,
        "memt",
        who,
        Ok((grew as f64 / held as f64, note.clone())),
    );
    s.note(&format!("trusted memory {}: {note}", who.name()));
}

/// The value of `read` once it stops moving (two readings 300 ms apart
/// agree), or as it is after 10 s.
fn settled(read: impl Fn() -> u64) -> u64 {
    let mut last = read();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        sleep(Duration::from_millis(300));
        let now = read();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

fn opt(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}
