//! `convnet check`: every available kernel x pass x mode against the f64 reference on random
//! geometries, real data under the accuracy contract and integer data bit for bit where the
//! algorithm is exact. Prints the worst scaled error per row; exits 1 on any violation.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Args;
use convnet_kernels::testing::{self, ConvProblem, DataKind};
use convnet_kernels::{Algorithm, Isa, Pass, accuracy, registry};
use rayon::prelude::*;
use serde_json::json;

use super::CliError;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Random geometries per data kind (real and integer).
    #[arg(long, default_value_t = 200)]
    cases: usize,
    /// Seed of the geometry and data generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Instead of the cross-check, measure each Direct and Winograd kernel's error on
    /// zero-mean data for C in {16, 64, 256, 512} (max scaled error, relative L2 error).
    #[arg(long)]
    accuracy: bool,
}

fn run_accuracy(args: &CheckArgs) -> Result<ExitCode, CliError> {
    let rows = testing::accuracy_table(args.seed);
    if !args.json {
        outln!(
            "{:<34} {:>5} {:>16} {:>12} {:>8}",
            "kernel",
            "C",
            "max scaled err",
            "rel L2 err",
            "rho"
        );
    }
    let mut violations = 0;
    for r in &rows {
        let rho = accuracy::rho(r.algo);
        violations += usize::from(r.max_scaled_error > rho);
        if args.json {
            outln!(
                "{}",
                json!({"kernel": r.kernel, "algo": r.algo.name(), "c": r.c, "max_scaled_error": r.max_scaled_error,
                       "rel_l2_error": r.rel_l2_error, "rho": rho})
            );
        } else {
            outln!(
                "{:<34} {:>5} {:>16.4} {:>12.3e} {:>8}",
                r.kernel,
                r.c,
                r.max_scaled_error,
                r.rel_l2_error,
                rho
            );
        }
    }
    Ok(if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Default)]
struct Row {
    cases: usize,
    exact_cases: usize,
    worst: f64,
    violations: usize,
    first_failure: Option<String>,
}

/// (kernel index in the registry, pass, transposed)
type Key = (usize, usize, bool);

fn check_problem(p: &ConvProblem) -> Vec<(Key, Result<Option<f64>, String>)> {
    let mut out = Vec::new();
    for (ki, kernel) in registry::available().iter().enumerate() {
        for (pi, pass) in Pass::ALL.into_iter().enumerate() {
            let r = testing::check(kernel.as_ref(), p, pass)
                .map(|rep| rep.map(|r| r.worst_scaled_error))
                .map_err(|f| f.to_string());
            out.push(((ki, pi, p.conv.is_transposed()), r));
        }
    }
    out
}

pub fn run(args: &CheckArgs) -> Result<ExitCode, CliError> {
    let isa = testing::require_isa();
    if args.accuracy {
        return run_accuracy(args);
    }
    let mut rows: BTreeMap<Key, Row> = BTreeMap::new();
    for kind in [DataKind::Real, DataKind::Integer] {
        let problems = testing::sample_problems(args.cases, args.seed, kind);
        let results: Vec<_> = problems.par_iter().map(check_problem).collect();
        for (key, r) in results.into_iter().flatten() {
            let row = rows.entry(key).or_default();
            match r {
                Ok(None) => {}
                Ok(Some(scaled)) => {
                    if kind == DataKind::Real {
                        row.cases += 1;
                        row.worst = row.worst.max(scaled);
                    } else {
                        row.exact_cases += 1;
                    }
                }
                Err(msg) => {
                    row.violations += 1;
                    row.first_failure.get_or_insert(msg);
                }
            }
        }
    }

    if !args.json {
        outln!(
            "convnet check: {} geometries per data kind, seed {}, ISA {isa}",
            args.cases,
            args.seed
        );
        outln!("accuracy contract: |y - ref| <= rho * L * eps * A; rho per algorithm:");
        let mut algos: Vec<Algorithm> = Vec::new();
        for k in registry::available() {
            if !algos.contains(&k.algorithm()) {
                algos.push(k.algorithm());
            }
        }
        for algo in &algos {
            let exact = if accuracy::exact_on_integers(*algo) {
                ", exact on integer data"
            } else {
                ""
            };
            outln!(
                "  {:<12} rho = {}{exact}",
                algo.name(),
                accuracy::rho(*algo)
            );
        }
        for (name, needs) in registry::skipped() {
            outln!("skipped: {name} needs {needs}");
        }
        outln!(
            "{:<34} {:<10} {:<10} {:>6} {:>6} {:>12} {:>6} {:>10}",
            "kernel",
            "pass",
            "mode",
            "cases",
            "exact",
            "worst",
            "rho",
            "violations"
        );
    }
    let mut total_violations = 0;
    for ((ki, pi, transposed), row) in &rows {
        let kernel = &registry::available()[*ki];
        let pass = Pass::ALL[*pi];
        let mode = if *transposed { "transposed" } else { "normal" };
        let rho = accuracy::rho(kernel.algorithm());
        total_violations += row.violations;
        if args.json {
            outln!(
                "{}",
                json!({
                    "kernel": kernel.name(), "algo": kernel.algorithm().name(), "isa": kernel.isa().name(),
                    "pass": pass.name(), "mode": mode, "cases": row.cases, "exact_cases": row.exact_cases,
                    "worst_scaled_error": row.worst, "bound": rho, "violations": row.violations,
                })
            );
        } else {
            outln!(
                "{:<34} {:<10} {:<10} {:>6} {:>6} {:>12.4} {:>6} {:>10}",
                kernel.name(),
                pass.name(),
                mode,
                row.cases,
                row.exact_cases,
                row.worst,
                rho,
                row.violations
            );
        }
    }
    for row in rows.values() {
        if let Some(msg) = &row.first_failure {
            eprintln!("violation: {msg}");
        }
    }
    if total_violations > 0 {
        eprintln!(
            "convnet check: {total_violations} violations (isa {})",
            Isa::detect()
        );
        return Ok(ExitCode::from(1));
    }
    if !args.json {
        outln!("no violations");
    }
    Ok(ExitCode::SUCCESS)
}
