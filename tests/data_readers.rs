//! The bundled data sets read correctly (raw MD5 sums of the decompressed MNIST and
//! Fashion-MNIST files, counts, class balance, the CIFAR-10 sample's labels), and every
//! missing, truncated or corrupt file is a named error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use convnet::data::{self, DataError, read_cifar10, read_idx};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};

fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file of `MD5SUMS.raw` gunzips to bytes with that MD5.
fn check_raw_md5(set: &str) {
    let dir = data_dir(set);
    let sums = std::fs::read_to_string(dir.join("MD5SUMS.raw")).unwrap();
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (want, name) = line.split_once(char::is_whitespace).unwrap();
        let gz = std::fs::read(dir.join(format!("{}.gz", name.trim()))).unwrap();
        let mut raw = Vec::new();
        MultiGzDecoder::new(gz.as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(hex(&Md5::digest(&raw)), want, "{set}/{}", name.trim());
        checked += 1;
    }
    assert_eq!(checked, 4, "{set}: four files");
}

#[test]
fn mnist_and_fashion_mnist_match_their_published_raw_md5() {
    check_raw_md5("mnist");
    check_raw_md5("fashion-mnist");
}

#[test]
fn mnist_loads_with_the_published_counts() {
    let splits = data::load_dir(&data_dir("mnist")).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));
    assert_eq!(splits.train.shape, [1, 28, 28]);
    let mut counts = [0usize; 10];
    for &l in &splits.train.labels {
        counts[l as usize] += 1;
    }
    // data/manifest.json of the shared data sets.
    assert_eq!(
        counts,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let mean = splits.train.images.iter().map(|&b| b as f64).sum::<f64>()
        / splits.train.images.len() as f64;
    assert!((mean - 33.3184).abs() < 1e-3, "mean pixel {mean}");
}

#[test]
fn fashion_mnist_is_balanced() {
    let splits = data::load_dir(&data_dir("fashion-mnist")).unwrap();
    assert_eq!((splits.train.len(), splits.test.len()), (60_000, 10_000));
    for class in 0..10u8 {
        assert_eq!(
            splits.train.labels.iter().filter(|&&l| l == class).count(),
            6_000
        );
    }
}

