//! The privsep frames miredo-privproc reads from the unprivileged side: a
//! stream of length-prefixed postcard messages. No panic, no read past a
//! frame, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libteredo_fuzz::privsep::check_frames;

fuzz_target!(|data: &[u8]| {
    check_frames(data);
});
