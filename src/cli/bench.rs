//! `convnet bench` and `convnet peak`: median time per shape x algorithm x pass, GFLOP/s and
//! % of the FMA peak measured in the same run, the winner per row.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use convnet::{models, summary};
use convnet_kernels::testing::{DataKind, fill};
use convnet_kernels::{Algorithm, Conv2d, ConvKernel, ConvParams, ConvPlan, Isa, Pass, peak};
use serde_json::{Value, json};

use super::CliError;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Named shape suite: quick, lenet, alexnet, vgg16, resnet50, densenet121, direct, all.
    #[arg(long, default_value = "quick", conflicts_with = "shapes")]
    suite: String,
    /// A JSON-lines shapes file (DESIGN.md format) instead of a suite.
    #[arg(long)]
    shapes: Option<std::path::PathBuf>,
    /// Algorithms: comma-separated names (reference, direct, im2col, winograd_f2, ...,
    /// auto) or `all`.
    #[arg(long, default_value = "direct,im2col,auto")]
    algos: String,
    /// Passes: comma-separated fwd, bwd_data, bwd_weight, or `all`.
    #[arg(long, default_value = "fwd")]
    pass: String,
    /// Threads (rayon pool size).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Minimum timed calls per kernel (after one warm-up run); more run until 0.5 s have
    /// passed.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Evict the caches before every timed call (every thread reads a buffer several times
    /// the last-level cache, which also pushes the buffers out of the TLB), as a layer in a
    /// network meets them after the other layers ran. Without it, each timed call follows a
    /// call of the same kernel, as in a loop over one layer.
    #[arg(long)]
    cold: bool,
    /// Time forward and backward-data through a plan whose weights were prepared (packed,
    /// transformed) once before timing, as inference and repeated calls run them; without
    /// it every call prepares its weights, as a training step with fresh weights does.
    #[arg(long)]
    prepared: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct PeakArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// A named shape.
pub struct Shape {
    pub name: String,
    pub params: ConvParams,
}

#[allow(clippy::too_many_arguments)]
fn conv(
    name: &str,
    n: usize,
    c: usize,
    hw: usize,
    k: usize,
    r: usize,
    s: usize,
    pad: usize,
) -> Shape {
    Shape {
        name: name.to_string(),
        params: ConvParams {
            stride: [s, s],
            padding: [pad; 4],
            ..ConvParams::new(n, c, hw, hw, k, [r, r])
        },
    }
}

/// The distinct convolution geometries of a zoo model (`convnet models`) at batch `n`, in
/// forward order, each named after the first layer that has it (`resnet50.layer1.0.conv2`).
fn model_suite(model: &str, n: usize) -> Result<Vec<Shape>, CliError> {
    let spec = models::find(model)?;
    let net = (spec.build)()?;
    let [c, h, w] = spec.input;
    let rows = summary::summarize(&net, [n, c, h, w])?.rows;
    let mut shapes: Vec<Shape> = Vec::new();
    for r in rows {
        if let Some(params) = r.conv
            && !shapes.iter().any(|s| s.params == params)
        {
            shapes.push(Shape {
                name: format!("{model}.{}", r.name),
                params,
            });
        }
    }
    Ok(shapes)
}

