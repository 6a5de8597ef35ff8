//! The kernel table: every `extern "C"` entry of `kernels/*.cu`, declared once per family (its file,
//! its entry names over dtypes and tiles, its parameters as Rust types), and the typed launcher each
//! declaration gives.
//!
//! A launcher takes tensors where the kernel takes addresses: each address comes from
//! [`Tensor::device_ptr`] (refused for a view of offload weights whose borrow ended) of a tensor on the
//! launching device, `Option<&Tensor>` passes null for `None`. The argument list is built from the
//! declared parameters, so it cannot disagree with the declaration, and `tests/kernels_sass.rs`
//! checks every declaration against the compiled CUBIN (entry names, parameter count and sizes) and
//! that every entry of the CUBIN is declared.
//!
//! What a declaration cannot know is how many elements the kernel touches: that follows from the
//! scalars (`n`, `rows`, ...) and the launch configuration. The launchers are therefore crate-private;
//! the public, safe API is `runtime::ops`, whose functions check shapes and dtypes before launching.

use std::marker::PhantomData;
use std::sync::Arc;

use super::device::Device;
use super::launch::{KernelArgs, LaunchConfig};
use super::params::{Conv3dDims, MmaAttn, PatchDims, PortableAttn, WgmmaAttn};
use super::tensor_map::TensorMap;
use crate::ops::attention::mma::{mma_keys, MmaKey};
use crate::ops::attention::wgmma::{wgmma_keys, WgmmaKey};
use crate::ops::conv::mma::{conv_mma_keys, ConvMmaKey};
use crate::ops::conv::narrow::{conv_narrow_keys, NarrowKey};
use crate::ops::conv::small_cin::{conv_small_cin_keys, SmallCinKey};
use crate::ops::conv::tf32::{conv_tf32_keys, ConvTf32Key};
use crate::ops::conv::wgmma::{conv_wgmma_keys, WgKey as ConvWgKey};
use crate::ops::conv::wgmma_rows::{conv_wgmma_rows_keys, RowKey as ConvRowKey};
use crate::ops::conv::wgmma_tf32_rows::{conv_wgmma_tf32_rows_keys, Tf32RowKey as ConvTf32RowKey};
use super::params_conv::ConvMma;
use crate::{registry, DType, Error, Result, Tensor};

