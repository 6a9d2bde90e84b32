//! Per-table bloom filter over user keys.
//!
//! Double hashing of XXH3-64 (low and high 32 bits); `k = bits_per_key × ln 2`
//! probes. Encoded as the bit array followed by one byte holding `k`.

/// `h % bits`, which is below `bits` and so fits `usize`.
fn bit_index(h: u64, bits: u64) -> usize {
    usize::try_from(h % bits).expect("below the filter's bit count")
}

#[derive(Debug, Clone)]
pub(crate) struct Bloom {
    bits: Vec<u8>,
    probes: u32,
}

pub(crate) fn hash(user_key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(user_key)
}

impl Bloom {
    /// Builds a filter over the key hashes with `bits_per_key` bits each.
    pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> Vec<u8> {
        let bits = (hashes.len() * bits_per_key as usize).max(64);
        let bytes = bits.div_ceil(8);
        let bits = bytes * 8;
        // k = bits_per_key * ln 2, in 1..=30.
        let probes = (bits_per_key * 69 / 100).clamp(1, 30);
        let mut out = vec![0u8; bytes + 1];
        for &h in hashes {
            let (mut h1, h2) = (h & 0xffff_ffff, h >> 32);
            for _ in 0..probes {
                let bit = bit_index(h1, bits as u64);
                out[bit / 8] |= 1 << (bit % 8);
                h1 = h1.wrapping_add(h2);
            }
        }
        out[bytes] = u8::try_from(probes).expect("probes <= 30");
        out
    }

    /// Decodes a filter; `None` if it is malformed.
    pub(crate) fn decode(mut encoded: Vec<u8>) -> Option<Self> {
        let probes = u32::from(encoded.pop()?);
        if encoded.is_empty() || !(1..=30).contains(&probes) {
            return None;
        }
        Some(Self {
            bits: encoded,
            probes,
        })
    }

    /// False means the key is certainly absent.
    pub(crate) fn may_contain(&self, h: u64) -> bool {
        let bits = self.bits.len() as u64 * 8;
        let (mut h1, h2) = (h & 0xffff_ffff, h >> 32);
        for _ in 0..self.probes {
            let bit = bit_index(h1, bits);
            if self.bits[bit / 8] & (1 << (bit % 8)) == 0 {
                return false;
            }
            h1 = h1.wrapping_add(h2);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_about_one_percent_false_positives_at_ten_bits() {
        let keys: Vec<u64> = (0..10_000u32).map(|i| hash(&i.to_be_bytes())).collect();
        let bloom = Bloom::decode(Bloom::build(&keys, 10)).expect("valid");
        assert!(keys.iter().all(|&h| bloom.may_contain(h)));
        let false_positives = (10_000..110_000u32)
            .filter(|i| bloom.may_contain(hash(&i.to_be_bytes())))
            .count();
        // Theory: about 0.8-1% for 10 bits per key; allow slack, fail on a broken filter.
        assert!(false_positives < 2_000, "{false_positives} of 100000");
    }

    #[test]
    fn malformed_filters_are_rejected() {
        assert!(Bloom::decode(vec![]).is_none());
        assert!(Bloom::decode(vec![0xff, 0]).is_none());
        assert!(Bloom::decode(vec![0xff, 31]).is_none());
    }
}
