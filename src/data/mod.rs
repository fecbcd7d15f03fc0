//! Data sets: readers for the IDX format (MNIST, Fashion-MNIST; gzipped or raw) and the CIFAR-10
//! binary format, with a named [`DataError`] for every missing, truncated or corrupt file; and
//! the [`Pipeline`] that turns images into normalized, padded, optionally augmented batches.
//!
//! A data directory holds one of:
//! - IDX: `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
//!   `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`;
//! - CIFAR-10: `data_batch_1.bin` ... `data_batch_5.bin` (any present) and `test_batch.bin`.

mod batch;
mod cifar;
mod idx;

use std::fmt;
use std::path::{Path, PathBuf};

pub use batch::{Augment, Pipeline};
pub use cifar::read_cifar10;
pub use idx::{IdxArray, read_idx};

/// Why a data set could not be read.
#[derive(Debug)]
pub enum DataError {
    /// The file or directory does not exist.
    Missing {
        /// What was looked for.
        path: PathBuf,
    },
    /// Reading failed for another reason.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file ends before its header says it should.
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was expected and found.
        detail: String,
    },
    /// The file is not in the expected format (bad magic, bad gzip, bad label, ...).
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No directory of that name was found.
    NoDataDir {
        /// The name or path asked for.
        name: String,
        /// Where it was looked for.
        tried: Vec<PathBuf>,
    },
    /// The directory holds no data set this program reads.
    UnknownFormat {
        /// The directory.
        dir: PathBuf,
    },
    /// Files that must agree do not (image and label counts, image sizes).
    Mismatch {
        /// What disagrees.
        detail: String,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Missing { path } => write!(f, "missing data file: {}", path.display()),
            DataError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            DataError::Truncated { path, detail } => {
                write!(f, "truncated data file {}: {detail}", path.display())
            }
            DataError::Corrupt { path, reason } => {
                write!(f, "corrupt data file {}: {reason}", path.display())
            }
            DataError::NoDataDir { name, tried } => {
                let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "data set `{name}` not found (looked for {})",
                    tried.join(", ")
                )
            }
            DataError::UnknownFormat { dir } => write!(
                f,
                "no data set in {}: expected MNIST-style IDX files (train-images-idx3-ubyte.gz, ...) \
                 or CIFAR-10 binary batches (data_batch_1.bin, ..., test_batch.bin)",
                dir.display()
            ),
            DataError::Mismatch { detail } => write!(f, "inconsistent data set: {detail}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Images as bytes `[len, c, h, w]` with one class label each.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Pixels, sample-major, channel planes in order.
    pub images: Vec<u8>,
    /// Class of each image.
    pub labels: Vec<u8>,
    /// `[c, h, w]` of one image.
    pub shape: [usize; 3],
}

impl Dataset {
    /// Checks that `images` holds exactly one `shape` image per label.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, shape: [usize; 3]) -> Result<Self, DataError> {
        let per = shape.iter().product::<usize>();
        if per == 0 || images.len() != per * labels.len() {
            return Err(DataError::Mismatch {
                detail: format!(
                    "{} image bytes for {} labels of {shape:?} images",
                    images.len(),
                    labels.len()
                ),
            });
        }
        Ok(Dataset {
            images,
            labels,
            shape,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.image_len()..(i + 1) * self.image_len()]
    }

    /// Number of classes: the largest label plus one.
    pub fn classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |&m| m as usize + 1)
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn head(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n);
        self
    }
}

/// A training and a test split of one data set.
#[derive(Clone, Debug)]
pub struct Splits {
    /// The training split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
}

/// The data directory for `arg`: an existing directory as given, else `data/<arg>` under the
/// working directory, else `data/<arg>` in the source tree this program was built from.
pub fn resolve_dir(arg: &str) -> Result<PathBuf, DataError> {
    let given = PathBuf::from(arg);
    let candidates = [
        given.clone(),
        Path::new("data").join(arg),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(arg),
    ];
    match candidates.iter().find(|p| p.is_dir()) {
        Some(dir) => Ok(dir.clone()),
        None => Err(DataError::NoDataDir {
            name: arg.to_string(),
            tried: candidates.to_vec(),
        }),
    }
}

/// A file `name` in `dir`, gzipped (`name.gz`) or raw.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(format!("{name}.gz")), dir.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Loads the data set in `dir`, detecting its format.
pub fn load_dir(dir: &Path) -> Result<Splits, DataError> {
    if !dir.is_dir() {
        return Err(DataError::Missing {
            path: dir.to_path_buf(),
        });
    }
    if find_file(dir, "train-images-idx3-ubyte").is_some() {
        return Ok(Splits {
            train: idx::load_split(dir, "train")?,
            test: idx::load_split(dir, "t10k")?,
        });
    }
    if dir.join("test_batch.bin").is_file() || dir.join("data_batch_1.bin").is_file() {
        return cifar::load(dir);
    }
    Err(DataError::UnknownFormat {
        dir: dir.to_path_buf(),
    })
}

/// Reads a whole file, mapping "not found" to [`DataError::Missing`].
fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DataError::Missing {
            path: path.to_path_buf(),
        },
        _ => DataError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}
