//! Randomness for retry jitter and generated names.
//!
//! Outside a simulation every draw hashes fresh system entropy. A simulator seeds the thread it
//! runs on, and every draw on that thread then comes from one deterministic sequence, so the
//! same seed replays the same schedule. Nothing secret comes from here: tokens and keys use a
//! cryptographic generator.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static SEEDED: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Makes every later draw on this thread deterministic, starting from `seed`.
pub fn seed_thread(seed: u64) {
    SEEDED.with(|state| state.set(Some(seed)));
}

/// Returns this thread to system entropy.
pub fn unseed_thread() {
    SEEDED.with(|state| state.set(None));
}

/// A uniformly distributed 64-bit number.
pub fn next_u64() -> u64 {
    SEEDED.with(|state| match state.get() {
        Some(current) => {
            // SplitMix64: one addition and a finaliser per draw.
            let next = current.wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(Some(next));
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        None => {
            // A fresh SipHash key per call is random enough to spread retries.
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(0);
            hasher.finish()
        }
    })
}

/// A number in `0..bound` (0 when `bound` is 0).
pub fn below(bound: u64) -> u64 {
    if bound == 0 { 0 } else { next_u64() % bound }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_repeats_its_sequence() {
        seed_thread(7);
        let first: Vec<u64> = (0..4).map(|_| next_u64()).collect();
        seed_thread(7);
        let second: Vec<u64> = (0..4).map(|_| next_u64()).collect();
        unseed_thread();
        assert_eq!(first, second);
        assert!(first.windows(2).all(|pair| pair[0] != pair[1]));
        assert!(below(10) < 10);
        assert_eq!(below(0), 0);
    }
}
