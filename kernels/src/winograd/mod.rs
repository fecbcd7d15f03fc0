//! Winograd convolution F(2x2,3x3), F(4x4,3x3) and F(6x6,3x3): 3x3, stride 1, dilation 1,
//! any padding, groups; forward and backward-data (the latter as the forward correlation of
//! `grad_y` with the rotated, channel-transposed filter). Backward-weight and every other
//! geometry answer `Unsupported`.
//!
//! ```text
//! per image b and group, tiles t of m x m outputs, a = m + 2:
//!   V[c][xi,nu][t] = (B^T d_{c,t} B)[xi,nu]          input transform (per task chunk)
//!   U[k blk][xi,nu][c][k] = (G g_{k,c} G^T)[xi,nu]   filter transform (per call, or prepared)
//!   M[xi,nu][t][k] = sum_c V[c][xi,nu][t] U[k blk][xi,nu][c][k]   a^2 GEMMs, direct microkernel
//!   y[k][tile t]   = A^T M[.,.][t][k] A              output transform (+ bias)
//! ```
//!
//! The GEMMs run on the direct kernel's register tile (`tile.rs`: rows = tiles, vectors =
//! output channels, reduction = input channels), so each ISA gets its Winograd kernel from
//! its direct instantiation. Tiles are processed in chunks, a chunk spanning images of the
//! batch: with small `U`, chunks whose `V` stays in L2 (`V_BUDGET`), each streaming all of
//! `U`; with large `U` (`U_LARGE`), chunks as large as the `c_g` rows of one `xi,nu` of `V`
//! within that budget allow, the GEMMs ordered by `xi,nu` so those rows serve every channel
//! block. Where fewer of those fit than there are threads, the tiles are split into a chunk
//! per thread, or, with few tiles, each chunk's channel blocks into parts
//! (`SPLIT_TILES_FROM`). Tasks are (group, chunk, part), each writing only its own tiles of
//! its own channels. With large `U` the chunks and parts depend on the thread count, but not
//! a tile's sums: each GEMM row gets the same multiply-adds in the same order in a full
//! register tile or a partial one, so results do not depend on the thread count
//! (`tests/determinism.rs` has such layers).
//!
//! Accuracy: the transforms amplify rounding (more for larger tiles); the measured constants
//! are in [`crate::accuracy`]. One Inf or NaN input poisons its whole output tile (and its
//! neighbours sharing the input), as in every Winograd implementation.

mod transforms;

use crate::direct::{Block, DirectIsa, Entries, Red, SimdJob, pack_blocks};
use crate::parallel::{SharedMut, for_each_task, threads, with_index_scratch, with_scratch};
use crate::params::ConvGeom;
use crate::registry::ConvKernel;
use crate::{Algorithm, Isa, Pass, WinogradTile};
use transforms::{filter_tile, sandwich};

/// Floats of `V` per task chunk (256 KiB), for groups whose transformed filters are
/// smaller than [`U_LARGE`]: the chunk's input transform, GEMMs and output transform then
/// run in L2, and each chunk streams all of `U` again.
const V_BUDGET: usize = 1 << 16;
/// Floats of one group's transformed filters (4 MiB) from which a chunk is as large as the
/// `c_g` rows of one `e` of its `V` within [`V_BUDGET`] allow (and its scratch within
/// [`E_OUTER_SCRATCH`]). `V` and the GEMMs' results (every block's) then leave L2, but `U`
/// is streamed once per chunk instead of once per two dozen tiles. Large / small chunks for
/// every layer (AVX2 Zen 3, 1 thread, pair medians of alternating runs on a loaded host):
/// ResNet-50 conv5 at batch 8 (U of F(2,3) 16 MiB) forward 1.64-1.74x, backward-data
/// 1.44-1.60x; conv4 (F(2,3) 4 MiB) 1.26-1.29x, F(4,3) 1.06-1.08x; VGG-16 conv3_1 F(4,3)
/// (4.5 MiB) 1.28x; but VGG's F(2,3) (2 MiB) 0.88x, and a CIFAR layer of 64 channels at
/// batch 16 (0.6 MiB) 0.48-0.73x.
///
/// Where fewer chunks fit than there are threads, the tiles are split into a chunk per
/// thread, or the chunks' channel blocks into parts (see [`SPLIT_TILES_FROM`]).
const U_LARGE: usize = 1 << 20;
/// Tiles a thread from which a large-`U` layer with fewer chunks than threads gets a chunk
/// of tiles per thread; below it, each chunk's channel blocks are split into `threads /
/// chunks` parts instead (at most one per block; with one part, the tiles are split after
/// all), a (chunk, part) a task. A part streams only its blocks' share of `U` and
/// keeps every tile of the chunk in its GEMMs' rows, for one more input transform of the
/// chunk per part. Zen 4, 2 threads, parts over chunks, paired medians of 4 alternating
/// runs of `--suite all` on a quiet host, by tiles a thread under chunks: 2-12.5 tiles
/// gained everywhere (ResNet-50's conv4 F(4,3) and F(6,3) 1.29-1.46x, its 7x7 layer at
/// batch 1 1.17-1.27x, its 28x28 F(6,3) 1.03x, AlexNet's 13x13 layers F(4,3) and F(6,3)
/// 1.29-1.66x, VGG-16's 14x14 layers F(4,3) and F(6,3) 1.16-1.33x, its 28x28 F(6,3)
/// 1.05-1.29x); at 16 tiles ResNet-50's conv5 at batch 8, F(4,3) and F(6,3), lost
/// (0.93-0.96x), and at 24.5 and more the rows ranged 0.80-1.25x.
const SPLIT_TILES_FROM: usize = 16;
/// Most floats of scratch (`V` and every block's GEMM results) for one task of a large-`U`
/// layer (16 MiB, kept by the thread's scratch pool): F(6,3) at 512 x 512 channels would
/// otherwise take 31 MiB per thread.
const E_OUTER_SCRATCH: usize = 1 << 22;
/// Largest `LANES` of any ISA (the stack staging arrays are this wide).
const MAX_LANES: usize = 16;

