//! Command-line interface: arguments (clap derive) and dispatch to one module per subcommand.

mod check;
mod data_check;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Compiles cellmap specs into specialised data-loader crates.
#[derive(Debug, Parser)]
#[command(name = "cellmap-compile", version, about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands; each has its module in `cli/`.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate specs (and optionally the data they name); exit 0 when all are valid, 1 otherwise.
    Check(check::CheckArgs),
    /// Print the spec's JSON Schema.
    Schema,
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// `file:line:column: error: message`, with expected and hint lines.
    Human,
    /// A JSON array of diagnostics.
    Json,
    /// GitHub Actions annotations (`::error file=…,line=…,col=…::message`).
    Github,
}

/// Exit code of a run that found invalid input.
pub(crate) const EXIT_INVALID: u8 = 1;
/// Exit code of a usage error.
pub(crate) const EXIT_USAGE: u8 = 2;

/// Parses the arguments and runs the subcommand.
pub(crate) fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Schema => {
            print!("{}", cellmap_schema::json_schema_string());
            ExitCode::SUCCESS
        }
    }
}
