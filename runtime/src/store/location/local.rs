//! Filesystem locations.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zarrs::storage::byte_range::{ByteRange, ByteRangeIterator, InvalidByteRangeError};
use zarrs::storage::{Bytes, MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError, StoreKey};

use super::{Backend, Location, RemoteOptions};
use crate::store::error::OpenError;

/// Every location no other backend claims is a path.
pub(super) const BACKEND: Backend = Backend { claims: |_| true, open };

fn open(location: &str, _remote: Option<&RemoteOptions>) -> Result<Location, OpenError> {
    let path = Path::new(location);
    // One `stat`: a path that cannot be looked up counts as missing.
    let Ok(meta) = std::fs::metadata(path) else {
        return Err(OpenError::NotFound {
            location: location.to_string(),
        });
    };
    if !meta.is_dir() {
        return Err(OpenError::NotAGroup {
            location: location.to_string(),
        });
    }
    let trimmed = location.trim_end_matches('/');
    Ok(Location {
        location: if trimmed.is_empty() { location } else { trimmed }.to_string(),
        storage: Arc::new(LocalFiles {
            root: path.to_path_buf(),
        }),
        explain_missing: None,
    })
}

/// The files below a folder, read only: a value is one `open` and `read`; byte ranges are one
/// `open` and `fstat`, then a seek and a read each. zarrs' `FilesystemStore` also takes a lock
/// per key for every read and keeps that lock in a map for good, one entry per key ever read
/// (over a long run, every chunk of a large volume); a store nobody writes to needs neither.
#[derive(Debug)]
struct LocalFiles {
    root: PathBuf,
}

impl LocalFiles {
    fn path(&self, key: &StoreKey) -> PathBuf {
        let key = key.as_str();
        self.root.join(key.strip_prefix('/').unwrap_or(key))
    }
}

impl ReadableStorageTraits for LocalFiles {
    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        match std::fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let file = match File::open(self.path(key)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = file.metadata()?.len();
        let read = |range: ByteRange| -> Result<Bytes, StorageError> {
            let invalid = || StorageError::from(InvalidByteRangeError::new(range, size));
            let (start, end) = match range {
                ByteRange::FromStart(start, length) => (start, length.map_or(Some(size), |l| start.checked_add(l))),
                ByteRange::Suffix(length) => (size.checked_sub(length).ok_or_else(invalid)?, Some(size)),
            };
            let end = end.filter(|&end| start <= end && end <= size).ok_or_else(invalid)?;
            let mut bytes = vec![0; usize::try_from(end - start).map_err(|_| invalid())?];
            (&file).seek(SeekFrom::Start(start))?;
            (&file).read_exact(&mut bytes)?;
            Ok(Bytes::from(bytes))
        };
        let out: Vec<Result<Bytes, StorageError>> = byte_ranges.map(read).collect();
        Ok(Some(Box::new(out.into_iter())))
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        match std::fs::metadata(self.path(key)) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole values, byte ranges from the start and from the end, missing keys and ranges past
    /// the end, as zarrs' own filesystem store answers them.
    #[test]
    fn values_and_byte_ranges_read_as_zarrs_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("s0")).unwrap();
        let value: Vec<u8> = (0..100).collect();
        std::fs::write(dir.path().join("s0/0.0.0"), &value).unwrap();
        let files = LocalFiles {
            root: dir.path().to_path_buf(),
        };
        let key = StoreKey::new("s0/0.0.0").unwrap();
        let missing = StoreKey::new("s0/1.0.0").unwrap();
        assert_eq!(files.get(&key).unwrap().as_deref(), Some(&value[..]));
        assert_eq!(files.get(&missing).unwrap(), None);
        assert_eq!(files.size_key(&key).unwrap(), Some(100));
        assert_eq!(files.size_key(&missing).unwrap(), None);
        let ranges = [
            ByteRange::FromStart(10, Some(5)),
            ByteRange::FromStart(90, None),
            ByteRange::Suffix(3),
            ByteRange::FromStart(100, Some(0)),
        ];
        let got: Vec<Vec<u8>> = files
            .get_partial_many(&key, Box::new(ranges.into_iter()))
            .unwrap()
            .unwrap()
            .map(|b| b.unwrap().to_vec())
            .collect();
        assert_eq!(got, [&value[10..15], &value[90..], &value[97..], &[][..]]);
        assert!(
            files
                .get_partial_many(&missing, Box::new(ranges.into_iter()))
                .unwrap()
                .is_none()
        );
        for past in [
            ByteRange::FromStart(98, Some(5)),
            ByteRange::FromStart(101, None),
            ByteRange::Suffix(101),
        ] {
            let mut read = files
                .get_partial_many(&key, Box::new([past].into_iter()))
                .unwrap()
                .unwrap();
            assert!(read.next().unwrap().is_err(), "{past:?}");
        }
        // The same answers from zarrs' store over the same folder.
        let zarrs = zarrs::filesystem::FilesystemStore::new(dir.path()).unwrap();
        assert_eq!(zarrs.get(&key).unwrap(), files.get(&key).unwrap());
        assert_eq!(
            zarrs.get_partial(&key, ByteRange::Suffix(3)).unwrap(),
            files.get_partial(&key, ByteRange::Suffix(3)).unwrap()
        );
    }
}
