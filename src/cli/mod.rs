//! Subcommands of the `convnet` program (DESIGN.md, "The `convnet` command").

mod bench;
mod check;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// convnet: SIMD CPU convolution kernels and the classic CNNs trained on them.
#[derive(Parser, Debug)]
#[command(name = "convnet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Cross-check every kernel, pass and mode against the reference on random geometries.
    Check(check::CheckArgs),
    /// Time every shape x algorithm x pass: median ms, GFLOP/s, % of the measured peak.
    Bench(bench::BenchArgs),
    /// Measure this machine's f32 FMA peak per ISA, on one thread and on all.
    Peak(bench::PeakArgs),
}

/// Errors a subcommand reports before exiting with status 2.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Bench(args) => bench::run_bench(&args),
        Command::Peak(args) => bench::run_peak(&args),
    }
}
