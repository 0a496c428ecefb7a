//! A bitset of foreground centres with rank/select, for foreground-biased sampling.

use crate::sampler::SamplerError;

/// Words (of 64 centres) per block; each block stores the count of foreground centres before it.
const WORDS_PER_BLOCK: usize = 8;

/// Which centres of a dataset's sample grid lie on foreground, as one bit per centre, with
/// per-block cumulative popcounts so that [`ForegroundIndex::select`] is `O(log n)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForegroundIndex {
    grid_shape: [u64; 3],
    words: Vec<u64>,
    /// `block_before[k]` = foreground centres in blocks `0..k`.
    block_before: Vec<u64>,
    count: u64,
}

impl ForegroundIndex {
    /// Builds the index from one flag per centre, row-major over `grid_shape`.
    ///
    /// # Errors
    /// [`SamplerError::MaskLength`] when the iterator does not yield exactly one flag per centre,
    /// [`SamplerError::GridTooLarge`] when the grid does not fit in memory addressing.
    pub fn from_mask(
        grid_shape: [u64; 3],
        mask: impl IntoIterator<Item = bool>,
    ) -> Result<ForegroundIndex, SamplerError> {
        let n = grid_voxels(grid_shape)?;
        let mut words = Vec::with_capacity(n.div_ceil(64));
        let (mut word, mut bit, mut seen) = (0u64, 0u32, 0u64);
        for flag in mask {
            seen += 1;
            if seen > n as u64 {
                break;
            }
            word |= u64::from(flag) << bit;
            bit += 1;
            if bit == 64 {
                words.push(word);
                (word, bit) = (0, 0);
            }
        }
        if seen != n as u64 {
            return Err(SamplerError::MaskLength {
                grid_shape,
                expected: n as u64,
                got: seen,
            });
        }
        if bit > 0 {
            words.push(word);
        }
        Ok(ForegroundIndex::from_words(grid_shape, words))
    }

    /// Builds the index from one byte per centre (non-zero = foreground), row-major.
    ///
    /// # Errors
    /// As [`ForegroundIndex::from_mask`].
    pub fn from_bytes(grid_shape: [u64; 3], mask: &[u8]) -> Result<ForegroundIndex, SamplerError> {
        let n = grid_voxels(grid_shape)?;
        if mask.len() != n {
            return Err(SamplerError::MaskLength {
                grid_shape,
                expected: n as u64,
                got: mask.len() as u64,
            });
        }
        let words = mask
            .chunks(64)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u64, |w, (i, &b)| w | (u64::from(b != 0) << i))
            })
            .collect();
        Ok(ForegroundIndex::from_words(grid_shape, words))
    }

    fn from_words(grid_shape: [u64; 3], words: Vec<u64>) -> ForegroundIndex {
        let mut block_before = Vec::with_capacity(words.len().div_ceil(WORDS_PER_BLOCK));
        let mut count = 0u64;
        for block in words.chunks(WORDS_PER_BLOCK) {
            block_before.push(count);
            count += block.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        }
        ForegroundIndex {
            grid_shape,
            words,
            block_before,
            count,
        }
    }

    /// Shape of the grid the index covers.
    pub fn grid_shape(&self) -> [u64; 3] {
        self.grid_shape
    }

    /// Number of foreground centres.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the centre with row-major index `linear` is foreground (`false` beyond the grid).
    pub fn contains(&self, linear: u64) -> bool {
        let word = usize::try_from(linear / 64).ok().and_then(|w| self.words.get(w));
        word.is_some_and(|w| w >> (linear % 64) & 1 == 1)
    }

    /// Row-major index of the `k`-th foreground centre (from 0), `None` when `k ≥ count()`.
    pub fn select(&self, k: u64) -> Option<u64> {
        if k >= self.count {
            return None;
        }
        let block = self.block_before.partition_point(|&before| before <= k) - 1;
        let mut rest = k - self.block_before[block];
        let first = block * WORDS_PER_BLOCK;
        for (w, &word) in self.words[first..].iter().enumerate().take(WORDS_PER_BLOCK) {
            let ones = u64::from(word.count_ones());
            if rest < ones {
                let mut bits = word;
                for _ in 0..rest {
                    bits &= bits - 1;
                }
                return Some((first + w) as u64 * 64 + u64::from(bits.trailing_zeros()));
            }
            rest -= ones;
        }
        None
    }
}

/// Centres of a grid, as a `usize`.
fn grid_voxels(grid_shape: [u64; 3]) -> Result<usize, SamplerError> {
    grid_shape
        .iter()
        .try_fold(1u64, |acc, &n| acc.checked_mul(n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(SamplerError::GridTooLarge { grid_shape })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_walks_foreground_in_order() {
        let shape = [3, 7, 61];
        let n = 3 * 7 * 61;
        let flag = |i: u64| i % 7 == 3 || i.is_multiple_of(64);
        let idx = ForegroundIndex::from_mask(shape, (0..n).map(flag)).unwrap();
        let expected: Vec<u64> = (0..n).filter(|&i| flag(i)).collect();
        assert_eq!(idx.count(), expected.len() as u64);
        for (k, &e) in expected.iter().enumerate() {
            assert_eq!(idx.select(k as u64), Some(e));
            assert!(idx.contains(e));
        }
        assert_eq!(idx.select(expected.len() as u64), None);
        let bytes: Vec<u8> = (0..n).map(|i| u8::from(flag(i)) * 9).collect();
        assert_eq!(ForegroundIndex::from_bytes(shape, &bytes).unwrap(), idx);
        assert!(matches!(
            ForegroundIndex::from_mask(shape, (0..n - 1).map(flag)),
            Err(SamplerError::MaskLength { got, .. }) if got == n - 1
        ));
        assert!(ForegroundIndex::from_bytes(shape, &bytes[1..]).is_err());
    }
}
