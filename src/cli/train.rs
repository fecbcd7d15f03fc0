//! `convnet train MODEL`: trains a model of the zoo on its bundled data set (or `--data`),
//! with a progress bar, per-epoch test accuracy and time, `--json` metric lines, atomic
//! `--save` checkpoints after every epoch and `--resume`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use convnet::checkpoint::{Checkpoint, OPTIMIZER_PREFIX};
use convnet::data::{self, Pipeline, Splits};
use convnet::layers::{LayerExt, Sequential, Storage};
use convnet::models::{self, ModelSpec};
use convnet::optim::Sgd;
use convnet::train::{self, PassStats, TrainConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{CliError, set_threads};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The model (see `convnet models`).
    model: String,
    /// Data set: a folder of `data/` (mnist, fashion-mnist) or a directory path.
    #[arg(long)]
    data: Option<String>,
    /// Epochs (default: the model's).
    #[arg(long)]
    epochs: Option<usize>,
    /// Mini-batch size (default: the model's).
    #[arg(long)]
    batch: Option<usize>,
    /// Base learning rate (default: the model's).
    #[arg(long)]
    lr: Option<f64>,
    /// Worker threads (default: one per core). Results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Seed of initialization, shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Train on only the first N training images (for quick runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Write a safetensors checkpoint here after every epoch (atomically).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue from a checkpoint written by `--save`.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// One JSON object per epoch on stdout instead of text and a progress bar.
    #[arg(long)]
    json: bool,
    /// Number format of convolution and linear layers: f32, or bf16 (bf16 activations,
    /// weights and gradients with f32 accumulation and f32 master weights).
    #[arg(long, default_value = "f32")]
    storage: Storage,
}

/// Settings after defaults and validation.
fn config(args: &TrainArgs, spec: &ModelSpec) -> Result<TrainConfig, CliError> {
    let d = &spec.defaults;
    let epochs = args.epochs.unwrap_or(d.epochs);
    let batch = args.batch.unwrap_or(d.batch);
    let lr = args.lr.unwrap_or(d.lr);
    if epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(format!("--lr must be a positive number, got {lr}").into());
    }
    Ok(TrainConfig {
        epochs,
        batch,
        lr,
        schedule: d.schedule,
        augment: d.augment,
        seed: args.seed,
        storage: args.storage,
    })
}

/// The data set and its pipeline (normalized with the whole training split's statistics,
/// as `eval` does, even when `--limit` trains on a part of it).
fn load_data(args: &TrainArgs, spec: &ModelSpec) -> Result<(Splits, Pipeline), CliError> {
    let dir = super::data_dir(args.data.as_deref(), spec)?;
    let mut splits = data::load_dir(&dir)?;
    let pipeline = Pipeline::new(&splits.train, spec.input)?;
    if let Some(n) = args.limit {
        if n == 0 {
            return Err("--limit must be at least 1".into());
        }
        splits.train = splits.train.head(n);
    }
    let classes = splits.train.classes().max(splits.test.classes());
    if classes > spec.classes {
        return Err(format!(
            "{} has {classes} classes, model {} has {} outputs",
            dir.display(),
            spec.name,
            spec.classes
        )
        .into());
    }
    Ok((splits, pipeline))
}

/// Restores weights and optimizer state; returns the epochs already done.
fn resume(
    path: &Path,
    spec: &ModelSpec,
    model: &mut Sequential,
    opt: &mut Sgd,
) -> Result<usize, CliError> {
    let ckpt = Checkpoint::load(path)?;
    super::check_model_name(&ckpt, spec)?;
    ckpt.apply_to(model)?;
    let buffers: Vec<(String, Vec<f32>)> = ckpt
        .tensors
        .values()
        .filter_map(|t| {
            let name = t.name.strip_prefix(OPTIMIZER_PREFIX)?;
            Some((name.to_string(), t.data.clone()))
        })
        .collect();
    // In the model's parameter order, as the optimizer keeps them.
    let order: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    let mut buffers: Vec<_> = order
        .iter()
        .filter_map(|n| buffers.iter().find(|(b, _)| b == n).cloned())
        .collect();
    buffers.retain(|(_, v)| !v.is_empty());
    opt.set_momentum_buffers(buffers);
    let epoch = ckpt.metadata.get("epoch").and_then(|e| e.parse().ok());
    epoch.ok_or_else(|| format!("checkpoint {} has no epoch metadata", path.display()).into())
}

