//! Fused attention forward for Hopper (`kernels/attention_wgmma.cu`, sm_90a only), FlashAttention-3
//! style: the bulk tensor copy engine (TMA) fills a ring of shared-memory K/V slots guarded by
//! mbarriers, a producer warpgroup issues the copies, two consumer warpgroups of 64 query rows run
//! wgmma (S = Q·Kᵀ from shared memory, O += P·V with P from registers) with the softmax of one key tile
//! overlapping the P·V product of the previous one. Head dim 128, bf16/f16, non-causal, f32 softmax and
//! accumulation, any Nq/Nk, strided (B, N, H, d) views.
//!
//! The dispatcher `ops::attention` takes this path on compute capability 9.0 (verified on an H100:
//! 1.03-1.17× torch SDPA at Wan's self-attention shapes, BENCHMARKS.md); `WANRT_ATTN_WGMMA=0` falls
//! back to the mma.sync path, `WANRT_ATTN_PORTABLE=1` to the portable kernel.

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Arch, KernelArgs, LaunchConfig, Swizzle, TensorMap, TiledMap};
use crate::registry;
use crate::{DType, Error, Result, Tensor};

use super::attention_fast::portable_forced;
use super::attention_shapes::{check_qkv, check_rows_aligned, QkvShape};
use super::range;

const OP: &str = "attention_wgmma";

/// Set to `0` to keep `ops::attention` off this path (it then takes the mma.sync kernel).
pub const ENABLE_ENV: &str = "WANRT_ATTN_WGMMA";
/// Set to a variant name (`n128s3p`) to override the table's choice, for experiments and bisection.
pub const VARIANT_ENV: &str = "WANRT_ATTN_WGMMA_VARIANT";

/// The only head dim with a kernel (Wan's).
pub const HEAD_DIM: usize = 128;
/// Query rows per CTA: two consumer warpgroups of 64.
pub const BLOCK_M: u32 = 128;
/// Threads per CTA: one producer and two consumer warpgroups.
pub const THREADS: u32 = 384;

/// A compiled configuration of the kernel: keys per tile (`block_n`), shared-memory K/V slots
/// (`stages`), and whether the two consumer warpgroups take turns issuing their wgmmas (`pingpong`,
/// FlashAttention-3's inter-warpgroup schedule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub block_n: u32,
    pub stages: u32,
    pub pingpong: bool,
}

impl Variant {
    const fn new(block_n: u32, stages: u32, pingpong: bool) -> Variant {
        Variant { block_n, stages, pingpong }
    }

    /// The entry-point suffix, `n{block_n}s{stages}` plus `p` for ping-pong.
    pub fn name(&self) -> String {
        format!("n{}s{}{}", self.block_n, self.stages, if self.pingpong { "p" } else { "" })
    }

    /// Dynamic shared memory: 1 KiB of slack to align the base to 1024 bytes (the 128-byte swizzle
    /// repeats every 1024), the Q tile, `stages` K and V tiles of 128-column rows, and 1 + 4·stages
    /// mbarriers.
    pub fn shared_bytes(&self) -> u32 {
        let row = HEAD_DIM as u32 * 2;
        1024 + BLOCK_M * row + 2 * self.stages * self.block_n * row + (1 + 4 * self.stages) * 8
    }
}

/// The instantiated variants. Each is an `extern "C"` kernel per dtype in attention_wgmma.cu; the GPU
/// tests run them all, the benchmark times them all, [`select_variant`] picks one by key length.
///
/// - n128s2p: FlashAttention-3's structure with 128-key tiles: two K/V slots (161 KiB), ping-pong.
/// - n128s2: the same without ping-pong (the warp schedulers interleave the consumers on their own).
/// - n128s3p: three slots (225 KiB, the most an H100 CTA may opt into), more copy latency hidden.
/// - n176s2p: FlashAttention-3's hdim-128 tile (176 keys, 209 KiB): fewer, longer tiles per row block.
const VARIANTS: &[Variant] =
    &[Variant::new(128, 2, true), Variant::new(128, 2, false), Variant::new(128, 3, true), Variant::new(176, 2, true)];

/// The instantiated variants.
pub fn variants() -> &'static [Variant] {
    VARIANTS
}

/// Keys at or below which [`select_variant`] takes three 128-key slots over 176-key tiles.
pub const SHORT_KEYS: usize = 1024;

/// The variant a launch over `nk` keys uses: `WANRT_ATTN_WGMMA_VARIANT` if set; else n176s2p for long
/// key sequences (fastest at all three self-attention shapes on an H100: 655-677 TFLOP/s) and n128s3p
/// for short ones (Wan's 512 text keys: 473 TFLOP/s against 449 for n176s2p, whose third tile is
/// mostly padding there).
pub fn select_variant(nk: usize) -> Result<Variant> {
    match std::env::var(VARIANT_ENV) {
        Ok(name) => VARIANTS.iter().copied().find(|v| v.name() == name).ok_or_else(|| {
            let names: Vec<String> = VARIANTS.iter().map(Variant::name).collect();
            Error::invalid(format!("{OP}: {VARIANT_ENV}={name} is not a variant (variants: {names:?})"))
        }),
        Err(_) => Ok(if nk <= SHORT_KEYS { Variant::new(128, 3, true) } else { Variant::new(176, 2, true) }),
    }
}