/// A stride-1 3x3 correlation with an explicit source origin:
/// `dst[b][k][oy][ox] = bias[k] + sum_{c,ky,kx} src[b][c][oy+ky-pad_t][ox+kx-pad_l] * w(k, c, ky, kx)`.
struct Problem<'a> {
    n: usize,
    groups: usize,
    /// Source channels per group.
    c_g: usize,
    /// Destination channels per group.
    k_g: usize,
    src: &'a [f32],
    src_hw: [usize; 2],
    dst_hw: [usize; 2],
    pad: [isize; 2],
    /// The canonical conv weight `[c_out, c_in/g, 3, 3]`.
    weight: &'a [f32],
    /// Backward-data: read the weight rotated by 180 degrees with channels swapped.
    flip: bool,
}

/// Winograd F(m x m, 3 x 3) on ISA `S`.
pub struct Winograd<S, const M: usize>(S);

impl<S: DirectIsa, const M: usize> Winograd<S, M> {
    /// The kernel, if this CPU has the ISA.
    pub(crate) fn make() -> Option<Box<dyn ConvKernel>> {
        S::detect().map(|s| Box::new(Winograd::<S, M>(s)) as Box<dyn ConvKernel>)
    }
}

fn tile_of(m: usize) -> WinogradTile {
    match m {
        2 => WinogradTile::F2,
        4 => WinogradTile::F4,
        _ => WinogradTile::F6,
    }
}

