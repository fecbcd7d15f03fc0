//! `convnet eval MODEL --weights FILE`: test-set accuracy of saved weights.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use convnet::checkpoint::Checkpoint;
use convnet::data::{self, Pipeline};
use convnet::layers::Storage;
use convnet::models;
use convnet::train;
use serde_json::json;

use super::{CliError, set_threads};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The model (see `convnet models`).
    model: String,
    /// A safetensors checkpoint written by `convnet train --save`.
    #[arg(long)]
    weights: PathBuf,
    /// Data set: a folder of `data/` (mnist, fashion-mnist) or a directory path.
    #[arg(long)]
    data: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Number format of convolution and linear layers: f32 or bf16 (see `convnet train`).
    #[arg(long, default_value = "f32")]
    storage: Storage,
}

pub fn run(args: &EvalArgs) -> Result<ExitCode, CliError> {
    let spec = models::find(&args.model)?;
    set_threads(args.threads)?;
    let ckpt = Checkpoint::load(&args.weights)?;
    super::check_model_name(&ckpt, spec)?;
    let mut model = (spec.build)()?;
    ckpt.apply_to(&mut model)?;
    let dir = super::data_dir(args.data.as_deref(), spec)?;
    let splits = data::load_dir(&dir)?;
    // Normalized with the training split's statistics, as in training.
    let pipeline = Pipeline::new(&splits.train, spec.input)?;
    let stats = train::evaluate(
        &mut model,
        &pipeline,
        &splits.test,
        super::EVAL_BATCH,
        args.storage,
    )?;
    if args.json {
        let line = json!({
            "model": spec.name,
            "test_acc": stats.acc,
            "test_loss": stats.loss,
            "samples": stats.samples,
        });
        outln!("{line}");
    } else {
        outln!(
            "{} on {}: test accuracy {:.2}% over {} images, loss {:.4}",
            spec.name,
            dir.display(),
            100.0 * stats.acc,
            stats.samples,
            stats.loss
        );
    }
    Ok(ExitCode::SUCCESS)
}
