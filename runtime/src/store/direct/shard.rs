//! Inner chunks of sharded arrays read directly: the shard's index read once and kept, then each
//! inner chunk one byte-range read (a file read at an offset, the compressed tier's copy of the
//! range, or one ranged request through it).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, PoisonError};

use zarrs::array::Array;
use zarrs::storage::byte_range::ByteRange;
use zarrs::storage::{ReadableStorageTraits, StoreKey};

use super::Failure;
use super::layout::ShardIndex;
use crate::store::encoded::TieredStorage;

/// Shard indexes kept per array at most (two generations of half as many; see [`Kept`]).
const INDEXES_KEPT: usize = 4096;

/// A sharded array's shards: how many inner chunks each holds, and their indexes.
#[derive(Clone, Debug)]
pub(crate) struct Shards {
    /// Inner chunks per shard along every axis (a channel axis first, when there is one).
    per_shard: Vec<u64>,
    index: ShardIndex,
    /// The indexes read so far, by shard key: `(offset, length)` per inner chunk, C order;
    /// empty for a shard never written. Shared by every view of the array.
    indexes: Arc<Mutex<Kept>>,
}

/// Shard indexes kept in two generations, an approximate LRU that never allocates on a hit: new
/// indexes go into `current`; when it holds half of [`INDEXES_KEPT`], it becomes `previous` (and
/// the old `previous` is dropped); an index found in `previous` moves back into `current`. So the
/// shards in use stay, and at most [`INDEXES_KEPT`] indexes are kept.
#[derive(Debug, Default)]
struct Kept {
    current: HashMap<String, Arc<[u64]>>,
    previous: HashMap<String, Arc<[u64]>>,
}

impl Kept {
    fn get(&mut self, key: &str) -> Option<Arc<[u64]>> {
        if let Some(index) = self.current.get(key) {
            return Some(Arc::clone(index));
        }
        let (key, index) = self.previous.remove_entry(key)?;
        self.insert(key, Arc::clone(&index));
        Some(index)
    }

    fn insert(&mut self, key: String, index: Arc<[u64]>) {
        if self.current.len() >= INDEXES_KEPT / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, index);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// Where an inner chunk's bytes are in its shard.
pub(crate) enum Place {
    /// Never written: the fill value.
    Missing,
    /// `length` bytes at `offset`.
    At { offset: u64, length: u64 },
}

impl Shards {
    pub(crate) fn new(per_shard: Vec<u64>, index: ShardIndex) -> Self {
        Shards {
            per_shard,
            index,
            indexes: Arc::new(Mutex::new(Kept::default())),
        }
    }

    /// Inner chunks per shard along every axis.
    pub(crate) fn per_shard(&self) -> &[u64] {
        &self.per_shard
    }

    /// Where inner chunk `inner` (indices within the shard, every axis) of the shard at store
    /// key `key` is: its index read through `tiered` (or `own`'s store) the first time.
    pub(crate) fn place(
        &self,
        key: &str,
        inner: &[u64],
        own: &Array<dyn ReadableStorageTraits>,
        tiered: Option<&TieredStorage>,
    ) -> Result<Place, Failure> {
        let held = self.indexes.lock().unwrap_or_else(PoisonError::into_inner).get(key);
        let index = match held {
            Some(index) => index,
            None => {
                let index = self.read_index(key, own, tiered)?;
                self.indexes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key.to_owned(), Arc::clone(&index));
                index
            }
        };
        if index.is_empty() {
            return Ok(Place::Missing);
        }
        let at = inner.iter().zip(&self.per_shard).fold(0u64, |at, (&i, &n)| at * n + i) as usize;
        match (index.get(2 * at), index.get(2 * at + 1)) {
            (Some(&u64::MAX), Some(&u64::MAX)) => Ok(Place::Missing),
            (Some(&offset), Some(&length)) => Ok(Place::At { offset, length }),
            _ => Err(Failure::Decode(format!(
                "inner chunk {inner:?} is outside the shard's index"
            ))),
        }
    }

    /// The index of the shard at `key`, checked (its checksum, its length); empty for a shard
    /// never written.
    fn read_index(
        &self,
        key: &str,
        own: &Array<dyn ReadableStorageTraits>,
        tiered: Option<&TieredStorage>,
    ) -> Result<Arc<[u64]>, Failure> {
        let entries = self.per_shard.iter().product::<u64>() as usize;
        let len = (16 * entries + if self.index.crc32c { 4 } else { 0 }) as u64;
        let range = if self.index.at_end {
            ByteRange::Suffix(len)
        } else {
            ByteRange::FromStart(0, Some(len))
        };
        let store_key = StoreKey::new(key).map_err(|e| Failure::Decode(e.to_string()))?;
        let got = match tiered {
            Some(t) => t.get_partial(&store_key, range),
            None => own.storage().get_partial(&store_key, range),
        }
        .map_err(super::Failure::Store)?;
        let Some(bytes) = got else {
            return Ok(Arc::from(Vec::new()));
        };
        if bytes.len() as u64 != len {
            return Err(Failure::Decode(format!(
                "the shard index holds {} bytes, not the {len} of {entries} inner chunks",
                bytes.len()
            )));
        }
        let pairs = &bytes[..16 * entries];
        if self.index.crc32c {
            let stored = u32::from_le_bytes([
                bytes[16 * entries],
                bytes[16 * entries + 1],
                bytes[16 * entries + 2],
                bytes[16 * entries + 3],
            ]);
            if crc32c::crc32c(pairs) != stored {
                return Err(Failure::Decode("the shard index fails its CRC-32C checksum".to_owned()));
            }
        }
        let index: Vec<u64> = pairs
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect();
        Ok(Arc::from(index))
    }
}

/// Read `buf.len()` bytes at `offset` of the file at `path` into `buf`; `false` for a file that
/// does not exist.
pub(crate) fn read_at(path: &str, offset: u64, buf: &mut [u8]) -> Result<bool, Failure> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Failure::Decode(e.to_string())),
    };
    let len = buf.len();
    let short = |e: std::io::Error| Failure::Decode(format!("{e}: {len} bytes at offset {offset} of the shard"));
    file.seek(SeekFrom::Start(offset)).map_err(short)?;
    file.read_exact(buf).map_err(short)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most `INDEXES_KEPT` indexes are kept, and an index in use survives any number of
    /// others passing through.
    #[test]
    fn kept_indexes_are_bounded_and_the_used_ones_stay() {
        let mut kept = Kept::default();
        let used: Arc<[u64]> = Arc::from(vec![7u64, 8]);
        kept.insert("used".to_owned(), Arc::clone(&used));
        for i in 0..5 * INDEXES_KEPT {
            kept.insert(format!("s{i}"), Arc::from(vec![i as u64]));
            assert!(kept.len() <= INDEXES_KEPT, "{} kept after {i}", kept.len());
            if i % 100 == 0 {
                assert_eq!(kept.get("used").as_deref(), Some(&[7u64, 8][..]), "after {i}");
            }
        }
        // The last ones inserted are there, the first long gone.
        let last = format!("s{}", 5 * INDEXES_KEPT - 1);
        assert_eq!(kept.get(&last).as_deref(), Some(&[(5 * INDEXES_KEPT - 1) as u64][..]));
        assert!(kept.get("s0").is_none());
    }
}
