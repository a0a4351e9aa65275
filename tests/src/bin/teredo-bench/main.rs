//! `teredo-bench`: what a packet costs a Teredo relay and how many it
//! moves, for the C miredo (the anchor), ours, and a floor (a bare TUN <->
//! UDP copy loop no relay can beat), measured in turn, for several rounds,
//! in network-namespace labs. See tests/BENCH.md.

mod lab;
mod net;
mod procfs;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use teredo_lab::Impl;

const HELP: &str = "\
teredo-bench: relay cost and throughput of the C miredo, ours, and a floor

usage: teredo-bench [--rounds N] [--quick] [--secs S] [--quals N]
                    [--peers N] [--peers-rate R] [--trusted-rate R]
                    [--only GROUPS] [--json FILE] [-v]

  --rounds N      rounds of C, ours and the floor in turn (default 3)
  --quick         1 round, 1 s per load point, 100,000 peers
  --secs S        seconds of load per measured point (default 3)
  --quals N       client start-ups timed per block (default 2)
  --peers N       distinct peers in the memory tests (default 1000000)
  --peers-rate R  packets/s offered in the queued-peer memory test (mem;
                  default 0: flat out)
  --trusted-rate R  peers/s offered in the trusted-peer memory test (memt;
                  default 50000; 0: flat out)
  --only GROUPS   comma-separated subset of cpu,sat,tcp,rs,qual,mem,memt
  --json FILE     also write the medians and every sample as JSON
  -v              print every sample as it is taken

Needs root, Debian's miredo and miredo-server, iperf3, and this
workspace built in release (the helpers teredo-bench-gen and
teredo-bench-floor beside this binary). Every run builds its own network
namespaces and removes them. tests/BENCH.md says what each figure means.
";

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    C,
    Ours,
    FloorSingle,
    FloorBatch,
}

impl Subject {
    pub fn name(self) -> &'static str {
        match self {
            Subject::C => "C",
            Subject::Ours => "ours",
            Subject::FloorSingle => "floor-1",
            Subject::FloorBatch => "floor-mmsg",
        }
    }
}

/// Every sample taken, by metric and subject.
#[derive(Default)]
pub struct Samples {
    values: HashMap<(String, Subject), Vec<f64>>,
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Samples {
    pub fn add(&mut self, metric: &str, who: Subject, v: f64) {
        self.values
            .entry((metric.to_string(), who))
            .or_default()
            .push(v);
    }
    pub fn fail(&mut self, metric: &str, who: Subject, why: &str) {
        let why: String = why.chars().take(300).collect();
        self.failures
            .push(format!("{metric} {}: {why}", who.name()));
    }
    pub fn note(&mut self, n: &str) {
        self.notes.push(n.to_string());
    }
    fn median(&self, metric: &str, who: Subject) -> Option<f64> {
        let v = self.values.get(&(metric.to_string(), who))?;
        median(v)
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// How a metric reads.
struct Metric {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    /// Larger is better (throughput) rather than smaller (cost).
    higher_better: bool,
    /// Shown with this many decimals.
    decimals: usize,
    /// Multiplier from the stored value to the shown one.
    scale: f64,
}

const METRICS: &[Metric] = &[
    Metric {
        key: "cpu_n2c_1200",
        label: "CPU/pkt native->client 1200 B @20k/s",
        unit: "us",
        higher_better: false,
        decimals: 2,
        scale: 1.0,
    },
    Metric {
        key: "cpu_c2n_1200",
        label: "CPU/pkt client->native 1200 B @20k/s",
        unit: "us",
        higher_better: false,
        decimals: 2,
        scale: 1.0,
    },
    Metric {
        key: "cpu_n2c_64",
        label: "CPU/pkt native->client 64 B @20k/s",
        unit: "us",
        higher_better: false,
        decimals: 2,
        scale: 1.0,
    },
    Metric {
        key: "cpu_c2n_64",
        label: "CPU/pkt client->native 64 B @20k/s",
        unit: "us",
        higher_better: false,
        decimals: 2,
        scale: 1.0,
    },
    Metric {
        key: "sat_n2c",
        label: "saturation native->client 1200 B",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "sat_c2n",
        label: "saturation client->native 1200 B",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "sat_n2c_offered",
        label: "  offered at saturation native->client",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "sat_c2n_offered",
        label: "  offered at saturation client->native",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "sat_n2c_gso",
        label: "saturation native->client, GSO load",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "sat_c2n_gso",
        label: "saturation client->native, GSO load",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "sat_n2c_gso_offered",
        label: "  offered, GSO load, native->client",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "sat_c2n_gso_offered",
        label: "  offered, GSO load, client->native",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "tcp_n2c",
        label: "TCP native->client (iperf3)",
        unit: "Gb/s",
        higher_better: true,
        decimals: 3,
        scale: 1.0,
    },
    Metric {
        key: "tcp_c2n",
        label: "TCP client->native (iperf3 -R)",
        unit: "Gb/s",
        higher_better: true,
        decimals: 3,
        scale: 1.0,
    },
    Metric {
        key: "rs",
        label: "RS answered under spoofed flood",
        unit: "%",
        higher_better: true,
        decimals: 1,
        scale: 100.0,
    },
    Metric {
        key: "rs_offered",
        label: "  RS offered",
        unit: "kpkt/s",
        higher_better: true,
        decimals: 0,
        scale: 0.001,
    },
    Metric {
        key: "qual",
        label: "qualification, start->address",
        unit: "ms",
        higher_better: false,
        decimals: 0,
        scale: 1.0,
    },
    Metric {
        key: "mem",
        label: "relay memory per queued peer",
        unit: "B",
        higher_better: false,
        decimals: 0,
        scale: 1.0,
    },
    Metric {
        key: "memt",
        label: "relay memory per trusted peer",
        unit: "B",
        higher_better: false,
        decimals: 0,
        scale: 1.0,
    },
];

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM end the run at the next step, so that every world
/// is torn down.
fn catch_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            let _ = sigaction(sig, &act);
        }
    }
}

