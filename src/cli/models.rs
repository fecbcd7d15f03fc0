//! `convnet models`: every model of the zoo with its input size and parameter count.

use std::process::ExitCode;

use clap::Args;
use convnet::layers::LayerExt;
use convnet::models::MODELS;
use serde_json::json;

use super::CliError;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// One JSON object per model.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &ModelsArgs) -> Result<ExitCode, CliError> {
    if !args.json {
        outln!(
            "{:<16} {:>10} {:>8} {:>12}  {:<14} description",
            "model",
            "input",
            "classes",
            "parameters",
            "default data"
        );
    }
    for spec in MODELS {
        let params = (spec.build)()?.param_count();
        let [c, h, w] = spec.input;
        if args.json {
            let line = json!({
                "model": spec.name,
                "input": spec.input,
                "classes": spec.classes,
                "params": params,
                "data": spec.defaults.data,
            });
            outln!("{line}");
        } else {
            outln!(
                "{:<16} {:>10} {:>8} {:>12}  {:<14} {}",
                spec.name,
                format!("{c}x{h}x{w}"),
                spec.classes,
                params,
                spec.defaults.data.unwrap_or("-"),
                spec.description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
