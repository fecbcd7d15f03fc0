//! Checkpoints in the safetensors format: every parameter and buffer under its PyTorch
//! `state_dict` name as an F32 tensor, optional extra tensors (the optimizer's momentum,
//! under `optimizer.momentum.<name>`), and string metadata (model name, epoch).
//!
//! Writes are atomic: the bytes go to a temporary file in the target's directory, which is
//! flushed to disk (fsync) and then renamed over the target, so an interrupted write never
//! leaves a partial checkpoint behind.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::layers::{Layer, LayerExt};

/// The name prefix of optimizer state in a checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer.momentum.";

/// Why a checkpoint could not be written, read or applied.
#[derive(Debug)]
pub enum CheckpointError {
    /// The file does not exist.
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file.
    Format {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    MissingTensor {
        /// Its name.
        name: String,
    },
    /// The checkpoint holds a tensor the model does not have.
    UnexpectedTensor {
        /// Its name.
        name: String,
    },
    /// A tensor has another shape than the model's parameter.
    ShapeMismatch {
        /// Its name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The checkpoint's shape.
        got: Vec<usize>,
    },
    /// A tensor is not F32.
    Dtype {
        /// Its name.
        name: String,
        /// Its dtype.
        dtype: String,
    },
    /// The checkpoint was saved from another model.
    WrongModel {
        /// The model asked for.
        expected: String,
        /// The model in the file.
        got: String,
    },
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointError::Missing { path } => {
                write!(f, "missing checkpoint file: {}", path.display())
            }
            CheckpointError::Io { path, source } => {
                write!(f, "checkpoint {}: {source}", path.display())
            }
            CheckpointError::Format { path, reason } => {
                write!(
                    f,
                    "checkpoint {} is not a valid safetensors file: {reason}",
                    path.display()
                )
            }
            CheckpointError::MissingTensor { name } => {
                write!(f, "checkpoint lacks tensor `{name}`")
            }
            CheckpointError::UnexpectedTensor { name } => {
                write!(
                    f,
                    "checkpoint has tensor `{name}`, which the model does not"
                )
            }
            CheckpointError::ShapeMismatch {
                name,
                expected,
                got,
            } => write!(
                f,
                "checkpoint tensor `{name}` has shape {got:?}, the model needs {expected:?}"
            ),
            CheckpointError::Dtype { name, dtype } => {
                write!(f, "checkpoint tensor `{name}` is {dtype}, expected F32")
            }
            CheckpointError::WrongModel { expected, got } => {
                write!(
                    f,
                    "checkpoint was saved from model `{got}`, not `{expected}`"
                )
            }
        }
    }
}

impl std::error::Error for CheckpointError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CheckpointError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// The contents of a checkpoint file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Tensors by name.
    pub tensors: BTreeMap<String, NamedTensor>,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The model's parameters and buffers.
    pub fn from_model<L: Layer + ?Sized>(model: &L) -> Checkpoint {
        let mut c = Checkpoint::default();
        for (name, p) in model.named_params() {
            c.insert(name, p.shape.clone(), p.value.clone());
        }
        c
    }

    /// Adds a tensor.
    pub fn insert(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>) {
        let t = NamedTensor {
            name: name.clone(),
            shape,
            data,
        };
        self.tensors.insert(name, t);
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes: Vec<(&str, &[usize], Vec<u8>)> = self
            .tensors
            .values()
            .map(|t| {
                let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (t.name.as_str(), t.shape.as_slice(), raw)
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, shape, raw)| {
                TensorView::new(Dtype::F32, shape.to_vec(), raw).map(|v| (name.to_string(), v))
            })
            .collect::<Result<Vec<_>, _>>();
        let metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        let format = |e: safetensors::SafeTensorError| CheckpointError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let file =
            safetensors::serialize(views.map_err(format)?, Some(metadata)).map_err(format)?;
        write_atomically(path, &file)
    }

    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CheckpointError::Missing {
                path: path.to_path_buf(),
            },
            _ => CheckpointError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let format = |e: safetensors::SafeTensorError| CheckpointError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(format)?;
        let file = SafeTensors::deserialize(&bytes).map_err(format)?;
        let mut c = Checkpoint {
            metadata: meta
                .metadata()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            ..Checkpoint::default()
        };
        for (name, view) in file.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(CheckpointError::Dtype {
                    name,
                    dtype: format!("{:?}", view.dtype()),
                });
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            c.insert(name, view.shape().to_vec(), data);
        }
        Ok(c)
    }

    /// Copies the tensors into the model's parameters by name. Every parameter must be
    /// present with its shape; tensors other than parameters and optimizer state are refused.
    pub fn apply_to<L: Layer + ?Sized>(&self, model: &mut L) -> Result<(), CheckpointError> {
        let mut params = model.named_params_mut();
        for (name, p) in params.iter_mut() {
            let t = self
                .tensors
                .get(name.as_str())
                .ok_or_else(|| CheckpointError::MissingTensor { name: name.clone() })?;
            if t.shape != p.shape {
                return Err(CheckpointError::ShapeMismatch {
                    name: name.clone(),
                    expected: p.shape.clone(),
                    got: t.shape.clone(),
                });
            }
            p.value.copy_from_slice(&t.data);
        }
        let known = |n: &str| params.iter().any(|(name, _)| name == n);
        if let Some(extra) = self
            .tensors
            .keys()
            .find(|n| !n.starts_with(OPTIMIZER_PREFIX) && !known(n))
        {
            return Err(CheckpointError::UnexpectedTensor {
                name: extra.clone(),
            });
        }
        Ok(())
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself; a directory that cannot be synced is not an error.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
