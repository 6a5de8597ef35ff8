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

use crate::gpu::kernels::{Key, ATTN_WGMMA, ATTN_WGMMA_PROBE_PV, ATTN_WGMMA_PROBE_QK};
use crate::gpu::params::WgmmaAttn;
use crate::gpu::{Arch, Device, LaunchConfig, Swizzle, TensorMap, TiledMap};
use crate::registry;
use crate::settings::settings;
use crate::{DType, Error, Result, Tensor};

use super::shapes::{check_qkv, check_rows_aligned, QkvShape};
use crate::ops::range;

const OP: &str = "attention_wgmma";

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

/// An entry of kernels/attention_wgmma.cu: `attn_fwd_wgmma_{dtype}_d128_{variant}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WgmmaKey(pub DType, pub Variant);
impl Key for WgmmaKey {
    fn suffix(&self) -> String {
        format!("{}_d{HEAD_DIM}_{}", self.0.kernel_suffix(), self.1.name())
    }
}

/// Every attention entry of the kernel file: both dtypes, every variant.
pub(crate) fn wgmma_keys() -> Vec<WgmmaKey> {
    VARIANTS.iter().flat_map(|&v| [DType::BF16, DType::F16].map(|dt| WgmmaKey(dt, v))).collect()
}

/// Keys at or below which [`select_variant`] takes three 128-key slots over 176-key tiles.
pub const SHORT_KEYS: usize = 1024;

