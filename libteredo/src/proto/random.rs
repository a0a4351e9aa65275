//! Randomness comes from the caller: the [`Random`] trait the engines
//! draw nonces, keys and jitter from, and a seeded generator for the
//! simulator and the tests.

/// The source of randomness the caller hands to an engine: the operating
/// system's generator in the daemons, a seeded generator in the simulator.
pub trait Random {
    fn fill(&mut self, buf: &mut [u8]);

    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// A small deterministic generator (xoshiro256**) for simulations and
/// tests. Not for nonces in production: the daemons use the OS generator.
#[derive(Clone, Debug)]
pub struct SeededRandom {
    s: [u64; 4],
}

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        // splitmix64 expands the seed into the state.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        SeededRandom {
            s: [next(), next(), next(), next()],
        }
    }

    fn step(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }
}

impl Random for SeededRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.step().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}
