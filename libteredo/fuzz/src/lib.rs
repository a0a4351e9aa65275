//! What the fuzz targets check, shared by the targets in `fuzz_targets/`.
//! Each function takes the fuzzer's bytes and panics only when an
//! invariant breaks (a panic in libteredo itself is a crash as well).

pub mod conf;
pub mod engine;
pub mod privsep;
pub mod wire;