/// The variant a launch over `nk` keys uses: `WANRT_ATTN_WGMMA_VARIANT` if set; else n176s2p for long
/// key sequences (fastest at all three self-attention shapes on an H100: 655-677 TFLOP/s) and n128s3p
/// for short ones (Wan's 512 text keys: 473 TFLOP/s against 449 for n176s2p, whose third tile is
/// mostly padding there).
pub fn select_variant(nk: usize) -> Result<Variant> {
    match &settings().attn_wgmma_variant {
        Some(name) => VARIANTS.iter().copied().find(|v| v.name() == *name).ok_or_else(|| {
            let names: Vec<String> = VARIANTS.iter().map(Variant::name).collect();
            Error::invalid(format!("{OP}: WANRT_ATTN_WGMMA_VARIANT={name} is not a variant (variants: {names:?})"))
        }),
        None => Ok(if nk <= SHORT_KEYS { Variant::new(128, 3, true) } else { Variant::new(176, 2, true) }),
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
    settings().attn_wgmma
}

/// Whether the kernels of `dev` compile for sm_90a (asked of NVRTC once per device).
fn sm90a(dev: &Device) -> Result<()> {
    let target = registry::target_for(dev)?;
    if target != "sm_90a" {
        return Err(Error::invalid(format!("{OP}: kernels for {} compile for {target}; wgmma needs sm_90a", dev.name())));
    }
    Ok(())
}

/// Why [`attention_wgmma`] would refuse these tensors on a compute capability 9.0 device (no sm_90a
/// target, dtype, head dim, shapes, or a view the copy engine cannot address), `None` when it takes them.
pub(crate) fn refusal(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor) -> Option<Error> {
    sm90a(q.device()).and_then(|_| check(q, k, v, out)).err()
}

/// Whether [`attention_wgmma`] takes these tensors on their device: compute capability 9.0 with the
/// kernels compiled for sm_90a, bf16/f16, head dim 128, matching shapes, views the copy engine can
/// address (see [`map_layout`]), and `WANRT_ATTN_PORTABLE` not set to 1.
pub fn wgmma_supported(q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor) -> bool {
    !settings().attn_portable && q.device().arch() == Arch::new(9, 0) && refusal(q, k, v, out).is_none()
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
    sm90a(dev)?;
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
    let [qm, km, vm] = &pb.maps;
    let os = out.strides();
    let params = WgmmaAttn {
        q_map: encode(q, qm, BLOCK_M)?,
        k_map: encode(k, km, variant.block_n)?,
        v_map: encode(v, vm, variant.block_n)?,
        o: out,
        o_stride: [os[0] as i64, os[1] as i64, os[2] as i64],
        q_order: qm.code(),
        k_order: km.code(),
        v_order: vm.code(),
        heads: pb.heads as i32,
        nq: pb.nq as i32,
        nk: pb.nk as i32,
        scale_log2: (scale as f64 * std::f64::consts::LOG2_E) as f32,
    };
    let cfg = LaunchConfig {
        grid: (pb.nq.div_ceil(BLOCK_M as usize) as u32, (pb.batch * pb.heads) as u32, 1),
        block: (THREADS, 1, 1),
        shared_mem: smem,
    };
    ATTN_WGMMA.launch(dev, WgmmaKey(pb.dtype, variant), cfg, (params,))
}

/// The tensor map of view `t` (laid out by [`map_layout`]) in boxes of `rows` tokens × 64 columns,
/// 128-byte swizzle: how the kernel copies its tiles.
fn encode(t: &Tensor, layout: &MapLayout, rows: u32) -> Result<TensorMap> {
    t.device().tensor_map_tiled(&TiledMap {
        tensor: t,
        dims: &layout.dims,
        byte_strides: &layout.byte_strides,
        box_dims: &layout.box_dims(rows),
        swizzle: Swizzle::B128,
    })
}

/// A 128 × 128 matrix `t` (shape (1, 128, 1, 128), bf16 or f16) as the probes take it.
fn probe_map(what: &'static str, t: &Tensor) -> Result<TensorMap> {
    if t.shape() != [1, 128, 1, 128] || !t.is_contiguous() {
        return Err(Error::Shape { op: "attention_wgmma probe", name: what.into(), expected: "contiguous [1, 128, 1, 128]".into(), got: t.shape().to_vec() });
    }
    let layout = map_layout(t.shape(), t.strides(), t.dtype().size())
        .ok_or_else(|| Error::invalid(format!("attention_wgmma probe: {what} cannot be mapped")))?;
    encode(t, &layout, 128)
}

/// Probes checks of one CTA: the device and dtype of the inputs and an f32 output of 64 × 128.
fn probe_checks(inputs: &[(&'static str, &Tensor)], out: &Tensor) -> Result<DType> {
    const OP: &str = "attention_wgmma probe";
    let dtype = inputs[0].1.dtype();
    if !matches!(dtype, DType::BF16 | DType::F16) {
        return Err(Error::DType { op: OP, name: inputs[0].0.into(), expected: "bf16 or f16".into(), got: dtype });
    }
    for (name, t) in inputs {
        t.expect_dtype(OP, name, dtype)?;
    }
    out.expect(OP, "out", DType::F32, &[64 * 128])?;
    let dev = out.device();
    if dev.arch() != Arch::new(9, 0) {
        return Err(Error::invalid(format!("{OP}: needs compute capability 9.0, {} is {}", dev.name(), dev.arch())));
    }
    sm90a(dev)?;
    Ok(dtype)
}

/// One CTA of the kernel's S = Q·Kᵀ alone: rows `64·half .. 64·half + 64` of `a` (the Q tile) times
/// `b`ᵀ (a K tile), both (1, 128, 1, 128) read through the kernel's TMA copies and descriptors, into
/// `out` (64 × 128 f32). For tests that pin a failure on one product's layout.
pub fn probe_qk(a: &Tensor, b: &Tensor, half: u32, out: &Tensor) -> Result<()> {
    let dtype = probe_checks(&[("a", a), ("b", b)], out)?;
    if half > 1 {
        return Err(Error::invalid(format!("attention_wgmma probe: half {half} is not 0 or 1")));
    }
    let (am, bm) = (probe_map("a", a)?, probe_map("b", b)?);
    let smem = 1024 + 65_536 + 16;
    let cfg = LaunchConfig { grid: (1, 1, 1), block: (128, 1, 1), shared_mem: smem };
    ATTN_WGMMA_PROBE_QK.launch(out.device(), dtype, cfg, (am, bm, half as i32, out))
}

/// One CTA of the kernel's O = P·V alone: `p` (64 × 128, read as register fragments) times `v`
/// ((1, 128, 1, 128), through the transposed descriptor) into `out` (64 × 128 f32).
pub fn probe_pv(p: &Tensor, v: &Tensor, out: &Tensor) -> Result<()> {
    let dtype = probe_checks(&[("p", p), ("v", v)], out)?;
    p.expect("attention_wgmma probe", "p", dtype, &[64 * 128])?;
    let vm = probe_map("v", v)?;
    let smem = 1024 + 32_768 + 8;
    let cfg = LaunchConfig { grid: (1, 1, 1), block: (128, 1, 1), shared_mem: smem };
    ATTN_WGMMA_PROBE_PV.launch(out.device(), dtype, cfg, (p, vm, out))
}
