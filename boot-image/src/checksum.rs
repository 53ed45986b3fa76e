//! The boot image's checksum: four independent 64-bit lanes of xor-multiply over 32-byte
//! blocks, folded with the length at the end.
//!
//! Purpose: the loader detects a corrupted or truncated image before it trusts anything in
//! it. It is not a cryptographic hash and does not stand up to someone who wants a
//! collision. It replaced byte-wise FNV-1a because the loader runs it over tens of
//! megabytes under QEMU's instruction-by-instruction translation, where FNV's one serial
//! multiply per byte dominated the loader's time; here one multiply covers eight bytes and
//! the four lanes do not wait on each other.
//!
//! # Definition
//!
//! For a byte string `B` of `n` bytes, with wrapping 64-bit arithmetic:
//!
//! - `K = 0x9e37_79b9_7f4a_7c15` (odd), and `mix(x) = y ^ (y >> 32)` where `y = x * K`;
//! - lanes `h0, h1, h2, h3` start at `1, 2, 3, 4`;
//! - `B` is cut into 32-byte blocks; a last partial block (`n % 32` bytes, if not zero) is
//!   extended with zero bytes to 32. Each block is four little-endian words `w0..w3`, and
//!   for each lane `hj = mix(hj ^ wj)`;
//! - the result is `acc` after `acc = n` and then `acc = mix(acc ^ hj)` for `j = 0, 1, 2, 3`.
//!
//! # What it catches
//!
//! `mix` is a bijection (multiplying by an odd number and `x ^ (x >> 32)` are both
//! invertible), so for fixed other inputs each lane step, and each fold step, is a bijection
//! of the word or lane that changed. Any change confined to one lane, in particular any
//! single-bit flip anywhere, therefore always changes the result. Changes spread over
//! several lanes, and a different length, change it except with a chance of about 2^-64.
//!
//! Owns: the definition and its implementation. Never touches: where the bytes live.

/// The multiplier.
pub const K: u64 = 0x9e37_79b9_7f4a_7c15;
/// Bytes per block: one 64-bit word per lane.
pub const BLOCK_BYTES: usize = 32;
const LANES: usize = 4;
const SEEDS: [u64; LANES] = [1, 2, 3, 4];

/// One lane step (and fold step): a bijection of `x`.
#[inline(always)]
pub const fn mix(x: u64) -> u64 {
    let y = x.wrapping_mul(K);
    y ^ (y >> 32)
}

#[inline(always)]
fn block(lanes: &mut [u64; LANES], w: [u64; LANES]) {
    for (h, w) in lanes.iter_mut().zip(w) {
        *h = mix(*h ^ w);
    }
}

fn le_word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

fn byte_block(b: &[u8]) -> [u64; LANES] {
    [le_word(&b[0..8]), le_word(&b[8..16]), le_word(&b[16..24]), le_word(&b[24..32])]
}

