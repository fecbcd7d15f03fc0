//! Subcommands of the `convnet` program (DESIGN.md, "The `convnet` command").

/// `println!` to standard output, ending the process quietly (status 141, as a Unix tool
/// killed by SIGPIPE) once the reader has gone, as with `convnet bench | head`: Rust ignores
/// SIGPIPE, and `println!` panicked with a backtrace there.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod bench;
mod check;
mod eval;
mod models;
mod summary;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use convnet::checkpoint::Checkpoint;
use convnet::models::ModelSpec;

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
    /// Train a model of the zoo, evaluating on the test split after every epoch.
    Train(train::TrainArgs),
    /// Test-set accuracy of a saved checkpoint.
    Eval(eval::EvalArgs),
    /// List the models with their input size and parameter count.
    Models(models::ModelsArgs),
    /// Per layer: output shape, parameters, FLOPs and receptive field; then the totals.
    Summary(summary::SummaryArgs),
}

/// Errors a subcommand reports before exiting with status 2.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Batch size of test-set evaluation: small enough that the activations of the widest small
/// models (DenseNet's concatenations) stay far from memory-bandwidth-bound sizes.
const EVAL_BATCH: usize = 128;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Bench(args) => bench::run_bench(&args),
        Command::Peak(args) => bench::run_peak(&args),
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Models(args) => models::run(&args),
        Command::Summary(args) => summary::run(&args),
    }
}

/// Sizes rayon's global pool (`None`: one thread per core).
fn set_threads(threads: Option<usize>) -> Result<(), CliError> {
    let Some(t) = threads else {
        return Ok(());
    };
    if t == 0 {
        return Err("--threads must be at least 1".into());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build_global()
        .map_err(|e| format!("cannot start {t} threads: {e}").into())
}

/// The data directory: `--data` if given, else the model's bundled data set.
fn data_dir(arg: Option<&str>, spec: &ModelSpec) -> Result<std::path::PathBuf, CliError> {
    let name = arg.or(spec.defaults.data).ok_or_else(|| {
        let [c, h, w] = spec.input;
        format!(
            "{} has no bundled data set: pass --data DIR ({c}-channel images of at most \
             {h}x{w}, up to {} classes)",
            spec.name, spec.classes
        )
    })?;
    Ok(convnet::data::resolve_dir(name)?)
}

/// Refuses a checkpoint whose metadata names another model.
fn check_model_name(ckpt: &Checkpoint, spec: &ModelSpec) -> Result<(), CliError> {
    match ckpt.metadata.get("model") {
        Some(m) if m != spec.name => Err(convnet::checkpoint::CheckpointError::WrongModel {
            expected: spec.name.into(),
            got: m.clone(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// One line to standard output, for [`outln!`]: on a closed pipe the process exits with
/// status 141; on any other write error it reports the error and exits with status 2.
pub fn write_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(141),
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            std::process::exit(2);
        }
    }
}
