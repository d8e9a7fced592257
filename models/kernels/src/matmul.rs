//! `y = x · Wᵀ` over the current rayon pool: output columns split into contiguous runs of groups, one run
//! per task; within a run, each group of eight columns meets the rows a tile at a time.

use rayon::prelude::*;

use crate::isa::MAX_TILE_ROWS;
use crate::scalar::{self, Tile};
use crate::{BLOCK, GROUP, Isa, PackError, PackedWeights, QuantizedRows, WeightBits};

/// Products below this many multiply-adds run on the calling thread (waking the pool costs more).
const PARALLEL_MIN_MACS: usize = 1 << 16;
/// Tasks per pool thread, so that a slow thread's share can be taken by the others.
const TASKS_PER_THREAD: usize = 4;

/// Writes `x · Wᵀ` (`rows × n`, row-major) into `out`.
pub fn matmul(w: &PackedWeights, x: &QuantizedRows, out: &mut [f32]) -> Result<(), PackError> {
    check(w, x, out.len())?;
    product(w, x, SharedOut(out.as_mut_ptr()));
    Ok(())
}

/// [`matmul`] into a vector that becomes exactly `rows × n` long, without filling it first (the product
/// writes every element; this saves a pass over memory as large as the output).
pub fn matmul_to_vec(w: &PackedWeights, x: &QuantizedRows, out: &mut Vec<f32>) -> Result<(), PackError> {
    let len = x.m * w.n;
    check(w, x, len)?;
    out.clear();
    out.reserve(len);
    product(w, x, SharedOut(out.spare_capacity_mut().as_mut_ptr().cast()));
    // SAFETY: the capacity holds `len` elements, and `product` wrote every one of them (every group's
    // columns of every row).
    unsafe { out.set_len(len) };
    Ok(())
}

/// The product into `out`, which holds `rows × n` elements (checked by the callers).
fn product(w: &PackedWeights, x: &QuantizedRows, out: SharedOut) {
    let (m, n) = (x.m, w.n);
    let groups = n.div_ceil(GROUP);
    if m == 0 || groups == 0 {
        return;
    }
    let tasks =
        if m * n * w.k < PARALLEL_MIN_MACS { 1 } else { (rayon::current_num_threads() * TASKS_PER_THREAD).min(groups) };
    let per_task = groups.div_ceil(tasks);
    let run = |task: usize| {
        let first = task * per_task;
        for g in first..(first + per_task).min(groups) {
            group(w, x, g, &out);
        }
    };
    if tasks == 1 {
        run(0);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
}

/// The output buffer, written by tasks at disjoint columns.
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (their own groups' columns) and the buffer outlives the parallel loop.
unsafe impl Sync for SharedOut {}

/// Every row against group `g`, written into `out`.
fn group(w: &PackedWeights, x: &QuantizedRows, g: usize, out: &SharedOut) {
    let kb = w.k / BLOCK;
    let tile_rows = w.isa.tile_rows();
    let columns = GROUP.min(w.n - g * GROUP);
    let bytes = w.bits.block_bytes();
    let mut results = [[0.0f32; GROUP]; MAX_TILE_ROWS];
    let mut r0 = 0;
    while r0 < x.m {
        let rows = tile_rows.min(x.m - r0);
        let per_group = kb * GROUP;
        let tile = Tile {
            bits: w.bits,
            w_qs: &w.qs[g * per_group * bytes..][..per_group * bytes],
            w_scales: &w.scales[g * per_group..][..per_group],
            w_mins: if w.mins.is_empty() { &[] } else { &w.mins[g * per_group..][..per_group] },
            a_qs: &x.qs[r0 * kb * BLOCK..][..rows * kb * BLOCK],
            a_scales: &x.scales[r0 * kb..][..rows * kb],
            a_sums: &x.sums[r0 * kb..][..rows * kb],
            blocks: kb,
        };
        let slots = &mut results[..rows];
        run_tile(w.isa, w.bits == WeightBits::Four, rows, &tile, slots);
        for (r, values) in slots.iter().enumerate() {
            let at = (r0 + r) * w.n + g * GROUP;
            // SAFETY: `at .. at + columns` is inside the `m × n` buffer (`check`ed by both entry points), and only
            // the task that owns group `g` writes these columns. A whole group is a copy of constant size (a vector
            // move, where a copy of `columns` elements is a call to `memcpy` per row).
            unsafe {
                if columns == GROUP {
                    std::ptr::copy_nonoverlapping(values.as_ptr(), out.0.add(at), GROUP);
                } else {
                    std::ptr::copy_nonoverlapping(values.as_ptr(), out.0.add(at), columns);
                }
            }
        }
        r0 += rows;
    }
}

/// The tile on `isa`'s kernel, instantiated for `rows` rows and the weights' width.
fn run_tile(isa: Isa, four: bool, rows: usize, tile: &Tile<'_>, out: &mut [[f32; GROUP]]) {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::x86::{tile_avx2, tile_vnni};
        /// `kernel::<rows, four>` for every row count below the family's tile, and the full tile.
        macro_rules! rows {
            ($kernel:ident, $four:literal, $($r:literal)+; $full:literal) => {
                match rows {
                    $($r => $kernel::<$r, $four>(tile, out),)+
                    _ => $kernel::<$full, $four>(tile, out),
                }
            };
        }
        // SAFETY: `matmul` checked that this CPU runs `isa` (`Isa::is_available`), and `group` hands over
        // exactly `rows` rows, at most the family's tile.
        unsafe {
            match (isa, four) {
                (Isa::Avx2, false) => rows!(tile_avx2, false, 1 2 3; 4),
                (Isa::Avx2, true) => rows!(tile_avx2, true, 1 2 3; 4),
                (Isa::Avx512Vnni, false) => rows!(tile_vnni, false, 1 2 3 4 5 6 7; 8),
                (Isa::Avx512Vnni, true) => rows!(tile_vnni, true, 1 2 3 4 5 6 7; 8),
                (Isa::Scalar, _) => scalar::tile(tile, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, four, rows);
        scalar::tile(tile, out)
    }
}

/// Refuses operands that were prepared apart (shape, instruction set) or a CPU that lacks the family.
fn check(w: &PackedWeights, x: &QuantizedRows, out_len: usize) -> Result<(), PackError> {
    if x.isa != Some(w.isa) {
        return Err(PackError::Mismatch(format!("weights for {}, rows for {:?}", w.isa.name(), x.isa)));
    }
    if x.k != w.k {
        return Err(PackError::Mismatch(format!("rows of {} values, weights of {}", x.k, w.k)));
    }
    if out_len != x.m * w.n {
        return Err(PackError::Length { expected: x.m * w.n, got: out_len });
    }
    w.isa.require().map_err(PackError::Mismatch)
}
