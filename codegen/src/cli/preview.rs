//! `cellmap-compile preview SPEC --out batch.png`: one batch drawn as a PNG grid.

use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_runtime::{Loader, LoaderOptions};
use cellmap_schema::Split;

use super::{EXIT_INVALID, SplitArg, load_spec};

/// Arguments of `preview`.
#[derive(Debug, clap::Args)]
pub(crate) struct PreviewArgs {
    /// The spec.
    spec: PathBuf,
    /// PNG to write.
    #[arg(long, default_value = "batch.png")]
    out: PathBuf,
    /// Split to draw from.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// Which batch of the stream (0 = the first).
    #[arg(long, default_value_t = 0)]
    batch: u64,
}

pub(crate) fn run(args: &PreviewArgs) -> ExitCode {
    let checked = match load_spec(&args.spec) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match preview(checked.spec, Split::from(args.split), args.batch, &args.out) {
        Ok(()) => {
            println!("wrote {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Draw batch `which` of a split of `spec` as a PNG grid into `out`.
///
/// # Errors
/// A message naming what failed: opening the loader, reading the batch, writing the PNG.
pub fn preview(spec: cellmap_schema::Spec, split: Split, which: u64, out: &std::path::Path) -> Result<(), String> {
    let mut options = LoaderOptions::train().map_err(|e| e.to_string())?;
    options.split = split;
    options.step = which;
    options.prefetch = Some(1);
    let spec_copy = spec.clone();
    let mut loader = Loader::open(spec, options).map_err(|e| e.to_string())?;
    let batch = match loader.next_batch() {
        Some(Ok(b)) => b,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Err(format!("the {} split yields no batch", split.name())),
    };
    let n_inputs = spec_copy.inputs().len();
    let values: Vec<Vec<f32>> = (0..loader_arrays(&spec_copy))
        .map(|i| display_values(batch.view(i), i >= n_inputs))
        .collect();
    let arrays: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
    let image = crate::preview::render(&spec_copy, &arrays, batch.len());
    image.write_png(out).map_err(|e| format!("`{}`: {e}", out.display()))
}

/// A batch array as the `f32` values the preview draws: `uint8` inputs scaled to `[0, 1]`,
/// `uint8` targets' 255 read as unknown (NaN).
fn display_values(view: cellmap_runtime::dtype::ArrayView<'_>, target: bool) -> Vec<f32> {
    use cellmap_runtime::dtype::ArrayView;
    match view {
        ArrayView::U8(v) if target => v
            .iter()
            .map(|&x| {
                if x == cellmap_schema::OutputDtype::UNKNOWN_U8 {
                    f32::NAN
                } else {
                    f32::from(x)
                }
            })
            .collect(),
        ArrayView::U8(v) => v.iter().map(|&x| f32::from(x) / 255.0).collect(),
        other => other.to_f32_vec(),
    }
}

fn loader_arrays(spec: &cellmap_schema::Spec) -> usize {
    spec.inputs().len() + spec.targets().len()
}
