//! Inputs the fuzzers (libteredo/fuzz) found, kept as tests, and checks
//! of the committed seeds: every target has some, and the privsep ones
//! still decode to what their names say.

use libteredo::addr::{self, TEREDO_PORT};
use libteredo::privsep::{self, FrameError, Request};
use libteredo::proto::{advert, advert_datagram, DiscoveryConfig};
use libteredo::proto::{Client, ClientConfig};

use libteredo::proto::{Output, SeededRandom};
use libteredo::wire::teredo::{Auth, TeredoPacket};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// The fuzz targets: the `[[bin]]`s of fuzz/Cargo.toml, each of which
/// `fuzz/run.sh` starts from the committed `seeds/<target>/`.
fn targets() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml");
    let toml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut in_bin = false;
    let mut v = Vec::new();
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let Some(name) = line.strip_prefix("name = ").filter(|_| in_bin) {
            v.push(name.trim_matches('"').to_string());
        }
    }
    v
}

/// The committed seeds of `target`, by name; there must be some.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "{}: no seeds", dir.display());
    v
}

/// Every fuzz target starts from seeds of its own (make_seeds.py writes
/// the engine, configuration, privsep and wire ones).
#[test]
fn fuzz_every_target_has_seeds() {
    let targets = targets();
    // wire, conf_miredo, conf_server, privsep, engine_client,
    // engine_relay, engine_server, portmap, netlink, http, upnp.
    assert!(targets.len() >= 11, "fuzz targets: {targets:?}");
    let total: usize = targets.iter().map(|t| seeds(t).len()).sum();
    assert!(total >= 60, "only {total} seeds for {targets:?}");
}

/// The privsep seeds are the frames they claim to be (make_seeds.py
/// encodes them by hand): `up` is Up { 7, a Teredo address, 1280 },
/// `down` is Down { 7 }, `up-down` the two in a row, each stream ending
/// there; `oversized` announces 300 bytes and `truncated` ends inside its
/// frame.
#[test]
fn fuzz_privsep_seeds_decode() {
    let up = Request::Up {
        ifindex: 7,
        address: "2001:0:c612:101:0:7ffe:39ed:2a2b".parse().unwrap(),
        mtu: 1280,
    };
    let down = Request::Down { ifindex: 7 };
    let seeds = seeds("privsep");
    let names: Vec<&str> = seeds.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["down", "oversized", "truncated", "up", "up-down"]);
    for (name, data) in &seeds {
        let mut r = &data[..];
        let mut frames = Vec::new();
        let end = loop {
            match privsep::read_frame::<_, Request>(&mut r) {
                Ok(req) => frames.push(req),
                Err(e) => break e,
            }
        };
        let ok = match name.as_str() {
            "up" => frames == [up] && matches!(end, FrameError::Closed),
            "down" => frames == [down] && matches!(end, FrameError::Closed),
            "up-down" => frames == [up, down] && matches!(end, FrameError::Closed),
            "oversized" => frames.is_empty() && matches!(end, FrameError::Oversized(300)),
            "truncated" => frames.is_empty() && matches!(end, FrameError::Truncated { .. }),
            _ => false,
        };
        assert!(ok, "{name}: read {frames:?}, then {end:?}");
    }
}

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 40000);

fn ra(nonce: [u8; 8], dst: Ipv6Addr) -> Vec<u8> {
    let auth = Auth {
        client_id: &[],
        auth_value: &[],
        nonce,
        confirmation: 0,
    };
    let mapped = SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 1), 40000);
    let ra = advert(addr::TEREDO_PREFIX, SERVER, None);
    advert_datagram(Some(auth), mapped, addr::server_link_local(SERVER), dst, ra)
}

/// engine_client found it: a client with local discovery that loses its
/// server keeps reporting the discovery timer (`poll_timeout`), which
/// `handle_timeout` runs only while qualified; the timer stays in the past
/// and the daemon's poll loop spins (timeout 0) until the client qualifies
/// again. Fuzz input: `04 00 01 03 04 00 01 03 03 03 03 03 03 03 02 75 30
/// 03 03 03 03` (qualify, answer the cone probe, 300 s of silence).
/// The fix is one line in `Client::poll_timeout`: consider the discovery
/// timer only while qualified.
#[test]
fn fuzz_client_discovery_timer_after_server_loss() {
    let mut now = std::time::Instant::now();
    let mut cfg = ClientConfig::new(SERVER);
    cfg.local = Some(LOCAL);
    cfg.discovery = Some(DiscoveryConfig {
        local_nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
        any_mapped: false,
    });
    let mut c = Client::new(cfg, Box::new(SeededRandom::new(1)), now);
    let mut out = Vec::new();
    c.handle_timeout(now, &mut out);
    let (nonce, src) = out
        .iter()
        .find_map(|o| match o {
            Output::Udp(t) => {
                let p = TeredoPacket::parse(&t.payload).ok()?;
                Some((p.auth?.nonce, p.ipv6.src_addr()))
            }
            _ => None,
        })
        .expect("a solicitation");
    let mut out = Vec::new();
    let server = SocketAddrV4::new(SERVER, TEREDO_PORT);
    c.handle_udp(now, server, LOCAL, &ra(nonce, src), &mut out);
    assert!(c.qualification().is_some());
    // The server goes silent; run the timers as the daemon would.
    let silence = Duration::from_secs(600);
    let end = now + silence;
    let mut stuck = 0;
    let mut lost = false;
    while let Some(t) = c.poll_timeout() {
        if t > end {
            break;
        }
        now = now.max(t);
        let mut out = Vec::new();
        c.handle_timeout(now, &mut out);
        lost |= c.qualification().is_none();
        if c.poll_timeout().is_some_and(|t| t <= now) {
            stuck += 1;
            assert!(
                stuck < 10,
                "a timer stays due at {:?} (qualified: {})",
                now,
                c.qualification().is_some()
            );
        } else {
            stuck = 0;
        }
    }
    // The case the fuzzer found: the client lost its server on the way.
    assert!(
        lost,
        "the client never lost its silent server in {silence:?}"
    );
}
