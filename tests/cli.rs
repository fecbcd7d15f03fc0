//! The `convnet` binary: bad flags and bad files exit with status 2 and a message naming the
//! problem; a short training run prints one JSON line per epoch, saves a checkpoint that
//! `eval` scores identically, and resumes from it.

use std::path::Path;
use std::process::{Command, Output};

fn convnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_convnet"))
        .args(args)
        .output()
        .expect("run convnet")
}

/// Exit status 2, no panic, and `needle` in the error output.
fn fails_with(args: &[&str], needle: &str) {
    let out = convnet(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: status {:?}, stderr {stderr}",
        out.status
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: stderr {stderr:?} lacks {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
}

#[test]
fn bad_flags_are_named_errors() {
    fails_with(&["train", "lenet5", "--bogus"], "--bogus");
    fails_with(&["train", "lenet5", "--epochs", "ten"], "--epochs");
    fails_with(
        &["train", "lenet5", "--storage", "f16"],
        "storage \"f16\": expected f32 or bf16",
    );
    fails_with(&["train", "nosuchnet"], "unknown model `nosuchnet`");
    fails_with(
        &["train", "lenet5", "--batch", "0"],
        "--batch must be at least 1",
    );
    fails_with(
        &["train", "lenet5", "--epochs", "0"],
        "--epochs must be at least 1",
    );
    fails_with(
        &["train", "lenet5", "--lr=-1"],
        "--lr must be a positive number",
    );
    fails_with(
        &["train", "lenet5", "--lr", "NaN"],
        "--lr must be a positive number",
    );
    fails_with(
        &["train", "lenet5", "--threads", "0"],
        "--threads must be at least 1",
    );
    fails_with(
        &["train", "lenet5", "--limit", "0"],
        "--limit must be at least 1",
    );
    fails_with(
        &["train", "lenet5", "--data", "/no/such/dir"],
        "data set `/no/such/dir` not found",
    );
    fails_with(&["eval", "lenet5"], "--weights");
    fails_with(
        &["eval", "lenet5", "--weights", "/no/such.safetensors"],
        "missing checkpoint file",
    );
}

#[test]
fn bad_files_are_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    fails_with(
        &["eval", "lenet5", "--weights", junk.to_str().unwrap()],
        "not a valid safetensors file",
    );
    let empty_dir = tmp.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    fails_with(
        &["train", "lenet5", "--data", empty_dir.to_str().unwrap()],
        "no data set in",
    );
    // CIFAR-10 images do not fit LeNet-5's grey input; the sample has no training batches.
    let cifar = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-sample");
    fails_with(
        &["train", "lenet5", "--data", cifar.to_str().unwrap()],
        "data_batch_1.bin",
    );
}

#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    // The reader is gone before the command starts: every write fails with EPIPE, as in
    // `convnet models | head -0`. The command stops with SIGPIPE's status, no panic.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_convnet"))
        .arg("models")
        .stdout(writer)
        .output()
        .expect("run convnet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "stderr {stderr}");
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
}

#[test]
fn models_lists_lenet5_with_its_parameter_count() {
    let out = convnet(&["models"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("lenet5"))
        .expect("lenet5 listed");
    assert!(line.contains("1x32x32") && line.contains("61718"), "{line}");
}

#[test]
fn models_lists_the_whole_zoo() {
    let out = convnet(&["models", "--json"]);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), convnet::models::MODELS.len());
    let find = |name: &str| {
        lines
            .iter()
            .find(|l| l["model"] == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
    };
    assert_eq!(find("resnet20")["params"], 272_186);
    assert_eq!(find("resnet20")["data"], "fashion-mnist");
    assert_eq!(find("densenet121")["params"], 7_978_856);
    assert_eq!(
        find("densenet121")["input"],
        serde_json::json!([3, 224, 224])
    );
    assert!(find("densenet121")["data"].is_null());
    // The ImageNet models train only on a data set given with --data.
    fails_with(&["train", "alexnet"], "alexnet has no bundled data set");
}

#[test]
fn summary_prints_every_layer_and_the_totals() {
    let out = convnet(&["summary", "resnet20", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let (totals, rows) = lines.split_last().unwrap();
    assert_eq!(totals["total_params"], 272_186);
    let params: u64 = rows.iter().map(|r| r["params"].as_u64().unwrap()).sum();
    let flops: u64 = rows.iter().map(|r| r["flops"].as_u64().unwrap()).sum();
    assert_eq!(
        (params, flops),
        (272_186, totals["total_flops"].as_u64().unwrap())
    );
    let stem = &rows[0];
    assert_eq!(stem["layer"], "conv1");
    assert_eq!(stem["output"], serde_json::json!([1, 16, 32, 32]));
    assert_eq!(stem["flops"], 2 * 16 * 32 * 32 * 9);
    assert_eq!(stem["receptive_field"], serde_json::json!([3, 3]));
    let fc = rows.last().unwrap();
    assert_eq!(
        (fc["layer"].as_str(), fc["kind"].as_str()),
        (Some("fc"), Some("Linear"))
    );
    let text = convnet(&["summary", "googlenet"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("inception5b.branch4.1.conv"), "{text}");
    assert!(text.contains("total: 6,624,904 parameters"), "{text}");
    fails_with(&["summary", "nosuchnet"], "unknown model `nosuchnet`");
}

/// DESIGN.md's `--json` contract for a command's lines: the fields that are strings and the
/// fields that are numbers. Only names and JSON types are checked: the values of measured
/// fields (times, rates) vary from run to run and are never judged by a test.
struct Schema {
    strings: &'static [&'static str],
    numbers: &'static [&'static str],
}

const BENCH_SCHEMA: Schema = Schema {
    strings: &["shape", "algo", "kernel", "pass"],
    numbers: &["threads", "ms", "gflops", "pct_peak"],
};

const TRAIN_SCHEMA: Schema = Schema {
    strings: &[],
    numbers: &["epoch", "loss", "train_acc", "test_acc", "seconds"],
};

fn assert_schema(line: &serde_json::Value, schema: &Schema) {
    for field in schema.strings {
        assert!(line[field].is_string(), "{line}: {field} is not a string");
    }
    for field in schema.numbers {
        assert!(line[field].is_number(), "{line}: {field} is not a number");
    }
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs `convnet` with `args` (ending in `--json`), which must succeed and print `rows`
/// lines of the bench schema; returns them.
fn bench_rows(args: &[&str], rows: usize) -> Vec<serde_json::Value> {
    let out = convnet(args);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), rows, "{args:?}");
    for l in &lines {
        assert_schema(l, &BENCH_SCHEMA);
    }
    lines
}

#[test]
fn bench_prints_every_row_and_rates_auto() {
    // LeNet-5's 3 convs x 3 passes x {direct, im2col, auto}: a few seconds.
    let args = [
        "bench",
        "--suite",
        "lenet",
        "--pass",
        "all",
        "--algos",
        "direct,im2col,auto",
        "--reps",
        "1",
    ];
    let out = convnet(&args);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("peak (1 threads, "), "{text}");
    assert_eq!(text.matches(" winner: ").count(), 9, "{text}");
    // Every row of the table: shape, pass, algo, kernel, then three numbers (ms, GFLOP/s,
    // % of peak; their format only).
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("lenet5.") && !l.contains(" winner: "))
        .collect();
    assert_eq!(rows.len(), 27, "{text}");
    for row in &rows {
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(fields.len(), 7, "{row}");
        for f in &fields[4..] {
            f.parse::<f64>()
                .unwrap_or_else(|e| panic!("{row}: {f:?}: {e}"));
        }
    }
    // The summary rates Auto on every (shape, pass) row.
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("auto within 5% of the best allowed algorithm on ")
            && summary.contains(" of 9 rows"),
        "{summary}"
    );

    // --json: the DESIGN.md fields on every line, Auto's line naming the kernel it ran.
    let lines = bench_rows(&[&args[..], &["--json"]].concat(), 27);
    for l in &lines {
        assert_eq!(l["cold"], false, "{l}");
        assert!(["fwd", "bwd_data", "bwd_weight"].contains(&l["pass"].as_str().unwrap()));
    }
    let auto_kernels = lines.iter().filter(|l| l["algo"] == "auto");
    for a in auto_kernels {
        assert!(
            lines.iter().any(|l| l["algo"] != "auto"
                && l["kernel"] == a["kernel"]
                && l["shape"] == a["shape"]
                && l["pass"] == a["pass"]),
            "auto ran {a}, which no other row of its shape and pass timed"
        );
    }
    // --prepared: forward and backward-data through plans, on the kernels the raw calls
    // ran (Auto's plan may pick another); backward-weight has nothing to prepare.
    let planned = bench_rows(&[&args[..], &["--json", "--prepared"]].concat(), 27);
    for p in &planned {
        assert_eq!(p["prepared"], p["pass"] != "bwd_weight", "{p}");
        if p["algo"] != "auto" {
            assert!(
                lines.iter().any(|l| l["shape"] == p["shape"]
                    && l["pass"] == p["pass"]
                    && l["algo"] == p["algo"]
                    && l["kernel"] == p["kernel"]
                    && l["prepared"] == false),
                "the plan for {p} ran another kernel than the raw call"
            );
        }
    }
    // --cold: LeNet's three convs forward on the direct kernel, each timed call after an
    // eviction of the caches.
    let cold_args = [
        "bench", "--suite", "lenet", "--algos", "direct", "--reps", "1", "--json", "--cold",
    ];
    for c in bench_rows(&cold_args, 3) {
        assert_eq!(c["cold"], true, "{c}");
    }
    fails_with(&["bench", "--suite", "nosuchsuite"], "nosuchsuite");
    fails_with(&["bench", "--threads", "0"], "--threads must be at least 1");
}