/// How one (B, N, H, d) view is described to the copy engine: a 4-d tensor map whose dimension 0 is d
/// (unit stride) and whose dimensions 1..3 are token, head and batch in increasing stride order, so
/// each stride covers the extent of the ones before it (the packing cuTensorMapEncodeTiled documents).
/// Size-1 dimensions go last, with the span of the others as their (unused) stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapLayout {
    /// Elements along each map dimension.
    pub dims: [u64; 4],
    /// Byte strides of map dimensions 1..3.
    pub byte_strides: [u64; 3],
    /// The logical dimension (0 token, 1 head, 2 batch) of map dimensions 1..3.
    pub order: [usize; 3],
}

impl MapLayout {
    /// The order as the kernel reads it: bits 2i..2i+1 name the logical dimension of map dimension i+1.
    pub fn code(&self) -> i32 {
        self.order.iter().enumerate().map(|(i, &l)| (l as i32) << (2 * i)).sum()
    }

    /// The copy box: 64 columns of d (128 bytes, the swizzle span) by `rows` tokens of one head.
    pub fn box_dims(&self, rows: u32) -> [u32; 4] {
        let mut b = [64, 1, 1, 1];
        for (i, &l) in self.order.iter().enumerate() {
            if l == 0 {
                b[i + 1] = rows;
            }
        }
        b
    }
}

/// The tensor map layout of a (B, N, H, d) view with element `strides` and `esize`-byte elements, or
/// `None` if the copy engine cannot address it: d must be unit-stride, the other strides multiples of 16
/// bytes below 2^40, and the token/head/batch dimensions must not overlap once sorted by stride (a row
/// of d elements fits below the smallest stride, each stride covers the extent of the previous
/// dimension). Strides of size-1 dimensions do not matter.
pub fn map_layout(shape: &[usize], strides: &[usize], esize: usize) -> Option<MapLayout> {
    if shape.len() != 4 || strides.len() != 4 || (shape[3] > 1 && strides[3] != 1) {
        return None;
    }
    // (elements, element stride) of token, head, batch.
    let logical = [(shape[1], strides[1]), (shape[2], strides[2]), (shape[0], strides[0])];
    let mut order: Vec<usize> = (0..3).filter(|&l| logical[l].0 > 1).collect();
    order.sort_by_key(|&l| logical[l].1);
    order.extend((0..3).filter(|&l| logical[l].0 <= 1));
    let mut span = (shape[3].max(1) * esize) as u64; // bytes covered by the dimensions so far
    let (mut dims, mut byte_strides) = ([shape[3].max(1) as u64, 1, 1, 1], [0u64; 3]);
    for (i, &l) in order.iter().enumerate() {
        let (n, st) = logical[l];
        let stride = if n > 1 { (st as u64).checked_mul(esize as u64)? } else { span };
        if stride < span || stride % 16 != 0 || stride >= 1 << 40 {
            return None;
        }
        dims[i + 1] = n.max(1) as u64;
        byte_strides[i] = stride;
        span = stride.checked_mul(n.max(1) as u64)?;
    }
    Some(MapLayout { dims, byte_strides, order: [order[0], order[1], order[2]] })
}

/// Kernel parameter block, mirroring `WgParams` in kernels/attention_wgmma.cu (512 bytes, no implicit
/// padding; the tensor maps are read by the copy engine from the parameter space).
#[repr(C, align(128))]
#[derive(Clone, Copy, Pod, Zeroable)]
struct WgmmaParams {
    q_map: TensorMap,
    k_map: TensorMap,
    v_map: TensorMap,
    o: u64,
    o_stride: [i64; 3],
    q_order: i32,
    k_order: i32,
    v_order: i32,
    heads: i32,
    nq: i32,
    nk: i32,
    scale_log2: f32,
    pad: [i32; 17],
}

const _: () = assert!(std::mem::size_of::<WgmmaParams>() == 512);

/// Checked problem sizes and the three input map layouts.
struct Problem {
    batch: usize,
    nq: usize,
    nk: usize,
    heads: usize,
    dtype: DType,
    maps: [MapLayout; 3],
}

/// Checks dtypes, shapes, strides and alignment: everything `attention_wgmma` needs except the device.
fn check(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor) -> Result<Problem> {
    let QkvShape { batch, nq, nk, heads, dtype, .. } = check_qkv(OP, q, k, v, out, &[HEAD_DIM])?;
    let esize = dtype.size();
    let layout = |t: &Tensor, name: &str| -> Result<MapLayout> {
        map_layout(t.shape(), t.strides(), esize).filter(|_| t.ptr() % 16 == 0).ok_or_else(|| Error::Shape {
            op: OP,
            name: name.to_string(),
            expected: format!(
                "a view the tensor copy engine can address: unit stride over head_dim, 16-byte aligned start, \
                 non-overlapping batch/token/head strides that are multiples of 16 bytes (strides {:?}, byte offset {})",
                t.strides(),
                t.byte_offset()
            ),
            got: t.shape().to_vec(),
        })
    };
    let maps = [layout(q, "q")?, layout(k, "k")?, layout(v, "v")?];
    // The output is written with 16-byte stores.
    check_rows_aligned(OP, out, "out")?;
    Ok(Problem { batch, nq, nk, heads, dtype, maps })
}

