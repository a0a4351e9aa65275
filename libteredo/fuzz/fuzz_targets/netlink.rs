//! rtnetlink announcements as the client's monitor reads them
//! (`libteredo::sys::netlink::classify`) on arbitrary bytes: no panic, and
//! no more links reported than messages fit in the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libteredo::sys::netlink::{classify, Changes};

fuzz_target!(|data: &[u8]| {
    let (ignore, datagram) = match data.split_first_chunk::<4>() {
        Some((i, rest)) => (u32::from_ne_bytes(*i), rest),
        None => (0, data),
    };
    let mut c = Changes::default();
    classify(datagram, ignore, &mut c);
    // A netlink message header alone is 16 bytes.
    assert!(c.links.len() <= datagram.len() / 16);
    assert!(c.links.iter().all(|&(i, _)| i != ignore));
    if !c.links.is_empty() {
        assert!(c.any);
    }
});