/// The checksum of `bytes` (see the module documentation for the definition).
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut lanes = SEEDS;
    let (body, tail) = bytes.split_at(bytes.len() - bytes.len() % BLOCK_BYTES);
    // SAFETY: every bit pattern is a valid `u64`, so viewing bytes as words is sound;
    // `align_to` only hands out a middle part that is correctly aligned.
    let (head, words, _) = unsafe { body.align_to::<u64>() };
    if head.is_empty() && words.len() * 8 == body.len() {
        // Aligned input (the payload and everything in it): word loads. The loader's
        // target has strict alignment, so the byte path below would load byte by byte.
        for w in words.chunks_exact(LANES) {
            block(&mut lanes, [u64::from_le(w[0]), u64::from_le(w[1]), u64::from_le(w[2]), u64::from_le(w[3])]);
        }
    } else {
        for b in body.chunks_exact(BLOCK_BYTES) {
            block(&mut lanes, byte_block(b));
        }
    }
    if !tail.is_empty() {
        let mut last = [0u8; BLOCK_BYTES];
        last[..tail.len()].copy_from_slice(tail);
        block(&mut lanes, byte_block(&last));
    }
    lanes.iter().fold(bytes.len() as u64, |acc, &h| mix(acc ^ h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// The definition written out step by step for inputs of at most one block: no loop over
    /// blocks, no alignment paths, so it checks [`checksum`] rather than restating it.
    fn one_block_by_hand(bytes: &[u8]) -> u64 {
        assert!(bytes.len() <= BLOCK_BYTES);
        let mut padded = [0u8; BLOCK_BYTES];
        padded[..bytes.len()].copy_from_slice(bytes);
        let w = |j: usize| u64::from_le_bytes(padded[8 * j..8 * j + 8].try_into().unwrap());
        let (h0, h1, h2, h3) =
            if bytes.is_empty() { (1, 2, 3, 4) } else { (mix(1 ^ w(0)), mix(2 ^ w(1)), mix(3 ^ w(2)), mix(4 ^ w(3))) };
        mix(mix(mix(mix(bytes.len() as u64 ^ h0) ^ h1) ^ h2) ^ h3)
    }

    #[test]
    fn mix_matches_the_definition() {
        // 1 * K = K; K ^ (K >> 32) = 0x9e3779b97f4a7c15 ^ 0x9e3779b9.
        assert_eq!(mix(1), 0x9e37_79b9_e17d_05ac);
        // 2 * K wraps: 0x13c6ef372fe94f82a -> 0x3c6ef372fe94f82a.
        assert_eq!(mix(2), 0x3c6e_f372_fe94_f82a ^ 0x3c6e_f372);
        assert_eq!(mix(0), 0);
    }

    #[test]
    fn known_answers() {
        // From an independent implementation of the definition above (Python, big integers
        // reduced mod 2^64), not from this code.
        assert_eq!(checksum(b""), 0xe821_a9cc_1f06_a6e9);
        assert_eq!(checksum(b"a"), 0x6db8_445a_e029_2174);
        assert_eq!(checksum(b"capvisor"), 0x803e_7542_ea6d_67f9);
        let seq: Vec<u8> = (0..=99u8).collect();
        assert_eq!(checksum(&seq), 0x5a6d_0c9c_8be3_ed9a);
        for n in [0, 1, 7, 8, 9, 31, 32] {
            assert_eq!(checksum(&seq[..n]), one_block_by_hand(&seq[..n]), "{n} bytes");
        }
    }

    #[test]
    fn alignment_does_not_change_the_result() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 37 + 11) as u8).collect();
        // The same bytes at every offset from an 8-byte boundary, so both the word path and
        // the byte path run and must agree with each other and with the whole-block rule.
        let mut buf = alloc::vec![0u8; 1100];
        let base = buf.as_ptr().align_offset(8);
        for off in base..base + 8 {
            for len in [0, 5, 32, 33, 64, 100, 999] {
                buf[off..off + len].copy_from_slice(&data[..len]);
                assert_eq!(checksum(&buf[off..off + len]), checksum(&data[..len]), "offset {off}, {len} bytes");
            }
        }
        assert_eq!(checksum(&data[..32]), one_block_by_hand(&data[..32]));
    }

    #[test]
    fn every_single_bit_flip_changes_the_result() {
        // 77 bytes: two full blocks and a 13-byte tail, so the tail rule is covered.
        let data: Vec<u8> = (0..77u32).map(|i| (i * 151 + 7) as u8).collect();
        let good = checksum(&data);
        for bit in 0..data.len() * 8 {
            let mut bad = data.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(checksum(&bad), good, "bit {bit}");
        }
    }

    #[test]
    fn length_counts_even_for_zero_bytes() {
        // Zero padding of the tail must not make a message equal to its zero-extended self.
        let data = [5u8; 40];
        let mut longer = data.to_vec();
        longer.push(0);
        assert_ne!(checksum(&data), checksum(&longer));
        assert_ne!(checksum(&[0u8; 32]), checksum(&[0u8; 64]));
        assert_ne!(checksum(&data), checksum(&data[..39]));
    }
}