/// Whether `ops::attention` may try this path first: unless `WANRT_ATTN_WGMMA=0`.
pub fn wgmma_enabled() -> bool {
    std::env::var(ENABLE_ENV).map_or(true, |v| v != "0")
}

/// Whether [`attention_wgmma`] takes these tensors on their device: compute capability 9.0 with the
/// kernels compiled for sm_90a, bf16/f16, head dim 128, matching shapes, views the copy engine can
/// address (see [`map_layout`]), and `WANRT_ATTN_PORTABLE` not set to 1.
pub fn wgmma_supported(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor) -> bool {
    let dev = q.device();
    !portable_forced()
        && dev.arch() == Arch::new(9, 0)
        && registry::target_for(dev).is_ok_and(|t| t == "sm_90a")
        && check(q, k, v, out).is_ok()
}

/// `out = softmax(scale · q·kᵀ) · v` per batch and head (non-causal) on Hopper. `q` and `out`:
/// (B, Nq, H, 128); `k`, `v`: (B, Nk, H, 128); one dtype (bf16 or f16); strided views work (unit
/// stride over head_dim, 16-byte aligned rows). Softmax and accumulation in f32. Variant: see
/// [`select_variant`].
pub fn attention_wgmma(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, out: &Tensor) -> Result<()> {
    let nk = k.shape().get(1).copied().unwrap_or(0);
    attention_wgmma_with_variant(q, k, v, scale, out, select_variant(nk)?)
}

/// [`attention_wgmma`] with an explicit variant from [`variants`] (tests and benchmarks run them all).
pub fn attention_wgmma_with_variant(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    out: &Tensor,
    variant: Variant,
) -> Result<()> {
    let _r = range(OP);
    let pb = check(q, k, v, out)?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::invalid(format!("{OP}: scale must be positive and finite, got {scale}")));
    }
    let dev = q.device();
    if dev.arch() != Arch::new(9, 0) {
        return Err(Error::invalid(format!(
            "{OP}: needs compute capability 9.0 (sm_90a), {} is {}",
            dev.name(),
            dev.arch()
        )));
    }
    let target = registry::target_for(dev)?;
    if target != "sm_90a" {
        return Err(Error::invalid(format!(
            "{OP}: kernels for {} compile for {target}; wgmma needs sm_90a",
            dev.name()
        )));
    }
    if !VARIANTS.contains(&variant) {
        return Err(Error::invalid(format!("{OP}: variant {} is not instantiated", variant.name())));
    }
    let smem = variant.shared_bytes();
    if smem > dev.max_shared_memory_optin() {
        return Err(Error::invalid(format!(
            "{OP}: variant {} needs {smem} bytes of shared memory, {} allows {}",
            variant.name(),
            dev.name(),
            dev.max_shared_memory_optin()
        )));
    }
    if pb.batch * pb.nq * pb.heads == 0 {
        return Ok(());
    }
    let encode = |t: &Tensor, layout: &MapLayout, rows: u32| -> Result<TensorMap> {
        dev.tensor_map_tiled(&TiledMap {
            dtype: pb.dtype,
            address: t.ptr(),
            dims: &layout.dims,
            byte_strides: &layout.byte_strides,
            box_dims: &layout.box_dims(rows),
            swizzle: Swizzle::B128,
        })
    };
    let [qm, km, vm] = &pb.maps;
    let os = out.strides();
    let params = WgmmaParams {
        q_map: encode(q, qm, BLOCK_M)?,
        k_map: encode(k, km, variant.block_n)?,
        v_map: encode(v, vm, variant.block_n)?,
        o: out.ptr(),
        o_stride: [os[0] as i64, os[1] as i64, os[2] as i64],
        q_order: qm.code(),
        k_order: km.code(),
        v_order: vm.code(),
        heads: pb.heads as i32,
        nq: pb.nq as i32,
        nk: pb.nk as i32,
        scale_log2: (scale as f64 * std::f64::consts::LOG2_E) as f32,
        pad: [0; 17],
    };
    let name = format!("attn_fwd_wgmma_{}_d{HEAD_DIM}_{}", pb.dtype.kernel_suffix(), variant.name());
    let f = dev.function("attention_wgmma", &name)?;
    f.set_max_dynamic_shared_memory(smem)?;
    let cfg = LaunchConfig {
        grid: (pb.nq.div_ceil(BLOCK_M as usize) as u32, (pb.batch * pb.heads) as u32, 1),
        block: (THREADS, 1, 1),
        shared_mem: smem,
    };
    let mut args = KernelArgs::new();
    args.pod(&params);
    dev.launch(&f, cfg, dev.compute(), &args)
}