#[test]
fn train_saves_eval_scores_and_resume_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("lenet5.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    let quick = ["--limit", "300", "--batch", "50", "--threads", "2"];
    let out = convnet(
        &[
            &["train", "lenet5", "--epochs", "1", "--json", "--save", ckpt],
            &quick[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_schema(&lines[0], &TRAIN_SCHEMA);
    assert_eq!(lines[0]["epoch"], 1);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the checkpoint, no temporary file");

    let out = convnet(&["eval", "lenet5", "--weights", ckpt, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval = &json_lines(&out)[0];
    assert_eq!(
        eval["test_acc"], lines[0]["test_acc"],
        "eval scores the saved weights as training did"
    );

    let out = convnet(
        &[
            &[
                "train", "lenet5", "--epochs", "2", "--json", "--resume", ckpt,
            ],
            &quick[..],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = json_lines(&out);
    assert_eq!(resumed.len(), 1, "only epoch 2 remains");
    assert_eq!(resumed[0]["epoch"], 2);
}

/// Training runs killed (SIGKILL) at arbitrary moments, some of them while they write their
/// checkpoint over an earlier one, never leave a corrupt checkpoint: it always loads into
/// the model.
#[test]
fn killed_training_never_leaves_a_corrupt_checkpoint() {
    use convnet::checkpoint::Checkpoint;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("lenet5.safetensors");
    let path = ckpt.to_str().unwrap();
    let quick = ["--limit", "64", "--threads", "1", "--json", "--save", path];
    let out = convnet(&[&["train", "lenet5", "--epochs", "1"], &quick[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kill times spread over several epochs (an epoch with --limit 64 is mostly the
    // test-set evaluation, then the write).
    for (i, delay_ms) in [350u64, 900, 1400, 1750, 2300, 2900].iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_convnet"))
            .args([&["train", "lenet5", "--epochs", "1000"], &quick[..]].concat())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn convnet");
        std::thread::sleep(Duration::from_millis(delay_ms + 97 * i as u64));
        child.kill().unwrap();
        child.wait().unwrap();
        let loaded = Checkpoint::load(&ckpt)
            .unwrap_or_else(|e| panic!("kill {i} left a corrupt checkpoint: {e}"));
        let mut model = (convnet::models::find("lenet5").unwrap().build)().unwrap();
        loaded
            .apply_to(&mut model)
            .unwrap_or_else(|e| panic!("kill {i} left a checkpoint of the wrong shape: {e}"));
    }
}