/// Shapes of real networks, by suite: the network suites are the convolutions of the zoo's
/// models (LeNet-5 at its training batch of 64, the ImageNet models at batch 1).
#[allow(clippy::vec_init_then_push)]
fn suite(name: &str) -> Result<Vec<Shape>, CliError> {
    // The shapes of the direct-convolution targets (issue 4).
    let direct = || {
        vec![
            conv("resnet50_conv2_3x3", 1, 64, 56, 64, 3, 1, 1),
            conv("resnet50_conv4_3x3", 1, 256, 14, 256, 3, 1, 1),
            conv("resnet50_conv5_3x3_n8", 8, 512, 7, 512, 3, 1, 1),
            conv("vgg16_conv3_1", 1, 128, 56, 256, 3, 1, 1),
            conv("cifar_3x3_n16", 16, 64, 32, 64, 3, 1, 1),
            conv("resnet50_conv3_3x3s2", 1, 128, 56, 128, 3, 2, 1),
            Shape {
                name: "deeplab_dilated3x3".into(),
                params: ConvParams {
                    dilation: [2, 2],
                    ..conv("", 1, 256, 28, 256, 3, 1, 2).params
                },
            },
            conv("resnet50_conv2_1x1_expand", 1, 64, 56, 256, 1, 1, 0),
            conv("resnet50_stem_7x7s2", 1, 3, 224, 64, 7, 2, 3),
            conv("alexnet_conv1", 1, 3, 224, 64, 11, 4, 2),
            Shape {
                name: "mobilenet_dw3x3".into(),
                params: ConvParams {
                    groups: 256,
                    ..conv("", 1, 256, 28, 256, 3, 1, 1).params
                },
            },
            conv("lenet5_c1_n64", 64, 1, 32, 6, 5, 1, 0),
            Shape {
                name: "dcgan_4x4s2_transposed".into(),
                params: ConvParams {
                    transposed: true,
                    ..conv("", 1, 256, 16, 128, 4, 2, 1).params
                },
            },
            // Image-producing last layers (few output channels): DCGAN's generator output,
            // 64 -> 3 transposed to 64x64 at a training batch of 16, and a 64 -> 3 3x3
            // output convolution at 224x224 (super-resolution, segmentation heads).
            Shape {
                name: "dcgan_out_4x4s2_to3".into(),
                params: ConvParams {
                    transposed: true,
                    ..conv("", 16, 64, 32, 3, 4, 2, 1).params
                },
            },
            conv("image_out_3x3_to3", 1, 64, 224, 3, 3, 1, 1),
        ]
    };
    let networks = [
        ("lenet", "lenet5", 64),
        ("alexnet", "alexnet", 1),
        ("vgg16", "vgg16", 1),
        ("resnet50", "resnet50", 1),
        ("densenet121", "densenet121", 1),
    ];
    if let Some((_, model, n)) = networks.iter().find(|(suite, _, _)| *suite == name) {
        return model_suite(model, *n);
    }
    Ok(match name {
        "quick" => vec![
            conv("resnet50_conv2_3x3", 1, 64, 56, 64, 3, 1, 1),
            conv("resnet50_conv4_3x3", 1, 256, 14, 256, 3, 1, 1),
            conv("lenet5_c1_n64", 64, 1, 32, 6, 5, 1, 0),
        ],
        "direct" => direct(),
        "all" => {
            let mut all: Vec<Shape> = Vec::new();
            for (_, model, n) in networks {
                all.extend(model_suite(model, n)?);
            }
            all.extend(direct());
            let mut distinct: Vec<Shape> = Vec::new();
            for s in all {
                if !distinct.iter().any(|d| d.params == s.params) {
                    distinct.push(s);
                }
            }
            distinct
        }
        other => {
            return Err(format!(
                "unknown suite {other:?}: quick, lenet, alexnet, vgg16, resnet50, densenet121, \
                 direct, all"
            )
            .into());
        }
    })
}

/// A geometry in the shapes-file format (DESIGN.md), for `--json` rows.
fn params_json(p: &ConvParams) -> Value {
    json!({"n": p.n, "c": p.c_in, "h": p.h, "w": p.w, "k": p.c_out, "r": p.kh, "s": p.kw,
           "stride": p.stride, "pad": p.padding, "dilation": p.dilation, "groups": p.groups,
           "transposed": p.transposed, "output_padding": p.output_padding})
}