// SAFETY: a Winograd<S, M> holds the proof value S; the GEMMs go through DirectIsa::run,
// which checks its bounds; the transforms' vector loads and stores in their own scratch are
// range-checked at each access, the input transform's reads of the source in place are
// checked against its length (argued at the read), and the raw writes to the output (the
// output tiles) are range-checked and disjoint between tasks, as argued at the write.
unsafe impl<S: DirectIsa, const M: usize> ConvKernel for Winograd<S, M> {
    fn name(&self) -> &'static str {
        S::WINOGRAD_NAMES[M / 2 - 1]
    }
    fn algorithm(&self) -> Algorithm {
        Algorithm::Winograd(tile_of(M))
    }
    fn isa(&self) -> Isa {
        S::ISA
    }
    fn supports(&self, g: &ConvGeom, pass: Pass) -> Result<(), &'static str> {
        if g.kh != 3 || g.kw != 3 {
            return Err("kernels other than 3x3");
        }
        if g.sh != 1 || g.sw != 1 {
            return Err("strides other than 1");
        }
        if g.dh != 1 || g.dw != 1 {
            return Err("dilation");
        }
        if pass == Pass::BackwardWeight {
            return Err("the backward-weight pass");
        }
        Ok(())
    }
    fn forward(
        &self,
        g: &ConvGeom,
        x: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        g.assert_forward(x, weight, bias, y);
        let p = Problem::new(g, Pass::Forward, x, weight);
        with_scratch(filters_len::<S>(&p, M), |u| {
            transform_filters::<S, M>(self.0, &p, u);
            run_tile::<S, M>(self.0, &p, u, bias, false, y);
        });
    }
    fn backward_data(
        &self,
        g: &ConvGeom,
        grad_y: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        grad_x: &mut [f32],
    ) {
        g.assert_backward_data(grad_y, weight, bias, grad_x);
        let p = Problem::new(g, Pass::BackwardData, grad_y, weight);
        with_scratch(filters_len::<S>(&p, M), |u| {
            transform_filters::<S, M>(self.0, &p, u);
            run_tile::<S, M>(self.0, &p, u, bias, false, grad_x);
        });
    }
    fn backward_weight(
        &self,
        _g: &ConvGeom,
        _x: &[f32],
        _grad_y: &[f32],
        _grad_weight: &mut [f32],
    ) {
        panic!("Winograd does not implement backward-weight (supports() says so)");
    }
    fn prepare(&self, g: &ConvGeom, pass: Pass, weight: &[f32]) -> Option<Vec<f32>> {
        assert_eq!(weight.len(), g.w_len, "weight length");
        self.supports(g, pass).ok()?;
        let p = Problem::new(g, pass, &[], weight);
        let mut u = vec![0.0; filters_len::<S>(&p, M)];
        transform_filters::<S, M>(self.0, &p, &mut u);
        Some(u)
    }
    fn forward_prepared(
        &self,
        g: &ConvGeom,
        x: &[f32],
        prepared: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) {
        let p = Problem::new(g, Pass::Forward, x, &[]);
        assert_eq!(prepared.len(), filters_len::<S>(&p, M), "prepared weights");
        run_tile::<S, M>(self.0, &p, prepared, bias, relu, y);
    }
    fn backward_data_prepared(
        &self,
        g: &ConvGeom,
        grad_y: &[f32],
        prepared: &[f32],
        bias: Option<&[f32]>,
        grad_x: &mut [f32],
    ) {
        let p = Problem::new(g, Pass::BackwardData, grad_y, &[]);
        assert_eq!(prepared.len(), filters_len::<S>(&p, M), "prepared weights");
        run_tile::<S, M>(self.0, &p, prepared, bias, false, grad_x);
    }
}

impl<'a> Problem<'a> {
    /// The correlation computing canonical `pass` (forward or backward-data) of `g` from
    /// `src` (`x` or `grad_y`; may be empty when only the filters are needed).
    fn new(g: &ConvGeom, pass: Pass, src: &'a [f32], weight: &'a [f32]) -> Problem<'a> {
        assert!(
            g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1,
            "unsupported geometry"
        );
        let (c_in_g, c_out_g) = (g.c_in / g.g, g.c_out / g.g);
        match pass {
            Pass::Forward => Problem {
                n: g.n,
                groups: g.g,
                c_g: c_in_g,
                k_g: c_out_g,
                src,
                src_hw: [g.h, g.w],
                dst_hw: [g.oh, g.ow],
                pad: [g.pad_t as isize, g.pad_l as isize],
                weight,
                flip: false,
            },
            // grad_x[ic][iy][ix] = sum grad_y[oc][iy + ky' - (2 - pad_t)][..] w[oc][ic][2-ky'][2-kx'].
            _ => Problem {
                n: g.n,
                groups: g.g,
                c_g: c_out_g,
                k_g: c_in_g,
                src,
                src_hw: [g.oh, g.ow],
                dst_hw: [g.h, g.w],
                pad: [2 - g.pad_t as isize, 2 - g.pad_l as isize],
                weight,
                flip: true,
            },
        }
    }
}

/// Floats of the transformed filters `U[grp][k block][e][c][nr]`: each GEMM reads one
/// contiguous slab of weight vectors.
fn filters_len<S: DirectIsa>(p: &Problem<'_>, m: usize) -> usize {
    let nr = crate::direct::tile_for::<S>(p.k_g).2;
    p.groups * p.k_g.div_ceil(nr) * (m + 2) * (m + 2) * p.c_g * nr
}

fn transform_filters<S: DirectIsa, const M: usize>(s: S, p: &Problem<'_>, u: &mut [f32]) {
    match M {
        2 => transform_filters_a::<S, 4>(s, p, u),
        4 => transform_filters_a::<S, 6>(s, p, u),
        _ => transform_filters_a::<S, 8>(s, p, u),
    }
}

