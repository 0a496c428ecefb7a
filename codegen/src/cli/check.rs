//! `cellmap-compile check SPEC...`: validate specs, render diagnostics, map to an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use cellmap_schema::{Diagnostic, Severity, render_github, render_human, render_json};

use super::{EXIT_INVALID, Format};

/// Arguments of `check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Spec files to check.
    #[arg(required = true, value_name = "SPEC")]
    pub(crate) specs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub(crate) format: Format,
    /// Also check that the data the specs name exists and is OME-NGFF multiscale, and that the
    /// loader's batch ring and chunk cache fit in this machine's memory.
    #[arg(long)]
    pub(crate) data: bool,
}

/// Checks every spec; prints all diagnostics (warnings too) to stdout.
pub(crate) fn run(args: &CheckArgs) -> ExitCode {
    let mut all: Vec<Diagnostic> = Vec::new();
    for path in &args.specs {
        match cellmap_schema::load(path) {
            Ok(checked) => {
                all.extend(checked.warnings);
                if args.data {
                    all.extend(super::data_diagnostics(&checked.spec));
                }
            }
            Err(errors) => all.extend(errors.0),
        }
    }
    let rendered = match args.format {
        Format::Human => render_human(&all),
        Format::Json => render_json(&all),
        Format::Github => render_github(&all),
    };
    print!("{rendered}");
    let failed = all.iter().any(|d| d.severity == Severity::Error);
    if args.format == Format::Human {
        let errors = all.iter().filter(|d| d.severity == Severity::Error).count();
        eprintln!(
            "{} spec(s) checked: {}",
            args.specs.len(),
            if failed {
                format!("{errors} error(s)")
            } else {
                "all valid".to_owned()
            }
        );
    }
    if failed {
        ExitCode::from(EXIT_INVALID)
    } else {
        ExitCode::SUCCESS
    }
}
