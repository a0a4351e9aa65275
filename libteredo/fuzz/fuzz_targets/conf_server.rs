//! `miredo-server.conf` parsing on arbitrary text: no panic, and every
//! error names the file and a line inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libteredo_fuzz::conf::check_server;

fuzz_target!(|data: &[u8]| {
    check_server(data);
});