/// The filter transform, a (group, channel block) at a time: the block's taps are first
/// gathered into vectors of its channels, `[c][tap][nr]` (register transposes: the direct
/// kernel's packer forward, [`FlipPack`] for backward-data's rotated filters), then
/// transformed.
fn transform_filters_a<S: DirectIsa, const A: usize>(s: S, p: &Problem<'_>, u: &mut [f32]) {
    let nr = crate::direct::tile_for::<S>(p.k_g).2;
    let blocks = p.k_g.div_ceil(nr);
    let part_len = A * A * p.c_g * nr;
    assert_eq!(u.len(), p.groups * blocks * part_len);
    let (c_g, k_g) = (p.c_g, p.k_g);
    if p.flip {
        // Backward-data: a block's taps lie in pieces of 9 * nr floats, one per row of the
        // canonical weight (9 KiB apart at 256 channels); gathered block by block, those
        // reads were a quarter of a conv4 F(2,3) pass. Here each task reads its blocks'
        // pieces of every row in turn, a contiguous run per row, into `[blk][c][tap][nr]`.
        let per_block = c_g * 9 * nr;
        let total = p.groups * blocks;
        let per_task = total.div_ceil(threads()).max(1);
        return with_scratch(total * per_block, |all| {
            crate::parallel::for_each_chunk_mut(all, per_task * per_block, |t, taps| {
                s.dispatch(&mut FlipPack {
                    w: p.weight,
                    c_g,
                    k_g,
                    nr,
                    blocks,
                    gb0: t * per_task,
                    taps,
                });
            });
            let all = &*all;
            crate::parallel::for_each_chunk_mut(u, part_len, |gb, part| {
                s.dispatch(&mut FilterJob::<A> {
                    c_g,
                    flip: true,
                    nr,
                    taps: &all[gb * per_block..][..per_block],
                    part,
                });
            });
        });
    }
    // Forward: channel k's taps are its row of the weight, c_g * 9 floats, in the order the
    // transform wants them.
    with_index_scratch(c_g * 9, |red| {
        for (r, o) in red.iter_mut().enumerate() {
            *o = r;
        }
        let red = &*red;
        let ch_stride = c_g * 9;
        crate::parallel::for_each_chunk_mut(u, part_len, |gb, part| {
            let (grp, k0) = (gb / blocks, gb % blocks * nr);
            let base = (grp * k_g + k0) * ch_stride;
            let lanes = nr.min(k_g - k0);
            with_scratch(c_g * 9 * nr, |taps| {
                let red = Entries::in_order(red);
                pack_blocks(s, &p.weight[base..], 1, lanes, nr, 0, ch_stride, red, taps);
                s.dispatch(&mut FilterJob::<A> {
                    c_g,
                    flip: false,
                    nr,
                    taps,
                    part,
                });
            });
        });
    });
}

/// Backward-data taps of the (group, channel block)s from `gb0` on, as many as `taps` holds
/// (`[gb][c][tap][nr]`): `taps[..][c][t][lane] = w[(grp*c_g + c)*k_g + k][t]` for channel
/// `k = blk*nr + lane` below `k_g`, else 0. Rows of the canonical weight in order, each
/// block's piece of a row moved `LANES` channels at a time by a register transpose.
struct FlipPack<'a> {
    w: &'a [f32],
    c_g: usize,
    k_g: usize,
    nr: usize,
    blocks: usize,
    gb0: usize,
    taps: &'a mut [f32],
}

impl SimdJob for FlipPack<'_> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (l, nr, c_g, k_g) = (S::LANES, self.nr, self.c_g, self.k_g);
        let per_block = c_g * 9 * nr;
        assert!(nr.is_multiple_of(l) && self.taps.len().is_multiple_of(per_block));
        let n_gb = self.taps.len() / per_block;
        let groups = (self.gb0 + n_gb).div_ceil(self.blocks);
        assert!(self.w.len() >= groups * c_g * k_g * 9, "flip pack weights");
        // Tap rows a transpose moves at once (the rest one lane at a time).
        let n_t = l.min(9);
        for grp in self.gb0 / self.blocks..groups {
            for c in 0..c_g {
                let row = (grp * c_g + c) * k_g * 9;
                for gb in
                    self.gb0.max(grp * self.blocks)..(self.gb0 + n_gb).min((grp + 1) * self.blocks)
                {
                    let blk = gb - grp * self.blocks;
                    let dst0 = (gb - self.gb0) * per_block + c * 9 * nr;
                    for lg in (0..nr).step_by(l) {
                        let k0 = blk * nr + lg;
                        let dst = &mut self.taps[dst0 + lg..dst0 + 8 * nr + lg + l];
                        // The transpose reads LANES floats from each lane's first tap: past its
                        // 9 taps when LANES > 9, so only where those floats exist.
                        let whole = k0 + l <= k_g && row + (k0 + l - 1) * 9 + l <= self.w.len();
                        let t0 = if whole {
                            // SAFETY: reads LANES rows of LANES floats from row + k0*9 at a
                            // stride of 9, the last ending at row + (k0 + LANES - 1)*9 + LANES
                            // <= w.len() (checked); writes n_t <= LANES rows of LANES floats
                            // at a stride of nr, the last ending at (n_t - 1)*nr + LANES <=
                            // 8*nr + LANES = dst.len().
                            unsafe {
                                s.transpose_store(
                                    self.w.as_ptr().add(row + k0 * 9),
                                    9,
                                    dst.as_mut_ptr(),
                                    nr,
                                    None,
                                    n_t,
                                    false,
                                )
                            };
                            n_t
                        } else {
                            0
                        };
                        for t in t0..9 {
                            for i in 0..l {
                                let k = k0 + i;
                                dst[t * nr + i] = if k < k_g {
                                    self.w[row + k * 9 + t]
                                } else {
                                    0.0
                                };
                            }
                        }
                    }
                }
            }
        }
    }
}

