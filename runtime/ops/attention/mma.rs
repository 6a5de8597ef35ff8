//! Fused attention forward on tensor cores for sm_80 and newer (`kernels/attention_mma.cu`):
//! FlashAttention-2 style, mma.sync + ldmatrix + cp.async, f32 softmax and accumulation.

use crate::gpu::kernels::{Key, ATTN_MMA};
use crate::gpu::params::MmaAttn;
use crate::gpu::{Arch, Device, LaunchConfig};
use crate::settings::settings;
use crate::{DType, Error, Result, Tensor};

use super::shapes::{check_qkv, check_rows_aligned, QkvShape};
use crate::ops::range;

const OP: &str = "attention_mma";

/// Head dims with an mma kernel: Wan (128), UMT5 (64), CLIP ViT-H (80).
pub const HEAD_DIMS: [usize; 3] = [64, 80, 128];

/// A CTA tile of the kernel: `block_m` query rows over `warps` warps (each owning `block_m / (16·warps)`
/// m16 row tiles), keys streamed in tiles of `block_n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub block_m: u32,
    pub block_n: u32,
    pub warps: u32,
}

impl Tile {
    const fn new(block_m: u32, block_n: u32, warps: u32) -> Tile {
        Tile { block_m, block_n, warps }
    }

    /// The entry-point suffix, `m{block_m}n{block_n}w{warps}`.
    pub fn name(&self) -> String {
        format!("m{}n{}w{}", self.block_m, self.block_n, self.warps)
    }

    /// Dynamic shared memory: the Q tile plus two K and two V tiles (double buffer), each row padded
    /// to `head_dim + 8` 16-bit elements.
    pub fn shared_bytes(&self, head_dim: usize) -> u32 {
        (self.block_m + 4 * self.block_n) * (head_dim as u32 + 8) * 2
    }
}

/// The tile table: per head dim, the instantiated tiles in order of preference. A launch takes the
/// first of which two CTAs fit an SM's shared memory, else the first that fits at all (opt-in limit
/// per CTA: 227 KiB on H100, 163 KiB on A100, 99 KiB on sm_86/sm_89). Each entry is an `extern "C"`
/// kernel in attention_mma.cu; the GPU tests run them all.
///
/// - d = 128: 128×64 over 4 warps (two m16 tiles per warp, Q re-read from shared memory each key tile)
///   is FlashAttention-2's sm_90 choice: 102 KiB here (double-buffered K/V), 2 CTAs per SM on H100.
///   128×32 (68 KiB) takes A100 (2 CTAs in 164 KiB) and the 99 KiB parts (one CTA). 128×64 over 8
///   warps (one m16 tile per warp, Q kept in registers), 64×64 over 4 warps and 256×64 over 8 warps
///   (two m16 tiles per warp, one CTA per SM, half the K/V copies per MMA) are alternatives for the
///   benchmark to compare.
/// - d = 64: 128×64 over 4 warps (Q in registers, 54 KiB); 64×64 (45 KiB) as the alternative, more
///   CTAs for UMT5's 512-token sequences. (FlashAttention-2's 128×128 spills registers under NVRTC 13.0.)
/// - d = 80: 128×64 over 4 warps (66 KiB).
///
/// Why two m16 tiles per warp: every warp reads whole K and V tiles from shared memory for its rows, so
/// shared-memory bytes per MMA fall as 1/(m16 tiles per warp); at one tile an H100 SM would need more
/// than its 128 B/clk to feed mma.sync at full rate. The O accumulators (d/2 floats per m16 tile per
/// thread) cap it at two.
const TABLE: &[(usize, &[Tile])] = &[
    (64, &[Tile::new(128, 64, 4), Tile::new(64, 64, 4)]),
    (80, &[Tile::new(128, 64, 4)]),
    (128, &[Tile::new(128, 64, 4), Tile::new(128, 32, 4), Tile::new(128, 64, 8), Tile::new(64, 64, 4), Tile::new(256, 64, 8)]),
];

/// An entry of kernels/attention_mma.cu: `attn_fwd_mma_{dtype}_d{head_dim}_{tile}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MmaKey(pub DType, pub usize, pub Tile);
impl Key for MmaKey {
    fn suffix(&self) -> String {
        format!("{}_d{}_{}", self.0.kernel_suffix(), self.1, self.2.name())
    }
}

/// Every entry of the kernel file: both dtypes, every tile of the table.
pub(crate) fn mma_keys() -> Vec<MmaKey> {
    let table = TABLE.iter().flat_map(|&(d, tiles)| tiles.iter().map(move |&t| (d, t)));
    table.flat_map(|(d, t)| [DType::BF16, DType::F16].map(|dt| MmaKey(dt, d, t))).collect()
}

/// The instantiated tiles of a head dim, in order of preference (empty for other head dims).
pub fn tiles(head_dim: usize) -> &'static [Tile] {
    TABLE.iter().find(|(d, _)| *d == head_dim).map(|(_, t)| *t).unwrap_or(&[])
}

/// The table's choice for a device whose CTAs may opt into `smem_optin` bytes of shared memory: the
/// first tile of which two CTAs fit an SM, else the first that fits at all. `None` if none fits.
pub fn choose_tile(head_dim: usize, smem_optin: u32) -> Option<Tile> {
    // Two CTAs per SM hide each other's barriers and softmax. The driver reserves 1 KiB per CTA, and
    // an SM holds the opt-in limit plus that 1 KiB (sm_80 to sm_90).
    let per_sm = |t: &Tile| (smem_optin + 1024) / (t.shared_bytes(head_dim) + 1024);
    let candidates = tiles(head_dim);
    candidates.iter().copied().find(|t| per_sm(t) >= 2).or_else(|| candidates.iter().copied().find(|t| per_sm(t) >= 1))
}

