//! `convnet summary MODEL`: per layer the output shape, parameter count, FLOPs and receptive
//! field for one input image, then the totals (see `convnet::summary` for the rules).

use std::process::ExitCode;

use clap::Args;
use convnet::models;
use convnet::summary::{self, Row};
use serde_json::{Value, json};

use super::CliError;

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// The model (see `convnet models`).
    model: String,
    /// One JSON object per layer, then `{"total_params","total_flops"}`.
    #[arg(long)]
    json: bool,
}

/// A pixel count as JSON: an integer when it is one (a transposed conv can make it
/// fractional).
fn pixels(v: f64) -> Value {
    if v.fract() == 0.0 && v >= 0.0 && v < u64::MAX as f64 {
        json!(v as u64)
    } else {
        json!(v)
    }
}

/// `[h, w]` as `h` when square, else `hxw`.
fn extent([h, w]: [f64; 2]) -> String {
    let one = |v: f64| {
        if v.fract() == 0.0 {
            format!("{v}")
        } else {
            format!("{v:.2}")
        }
    };
    if h == w {
        one(h)
    } else {
        format!("{}x{}", one(h), one(w))
    }
}

/// `1234567` as `1,234,567`.
fn grouped(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn print_row(r: &Row) {
    let [_, c, h, w] = r.output;
    outln!(
        "{:<44} {:<18} {:>12} {:>11} {:>15} {:>7} {:>5}",
        r.name,
        r.kind,
        format!("{c}x{h}x{w}"),
        grouped(r.params as u64),
        grouped(r.flops),
        extent(r.receptive),
        extent(r.jump)
    );
}

pub fn run(args: &SummaryArgs) -> Result<ExitCode, CliError> {
    let spec = models::find(&args.model)?;
    let model = (spec.build)()?;
    let [c, h, w] = spec.input;
    let s = summary::summarize(&model, [1, c, h, w])?;
    if args.json {
        for r in &s.rows {
            let line = json!({
                "layer": r.name,
                "kind": r.kind,
                "output": r.output,
                "params": r.params,
                "flops": r.flops,
                "receptive_field": [pixels(r.receptive[0]), pixels(r.receptive[1])],
                "jump": [pixels(r.jump[0]), pixels(r.jump[1])],
            });
            outln!("{line}");
        }
        outln!(
            "{}",
            json!({"total_params": s.total_params, "total_flops": s.total_flops})
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{}: input {c}x{h}x{w}, {} classes; FLOPs of one forward pass on one image",
        spec.name,
        spec.classes
    );
    outln!(
        "{:<44} {:<18} {:>12} {:>11} {:>15} {:>7} {:>5}",
        "layer",
        "kind",
        "output",
        "params",
        "FLOPs",
        "rf",
        "jump"
    );
    for r in &s.rows {
        print_row(r);
    }
    outln!(
        "total: {} parameters, {} FLOPs ({:.3} GFLOPs)",
        grouped(s.total_params as u64),
        grouped(s.total_flops),
        s.total_flops as f64 / 1e9
    );
    Ok(ExitCode::SUCCESS)
}
