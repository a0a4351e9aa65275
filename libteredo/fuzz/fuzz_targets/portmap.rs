//! The port mapper (PCP and NAT-PMP) fed datagrams from the LAN, as chosen
//! by the input, between time steps: it never panics, sends only to the
//! gateway's port 5351, never more than one request per call, and a mapping
//! it reports has a non-zero port and lifetime. `teredo-mire probe`'s
//! reading of a gateway's offer (`parse_offer`) gets the whole input too.
//! The endpoint the client wants (`PortMapper::want`) changes as the input
//! says, so that mappings are moved at any point of an exchange.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libteredo::proto::portmap::{parse_offer, Config, Event, Mode, PortMapper, PORT};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    // The probe's reading of what a gateway offers, on the whole input.
    let _ = parse_offer(data);
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mode = match mode % 3 {
        0 => Mode::Auto,
        1 => Mode::Pcp,
        _ => Mode::NatPmp,
    };
    let gateway = Ipv4Addr::new(192, 168, 1, 1);
    let t0 = Instant::now();
    let mut m = PortMapper::new(
        Config {
            mode,
            gateway,
            internal: SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 2), 3545),
            lifetime: 3600,
        },
        [7; 12],
        t0,
    );
    let mut now = t0;
    let (mut out, mut ev) = (Vec::new(), Vec::new());
    m.handle_timeout(now, &mut out, &mut ev);
    out.clear();
    // Records: [kind, len, bytes...]: kind bit 0 = time step, bit 1 =
    // from another host, bit 2 = a new wanted endpoint (len 0: none; else
    // the first two bytes' port, on the address the mapping answers with
    // or another); len bytes follow.
    while let Some((&kind, r)) = rest.split_first() {
        let Some((&len, r)) = r.split_first() else {
            break;
        };
        let n = usize::from(len).min(r.len());
        let (bytes, r) = r.split_at(n);
        rest = r;
        if kind & 4 == 4 {
            let wanted = (bytes.len() >= 2).then(|| {
                let port = u16::from_be_bytes([bytes[0], bytes[1]]);
                let ip = match (kind & 8, m.mapping()) {
                    (0, Some(h)) => *h.external.ip(),
                    _ => Ipv4Addr::new(203, 0, 113, 7),
                };
                SocketAddrV4::new(ip, port)
            });
            m.want(wanted, now, &mut out);
        } else if kind & 1 == 1 {
            now += Duration::from_millis(u64::from(len) * 50);
            m.handle_timeout(now, &mut out, &mut ev);
        } else {
            let from = if kind & 2 == 2 {
                SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, 9), PORT)
            } else {
                SocketAddrV4::new(gateway, PORT)
            };
            m.handle_udp(now, from, bytes, &mut out, &mut ev);
        }
        assert!(out.len() <= 1, "{out:?}");
        for r in out.drain(..) {
            assert_eq!(r.to, SocketAddrV4::new(gateway, PORT));
            assert!(r.payload.len() <= 60);
        }
        for e in ev.drain(..) {
            if let Event::Mapped {
                external, lifetime, ..
            } = e
            {
                assert!(external.port() != 0 && !lifetime.is_zero());
            }
        }
    }
});
