//! Inputs the fuzzers (libteredo/fuzz) found, kept as tests, and checks
//! that the committed seeds still mean what they should.

use libteredo::addr::{self, TEREDO_PORT};
use libteredo::privsep::{self, Request};
use libteredo::proto::{
    advert, advert_datagram, Client, ClientConfig, DiscoveryConfig, Output, SeededRandom,
};
use libteredo::wire::teredo::{Auth, TeredoPacket};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

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
    v
}

/// The privsep seeds are the frames they claim to be (make_seeds.py
/// encodes them by hand).
#[test]
fn fuzz_privsep_seeds_decode() {
    for (name, data) in seeds("privsep") {
        let got = privsep::read_frame::<_, Request>(&mut &data[..]);
        match name.as_str() {
            "up" | "down" | "up-down" => assert!(got.is_ok(), "{name}: {got:?}"),
            _ => assert!(got.is_err(), "{name}: {got:?}"),
        }
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
    let end = now + Duration::from_secs(600);
    let mut stuck = 0;
    while let Some(t) = c.poll_timeout() {
        if t > end {
            break;
        }
        now = now.max(t);
        let mut out = Vec::new();
        c.handle_timeout(now, &mut out);
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
}