#[test]
fn cifar10_sample_reads_the_first_test_images() {
    let dir = data_dir("cifar10-sample");
    let set = read_cifar10(&dir.join("test_batch.bin")).unwrap();
    assert_eq!(set.len(), 20);
    assert_eq!(set.shape, [3, 32, 32]);
    // The first 20 labels of the CIFAR-10 test batch (cat, ship, ship, airplane, frog, ...).
    assert_eq!(
        set.labels,
        vec![3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
    let names = std::fs::read_to_string(dir.join("batches.meta.txt")).unwrap();
    let names: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(names[3], "cat");
    assert_eq!(names.len(), 10);
    // A directory with only a test batch has no training split: a named error.
    match data::load_dir(&dir) {
        Err(DataError::Missing { path }) => assert!(path.ends_with("data_batch_1.bin")),
        other => panic!("expected a missing data_batch_1.bin, got {other:?}"),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// An IDX file of unsigned bytes.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

/// A valid IDX data set of `n` 2x2 images in `dir`, gzipped.
fn write_idx_set(dir: &Path, n: u32) {
    for prefix in ["train", "t10k"] {
        let images = idx(&[n, 2, 2], &vec![7; 4 * n as usize]);
        let labels = idx(&[n], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            gzip(&images),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            gzip(&labels),
        )
        .unwrap();
    }
}

#[test]
fn idx_errors_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_idx_set(dir, 5);
    let ok = data::load_dir(dir).unwrap();
    assert_eq!((ok.train.len(), ok.train.shape), (5, [1, 2, 2]));

    let file = dir.join("x.idx");
    let err = |bytes: &[u8]| {
        std::fs::write(&file, bytes).unwrap();
        read_idx(&file).unwrap_err()
    };
    let good = idx(&[5, 2, 2], &[1; 20]);
    assert!(
        matches!(err(&good[..good.len() - 3]), DataError::Truncated { .. }),
        "short data"
    );
    assert!(
        matches!(err(&good[..6]), DataError::Truncated { .. }),
        "short header"
    );
    let gz = gzip(&good);
    assert!(
        matches!(err(&gz[..gz.len() / 2]), DataError::Truncated { .. }),
        "cut gzip"
    );
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    assert!(
        matches!(err(&bad_magic), DataError::Corrupt { .. }),
        "magic"
    );
    let mut bad_type = good.clone();
    bad_type[2] = 0x0d;
    assert!(
        matches!(err(&bad_type), DataError::Corrupt { .. }),
        "element type"
    );
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(
        matches!(err(&trailing), DataError::Corrupt { .. }),
        "trailing bytes"
    );
    let mut bad_gzip = vec![0x1f, 0x8b];
    bad_gzip.extend([0xff; 30]);
    assert!(
        matches!(err(&bad_gzip), DataError::Corrupt { .. }),
        "gzip garbage"
    );
    assert!(
        matches!(
            err(&idx(&[u32::MAX, u32::MAX, 9], &[])),
            DataError::Corrupt { .. }
        ),
        "huge dims"
    );

    // Labels out of range, counts that disagree, a missing file, an unknown directory.
    let labels = dir.join("train-labels-idx1-ubyte.gz");
    std::fs::write(&labels, gzip(&idx(&[5], &[0, 1, 2, 3, 10]))).unwrap();
    assert!(matches!(
        data::load_dir(dir),
        Err(DataError::Corrupt { .. })
    ));
    std::fs::write(&labels, gzip(&idx(&[4], &[0, 1, 2, 3]))).unwrap();
    assert!(matches!(
        data::load_dir(dir),
        Err(DataError::Mismatch { .. })
    ));
    std::fs::remove_file(&labels).unwrap();
    match data::load_dir(dir) {
        Err(DataError::Missing { path }) => assert!(path.ends_with("train-labels-idx1-ubyte.gz")),
        other => panic!("expected a missing labels file, got {other:?}"),
    }
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        data::load_dir(empty.path()),
        Err(DataError::UnknownFormat { .. })
    ));
    assert!(matches!(
        read_idx(&dir.join("nope")),
        Err(DataError::Missing { .. })
    ));
    let err = data::resolve_dir("no-such-data-set").unwrap_err();
    assert!(err.to_string().contains("no-such-data-set"), "{err}");
}

#[test]
fn raw_idx_files_read_like_gzipped_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_idx_set(dir, 3);
    let gz = data::load_dir(dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mut raw = Vec::new();
        MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        std::fs::write(path.with_extension(""), raw).unwrap();
        std::fs::remove_file(&path).unwrap();
    }
    let raw = data::load_dir(dir).unwrap();
    assert_eq!(raw.train, gz.train);
    assert_eq!(raw.test, gz.test);
}

#[test]
fn cifar_errors_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("test_batch.bin");
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend(vec![9u8; 3072]);
        r
    };
    std::fs::write(&file, [record(1), record(2)].concat()).unwrap();
    assert_eq!(read_cifar10(&file).unwrap().labels, vec![1, 2]);
    std::fs::write(&file, &record(1)[..3000]).unwrap();
    assert!(matches!(
        read_cifar10(&file),
        Err(DataError::Truncated { .. })
    ));
    std::fs::write(&file, []).unwrap();
    assert!(matches!(
        read_cifar10(&file),
        Err(DataError::Truncated { .. })
    ));
    std::fs::write(&file, record(12)).unwrap();
    assert!(matches!(
        read_cifar10(&file),
        Err(DataError::Corrupt { .. })
    ));
    assert!(matches!(
        read_cifar10(&tmp.path().join("missing.bin")),
        Err(DataError::Missing { .. })
    ));
}
