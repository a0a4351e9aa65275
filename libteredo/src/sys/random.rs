//! The operating system's random generator, for nonces and keys.

use crate::proto::Random;

/// `getrandom(2)`. Never fails in practice on Linux >= 3.17; if it ever
/// did, we abort rather than run with predictable nonces.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            log::error!("the system random generator failed: {e}");
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differs() {
        let mut r = OsRandom;
        assert_ne!(r.next_u64(), r.next_u64());
    }
}
