//! The server engine fed a sequence of events decoded from the input
//! (datagrams from chosen endpoints, TUN packets, time steps, timeouts),
//! with its invariants checked after every event (see `src/engine.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    libteredo_fuzz::engine::run_server(data);
});
