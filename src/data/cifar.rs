//! The CIFAR-10 binary format (Krizhevsky's page): records of 1 label byte (0..=9) and 3072
//! pixel bytes, the 32x32 red plane, then green, then blue.

use std::path::Path;

use super::{DataError, Dataset, Splits, read_file};

const SIDE: usize = 32;
const RECORD: usize = 1 + 3 * SIDE * SIDE;

/// Reads one CIFAR-10 batch file.
pub fn read_cifar10(path: &Path) -> Result<Dataset, DataError> {
    let bytes = read_file(path)?;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "{} bytes is not a whole number of {RECORD}-byte records",
                bytes.len()
            ),
        });
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut images = Vec::with_capacity(n * (RECORD - 1));
    for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
        if record[0] > 9 {
            return Err(DataError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("record {i} has label {}, expected 0..=9", record[0]),
            });
        }
        labels.push(record[0]);
        images.extend_from_slice(&record[1..]);
    }
    Dataset::new(images, labels, [3, SIDE, SIDE])
}

/// Concatenates data sets of one image shape.
fn concat(parts: Vec<Dataset>) -> Dataset {
    let mut all = Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        shape: [3, SIDE, SIDE],
    };
    for p in parts {
        all.images.extend(p.images);
        all.labels.extend(p.labels);
    }
    all
}

/// `data_batch_1.bin` ... `data_batch_5.bin` (every one present, at least one) and
/// `test_batch.bin`.
pub(super) fn load(dir: &Path) -> Result<Splits, DataError> {
    let train: Vec<Dataset> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .filter(|p| p.is_file())
        .map(|p| read_cifar10(&p))
        .collect::<Result<_, _>>()?;
    if train.is_empty() {
        return Err(DataError::Missing {
            path: dir.join("data_batch_1.bin"),
        });
    }
    Ok(Splits {
        train: concat(train),
        test: read_cifar10(&dir.join("test_batch.bin"))?,
    })
}