fn run_tile<S: DirectIsa, const M: usize>(
    s: S,
    p: &Problem<'_>,
    u: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    dst: &mut [f32],
) {
    match M {
        2 => run::<S, 2, 4>(s, p, u, bias, relu, dst),
        4 => run::<S, 4, 6>(s, p, u, bias, relu, dst),
        _ => run::<S, 6, 8>(s, p, u, bias, relu, dst),
    }
}

fn run<S: DirectIsa, const M: usize, const A: usize>(
    s: S,
    p: &Problem<'_>,
    u: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    dst: &mut [f32],
) {
    let aa = A * A;
    let (wide, ur, nr) = crate::direct::tile_for::<S>(p.k_g);
    let blocks = p.k_g.div_ceil(nr);
    let [oh, ow] = p.dst_hw;
    let tiles_x = ow.div_ceil(M);
    let tiles_img = oh.div_ceil(M) * tiles_x;
    // Tiles of all images of the batch in one index, so a chunk spans images and each
    // transformed filter loaded from memory serves up to `tc` tiles even for small images.
    let tiles = p.n * tiles_img;
    if tiles == 0 {
        return; // an empty batch: nothing to write
    }
    // Tiles per task chunk: a multiple of both the register tile and the vector width, with
    // the chunk's V (a^2 * c_g * tc floats) within V_BUDGET where possible; for large U, one
    // e's slab of it (c_g * tc), and work for each thread (see U_LARGE).
    let unit = ur * S::LANES / gcd(ur, S::LANES);
    let e_outer = aa * p.c_g * p.k_g >= U_LARGE;
    let (budget, parts) = if e_outer {
        let per_tile = aa * (p.c_g + blocks * nr);
        (
            (V_BUDGET / p.c_g.max(1)).min(E_OUTER_SCRATCH / per_tile.max(1)),
            threads(),
        )
    } else {
        (V_BUDGET / (aa * p.c_g).max(1), 1)
    };
    // Chunk i holds tiles tiles*i/chunks .. tiles*(i+1)/chunks: balanced, so neither a
    // thread nor a stream of U goes to a handful of leftover tiles (49 tiles were 48 + 1).
    let fit = tiles.div_ceil((budget / unit).max(1) * unit);
    // With large U, fewer chunks than threads and few tiles, the threads share out the
    // channel blocks instead of the tiles (see `SPLIT_TILES_FROM`).
    let bparts = if fit < parts && tiles < SPLIT_TILES_FROM * parts {
        (parts / fit).min(blocks)
    } else {
        1
    };
    let chunks = if bparts > 1 {
        fit
    } else {
        fit.max(parts).min(tiles)
    };
    let tc = tiles.div_ceil(chunks).div_ceil(unit) * unit;
    let slab = p.c_g * nr;
    assert_eq!(
        u.len(),
        p.groups * blocks * aa * slab,
        "transformed filters"
    );
    let out = SharedMut::new(dst);
    with_index_scratch(tc, |rows| {
        for (i, r) in rows.iter_mut().enumerate() {
            *r = i;
        }
        let rows = &*rows;
        for_each_task(p.groups * chunks * bparts, |task| {
            let (grp, chunk, part) = (
                task / (chunks * bparts),
                task / bparts % chunks,
                task % bparts,
            );
            let t0 = tiles * chunk / chunks;
            let nt = tiles * (chunk + 1) / chunks - t0;
            let (b0, b1) = (blocks * part / bparts, blocks * (part + 1) / bparts);
            let slots = if e_outer { b1 - b0 } else { 1 };
            with_index_scratch(3 * nt, |org| {
                let [sh, sw] = p.src_hw;
                for (tl, o) in org.chunks_exact_mut(3).enumerate() {
                    let (b, t) = ((t0 + tl) / tiles_img, (t0 + tl) % tiles_img);
                    o[0] = (b * p.groups + grp) * p.c_g * sh * sw;
                    o[1] = ((t / tiles_x * M) as isize - p.pad[0]) as usize;
                    o[2] = ((t % tiles_x * M) as isize - p.pad[1]) as usize;
                }
                let org = &*org;
                with_scratch(aa * p.c_g * tc + slots * aa * tc * nr, |scratch| {
                    let (v, mbuf) = scratch.split_at_mut(aa * p.c_g * tc);
                    let mut job = TileJob::<M, A> {
                        p,
                        grp,
                        t0,
                        nt,
                        tc,
                        tiles_x,
                        tiles_img,
                        u,
                        v,
                        mbuf,
                        rows,
                        org,
                        blocks,
                        b0,
                        b1,
                        e_outer,
                        nr,
                        wide,
                        bias,
                        relu,
                        out,
                    };
                    s.dispatch(&mut job);
                });
            });
        });
    });
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Filter transform of one (group, channel block): `U[e][c][lane]` for the block's lanes,
/// from its taps gathered as `[c][tap][lane]` (zero past the last channel).
struct FilterJob<'a, const A: usize> {
    c_g: usize,
    /// Rotate each filter by 180 degrees (backward-data).
    flip: bool,
    nr: usize,
    taps: &'a [f32],
    part: &'a mut [f32],
}