fn save(
    path: &Path,
    spec: &ModelSpec,
    model: &Sequential,
    opt: &Sgd,
    epoch: usize,
) -> Result<(), CliError> {
    let mut ckpt = Checkpoint::from_model(model);
    for (name, v) in opt.momentum_buffers() {
        let shape = vec![v.len()];
        ckpt.insert(format!("{OPTIMIZER_PREFIX}{name}"), shape, v.clone());
    }
    ckpt.metadata.insert("model".into(), spec.name.into());
    ckpt.metadata.insert("epoch".into(), epoch.to_string());
    ckpt.save(path)?;
    Ok(())
}

fn progress_bar(args: &TrainArgs, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if args.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// One epoch's results: training and test statistics, training time and total time.
struct EpochReport {
    epoch: usize,
    train: PassStats,
    test: PassStats,
    train_seconds: f64,
    seconds: f64,
}

fn report(args: &TrainArgs, epochs: usize, r: &EpochReport) {
    let (epoch, tr, te, secs) = (r.epoch, &r.train, &r.test, r.seconds);
    if args.json {
        let line = json!({
            "epoch": epoch,
            "loss": tr.loss,
            "train_acc": tr.acc,
            "test_acc": te.acc,
            "test_loss": te.loss,
            "seconds": secs,
            "train_seconds": r.train_seconds,
        });
        outln!("{line}");
    } else {
        outln!(
            "epoch {epoch}/{epochs}  loss {:.4}  train {:.2}%  test {:.2}% (loss {:.4})  {secs:.1} s",
            tr.loss,
            100.0 * tr.acc,
            100.0 * te.acc,
            te.loss
        );
    }
}

pub fn run(args: &TrainArgs) -> Result<ExitCode, CliError> {
    let spec = models::find(&args.model)?;
    let cfg = config(args, spec)?;
    set_threads(args.threads)?;
    let (splits, pipeline) = load_data(args, spec)?;
    let mut model = spec.build_initialized(cfg.seed)?;
    let mut opt = Sgd::new(spec.defaults.sgd)?;
    let done = match &args.resume {
        Some(path) => resume(path, spec, &mut model, &mut opt)?,
        None => 0,
    };
    if !args.json {
        outln!(
            "{}: {} parameters, {} train / {} test images, batch {}, lr {}, {} threads, ISA {}",
            spec.name,
            model.param_count(),
            splits.train.len(),
            splits.test.len(),
            cfg.batch,
            cfg.lr,
            rayon::current_num_threads(),
            convnet::kernels::Isa::detect()
        );
        if done >= cfg.epochs {
            outln!(
                "the checkpoint has already trained {done} of {} epochs",
                cfg.epochs
            );
        }
    }
    let start = Instant::now();
    for epoch in done..cfg.epochs {
        let t0 = Instant::now();
        let steps = splits.train.len().div_ceil(cfg.batch);
        let bar = progress_bar(args, steps, epoch + 1, cfg.epochs);
        let tr = train::train_epoch(
            &mut model,
            &mut opt,
            &pipeline,
            &splits.train,
            &cfg,
            epoch,
            &mut |s| {
                bar.set_position(s.step as u64);
                bar.set_message(format!("loss {:.4} acc {:.2}%", s.loss, 100.0 * s.acc));
            },
        )?;
        bar.finish_and_clear();
        let train_seconds = t0.elapsed().as_secs_f64();
        let test = train::evaluate(
            &mut model,
            &pipeline,
            &splits.test,
            super::EVAL_BATCH,
            cfg.storage,
        )?;
        let r = EpochReport {
            epoch: epoch + 1,
            train: tr,
            test,
            train_seconds,
            seconds: t0.elapsed().as_secs_f64(),
        };
        // Saved before it is reported: a reader that has gone ends the process at the
        // report, and the epoch is kept.
        if let Some(path) = &args.save {
            save(path, spec, &model, &opt, epoch + 1)?;
        }
        report(args, cfg.epochs, &r);
    }
    if !args.json {
        outln!("total {:.1} s", start.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
