//! cellmap runtime.
