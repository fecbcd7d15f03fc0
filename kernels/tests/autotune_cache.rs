//! The autotune cache keys its decisions by thread count: a choice made for one thread
//! count is not reused for another, in process or on disk. (Only the cache's keys are
//! checked; which kernel wins is not.)
//!
//! One test in this binary: it sets the process's cache path before any kernel runs.

use convnet_kernels::{Algorithm, Conv2d, ConvParams, auto};

#[test]
fn autotune_decides_once_per_thread_count_and_saves_each() {
    let path = std::env::temp_dir().join(format!("convnet_autotune_{}.tsv", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // SAFETY: this binary's only test sets the variable before anything reads it, and no
    // other thread of the process reads the environment meanwhile.
    unsafe { std::env::set_var("CONVNET_AUTOTUNE_CACHE", &path) };
    auto::set_autotune(true);
    let conv = Conv2d::new(ConvParams::new(1, 8, 12, 12, 8, [3, 3])).unwrap();
    let x = vec![0.5f32; conv.input_len()];
    let w = vec![0.25f32; conv.weight_len()];
    for threads in [1, 2, 1] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut y = vec![0.0f32; conv.output_len()];
        pool.install(|| conv.forward(Algorithm::Auto, &x, &w, None, &mut y))
            .unwrap();
        assert!(y.iter().all(|v| v.is_finite()), "{threads} threads");
    }
    let text = std::fs::read_to_string(&path).expect("the cache file was written");
    let _ = std::fs::remove_file(&path);
    let keys: Vec<&str> = text
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "one decision per thread count: {text}");
    assert!(keys.iter().any(|k| k.ends_with("_t1")), "{text}");
    assert!(keys.iter().any(|k| k.ends_with("_t2")), "{text}");
    for line in text.lines() {
        let kernel = line.split('\t').nth(1).expect("a kernel name");
        assert!(
            convnet_kernels::KERNELS.iter().any(|k| k.name == kernel),
            "unknown kernel {kernel}"
        );
    }
}
