//! cellmap codegen.