/// Reads a shapes file: one JSON object per line, missing fields take PyTorch's defaults.
fn read_shapes(path: &std::path::Path) -> Result<Vec<Shape>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read shapes file {}: {e}", path.display()))?;
    let mut shapes = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = |msg: String| format!("{}:{}: {msg}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
        let get = |key: &str, default: usize| -> Result<usize, String> {
            match v.get(key) {
                None => Ok(default),
                Some(x) => x
                    .as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| at(format!("`{key}` must be a non-negative integer"))),
            }
        };
        let pair = |key: &str, default: [usize; 2]| -> Result<[usize; 2], String> {
            match v.get(key) {
                None => Ok(default),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .map(|x| [x as usize; 2])
                    .ok_or_else(|| at(format!("bad `{key}`"))),
                Some(Value::Array(a)) if a.len() == 2 => {
                    let f = |j: usize| {
                        a[j].as_u64()
                            .map(|x| x as usize)
                            .ok_or_else(|| at(format!("bad `{key}`")))
                    };
                    Ok([f(0)?, f(1)?])
                }
                Some(_) => Err(at(format!("`{key}` must be a number or a pair"))),
            }
        };
        let pad = match v.get("pad") {
            None => [0; 4],
            Some(Value::Array(a)) if a.len() == 4 => {
                let f = |j: usize| {
                    a[j].as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| at("bad `pad`".into()))
                };
                [f(0)?, f(1)?, f(2)?, f(3)?]
            }
            Some(_) => {
                let [ph, pw] = pair("pad", [0, 0])?;
                [ph, ph, pw, pw]
            }
        };
        let r = get("r", 3)?;
        let params = ConvParams {
            n: get("n", 1)?,
            c_in: get("c", 1)?,
            h: get("h", 1)?,
            w: get("w", get("h", 1)?)?,
            c_out: get("k", 1)?,
            kh: r,
            kw: get("s", r)?,
            stride: pair("stride", [1, 1])?,
            padding: pad,
            dilation: pair("dilation", [1, 1])?,
            groups: get("groups", 1)?,
            transposed: v
                .get("transposed")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            output_padding: pair("output_padding", [0, 0])?,
        };
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .map_or_else(|| params.id(), str::to_string);
        Conv2d::new(params).map_err(|e| at(format!("invalid geometry: {e}")))?;
        shapes.push(Shape { name, params });
    }
    Ok(shapes)
}

fn parse_list<T>(
    s: &str,
    all: &[T],
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<Vec<T>, CliError>
where
    T: Copy,
{
    if s.trim() == "all" {
        return Ok(all.to_vec());
    }
    s.split(',')
        .map(|x| parse(x).ok_or_else(|| format!("unknown {what} {x:?}").into()))
        .collect()
}

struct Buffers {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
}

/// What a timed run calls.
enum Runner {
    /// A kernel on the raw weights: each call prepares them.
    Raw(&'static dyn ConvKernel),
    /// A plan whose weights were prepared once (for an algorithm resolving to `.1`).
    Plan(Box<ConvPlan>, &'static dyn ConvKernel),
}

impl Runner {
    fn kernel(&self) -> &'static dyn ConvKernel {
        match self {
            Runner::Raw(k) | Runner::Plan(_, k) => *k,
        }
    }
}

fn run_once(
    runner: &Runner,
    conv: &Conv2d,
    pass: Pass,
    bufs: &mut Buffers,
) -> Result<(), CliError> {
    match (runner, pass) {
        (Runner::Plan(plan, _), Pass::Forward) => {
            plan.forward(&bufs.x, Some(&bufs.b), &mut bufs.y)?
        }
        (Runner::Plan(plan, _), Pass::BackwardData) => plan.backward_data(&bufs.y, &mut bufs.x)?,
        (_, Pass::Forward) => conv.forward_with(
            runner.kernel(),
            &bufs.x,
            &bufs.w,
            Some(&bufs.b),
            &mut bufs.y,
        )?,
        (_, Pass::BackwardData) => {
            conv.backward_data_with(runner.kernel(), &bufs.y, &bufs.w, &mut bufs.x)?
        }
        (_, Pass::BackwardWeight) => conv.backward_weight_with(
            runner.kernel(),
            &bufs.x,
            &bufs.y,
            &mut bufs.w,
            Some(&mut bufs.b),
        )?,
    }
    Ok(())
}

/// `(GFLOP/s, % of peak)` of `flops` done in `ms` milliseconds against `peak` GFLOP/s.
fn rates(flops: u64, ms: f64, peak: f64) -> (f64, f64) {
    let gflops = flops as f64 / ms / 1e6;
    (gflops, 100.0 * gflops / peak)
}

/// The best ISA's peak for `threads`, as used for `pct_peak`.
pub fn peak_gflops(threads: usize) -> f64 {
    peak::measure(Isa::detect(), threads, Duration::from_millis(300)).unwrap_or(f64::NAN)
}

/// Timed calls per kernel and round without `--cold`, after one untimed call.
const WARM_CALLS: usize = 3;

/// A buffer whose reading evicts the caches for `--cold`: four times the last-level cache
/// (64 MiB to 1 GiB; 256 MiB when sysfs does not say), written once so that its pages are
/// its own and not the kernel's shared zero page.
struct Evict {
    buf: Vec<u8>,
}

impl Evict {
    fn new() -> Evict {
        let llc = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size")
            .ok()
            .and_then(|s| cache_bytes(&s));
        let len = llc.map_or(256 << 20, |b| b.saturating_mul(4).clamp(64 << 20, 1 << 30));
        Evict { buf: vec![1; len] }
    }

    /// Reads one byte of every cache line on every thread of `pool` (each core's own caches
    /// and TLB, and the shared last level).
    fn run(&self, pool: &rayon::ThreadPool) {
        pool.broadcast(|_| {
            let sum = self
                .buf
                .iter()
                .step_by(64)
                .fold(0u8, |a, &b| a.wrapping_add(b));
            std::hint::black_box(sum);
        });
    }
}

/// Bytes of a sysfs cache size (`32768K`, `1M`, `512`).
fn cache_bytes(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, unit) = match s.strip_suffix(['K', 'M', 'G']) {
        Some(n) => (n, &s[n.len()..]),
        None => (s, ""),
    };
    let n: usize = num.parse().ok()?;
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => 0,
    };
    n.checked_mul(1 << shift).filter(|&b| b > 0)
}

