//! The operating system's random generator, as the engines' source of
//! nonces and address flags.

use libteredo::proto::Random;

/// Randomness from the kernel (getrandom(2)).
pub struct OsRandom;

impl OsRandom {
    /// Checks once that the generator works, so that [`Random::fill`] has
    /// no error to report in practice.
    pub fn new() -> Result<Self, String> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b)
            .map_err(|e| format!("the operating system's random generator failed: {e}"))?;
        Ok(OsRandom)
    }
}

impl Random for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // A nonce we cannot make unguessable must not be sent: stop.
            eprintln!("teredo-mire: the operating system's random generator failed: {e}");
            std::process::exit(1);
        }
    }
}
