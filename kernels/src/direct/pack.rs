//! Operand preparation for the direct kernel: zero-padded copies of the broadcast operand
//! (so the microkernel never tests a bound) and channel-blocked packing of the vector
//! operand (so each reduction step loads `NB` contiguous vectors).

use crate::parallel::for_each_chunk_mut;

/// A stack of NCHW planes of `row` floats per row and `plane` floats per plane, borrowed
/// from the caller's tensor or from a scratch buffer.
pub(crate) struct Planes<'a> {
    pub data: &'a [f32],
    /// Floats per row.
    pub row: usize,
    /// Floats per plane.
    pub plane: usize,
}

/// Floats [`pad_planes`] needs in its buffer (0 when it can borrow `src`).
pub(crate) fn padded_len(
    planes: usize,
    h: usize,
    w: usize,
    rows: usize,
    cols: usize,
    top: usize,
    left: usize,
) -> usize {
    if top == 0 && left == 0 && rows <= h && cols == w {
        0
    } else {
        planes * rows * cols
    }
}

/// `src` (`planes` planes of `h x w`) embedded in zero planes of `rows x cols` with source
/// pixel `(0, 0)` at `(top, left)`, written into `buf` (of [`padded_len`] floats); `src`
/// itself when no padding or cropping is needed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pad_planes<'a>(
    src: &'a [f32],
    planes: usize,
    h: usize,
    w: usize,
    rows: usize,
    cols: usize,
    top: usize,
    left: usize,
    buf: &'a mut [f32],
) -> Planes<'a> {
    debug_assert_eq!(src.len(), planes * h * w);
    if padded_len(planes, h, w, rows, cols, top, left) == 0 {
        return Planes {
            data: src,
            row: w,
            plane: h * w,
        };
    }
    let plane = rows * cols;
    let data = &mut buf[..planes * plane];
    // Source columns land at left..left+len; the left padding may cover the whole row.
    let left = left.min(cols);
    let len = w.min(cols - left);
    for_each_chunk_mut(data, plane, |p, dst| {
        let s = &src[p * h * w..][..h * w];
        for (r, row) in dst.chunks_mut(cols).enumerate() {
            match r.checked_sub(top).filter(|&iy| iy < h) {
                Some(iy) => {
                    row[..left].fill(0.0);
                    row[left..left + len].copy_from_slice(&s[iy * w..][..len]);
                    row[left + len..].fill(0.0);
                }
                None => row.fill(0.0),
            }
        }
    });
    Planes {
        data,
        row: cols,
        plane,
    }
}

/// Reduction entries [`pack_blocks`] moves per lane at a time.
const PACK_RUN: usize = 16;

/// Floats [`pack_blocks`] writes.
pub(crate) fn blocks_len(groups: usize, n: usize, nr: usize, red: usize) -> usize {
    groups * n.div_ceil(nr) * red * nr
}

/// Packs an operand into channel blocks of `nr` in `out` (of [`blocks_len`] floats):
///
/// ```text
/// out[grp][blk][r][lane] = src[grp*group_stride + (blk*nr + lane)*ch_stride + red_src[r]]
///                          for lane < n - blk*nr, else 0
/// ```
///
/// with `n` channels per group and `red_src.len()` reduction entries per channel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_blocks(
    src: &[f32],
    groups: usize,
    n: usize,
    nr: usize,
    group_stride: usize,
    ch_stride: usize,
    red_src: &[usize],
    out: &mut [f32],
) {
    let blocks = n.div_ceil(nr);
    let per_block = red_src.len() * nr;
    if per_block == 0 {
        return;
    }
    for_each_chunk_mut(
        &mut out[..groups * blocks * per_block],
        per_block,
        |gb, blk_out| {
            let (grp, blk) = (gb / blocks, gb % blocks);
            let lanes = nr.min(n - blk * nr);
            let base = grp * group_stride + blk * nr * ch_stride;
            // Reduction entries in runs of PACK_RUN, lane by lane within a run: the reads of
            // a lane walk its channel's (usually contiguous) entries and the writes stay in
            // a PACK_RUN x nr patch, instead of a cache line per float read.
            for (dst, offs) in blk_out
                .chunks_mut(PACK_RUN * nr)
                .zip(red_src.chunks(PACK_RUN))
            {
                // The common case (forward weights): a full run of consecutive entries, moved
                // as PACK_RUN x PACK_RUN squares through a local array, so no index is
                // bounds-checked per float and the writes are whole rows.
                if offs.len() == PACK_RUN
                    && offs[PACK_RUN - 1] == offs[0] + PACK_RUN - 1
                    && lanes.is_multiple_of(PACK_RUN)
                {
                    for l0 in (0..lanes).step_by(PACK_RUN) {
                        let mut sq = [[0.0f32; PACK_RUN]; PACK_RUN];
                        for (l, row) in sq.iter_mut().enumerate() {
                            row.copy_from_slice(
                                &src[base + (l0 + l) * ch_stride + offs[0]..][..PACK_RUN],
                            );
                        }
                        for (j, d) in dst.chunks_exact_mut(nr).enumerate() {
                            let d: &mut [f32; PACK_RUN] =
                                (&mut d[l0..l0 + PACK_RUN]).try_into().expect("PACK_RUN");
                            for (l, v) in d.iter_mut().enumerate() {
                                *v = sq[l][j];
                            }
                        }
                    }
                    dst[..PACK_RUN * nr]
                        .chunks_exact_mut(nr)
                        .for_each(|d| d[lanes..].fill(0.0));
                    continue;
                }
                for lane in 0..nr {
                    if lane < lanes {
                        let s = &src[base + lane * ch_stride..];
                        for (j, &off) in offs.iter().enumerate() {
                            dst[j * nr + lane] = s[off];
                        }
                    } else {
                        for j in 0..offs.len() {
                            dst[j * nr + lane] = 0.0;
                        }
                    }
                }
            }
        },
    );
}
