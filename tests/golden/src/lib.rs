//! The generated code of the golden specs, compiled as modules (see `codegen/tests/it/golden.rs`).

#[rustfmt::skip]
pub mod n_2d;
#[rustfmt::skip]
pub mod full;
#[rustfmt::skip]
pub mod minimal;
#[rustfmt::skip]
pub mod raw_only;
#[rustfmt::skip]
pub mod synth;
