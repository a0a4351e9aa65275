//! Every wire parser on arbitrary bytes: a Teredo UDP payload (with its
//! IPv6 packet, extension headers, ICMPv6 message and trailer), and each
//! inner parser on the raw bytes as well. Nothing may panic, and what
//! parses must round-trip where the format allows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libteredo_fuzz::wire::check_packet;

fuzz_target!(|data: &[u8]| {
    check_packet(data);
});