struct Cli {
    rounds: usize,
    json: Option<PathBuf>,
    opts: lab::Opts,
}

fn parse(args: &[String]) -> Result<Option<Cli>, String> {
    let mut rounds = 3usize;
    let mut secs = 3.0f64;
    let mut quals = 2usize;
    let mut peers = 1_000_000u64;
    let mut peers_rate = 0.0f64;
    let mut trusted_rate = 50_000.0f64;
    let mut only = Vec::new();
    let mut json = None;
    let mut verbose = false;
    let mut quick = false;
    let mut explicit: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        fn p<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name} {v:?} is not a valid value"))
        }
        match a.as_str() {
            "-h" | "--help" => return Ok(None),
            "--quick" => quick = true,
            "-v" | "--verbose" => verbose = true,
            "--rounds" => {
                rounds = p("--rounds", val("--rounds")?)?;
                explicit.push("rounds");
            }
            "--secs" => {
                secs = p("--secs", val("--secs")?)?;
                explicit.push("secs");
            }
            "--quals" => {
                quals = p("--quals", val("--quals")?)?;
                explicit.push("quals");
            }
            "--peers" => {
                peers = p("--peers", val("--peers")?)?;
                explicit.push("peers");
            }
            "--peers-rate" => peers_rate = p("--peers-rate", val("--peers-rate")?)?,
            "--trusted-rate" => trusted_rate = p("--trusted-rate", val("--trusted-rate")?)?,
            "--only" => {
                only = val("--only")?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                const GROUPS: [&str; 7] = ["cpu", "sat", "tcp", "rs", "qual", "mem", "memt"];
                if let Some(bad) = only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                    return Err(format!(
                        "--only: unknown group {bad:?} (cpu,sat,tcp,rs,qual,mem,memt)"
                    ));
                }
            }
            "--json" => json = Some(PathBuf::from(val("--json")?)),
            other => return Err(format!("unknown argument {other:?}; see --help")),
        }
    }
    if quick {
        if !explicit.contains(&"rounds") {
            rounds = 1;
        }
        if !explicit.contains(&"secs") {
            secs = 1.0;
        }
        if !explicit.contains(&"quals") {
            quals = 1;
        }
        if !explicit.contains(&"peers") {
            peers = 100_000;
        }
    }
    if rounds == 0
        || !(0.2..=60.0).contains(&secs)
        || peers == 0
        || peers > 1 << 20
        || peers_rate < 0.0
        || trusted_rate < 0.0
    {
        return Err(
            "need --rounds >= 1, --secs in 0.2..=60, --peers in 1..=1048576, --peers-rate and --trusted-rate >= 0"
                .into(),
        );
    }
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_default();
    Ok(Some(Cli {
        rounds,
        json,
        opts: lab::Opts {
            secs,
            quals,
            peers,
            peers_rate,
            trusted_rate,
            only,
            bin_dir,
            verbose,
        },
    }))
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            let f: Vec<&str> = s.split_whitespace().collect();
            format!(
                "load average {} {} {} (1, 5, 15 min), {} CPUs",
                f.first().unwrap_or(&"?"),
                f.get(1).unwrap_or(&"?"),
                f.get(2).unwrap_or(&"?"),
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0)
            )
        })
        .unwrap_or_default()
}