impl<const A: usize> SimdJob for FilterJob<'_, A> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (l, nr) = (S::LANES, self.nr);
        assert!(self.taps.len() >= self.c_g * 9 * nr && nr.is_multiple_of(l));
        for c in 0..self.c_g {
            for lg in (0..nr).step_by(l) {
                let mut g = [[s.zero(); 3]; 3];
                for (ky, gr) in g.iter_mut().enumerate() {
                    for (kx, gv) in gr.iter_mut().enumerate() {
                        let t = if self.flip {
                            8 - 3 * ky - kx
                        } else {
                            3 * ky + kx
                        };
                        // SAFETY: (c*9 + t)*nr + lg + LANES <= c_g*9*nr <= taps.len()
                        // (asserted; lg + LANES <= nr).
                        *gv = unsafe { s.load(self.taps.as_ptr().add((c * 9 + t) * nr + lg)) };
                    }
                }
                let mut t = [[s.zero(); A]; A];
                filter_tile(s, &const { transforms::g::<A>() }, &g, &mut t);
                for (e, v) in t.iter().flatten().enumerate() {
                    let at = (e * self.c_g + c) * nr + lg;
                    assert!(at + l <= self.part.len());
                    // SAFETY: at + LANES <= part.len() (asserted).
                    unsafe { s.store(self.part.as_mut_ptr().add(at), *v) };
                }
            }
        }
    }
}

/// One task: input transform of a chunk of tiles, the a^2 GEMMs and the output transform,
/// for the task's channel blocks.
struct TileJob<'a, 'p, const M: usize, const A: usize> {
    p: &'a Problem<'p>,
    grp: usize,
    t0: usize,
    nt: usize,
    tc: usize,
    tiles_x: usize,
    tiles_img: usize,
    u: &'a [f32],
    v: &'a mut [f32],
    mbuf: &'a mut [f32],
    rows: &'a [usize],
    /// Per tile of the chunk: the offset in `src` of its image and group's channel 0, and
    /// its patch origin `y0`, `x0` (isize stored as usize).
    org: &'a [usize],
    blocks: usize,
    /// The task's channel blocks, `b0..b1`.
    b0: usize,
    b1: usize,
    /// GEMMs with the e's outermost, every block's results kept (see `U_LARGE`).
    e_outer: bool,
    nr: usize,
    wide: bool,
    bias: Option<&'a [f32]>,
    relu: bool,
    out: SharedMut,
}