/// Auto counts as choosing well when it runs at this fraction of the best allowed
/// algorithm's speed or better.
const AUTO_WITHIN: f64 = 0.95;

pub fn run_bench(args: &BenchArgs) -> Result<ExitCode, CliError> {
    let shapes = match &args.shapes {
        Some(path) => read_shapes(path)?,
        None => suite(&args.suite)?,
    };
    let algos = parse_list(&args.algos, &Algorithm::ALL, Algorithm::parse, "algorithm")?;
    let passes = parse_list(&args.pass, &Pass::ALL, Pass::parse, "pass")?;
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let peak = peak_gflops(args.threads);
    let evict = args.cold.then(Evict::new);
    if !args.json {
        outln!(
            "peak ({} threads, {}): {peak:.1} GFLOP/s",
            args.threads,
            Isa::detect()
        );
        outln!(
            "{:<28} {:<10} {:<13} {:<32} {:>9} {:>8} {:>6}",
            "shape",
            "pass",
            "algo",
            "kernel",
            "ms",
            "GFLOP/s",
            "%peak"
        );
    }
    // Auto's ratio to the best allowed algorithm per (shape, pass), for the summary line.
    let mut auto_ratios: Vec<(String, f64)> = Vec::new();
    for shape in &shapes {
        let conv = Conv2d::new(shape.params)?;
        let mut bufs = Buffers {
            x: fill(1, conv.input_len(), DataKind::Real),
            w: fill(2, conv.weight_len(), DataKind::Real),
            b: fill(3, conv.bias_len(), DataKind::Real),
            y: fill(4, conv.output_len(), DataKind::Real),
        };
        for &pass in &passes {
            // Resolve every algorithm first, then time each distinct kernel interleaved (one
            // run of each per round), so machine noise hits all of them alike; rows that
            // resolve to the same kernel (Auto and its pick) share its timing.
            let mut rows: Vec<(Algorithm, &'static dyn ConvKernel, Vec<f64>)> = Vec::new();
            // With --prepared, one plan per distinct kernel (backward-weight has nothing to
            // prepare and runs raw).
            let mut plans: Vec<(&'static dyn ConvKernel, ConvPlan)> = Vec::new();
            for &algo in &algos {
                // Resolved inside the pool, so an autotuning Auto times its candidates on
                // the thread count being measured; a plan resolves as it would in use.
                let resolved = if args.prepared && pass != Pass::BackwardWeight {
                    pool.install(|| conv.plan(algo, &bufs.w)).and_then(|plan| {
                        let k = plan.kernel(pass)?;
                        if !plans.iter().any(|(u, _)| u.name() == k.name()) {
                            plans.push((k, plan));
                        }
                        Ok(k)
                    })
                } else {
                    pool.install(|| conv.kernel(algo, pass))
                };
                match resolved {
                    Ok(k) => rows.push((algo, k, Vec::new())),
                    Err(e) if !args.json => {
                        outln!(
                            "{:<28} {:<10} {:<13} unsupported: {e}",
                            shape.name,
                            pass.name(),
                            algo.name()
                        )
                    }
                    Err(_) => {}
                }
            }
            let mut kernels: Vec<(Runner, Vec<f64>)> = Vec::new();
            for (_, k, _) in &rows {
                if !kernels.iter().any(|(u, _)| u.kernel().name() == k.name()) {
                    kernels.push((Runner::Raw(*k), Vec::new()));
                }
            }
            for (k, plan) in plans {
                if let Some((runner, _)) = kernels
                    .iter_mut()
                    .find(|(u, _)| u.kernel().name() == k.name())
                {
                    *runner = Runner::Plan(Box::new(plan), k);
                }
            }
            pool.install(|| -> Result<(), CliError> {
                for (k, _) in &kernels {
                    run_once(k, &conv, pass, &mut bufs)?;
                }
                // Rounds run every kernel in turn, so the host's noise hits them alike. A
                // timed call never directly follows another kernel's: that one leaves its
                // own working set in the caches and the TLB (Winograd F(6,3)'s weights on
                // 14x14x256 alone are 17 MiB), and a kernel's time would depend on the list
                // it is timed with. Zen 4, 1 thread, 14x14x256 timed right after the other
                // four algorithms: the direct kernel's forward ran 0.95x its time alone and
                // Winograd F(2,3)'s backward-data 0.79x its time after its own call. Warm,
                // each kernel first runs once untimed, then `WARM_CALLS` timed calls; cold,
                // every timed call follows an eviction.
                let calls = if args.cold { 1 } else { WARM_CALLS };
                let start = Instant::now();
                let mut round = 0;
                while round * calls < args.reps.max(1)
                    || (start.elapsed() < Duration::from_millis(500) && round < 200)
                {
                    for (k, times) in kernels.iter_mut() {
                        if !args.cold {
                            run_once(k, &conv, pass, &mut bufs)?;
                        }
                        for _ in 0..calls {
                            if let Some(evict) = &evict {
                                evict.run(&pool);
                            }
                            let t0 = Instant::now();
                            run_once(k, &conv, pass, &mut bufs)?;
                            times.push(t0.elapsed().as_secs_f64() * 1e3);
                        }
                    }
                    round += 1;
                }
                Ok(())
            })?;
            for (_, k, times) in rows.iter_mut() {
                let (_, t) = kernels
                    .iter()
                    .find(|(u, _)| u.kernel().name() == k.name())
                    .expect("timed above");
                times.clone_from(t);
            }
            // The kernels timed through a prepared plan.
            let planned: Vec<&str> = kernels
                .iter()
                .filter(|(u, _)| matches!(u, Runner::Plan(..)))
                .map(|(u, _)| u.kernel().name())
                .collect();
            let mut best: Option<(Algorithm, &'static str, f64)> = None;
            // Auto's yardstick: the fastest algorithm the accuracy setting lets it use.
            let tolerance = convnet_kernels::auto::tolerance();
            let mut best_allowed: Option<(Algorithm, f64)> = None;
            let mut auto_ms = None;
            for (algo, kernel, times) in &mut rows {
                times.sort_by(f64::total_cmp);
                let ms = times[times.len() / 2];
                let (gflops, pct) = rates(conv.flops(), ms, peak);
                if *algo == Algorithm::Auto {
                    auto_ms = Some(ms);
                } else {
                    if best.is_none_or(|b| ms < b.2) {
                        best = Some((*algo, kernel.name(), ms));
                    }
                    if tolerance.allows(*algo) && best_allowed.is_none_or(|b| ms < b.1) {
                        best_allowed = Some((*algo, ms));
                    }
                }
                if args.json {
                    outln!(
                        "{}",
                        json!({"shape": shape.name, "id": shape.params.id(), "params": params_json(&shape.params), "algo": algo.name(), "kernel": kernel.name(),
                               "pass": pass.name(), "prepared": planned.contains(&kernel.name()), "cold": args.cold, "threads": args.threads, "ms": ms, "gflops": gflops, "pct_peak": pct})
                    );
                } else {
                    outln!(
                        "{:<28} {:<10} {:<13} {:<32} {:>9.3} {:>8.1} {:>6.1}",
                        shape.name,
                        pass.name(),
                        algo.name(),
                        kernel.name(),
                        ms,
                        gflops,
                        pct
                    );
                }
            }
            // Auto's speed relative to the best allowed algorithm, with that algorithm.
            let auto_vs = match (auto_ms, best_allowed) {
                (Some(a), Some((algo, ms))) => Some((algo, ms / a)),
                _ => None,
            };
            if let Some((_, r)) = auto_vs {
                auto_ratios.push((format!("{} {}", shape.name, pass.name()), r));
            }
            if let (Some(best), false) = (best, args.json) {
                let ratio = match auto_vs {
                    Some((algo, r)) if algo == best.0 => format!(", auto at {r:.2}x of the best"),
                    Some((algo, r)) => format!(
                        ", auto at {r:.2}x of the best allowed at accuracy {} ({})",
                        tolerance.name(),
                        algo.name()
                    ),
                    None => String::new(),
                };
                outln!(
                    "{:<28} {:<10} winner: {} ({}){ratio}",
                    shape.name,
                    pass.name(),
                    best.0.name(),
                    best.1
                );
            }
        }
    }
    if !args.json && !auto_ratios.is_empty() {
        let misses: Vec<String> = auto_ratios
            .iter()
            .filter(|(_, r)| *r < AUTO_WITHIN)
            .map(|(row, r)| format!("{row} ({r:.2}x)"))
            .collect();
        outln!(
            "auto within {:.0}% of the best allowed algorithm on {} of {} rows{}{}",
            100.0 * (1.0 - AUTO_WITHIN),
            auto_ratios.len() - misses.len(),
            auto_ratios.len(),
            if misses.is_empty() { "" } else { "; below: " },
            misses.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_peak(args: &PeakArgs) -> Result<ExitCode, CliError> {
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1];
    if all > 1 {
        thread_counts.push(all);
    }
    for isa in convnet_kernels::isa::ALL_ISAS {
        for &threads in &thread_counts {
            let Some(gflops) = peak::measure(isa, threads, Duration::from_millis(500)) else {
                continue;
            };
            if args.json {
                outln!(
                    "{}",
                    json!({"isa": isa.name(), "threads": threads, "gflops": gflops})
                );
            } else {
                outln!(
                    "{:<9} {threads} thread(s): {gflops:8.1} GFLOP/s",
                    isa.name()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::cache_bytes;

    #[test]
    fn cache_sizes_read_as_sysfs_writes_them() {
        assert_eq!(cache_bytes("32768K\n"), Some(32 << 20));
        assert_eq!(cache_bytes("1M"), Some(1 << 20));
        assert_eq!(cache_bytes("2G"), Some(2 << 30));
        assert_eq!(cache_bytes("512"), Some(512));
        for bad in [
            "",
            "K",
            "0K",
            "12Q",
            "-1K",
            "99999999999999999999G",
            "100000000000000G",
        ] {
            assert_eq!(cache_bytes(bad), None, "{bad:?}");
        }
    }
}