/// How one kernel parameter is passed and what its launcher takes for it.
pub(crate) trait Param {
    /// The launcher's argument for this parameter.
    type Value<'a>;
    /// The parameter's size in the kernel's parameter space (its `sizeof`).
    const SIZE: usize;
    fn push(v: &Self::Value<'_>, dev: &Device, args: &mut KernelArgs) -> Result<()>;
}

/// A parameter list: a tuple of [`Param`]s.
pub(crate) trait Params {
    type Values<'a>;
    fn sizes() -> Vec<usize>;
    fn push_all(v: &Self::Values<'_>, dev: &Device, args: &mut KernelArgs) -> Result<()>;
}

/// The device address of `t` for a launch on `dev`: lease-checked, and on that device.
pub(crate) fn address(t: &Tensor, dev: &Device) -> Result<u64> {
    if !std::ptr::eq(&**t.device(), dev) {
        return Err(Error::invalid(format!(
            "{t:?} is on device {}, the launch on device {}",
            t.device().ordinal(),
            dev.ordinal()
        )));
    }
    t.device_ptr()
}

/// A pointer parameter (`T*`), from a tensor.
pub(crate) struct Ptr;
impl Param for Ptr {
    type Value<'a> = &'a Tensor;
    const SIZE: usize = 8;
    fn push(t: &&Tensor, dev: &Device, args: &mut KernelArgs) -> Result<()> {
        args.ptr(address(t, dev)?);
        Ok(())
    }
}

/// A pointer parameter the kernel may be given as null (`None`).
pub(crate) struct OptPtr;
impl Param for OptPtr {
    type Value<'a> = Option<&'a Tensor>;
    const SIZE: usize = 8;
    fn push(t: &Option<&Tensor>, dev: &Device, args: &mut KernelArgs) -> Result<()> {
        args.ptr(match t {
            Some(t) => address(t, dev)?,
            None => 0,
        });
        Ok(())
    }
}

macro_rules! scalar_params {
    ($($t:ty => $push:ident),*) => {$(
        impl Param for $t {
            type Value<'a> = $t;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn push(v: &$t, _: &Device, args: &mut KernelArgs) -> Result<()> {
                args.$push(*v);
                Ok(())
            }
        }
    )*};
}
scalar_params!(u64 => u64, i64 => i64, u32 => u32, i32 => i32, f32 => f32);

/// A `N`-byte struct of scalars passed by value, given as its bytes (a scheduler plan: its layout is
/// the caller's, the kernel file documents it).
pub(crate) struct Bytes<const N: usize>;
impl<const N: usize> Param for Bytes<N> {
    type Value<'a> = &'a [u8; N];
    const SIZE: usize = N;
    fn push(v: &&[u8; N], _: &Device, args: &mut KernelArgs) -> Result<()> {
        args.bytes(&v[..]);
        Ok(())
    }
}

/// A tensor map passed by value (`const __grid_constant__ CUtensorMap`).
impl Param for TensorMap {
    type Value<'a> = TensorMap;
    const SIZE: usize = std::mem::size_of::<TensorMap>();
    fn push(v: &TensorMap, _: &Device, args: &mut KernelArgs) -> Result<()> {
        args.pod(v);
        Ok(())
    }
}

impl Param for PatchDims {
    type Value<'a> = PatchDims;
    const SIZE: usize = std::mem::size_of::<PatchDims>();
    fn push(v: &PatchDims, _: &Device, args: &mut KernelArgs) -> Result<()> {
        args.pod(v);
        Ok(())
    }
}

impl Param for Conv3dDims {
    type Value<'a> = Conv3dDims;
    const SIZE: usize = std::mem::size_of::<Conv3dDims>();
    fn push(v: &Conv3dDims, _: &Device, args: &mut KernelArgs) -> Result<()> {
        args.pod(v);
        Ok(())
    }
}

macro_rules! tuple_params {
    ($($T:ident $i:tt),+) => {
        impl<$($T: Param),+> Params for ($($T,)+) {
            type Values<'a> = ($($T::Value<'a>,)+);
            fn sizes() -> Vec<usize> {
                vec![$($T::SIZE),+]
            }
            fn push_all(v: &Self::Values<'_>, dev: &Device, args: &mut KernelArgs) -> Result<()> {
                $($T::push(&v.$i, dev, args)?;)+
                Ok(())
            }
        }
    };
}
tuple_params!(A 0);
tuple_params!(A 0, B 1);
tuple_params!(A 0, B 1, C 2);
tuple_params!(A 0, B 1, C 2, D 3);
tuple_params!(A 0, B 1, C 2, D 3, E 4);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
tuple_params!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, K 10);

/// What picks one entry of a family: its name is `{prefix}_{suffix}`.
pub(crate) trait Key: Copy {
    fn suffix(&self) -> String;
}

impl Key for DType {
    fn suffix(&self) -> String {
        self.kernel_suffix().to_string()
    }
}

/// Input and output dtype: `{op}_{x}_{out}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pair(pub DType, pub DType);
impl Key for Pair {
    fn suffix(&self) -> String {
        format!("{}_{}", self.0.kernel_suffix(), self.1.kernel_suffix())
    }
}

/// Packs per lane and dtype pair of the packed WanRMS_norm: `l2_norm_v8_p{packs}_{x}_{out}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Packs(pub u32, pub Pair);
impl Key for Packs {
    fn suffix(&self) -> String {
        format!("p{}_{}", self.0, self.1.suffix())
    }
}

/// A conversion: `cast_{from}_to_{to}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct To(pub DType, pub DType);
impl Key for To {
    fn suffix(&self) -> String {
        format!("{}_to_{}", self.0.kernel_suffix(), self.1.kernel_suffix())
    }
}

/// Dtype and head dim of the portable attention kernel: `attention_{dtype}_d{head_dim}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadDim(pub DType, pub usize);
impl Key for HeadDim {
    fn suffix(&self) -> String {
        format!("{}_d{}", self.0.kernel_suffix(), self.1)
    }
}

const DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

fn dtypes() -> Vec<DType> {
    DTYPES.to_vec()
}
fn tensor_core_dtypes() -> Vec<DType> {
    vec![DType::BF16, DType::F16]
}
fn scheduler_dtypes() -> Vec<DType> {
    vec![DType::F32, DType::BF16]
}
fn pairs() -> Vec<Pair> {
    DTYPES.iter().flat_map(|&a| DTYPES.iter().map(move |&b| Pair(a, b))).collect()
}
fn l2_norm_packs() -> Vec<Packs> {
    (1..=crate::ops::norm::L2_MAX_PACKS).flat_map(|p| pairs().into_iter().map(move |k| Packs(p, k))).collect()
}
fn casts() -> Vec<To> {
    pairs().into_iter().map(|Pair(a, b)| To(a, b)).collect()
}
fn portable_attention_keys() -> Vec<HeadDim> {
    DTYPES.iter().flat_map(|&t| crate::ops::attention::portable::HEAD_DIMS.iter().map(move |&d| HeadDim(t, d))).collect()
}