impl<const M: usize, const A: usize> SimdJob for TileJob<'_, '_, M, A> {
    #[inline(always)]
    fn run<S: DirectIsa>(&mut self, s: S) {
        let (p, l, aa, tc) = (self.p, S::LANES, A * A, self.tc);
        let bt = const { transforms::bt::<A>() };
        let [sh, sw] = p.src_hw;
        // Input transform, LANES tiles at a time: V[c][e][tl] (a channel's a^2 rows are
        // contiguous; an [e][c][tl] layout would put them 4 KiB apart and thrash L1).
        // Up to the chunk's last tile (the GEMMs read no row past it). Each row of the
        // LANES patches is read where it lies (or from a zero row, or staged with its part
        // outside the plane zeroed), then turned lane-major by one register transpose.
        let plane = sh * sw;
        assert!(self.org.len() >= 3 * self.nt, "winograd tile origins");
        // Every tile's channels lie in src, so each plane row `at` below does.
        assert!(
            self.org[..3 * self.nt]
                .chunks_exact(3)
                .all(|o| o[0] + p.c_g * plane <= p.src.len()),
            "winograd source"
        );
        let zero = [0.0f32; MAX_LANES];
        let mut edge = [[[0.0f32; MAX_LANES]; A]; MAX_LANES];
        // Staged rows as one masked load (where that is one or two instructions).
        let masked = A <= l && (S::MASKED_LOADS || S::HOISTED_MASK_LOADS);
        for c in 0..p.c_g {
            for tl0 in (0..self.nt).step_by(l) {
                let mut rows = [[zero.as_ptr(); MAX_LANES]; A];
                for lane in 0..l.min(self.nt - tl0) {
                    let o = &self.org[3 * (tl0 + lane)..][..3];
                    let (first, y0, x0) = (o[0] + c * plane, o[1] as isize, o[2] as isize);
                    let x_in = x0 >= 0 && x0 as usize + A <= sw;
                    for (i, row) in rows.iter_mut().enumerate() {
                        let y = y0 + i as isize;
                        if y < 0 || y >= sh as isize {
                            continue; // the zero row
                        }
                        // The plane row; a whole vector from the patch row's start must
                        // lie in src to be read in place.
                        let at = first + y as usize * sw;
                        if x_in && at + x0 as usize + l.max(A) <= p.src.len() {
                            row[lane] = p.src[at + x0 as usize..].as_ptr();
                            continue;
                        }
                        let staged = &mut edge[lane][i];
                        if masked {
                            let lo = (-x0).clamp(0, l as isize) as usize;
                            let hi = (sw as isize - x0).clamp(lo as isize, l as isize) as usize;
                            let from = p.src.as_ptr().wrapping_add(at).wrapping_offset(x0);
                            // SAFETY: lane j in lo..hi reads src[at + x0 + j] with
                            // 0 <= x0 + j < sw: inside the plane row at `at`, which lies in
                            // src (y < sh, c < c_g, and the tile's channels do, asserted);
                            // staged holds MAX_LANES >= LANES.
                            unsafe {
                                let v = if S::MASKED_LOADS {
                                    s.load_range(from, lo, hi)
                                } else {
                                    s.load_masked(from, s.range_mask(lo, hi))
                                };
                                s.store(staged.as_mut_ptr(), v);
                            }
                        } else {
                            for (j, v) in staged.iter_mut().enumerate().take(A) {
                                let x = x0 + j as isize;
                                *v = if x >= 0 && (x as usize) < sw {
                                    p.src[at + x as usize]
                                } else {
                                    0.0
                                };
                            }
                        }
                        row[lane] = staged.as_ptr();
                    }
                }
                let mut d = [[s.zero(); A]; A];
                for (di, r) in d.iter_mut().zip(&rows) {
                    // SAFETY: every row holds max(LANES, A) floats: the zero row and the
                    // staged rows MAX_LANES >= both, a row of src at at + x0 with
                    // at + x0 + max(LANES, A) <= src.len() (checked); d's row holds A <= 8
                    // vectors.
                    unsafe { s.gather_transpose(&r[..l], di) };
                }
                let mut vt = [[s.zero(); A]; A];
                sandwich(s, &bt, &d, &mut vt);
                for (e, val) in vt.iter().flatten().enumerate() {
                    let at = (c * aa + e) * tc + tl0;
                    assert!(at + l <= self.v.len());
                    // SAFETY: at + LANES <= v.len() (asserted; tc is a multiple of LANES).
                    unsafe { s.store(self.v.as_mut_ptr().add(at), *val) };
                }
            }
        }
        // a^2 GEMMs per channel block, M[e][tl][lane] = sum_c V[c][e][tl] U[blk][e][c][lane],
        // into a slot of mbuf, and the output transform of each block.
        if self.e_outer {
            // The c_g rows of one e of V serve every block's GEMM from L2, so a chunk may
            // hold many tiles (see U_LARGE); every block keeps its results in its own slot.
            for e in 0..aa {
                for blk in self.b0..self.b1 {
                    self.gemm(s, blk, e, blk - self.b0);
                }
            }
            for blk in self.b0..self.b1 {
                self.output(s, blk, blk - self.b0);
            }
        } else {
            // The chunk's V stays in L2; the blocks take turns with one block's results.
            for blk in self.b0..self.b1 {
                for e in 0..aa {
                    self.gemm(s, blk, e, 0);
                }
                self.output(s, blk, 0);
            }
        }
    }
}