/// Runs `f`, turning a panic (a lab that would not come up) into a line.
fn guarded(what: &str, s: &mut Samples, f: impl FnOnce(&mut Samples)) {
    let r = panic::catch_unwind(AssertUnwindSafe(|| f(s)));
    if let Err(e) = r {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        eprintln!("  {what}: FAILED: {msg}");
        s.failures.push(format!("{what}: {msg}"));
    }
}

fn fmt_val(m: &Metric, v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{:.*}", m.decimals, v * m.scale),
        None => "-".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The better floor variant for a metric, and which it is.
fn floor_of(s: &Samples, m: &Metric) -> (Option<f64>, &'static str) {
    let one = s.median(m.key, Subject::FloorSingle);
    let many = s.median(m.key, Subject::FloorBatch);
    match (one, many) {
        (Some(a), Some(b)) => {
            let batch_wins = if m.higher_better { b > a } else { b < a };
            if batch_wins {
                (Some(b), "m")
            } else {
                (Some(a), "1")
            }
        }
        (Some(a), None) => (Some(a), "1"),
        (None, Some(b)) => (Some(b), "m"),
        (None, None) => (None, ""),
    }
}

fn table(s: &Samples) -> String {
    let mut out = String::new();
    let head = [
        "metric",
        "unit",
        "C",
        "ours",
        "floor",
        "ours/C",
        "ours/floor",
        "C/floor",
        "floor-1",
        "floor-mmsg",
        "n",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for m in METRICS {
        let c = s.median(m.key, Subject::C);
        let o = s.median(m.key, Subject::Ours);
        let (f, which) = floor_of(s, m);
        let one = s.median(m.key, Subject::FloorSingle);
        let many = s.median(m.key, Subject::FloorBatch);
        if c.is_none() && o.is_none() && f.is_none() {
            continue;
        }
        let n = [
            Subject::C,
            Subject::Ours,
            Subject::FloorSingle,
            Subject::FloorBatch,
        ]
        .iter()
        .filter_map(|w| s.values.get(&(m.key.to_string(), *w)).map(Vec::len))
        .max()
        .unwrap_or(0);
        let fshow = if f.is_some() {
            format!("{} ({which})", fmt_val(m, f))
        } else {
            "-".into()
        };
        // What the generators offered is context, not a result to compare.
        let context = m.key.ends_with("_offered");
        let r = |a, b| if context { "".to_string() } else { ratio(a, b) };
        rows.push(vec![
            m.label.to_string(),
            m.unit.to_string(),
            fmt_val(m, c),
            fmt_val(m, o),
            fshow,
            r(o, c),
            r(o, f),
            r(c, f),
            fmt_val(m, one),
            fmt_val(m, many),
            n.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for (k, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 0 {
                let _ = write!(line, "{cell:<w$}", w = widths[i]);
            } else {
                let _ = write!(line, "  {cell:>w$}", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if k == 0 {
            let _ = writeln!(out, "{}", "-".repeat(line.trim_end().chars().count()));
        }
    }
    out
}

fn json_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o
}

fn json(s: &Samples, command: &str, load_before: &str, load_after: &str) -> String {
    let mut o = String::from("{\n");
    let _ = writeln!(o, "  \"command\": \"{}\",", json_escape(command));
    let _ = writeln!(o, "  \"load_before\": \"{}\",", json_escape(load_before));
    let _ = writeln!(o, "  \"load_after\": \"{}\",", json_escape(load_after));
    o.push_str("  \"metrics\": {\n");
    let mut first = true;
    for m in METRICS {
        let mut subj = Vec::new();
        for w in [
            Subject::C,
            Subject::Ours,
            Subject::FloorSingle,
            Subject::FloorBatch,
        ] {
            if let Some(v) = s.values.get(&(m.key.to_string(), w)) {
                let vals: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
                subj.push(format!(
                    "\"{}\": {{\"median\": {}, \"samples\": [{}]}}",
                    w.name(),
                    median(v).map(|x| x.to_string()).unwrap_or("null".into()),
                    vals.join(", ")
                ));
            }
        }
        if subj.is_empty() {
            continue;
        }
        if !first {
            o.push_str(",\n");
        }
        first = false;
        let _ = write!(
            o,
            "    \"{}\": {{\"label\": \"{}\", \"unit\": \"{}\", \"scale_to_unit\": {}, {}}}",
            m.key,
            json_escape(m.label),
            m.unit,
            m.scale,
            subj.join(", ")
        );
    }
    o.push_str("\n  },\n  \"notes\": [");
    let notes: Vec<String> = s
        .notes
        .iter()
        .map(|n| format!("\"{}\"", json_escape(n)))
        .collect();
    o.push_str(&notes.join(", "));
    o.push_str("],\n  \"failures\": [");
    let f: Vec<String> = s
        .failures
        .iter()
        .map(|n| format!("\"{}\"", json_escape(n)))
        .collect();
    o.push_str(&f.join(", "));
    o.push_str("]\n}\n");
    o
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(Some(c)) => c,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("teredo-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let command = std::iter::once("teredo-bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(why) = teredo_lab::skip::root_unavailable() {
        eprintln!("teredo-bench: {why}");
        return ExitCode::FAILURE;
    }
    for imp in [Impl::C, Impl::Ours] {
        if let Some(why) = imp.unavailable() {
            eprintln!("teredo-bench: {why}");
            return ExitCode::FAILURE;
        }
    }
    for helper in ["teredo-bench-gen", "teredo-bench-floor"] {
        if !cli.opts.bin_dir.join(helper).is_file() {
            eprintln!(
                "teredo-bench: {} missing (cargo build --release -p teredo-lab)",
                cli.opts.bin_dir.join(helper).display()
            );
            return ExitCode::FAILURE;
        }
    }
    if cli.opts.wants("tcp") && teredo_lab::skip::which("iperf3").is_none() {
        eprintln!("teredo-bench: iperf3 not installed (apt-get install iperf3), or leave out tcp with --only");
        return ExitCode::FAILURE;
    }
    catch_signals();
    // The lab harness reports world set-up and teardown; keep it quiet.
    let o = &cli.opts;
    let load_before = uptime();
    println!("command: {command}");
    println!("started with {load_before}");
    let start = Instant::now();
    let mut s = Samples::default();
    let blocks = [Subject::C, Subject::Ours, Subject::FloorSingle];
    // The memory tests build worlds of their own, after the rounds.
    let rounds = if ["cpu", "sat", "tcp", "rs", "qual"]
        .iter()
        .any(|g| o.wants(g))
    {
        cli.rounds
    } else {
        0
    };
    'rounds: for round in 0..rounds {
        for k in 0..blocks.len() {
            if interrupted() {
                break 'rounds;
            }
            // Alternate who goes first from round to round.
            let who = blocks[(k + round) % blocks.len()];
            eprintln!(
                "round {}/{}: {} ({:.0} s so far, {})",
                round + 1,
                cli.rounds,
                if who == Subject::FloorSingle {
                    "floor"
                } else {
                    who.name()
                },
                start.elapsed().as_secs_f64(),
                uptime()
            );
            match who {
                Subject::C => guarded("C block", &mut s, |s| {
                    lab::relay_block(Impl::C, Subject::C, o, s)
                }),
                Subject::Ours => guarded("ours block", &mut s, |s| {
                    lab::relay_block(Impl::Ours, Subject::Ours, o, s)
                }),
                _ => guarded("floor block", &mut s, |s| lab::floor_block(o, s)),
            }
        }
    }
    if o.wants("mem") && !interrupted() {
        for (imp, who) in [(Impl::C, Subject::C), (Impl::Ours, Subject::Ours)] {
            if interrupted() {
                break;
            }
            eprintln!(
                "memory: {} ({:.0} s so far, {})",
                who.name(),
                start.elapsed().as_secs_f64(),
                uptime()
            );
            guarded("memory block", &mut s, |s| {
                lab::memory_block(imp, who, o, s)
            });
        }
    }
    if o.wants("memt") && !interrupted() {
        for (imp, who) in [(Impl::C, Subject::C), (Impl::Ours, Subject::Ours)] {
            if interrupted() {
                break;
            }
            eprintln!(
                "memory, trusted peers: {} ({:.0} s so far, {})",
                who.name(),
                start.elapsed().as_secs_f64(),
                uptime()
            );
            guarded("trusted memory block", &mut s, |s| {
                lab::trusted_block(imp, who, o, s)
            });
        }
    }
    let load_after = uptime();
    println!();
    println!("command: {command}");
    println!(
        "took {:.0} s; {load_before} at the start, {load_after} at the end",
        start.elapsed().as_secs_f64()
    );
    println!(
        "medians over {} round(s); payload sizes are IPv6 payload bytes (UDP header included); floor = the better of floor-1 (one syscall per packet) and floor-mmsg (sendmmsg/recvmmsg batches)",
        cli.rounds
    );
    println!();
    print!("{}", table(&s));
    println!(
        "C relay peer cap: {} (libteredo MAX_PEERS with libJudy); ours: 1048576 (peer table capacity)",
        lab::C_PEER_CAP
    );
    for n in &s.notes {
        println!("note: {n}");
    }
    for f in &s.failures {
        println!("FAILED: {f}");
    }
    if interrupted() {
        println!("interrupted: the figures above are partial");
    }
    if let Some(path) = &cli.json {
        if let Err(e) = std::fs::write(path, json(&s, &command, &load_before, &load_after)) {
            eprintln!("teredo-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if interrupted() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