/// One kernel family of one file.
pub(crate) struct Kernel<K, P> {
    module: &'static str,
    prefix: &'static str,
    keys: fn() -> Vec<K>,
    /// Raise the kernel's dynamic shared memory limit to the launch's before each launch.
    opt_in_smem: bool,
    params: PhantomData<fn() -> P>,
}

impl<K: Key, P: Params> Kernel<K, P> {
    /// The entry point of `key`.
    pub(crate) fn entry(&self, key: K) -> String {
        format!("{}_{}", self.prefix, key.suffix())
    }

    /// Queues entry `key` on `dev`'s compute stream with `args` (loading the kernel file on first use).
    /// Element counts in `args` and `cfg` are the caller's to check (see the module doc).
    pub(crate) fn launch(&self, dev: &Arc<Device>, key: K, cfg: LaunchConfig, args: P::Values<'_>) -> Result<()> {
        let name = self.entry(key);
        let f = registry::function(dev, self.module, &name)?;
        if self.opt_in_smem {
            f.set_max_dynamic_shared_memory(cfg.shared_mem)?;
        }
        let mut list = KernelArgs::new();
        P::push_all(&args, dev, &mut list).map_err(|e| Error::invalid(format!("kernel {name}: {e}")))?;
        // The extents implied by the scalars and `cfg` are checked by the crate-internal caller (the
        // checked ops of runtime::ops, the only users of this crate-private launcher).
        // SAFETY: the list follows the declaration, checked against the CUBIN by tests/kernels_sass.rs;
        // every address is a lease-checked tensor on `dev`, borrowed until queued, freed stream-ordered.
        unsafe { dev.launch(&f, cfg, dev.compute(), &list) }
    }

    fn declaration(&self) -> Declaration {
        Declaration {
            module: self.module,
            entries: (self.keys)().into_iter().map(|k| self.entry(k)).collect(),
            param_sizes: P::sizes(),
        }
    }
}

/// One declared kernel family, for checks against the compiled kernel files.
#[derive(Clone, Debug)]
pub struct Declaration {
    /// The kernel file (`kernels/{module}.cu`).
    pub module: &'static str,
    /// Every entry point of the family.
    pub entries: Vec<String>,
    /// The size in bytes of each parameter, in order.
    pub param_sizes: Vec<usize>,
}

