//! The IDX format of MNIST and Fashion-MNIST (LeCun's page): a big-endian header
//! `0x00 0x00 <type> <ndims>` with type `0x08` (unsigned byte), then `ndims` big-endian `u32`
//! dimensions, then the data, row-major. Files may be gzipped (detected by the gzip magic).

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::{DataError, Dataset, find_file, read_file};

/// Decompressed files larger than this are refused (MNIST's largest is 47 MB).
const MAX_BYTES: u64 = 1 << 30;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<u8>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The file's bytes, gunzipped if it starts with the gzip magic.
fn decompressed(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = read_file(path)?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    let mut decoder = MultiGzDecoder::new(raw.as_slice()).take(MAX_BYTES + 1);
    decoder.read_to_end(&mut out).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => DataError::Truncated {
            path: path.to_path_buf(),
            detail: "the gzip stream ends early".into(),
        },
        _ => corrupt(path, format!("bad gzip stream: {e}")),
    })?;
    if out.len() as u64 > MAX_BYTES {
        return Err(corrupt(path, "decompresses to more than 1 GiB"));
    }
    Ok(out)
}

/// Reads an IDX file of unsigned bytes (gzipped or raw).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = decompressed(path)?;
    let truncated = |detail: String| DataError::Truncated {
        path: path.to_path_buf(),
        detail,
    };
    if bytes.len() < 4 {
        return Err(truncated(format!("{} bytes, no IDX header", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(corrupt(path, "bad IDX magic (not an IDX file)"));
    }
    if bytes[2] != 0x08 {
        return Err(corrupt(
            path,
            format!(
                "IDX element type 0x{:02x}, expected 0x08 (unsigned byte)",
                bytes[2]
            ),
        ));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(truncated(format!(
            "header needs {header} bytes, file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&l| l as u64 <= MAX_BYTES)
        .ok_or_else(|| corrupt(path, format!("dimensions {dims:?} are too large")))?;
    let body = bytes.len() - header;
    if body < len {
        return Err(truncated(format!(
            "dimensions {dims:?} need {len} data bytes, file has {body}"
        )));
    }
    if body > len {
        return Err(corrupt(
            path,
            format!("{} bytes after the data", body - len),
        ));
    }
    let mut data = bytes;
    data.drain(..header);
    Ok(IdxArray { dims, data })
}

/// Loads `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` from `dir`.
pub(super) fn load_split(dir: &Path, prefix: &str) -> Result<Dataset, DataError> {
    let file = |kind: &str| {
        let name = format!("{prefix}-{kind}");
        find_file(dir, &name).ok_or_else(|| DataError::Missing {
            path: dir.join(format!("{name}.gz")),
        })
    };
    let images_path = file("images-idx3-ubyte")?;
    let labels_path = file("labels-idx1-ubyte")?;
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    let &[n, h, w] = images.dims.as_slice() else {
        return Err(corrupt(
            &images_path,
            format!("{} dimensions, expected 3", images.dims.len()),
        ));
    };
    let &[n_labels] = labels.dims.as_slice() else {
        return Err(corrupt(
            &labels_path,
            format!("{} dimensions, expected 1", labels.dims.len()),
        ));
    };
    if n != n_labels {
        return Err(DataError::Mismatch {
            detail: format!(
                "{} has {n} images, {} has {n_labels} labels",
                images_path.display(),
                labels_path.display()
            ),
        });
    }
    if let Some(i) = labels.data.iter().position(|&l| l > 9) {
        return Err(corrupt(
            &labels_path,
            format!("label {} at index {i} is not a class 0..=9", labels.data[i]),
        ));
    }
    Dataset::new(images.data, labels.data, [1, h, w])
}