impl<const M: usize, const A: usize> TileJob<'_, '_, M, A> {
    /// The GEMM of channel block `blk` at `e` into slot `slot` of `mbuf` (`[slot][e][tl][nr]`).
    #[inline(always)]
    fn gemm<S: DirectIsa>(&mut self, s: S, blk: usize, e: usize, slot: usize) {
        let (p, aa, tc, nr) = (self.p, A * A, self.tc, self.nr);
        let block = Block {
            src: &self.v[e * tc..],
            red: Red::Strided {
                stride: aa * tc,
                len: p.c_g,
            },
            vecs: &self.u[((self.grp * self.blocks + blk) * aa + e) * p.c_g * nr..][..p.c_g * nr],
            vstride: nr,
            rows: &self.rows[..self.nt],
            accumulate: false,
        };
        s.run(
            &block,
            &mut self.mbuf[(slot * aa + e) * tc * nr..][..self.nt * nr],
            self.wide,
        );
    }

    /// Output transform of channel block `blk` from slot `slot` of `mbuf`, LANES channels at
    /// a time, and store.
    #[inline(always)]
    fn output<S: DirectIsa>(&mut self, s: S, blk: usize, slot: usize) {
        let (p, l, aa, tc, nr) = (self.p, S::LANES, A * A, self.tc, self.nr);
        let at = const { transforms::at::<M, A>() };
        let [oh, ow] = p.dst_hw;
        let mbuf = &self.mbuf[slot * aa * tc * nr..][..aa * tc * nr];
        {
            let k0 = blk * nr;
            let mut bias_lanes = [0.0f32; MAX_LANES];
            for tl in 0..self.nt {
                let (b, t) = (
                    (self.t0 + tl) / self.tiles_img,
                    (self.t0 + tl) % self.tiles_img,
                );
                let (oy0, ox0) = (t / self.tiles_x * M, t % self.tiles_x * M);
                for lg in (0..nr.min(p.k_g - k0)).step_by(l) {
                    let last = ((aa - 1) * tc + tl) * nr + lg;
                    assert!(last + l <= mbuf.len());
                    let mut m = [[s.zero(); A]; A];
                    for (i, mr) in m.iter_mut().enumerate() {
                        for (j, mv) in mr.iter_mut().enumerate() {
                            let at = ((i * A + j) * tc + tl) * nr + lg;
                            // SAFETY: at <= last and last + LANES <= mbuf.len() (asserted).
                            *mv = unsafe { s.load(mbuf.as_ptr().add(at)) };
                        }
                    }
                    let mut y = [[s.zero(); M]; M];
                    sandwich(s, &at, &m, &mut y);
                    let lanes = l.min(p.k_g - k0 - lg);
                    let ch0 = (b * p.groups + self.grp) * p.k_g + k0 + lg;
                    let (rows, cols) = (M.min(oh - oy0), M.min(ow - ox0));
                    // The tile's last element of its last channel bounds every store below.
                    let last = ((ch0 + lanes - 1) * oh + oy0 + rows - 1) * ow + ox0 + cols - 1;
                    assert!(last < self.out.len(), "winograd output out of range");
                    let first = self.out.at(ch0 * oh * ow);
                    if let Some(bias) = self.bias {
                        for (dst, src) in bias_lanes
                            .iter_mut()
                            .zip(&bias[self.grp * p.k_g + k0 + lg..])
                        {
                            *dst = *src;
                        }
                    }
                    // SAFETY: bias_lanes holds MAX_LANES >= LANES floats (zero without a
                    // bias; lanes past the block's channels are never stored).
                    let bv = unsafe { s.load(bias_lanes.as_ptr()) };
                    for (i, row) in y.iter().enumerate().take(rows) {
                        for (j, val) in row.iter().enumerate().take(cols) {
                            let mut v = s.add(*val, bv);
                            if self.relu {
                                v = s.max(v, s.zero());
                            }
                            let mut lane_vals = [0.0f32; MAX_LANES];
                            // SAFETY: lane_vals holds MAX_LANES >= LANES floats.
                            unsafe { s.store(lane_vals.as_mut_ptr(), v) };
                            let px = (oy0 + i) * ow + ox0 + j;
                            for (lane, v) in lane_vals.iter().enumerate().take(lanes) {
                                // SAFETY: ch0*oh*ow + lane*oh*ow + px <= last < out.len()
                                // (asserted); tile t of these channels belongs to this task
                                // alone (tasks partition images, groups, tile chunks and
                                // channel blocks), and dst stays borrowed for the call.
                                unsafe { *first.add(lane * oh * ow + px) = *v };
                            }
                        }
                    }
                }
            }
        }
    }
}