macro_rules! kernels {
    ($(
        $(#[$doc:meta])*
        $name:ident: $module:literal $prefix:literal [$key:ty: $keys:expr] ($($param:ident: $ty:ty),* $(,)?) $(smem $smem:literal)?;
    )*) => {
        $(
            $(#[$doc])*
            pub(crate) static $name: Kernel<$key, ($($ty,)*)> = Kernel {
                module: $module,
                prefix: $prefix,
                keys: $keys,
                opt_in_smem: false $(|| $smem)?,
                params: PhantomData,
            };
        )*

        /// Every declared kernel family.
        pub fn declarations() -> Vec<Declaration> {
            vec![$($name.declaration()),*]
        }
    };
}

kernels! {
    /// kernels/activation.cu.
    GELU_TANH: "activation" "gelu_tanh" [Pair: pairs] (x: Ptr, out: Ptr, n: u64);
    GELU_ERF: "activation" "gelu_erf" [Pair: pairs] (x: Ptr, out: Ptr, n: u64);
    GELU_NEW: "activation" "gelu_new" [Pair: pairs] (x: Ptr, out: Ptr, n: u64);
    SILU: "activation" "silu" [Pair: pairs] (x: Ptr, out: Ptr, n: u64);
    /// The packed forms (`ops::checks::packs_of_8`): `packs` = n / 8.
    GELU_TANH_V8: "activation" "gelu_tanh_v8" [Pair: pairs] (x: Ptr, out: Ptr, packs: u64);
    GELU_ERF_V8: "activation" "gelu_erf_v8" [Pair: pairs] (x: Ptr, out: Ptr, packs: u64);
    GELU_NEW_V8: "activation" "gelu_new_v8" [Pair: pairs] (x: Ptr, out: Ptr, packs: u64);
    SILU_V8: "activation" "silu_v8" [Pair: pairs] (x: Ptr, out: Ptr, packs: u64);

    /// kernels/broadcast.cu: `out[r, j] = a[j] + x[r, j]`, keyed by (a, x) dtypes, `out` f32.
    ADD_ROWS: "broadcast" "add_rows" [Pair: pairs] (a: Ptr, x: Ptr, out: Ptr, rows: u64, width: u64);
    /// kernels/relative_bias.cu: keyed by the table's dtype; scores, bucket, mask, probs and rowsum f32.
    RELATIVE_BIAS_SOFTMAX: "relative_bias" "relative_bias_softmax" [DType: dtypes] (
        scores: Ptr, table: Ptr, bucket: Ptr, mask: Ptr, probs: Ptr, rowsum: Ptr, heads: u64, nq: u64, nk: u64, buckets: u64, rows: u64
    );
    /// kernels/cast.cu.
    CAST: "cast" "cast" [To: casts] (input: Ptr, out: Ptr, n: u64);
    /// kernels/elementwise.cu.
    ADD: "elementwise" "add" [Pair: pairs] (a: Ptr, b: Ptr, out: Ptr, n: u64);
    MUL: "elementwise" "mul" [Pair: pairs] (a: Ptr, b: Ptr, out: Ptr, n: u64);
    SCALE: "elementwise" "scale" [Pair: pairs] (x: Ptr, s: f32, out: Ptr, n: u64);
    ADD_V8: "elementwise" "add_v8" [Pair: pairs] (a: Ptr, b: Ptr, out: Ptr, packs: u64);
    MUL_V8: "elementwise" "mul_v8" [Pair: pairs] (a: Ptr, b: Ptr, out: Ptr, packs: u64);
    /// kernels/embedding.cu: ids are i64.
    EMBEDDING: "embedding" "embedding" [Pair: pairs] (table: Ptr, ids: Ptr, out: Ptr, n: u64, d: u64, v: u64);
    /// kernels/modulate.cu.
    LN_MODULATE: "modulate" "ln_modulate" [Pair: pairs] (
        x: Ptr, scale: Ptr, scale_stride: u64, shift: Ptr, shift_stride: u64, out: Ptr, rows: u64, n: u64, d: u64, eps: f32
    );
    GATED_RESIDUAL: "modulate" "gated_residual" [Pair: pairs] (
        x: Ptr, y: Ptr, gate: Ptr, gate_stride: u64, out: Ptr, numel: u64, nd: u64, d: u64
    );
    LN_MODULATE_V8: "modulate" "ln_modulate_v8" [Pair: pairs] (
        x: Ptr, scale: Ptr, scale_stride: u64, shift: Ptr, shift_stride: u64, out: Ptr, rows: u64, n: u64, d: u64, eps: f32
    );
    GATED_RESIDUAL_V8: "modulate" "gated_residual_v8" [Pair: pairs] (
        x: Ptr, y: Ptr, gate: Ptr, gate_stride: u64, out: Ptr, packs: u64, nd: u64, d: u64
    );
    /// kernels/norm.cu: `w`/`b` f32 when the flag is set, else the activations' dtype.
    LAYER_NORM: "norm" "layer_norm" [Pair: pairs] (
        x: Ptr, w: OptPtr, b: OptPtr, wb_f32: i32, out: Ptr, rows: u64, d: u64, eps: f32
    );
    RMS_NORM: "norm" "rms_norm" [Pair: pairs] (x: Ptr, w: OptPtr, w_f32: i32, out: Ptr, rows: u64, d: u64, eps: f32);
    RMS_NORM_T5: "norm" "rms_norm_t5" [Pair: pairs] (x: Ptr, w: OptPtr, w_f32: i32, out: Ptr, rows: u64, d: u64, eps: f32);
    LAYER_NORM_V8: "norm" "layer_norm_v8" [Pair: pairs] (
        x: Ptr, w: OptPtr, b: OptPtr, wb_f32: i32, out: Ptr, rows: u64, d: u64, eps: f32
    );
    RMS_NORM_V8: "norm" "rms_norm_v8" [Pair: pairs] (x: Ptr, w: OptPtr, w_f32: i32, out: Ptr, rows: u64, d: u64, eps: f32);
    /// kernels/patch.cu.
    PATCHIFY: "patch" "patchify" [DType: dtypes] (volume: Ptr, tokens: Ptr, dims: PatchDims);
    UNPATCHIFY: "patch" "unpatchify" [DType: dtypes] (tokens: Ptr, volume: Ptr, dims: PatchDims);
    /// kernels/random.cu.
    FILL_UNIFORM: "random" "fill_uniform" [DType: dtypes] (out: Ptr, n: u64, seed: u64, lo: f32, hi: f32);
    /// kernels/rope.cu.
    ROPE: "rope" "rope" [Pair: pairs] (
        x: Ptr, cos: Ptr, sin: Ptr, out: Ptr, pairs: u64, n: u64, hd: u64, dh: u64
    );
    RMS_NORM_ROPE: "rope" "rms_norm_rope" [Pair: pairs] (
        x: Ptr, w: OptPtr, w_f32: i32, cos: Ptr, sin: Ptr, out: Ptr, rows: u64, n: u64, d: u64, dh: u64, eps: f32
    );
    RMS_NORM_ROPE_V8: "rope" "rms_norm_rope_v8" [Pair: pairs] (
        x: Ptr, w: OptPtr, w_f32: i32, cos: Ptr, sin: Ptr, out: Ptr, rows: u64, n: u64, d: u64, dh: u64, eps: f32
    );
    /// kernels/softmax.cu.
    SOFTMAX: "softmax" "softmax" [Pair: pairs] (x: Ptr, out: Ptr, rows: u64, l: u64);
    SOFTMAX_REG: "softmax" "softmax_reg" [Pair: pairs] (x: Ptr, out: Ptr, rows: u64, l: u64);
    SOFTMAX_DIVIDE: "softmax" "softmax_divide" [DType: dtypes] (o: Ptr, rowsum: Ptr, out: Ptr, nq: u64, heads: u64, d: u64, n: u64);
    /// kernels/scheduler.cu, keyed by the model output's dtype: `UniPcUpdate` is 60 bytes, `EulerUpdate` 8.
    UNIPC_STEP: "scheduler" "unipc_step" [DType: scheduler_dtypes] (
        plan: Bytes<60>, v: Ptr, x: Ptr, m_new: Ptr, m_prev: OptPtr, last: Ptr, n: u64
    );
    EULER_STEP: "scheduler" "euler_step" [DType: scheduler_dtypes] (plan: Bytes<8>, v: Ptr, x: Ptr, n: u64);
    // ---- The Wan VAE's kernels (issue 16): conv3d, the channel L2 norm, resampling and layouts. ----
    /// kernels/conv3d.cu (portable, channels-last; see ops::conv).
    CONV3D: "conv3d" "conv3d" [DType: dtypes] (
        x: Ptr, prev: OptPtr, w: Ptr, bias: OptPtr, residual: OptPtr, out: Ptr, dims: Conv3dDims
    );
    /// kernels/norm.cu: WanRMS_norm over channels-last rows; gamma/beta f32 when the flag is set.
    L2_NORM: "norm" "l2_norm" [Pair: pairs] (
        x: Ptr, gamma: Ptr, beta: OptPtr, wb_f32: i32, silu: i32, out: Ptr, rows: u64, d: u64
    );
    /// Its packed form: `group` lanes per row, `Packs.0` packs of 8 channels per lane (ops::norm).
    L2_NORM_V8: "norm" "l2_norm_v8" [Packs: l2_norm_packs] (
        x: Ptr, gamma: Ptr, beta: OptPtr, wb_f32: i32, silu: i32, out: Ptr, rows: u64, d: u64, group: u32
    );
    /// kernels/resample.cu.
    UPSAMPLE2X: "resample" "upsample2x" [DType: dtypes] (x: Ptr, out: Ptr, n: u64, h: u64, w: u64, c: u64);
    TIME_INTERLEAVE: "resample" "time_interleave" [DType: dtypes] (x: Ptr, out: Ptr, b: u64, t: u64, hw: u64, c: u64);
    UPSAMPLE2X_V8: "resample" "upsample2x_v8" [DType: dtypes] (x: Ptr, out: Ptr, n: u64, h: u64, w: u64, c: u64);
    TIME_INTERLEAVE_V8: "resample" "time_interleave_v8" [DType: dtypes] (x: Ptr, out: Ptr, b: u64, t: u64, hw: u64, c: u64);
    COPY_WINDOW: "resample" "copy_window" [DType: dtypes] (
        x: Ptr, out: Ptr, frames: u64, h: u64, w: u64, c: u64, x_row: u64, x_frame: u64, o_row: u64, o_frame: u64
    );
    TO_CHANNELS_LAST: "resample" "to_channels_last" [Pair: pairs] (x: Ptr, out: Ptr, b: u64, c: u64, t: u64, s: u64, t_in: u64, t0: u64);
    FROM_CHANNELS_LAST: "resample" "from_channels_last" [Pair: pairs] (
        x: Ptr, out: Ptr, b: u64, c: u64, t: u64, s: u64, clamp: i32, lo: f32, hi: f32
    );
    // ---- end of the VAE's kernels. ----
    /// kernels/attention.cu (portable).
    ATTENTION: "attention" "attention" [HeadDim: portable_attention_keys] (p: PortableAttn<'static>) smem true;
    /// kernels/attention_mma.cu (mma.sync, sm_80+).
    ATTN_MMA: "attention_mma" "attn_fwd_mma" [MmaKey: mma_keys] (p: MmaAttn<'static>) smem true;
    /// kernels/attention_wgmma.cu (wgmma + TMA, sm_90a).
    ATTN_WGMMA: "attention_wgmma" "attn_fwd_wgmma" [WgmmaKey: wgmma_keys] (p: WgmmaAttn<'static>) smem true;
    /// The wgmma kernel's probes (one CTA, one product on one tile), for the GPU tests.
    ATTN_WGMMA_PROBE_QK: "attention_wgmma" "attn_wgmma_probe_qk" [DType: tensor_core_dtypes] (
        a_map: TensorMap, b_map: TensorMap, half: i32, out: Ptr
    ) smem true;
    ATTN_WGMMA_PROBE_PV: "attention_wgmma" "attn_wgmma_probe_pv" [DType: tensor_core_dtypes] (
        p: Ptr, v_map: TensorMap, out: Ptr
    ) smem true;

    // --- conv3d, tensor-core path (ops::conv::mma) ---
    /// kernels/conv3d_mma.cu (implicit GEMM on mma.sync, sm_80+).
    CONV3D_MMA: "conv3d_mma" "conv3d_mma" [ConvMmaKey: conv_mma_keys] (p: ConvMma<'static>) smem true;
    /// kernels/conv3d_wgmma.cu (implicit GEMM on wgmma, sm_90a; same parameter block).
    CONV3D_WGMMA: "conv3d_wgmma" "conv3d_wgmma" [ConvWgKey: conv_wgmma_keys] (p: ConvMma<'static>) smem true;
    /// kernels/conv3d_wgmma_rows.cu (wgmma, input rows shared by the three kw taps, sm_90a; same parameter block).
    CONV3D_WGMMA_ROWS: "conv3d_wgmma_rows" "conv3d_wgmma_rows" [ConvRowKey: conv_wgmma_rows_keys] (p: ConvMma<'static>) smem true;
    /// kernels/conv3d_wgmma_tf32_rows.cu (f32 on wgmma tf32, 3xTF32, input rows shared by the three kw taps, sm_90a; same parameter block).
    CONV3D_WGMMA_TF32_ROWS: "conv3d_wgmma_tf32_rows" "conv3d_wgmma_tf32_rows" [ConvTf32RowKey: conv_wgmma_tf32_rows_keys] (p: ConvMma<'static>) smem true;
    /// kernels/conv3d_tf32.cu (f32 implicit GEMM on mma.sync tf32, 3xTF32, sm_80+; same parameter block).
    CONV3D_TF32: "conv3d_tf32" "conv3d_tf32" [ConvTf32Key: conv_tf32_keys] (p: ConvMma<'static>) smem true;
    /// kernels/conv3d_narrow.cu (direct conv for Cout <= 8, ops::conv::narrow; the portable kernel's parameters).
    CONV3D_NARROW: "conv3d_narrow" "conv3d_narrow" [NarrowKey: conv_narrow_keys] (
        x: Ptr, prev: OptPtr, w: Ptr, bias: OptPtr, residual: OptPtr, out: Ptr, dims: Conv3dDims
    );
    /// kernels/conv3d_small_cin.cu (direct conv for Cin <= 4, ops::conv::small_cin; the portable kernel's
    /// parameters, dynamic shared memory for the staged time taps).
    CONV3D_SMALL_CIN: "conv3d_small_cin" "conv3d_small_cin" [SmallCinKey: conv_small_cin_keys] (
        x: Ptr, prev: OptPtr, w: Ptr, bias: OptPtr, residual: OptPtr, out: Ptr, dims: Conv3dDims
    ) smem true;
}
