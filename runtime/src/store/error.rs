//! The storage errors: opening a location or a multiscale group ([`OpenError`]) and reading one
//! chunk of a level ([`ChunkError`]); every variant names the location, and chunk errors the
//! array path and the chunk's store key.

/// Why a multiscale group could not be opened. Every variant names the location.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The location does not exist.
    #[error("`{location}` does not exist (expected an OME-NGFF multiscale group, e.g. `…/recon-1/em/fibsem-uint8`)")]
    NotFound {
        /// The location as given.
        location: String,
    },
    /// The location exists but is not a zarr group.
    #[error(
        "`{location}` is not a zarr group (no `.zgroup`, `.zattrs` or `zarr.json`); hint: point at the folder that holds `s0`, `s1`, …"
    )]
    NotAGroup {
        /// The location as given.
        location: String,
    },
    /// The location uses a scheme this build cannot read (`http`/`https` need the `http` feature).
    #[error(
        "`{location}`: `{scheme}` locations are not supported by this build; use a filesystem path, or build with the `http` feature for http(s) URLs"
    )]
    UnsupportedScheme {
        /// The location as given.
        location: String,
        /// The URL scheme, e.g. `http`.
        scheme: String,
    },
    /// The storage layer failed.
    #[error("reading `{location}` failed: {message}")]
    Storage {
        /// The location or key that failed.
        location: String,
        /// The storage error.
        message: String,
    },
    /// A metadata document is not valid JSON.
    #[error("`{location}` is not valid JSON: {message}")]
    InvalidJson {
        /// The document's location.
        location: String,
        /// The parser error.
        message: String,
    },
    /// The group has no `multiscales` attribute.
    #[error(
        "`{location}` has no OME-NGFF `multiscales` attribute (expected `multiscales` in `.zattrs` for zarr v2 / OME-NGFF 0.4, or `ome.multiscales` in `zarr.json` for zarr v3 / 0.5); hint: is this a class folder without levels, or a parent group?"
    )]
    NoMultiscales {
        /// The group's location.
        location: String,
    },
    /// The `multiscales` metadata is malformed.
    #[error("`{location}`: invalid OME-NGFF metadata: {message}")]
    InvalidMetadata {
        /// The group's location.
        location: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A non-spatial axis appears somewhere other than a leading channel position.
    #[error(
        "`{location}`: axis `{axis}` at index {index} is not spatial; expected the last three axes to be `z y x`, optionally after one leading channel axis"
    )]
    NonSpatialAxis {
        /// The group's location.
        location: String,
        /// The axis name.
        axis: String,
        /// Its index in `axes`.
        index: usize,
    },
    /// The axes are not `[c] z y x`.
    #[error("`{location}`: unsupported axes {axes:?}; expected `[z, y, x]` or `[c, z, y, x]`")]
    UnsupportedAxes {
        /// The group's location.
        location: String,
        /// The axis names found.
        axes: Vec<String>,
    },
    /// The array of a level has a different number of dimensions than the metadata's axes.
    #[error("`{location}/{level}`: the array has {array_dims} dimensions but the metadata lists {metadata_axes} axes")]
    AxisCountMismatch {
        /// The group's location.
        location: String,
        /// The level path, e.g. `s0`.
        level: String,
        /// Number of axes in the metadata.
        metadata_axes: usize,
        /// Number of array dimensions.
        array_dims: usize,
    },
    /// A level listed in `datasets` does not exist.
    #[error("`{location}/{level}`: level listed in `multiscales` but missing on disk")]
    MissingLevel {
        /// The group's location.
        location: String,
        /// The level path.
        level: String,
    },
    /// A level's array metadata exists but cannot be opened.
    #[error("`{location}/{level}`: cannot open the array: {message}")]
    LevelOpen {
        /// The group's location.
        location: String,
        /// The level path.
        level: String,
        /// The zarrs error.
        message: String,
    },
    /// A level's data type is not one we read.
    #[error(
        "`{location}/{level}`: unsupported data type `{dtype}`; expected one of uint8/16/32/64, int8/16/32/64, float32, float64"
    )]
    UnsupportedDtype {
        /// The group's location.
        location: String,
        /// The level path.
        level: String,
        /// The data type as zarrs names it.
        dtype: String,
    },
}

/// Why one chunk of a level could not be read. Every variant names the array path and the store
/// key of the chunk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// A chunk could not be read or decoded (corrupt or truncated file, storage failure).
    #[error("`{array}`: chunk {chunk:?} (key `{key}`) could not be decoded: {message}")]
    Decode {
        /// The array location.
        array: String,
        /// The store key of the chunk (the shard for sharded arrays).
        key: String,
        /// Spatial chunk indices `z y x` (inner chunk for sharded arrays).
        chunk: [u64; 3],
        /// The zarrs error.
        message: String,
    },
    /// A decoded chunk has fewer elements than its shape needs.
    #[error("`{array}`: chunk {chunk:?} (key `{key}`) decoded to {got} elements, expected {expected}")]
    ChunkSize {
        /// The array location.
        array: String,
        /// The store key of the chunk.
        key: String,
        /// Spatial chunk indices `z y x`.
        chunk: [u64; 3],
        /// Elements expected.
        expected: usize,
        /// Elements decoded.
        got: usize,
    },
}
