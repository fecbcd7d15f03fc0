//! Safe, bounds-checked single-threaded SGEMM on `matrixmultiply` (its own runtime
//! AVX2/FMA/SSE2 detection; its `threading` feature stays off so rayon at the layer level is
//! the only thread pool). Used by im2col and by fully connected layers.
//!
//! `C = alpha * A * B + beta * C` with `A [m, k]`, `B [k, n]`, `C [m, n]`, each a view with
//! arbitrary non-negative row and column strides (so a transpose is a stride swap).

use crate::ConvError;

/// A read-only strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A mutable strided matrix view.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Index of the last element of a `rows x cols` view with strides `rs`, `cs`, plus one
/// (0 for an empty view), or `None` on overflow.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

fn check_view(
    what: &'static str,
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<(), ConvError> {
    let need = extent(rows, cols, rs, cs).ok_or(ConvError::Overflow { what })?;
    if need > len || rs > isize::MAX as usize || cs > isize::MAX as usize {
        return Err(ConvError::BufferLength {
            buffer: what,
            expected: need,
            got: len,
        });
    }
    Ok(())
}

impl<'a> MatRef<'a> {
    /// A `rows x cols` view of `data` with strides `rs` (between rows) and `cs` (between columns).
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, ConvError> {
        check_view("matrix", data.len(), rows, cols, rs, cs)?;
        Ok(MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }
    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, ConvError> {
        Self::new(data, rows, cols, cols, 1)
    }
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The transpose (a stride swap, no copy).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

impl<'a> MatMut<'a> {
    /// A `rows x cols` view of `data` with strides `rs` and `cs`. Distinct `(i, j)` must map to
    /// distinct elements, so the strides may not overlap.
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, ConvError> {
        check_view("output matrix", data.len(), rows, cols, rs, cs)?;
        // Sufficient for distinct elements: whole rows fit between row starts, or whole
        // columns between column starts (check_view bounded these products).
        let rows_apart = rows <= 1 || cols == 0 || rs > (cols - 1) * cs;
        let cols_apart = cols <= 1 || rows == 0 || cs > (rows - 1) * rs;
        if !(rows_apart || cols_apart) {
            return Err(ConvError::Unsupported {
                kernel: "gemm",
                reason: "an output view whose elements overlap",
            });
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }
    /// A dense row-major `rows x cols` view.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, ConvError> {
        Self::new(data, rows, cols, cols, 1)
    }
}

/// `c = alpha * a * b + beta * c`. With `beta == 0`, `c` is not read (it may hold NaN).
pub fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), ConvError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.rows != m || c.cols != n {
        return Err(ConvError::Unsupported {
            kernel: "gemm",
            reason: "operands of mismatched shapes",
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        // matrixmultiply scales C by beta for k == 0, but beta == 0 must overwrite NaN.
        for i in 0..m {
            for j in 0..n {
                let v = &mut c.data[i * c.rs + j * c.cs];
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return Ok(());
    }
    // SAFETY: the constructors checked that the last element (rows-1)*rs + (cols-1)*cs of each
    // view lies inside its slice and that the strides fit in isize; shapes match, so
    // matrixmultiply only touches elements of the three views. c's view does not overlap
    // itself, and it cannot alias a or b since it comes from a unique &mut borrow.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.data.as_mut_ptr(),
            c.rs as isize,
            c.cs as isize,
        );
    }
    Ok(())
}

/// `c = alpha * a * b + beta * c` into a raw strided output, for kernels whose parallel
/// tasks write disjoint blocks of one buffer. `a` and `b` are checked views.
///
/// # Safety
/// `c` must be valid for reads and writes of every element `c + i*rsc + j*csc`
/// (`i < a.rows`, `j < b.cols`), those elements must be distinct, and no other thread may
/// access them during the call. `a.cols == b.rows >= 1`.
pub(crate) unsafe fn gemm_raw(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: *mut f32,
    rsc: usize,
    csc: usize,
) {
    debug_assert_eq!(a.cols, b.rows);
    debug_assert!(a.cols >= 1);
    if a.rows == 0 || b.cols == 0 {
        return;
    }
    // SAFETY: a and b are checked views (their extents lie inside their slices); c's elements
    // are valid and exclusively ours by this function's contract.
    unsafe {
        matrixmultiply::sgemm(
            a.rows,
            a.cols,
            b.cols,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c,
            rsc as isize,
            csc as isize,
        );
    }
}

/// Row-major `c [m, n] = alpha * a [m, k] * b [k, n] + beta * c`, the dense common case;
/// `trans_a` / `trans_b` read `a` as `[k, m]` / `b` as `[n, k]` instead.
#[allow(clippy::too_many_arguments)]
pub fn gemm_dense(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    beta: f32,
    c: &mut [f32],
) -> Result<(), ConvError> {
    let a = if trans_a {
        MatRef::row_major(a, k, m)?.t()
    } else {
        MatRef::row_major(a, m, k)?
    };
    let b = if trans_b {
        MatRef::row_major(b, n, k)?.t()
    } else {
        MatRef::row_major(b, k, n)?
    };
    gemm(alpha, a, b, beta, MatMut::row_major(c, m, n)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                    .sum::<f64>() as f32;
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_integers_with_transposes() {
        for (m, k, n) in [
            (1, 1, 1),
            (3, 5, 7),
            (17, 9, 33),
            (6, 16, 16),
            (0, 3, 2),
            (4, 0, 3),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
            let want = naive(m, k, n, &a, &b);
            let mut c = vec![f32::NAN; m * n];
            gemm_dense(m, k, n, 1.0, &a, false, &b, false, 0.0, &mut c).unwrap();
            assert_eq!(c, want, "{m}x{k}x{n}");
            // a^T stored as [k, m], b^T stored as [n, k].
            let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let mut c2 = vec![f32::NAN; m * n];
            gemm_dense(m, k, n, 1.0, &at, true, &bt, true, 0.0, &mut c2).unwrap();
            assert_eq!(c2, want, "transposed {m}x{k}x{n}");
            // beta = 1 accumulates.
            gemm_dense(m, k, n, 1.0, &a, false, &b, false, 1.0, &mut c2).unwrap();
            assert_eq!(c2, want.iter().map(|v| 2.0 * v).collect::<Vec<_>>());
        }
    }

    #[test]
    fn bad_views_are_errors() {
        let data = [0.0f32; 6];
        assert!(MatRef::row_major(&data, 2, 4).is_err());
        assert!(MatRef::new(&data, 2, 3, usize::MAX, 1).is_err());
        let mut out = [0.0f32; 6];
        assert!(
            MatMut::new(&mut out, 2, 3, 1, 1).is_err(),
            "overlapping output"
        );
        let a = MatRef::row_major(&data, 2, 3).unwrap();
        let b = MatRef::row_major(&data, 2, 3).unwrap();
        assert!(gemm(1.0, a, b, 0.0, MatMut::row_major(&mut out, 2, 3).unwrap()).is_err());
    }
}