/// The tile a launch uses on `dev` for `head_dim`: `WANRT_ATTN_TILE` if set, else [`choose_tile`].
pub fn select_tile(dev: &Device, head_dim: usize) -> Result<Tile> {
    let candidates = tiles(head_dim);
    if let Some(name) = &settings().attn_tile {
        return candidates.iter().copied().find(|t| t.name() == *name).ok_or_else(|| {
            let names: Vec<String> = candidates.iter().map(Tile::name).collect();
            Error::invalid(format!("{OP}: WANRT_ATTN_TILE={name} is not a tile for head dim {head_dim} (tiles: {names:?})"))
        });
    }
    let limit = dev.max_shared_memory_optin();
    choose_tile(head_dim, limit).ok_or_else(|| {
        Error::invalid(format!("{OP}: no tile for head dim {head_dim} fits the {limit} bytes of shared memory of {}", dev.name()))
    })
}

/// Checked problem sizes.
struct Problem {
    batch: usize,
    nq: usize,
    nk: usize,
    heads: usize,
    head_dim: usize,
    dtype: DType,
}

/// Checks dtypes, shapes, strides and alignment; everything `attention_mma` needs except the device.
fn check(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor) -> Result<Problem> {
    let QkvShape { batch, nq, nk, heads, head_dim, dtype } = check_qkv(OP, q, k, v, out, &HEAD_DIMS)?;
    for (t, name) in [(q, "q"), (k, "k"), (v, "v"), (out, "out")] {
        check_rows_aligned(OP, t, name)?;
    }
    Ok(Problem { batch, nq, nk, heads, head_dim, dtype })
}

/// Why [`attention_mma`] would refuse these tensors on a device of compute capability 8.0 or newer
/// (dtype, head dim, shapes, strides or alignment), `None` when it takes them.
pub(crate) fn refusal(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor) -> Option<Error> {
    check(q, k, v, out).err()
}

/// Whether [`attention_mma`] takes these tensors: bf16/f16, head dim 64/80/128, matching shapes,
/// unit stride over head dim and 16-byte aligned rows, compute capability 8.0 or newer, and
/// `WANRT_ATTN_PORTABLE` not set to 1.
pub fn mma_supported(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor) -> bool {
    !settings().attn_portable && q.device().arch() >= Arch::new(8, 0) && check(q, k, v, out).is_ok()
}

/// `out = softmax(scale · q·kᵀ) · v` per batch and head (non-causal). `q` and `out`: (B, Nq, H, d);
/// `k`, `v`: (B, Nk, H, d); one dtype (bf16 or f16); d ∈ {64, 80, 128}; any strides with unit stride
/// over d and 16-byte aligned rows (views into fused buffers work). Softmax and accumulation in f32.
pub fn attention_mma(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, out: &Tensor) -> Result<()> {
    let head_dim = check(q, k, v, out)?.head_dim;
    let tile = select_tile(q.device(), head_dim)?;
    attention_mma_with_tile(q, k, v, scale, out, tile)
}

/// [`attention_mma`] with an explicit tile from [`tiles`] (benchmarks and tests compare them).
pub fn attention_mma_with_tile(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, out: &Tensor, tile: Tile) -> Result<()> {
    let _r = range("attention_mma");
    let pb = check(q, k, v, out)?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::invalid(format!("{OP}: scale must be positive and finite, got {scale}")));
    }
    let dev = q.device();
    if dev.arch() < Arch::new(8, 0) {
        return Err(Error::invalid(format!("{OP}: needs compute capability 8.0 or newer, {} is {}", dev.name(), dev.arch())));
    }
    if !tiles(pb.head_dim).contains(&tile) {
        return Err(Error::invalid(format!("{OP}: tile {} is not instantiated for head dim {}", tile.name(), pb.head_dim)));
    }
    let smem = tile.shared_bytes(pb.head_dim);
    if smem > dev.max_shared_memory_optin() {
        return Err(Error::invalid(format!(
            "{OP}: tile {} needs {smem} bytes of shared memory, {} allows {}",
            tile.name(),
            dev.name(),
            dev.max_shared_memory_optin()
        )));
    }
    if pb.batch * pb.nq * pb.heads == 0 {
        return Ok(());
    }
    let strides = |t: &Tensor| -> [i64; 3] {
        let s = t.strides();
        [s[0] as i64, s[1] as i64, s[2] as i64]
    };
    let params = MmaAttn {
        q,
        k,
        v,
        o: out,
        q_stride: strides(q),
        k_stride: strides(k),
        v_stride: strides(v),
        o_stride: strides(out),
        heads: pb.heads as i32,
        nq: pb.nq as i32,
        nk: pb.nk as i32,
        scale_log2: (scale as f64 * std::f64::consts::LOG2_E) as f32,
    };
    let cfg = LaunchConfig {
        grid: (pb.nq.div_ceil(tile.block_m as usize) as u32, (pb.batch * pb.heads) as u32, 1),
        block: (tile.warps * 32, 1, 1),
        shared_mem: smem,
    };
    ATTN_MMA.launch(dev, MmaKey(pb.dtype, pb.head_dim, tile), cfg, (params,))
}
