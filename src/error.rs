//! [`Error`]: every way the layer API, the data readers and checkpoints refuse a request.

use std::fmt;

use convnet_kernels::ConvError;

use crate::checkpoint::CheckpointError;
use crate::data::DataError;

/// Why a layer, model, data or checkpoint operation failed.
#[derive(Debug)]
pub enum Error {
    /// The kernel crate refused a convolution, pooling or activation request.
    Kernel(ConvError),
    /// A tensor has the wrong shape for a layer (`detail` says what was expected).
    Shape {
        /// The layer kind.
        layer: &'static str,
        /// What was expected and what came.
        detail: String,
    },
    /// `backward` was called without a `forward` before it.
    BackwardBeforeForward {
        /// The layer kind.
        layer: &'static str,
    },
    /// A layer or training setting is out of range (`what` says which and why).
    InvalidConfig {
        /// The setting and its allowed range.
        what: String,
    },
    /// No model has this name.
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// A data set file is missing, truncated or corrupt.
    Data(DataError),
    /// A checkpoint cannot be written or read, or does not fit the model.
    Checkpoint(CheckpointError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Kernel(e) => write!(f, "{e}"),
            Error::Shape { layer, detail } => write!(f, "{layer}: {detail}"),
            Error::BackwardBeforeForward { layer } => {
                write!(f, "{layer}: backward called before forward")
            }
            Error::InvalidConfig { what } => write!(f, "{what}"),
            Error::UnknownModel { name, known } => {
                write!(f, "unknown model `{name}` (known: {known})")
            }
            Error::Data(e) => write!(f, "{e}"),
            Error::Checkpoint(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Kernel(e) => Some(e),
            Error::Data(e) => Some(e),
            Error::Checkpoint(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConvError> for Error {
    fn from(e: ConvError) -> Self {
        Error::Kernel(e)
    }
}

impl From<DataError> for Error {
    fn from(e: DataError) -> Self {
        Error::Data(e)
    }
}

impl From<CheckpointError> for Error {
    fn from(e: CheckpointError) -> Self {
        Error::Checkpoint(e)
    }
}

/// `Err(InvalidConfig)` with `what` unless `ok`.
pub(crate) fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig { what: what() })
    }
}
