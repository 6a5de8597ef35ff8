//! cuBLASLt matrix multiplication with row-major semantics, f32 accumulation and a fused bias.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublaslt::sys as lt;
use parking_lot::Mutex;

use super::device::Context;
use super::stream::Stream;
use crate::{DType, Error, Result};

/// What cuBLASLt applies to the product before storing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmEpilogue {
    None,
    /// `+ bias[n]`, added in f32 before the output rounding.
    Bias,
}

/// `D[b] = alpha · A[b] · op(B[b]) (+ D[b] if accumulate)`, all row-major, strides in elements.
/// `A` is `[m, k]`; `B` is `[n, k]` when `b_transposed` (a Linear weight) else `[k, n]`; `D` is `[m, n]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmDesc {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub batch: u64,
    pub dtype: DType,
    pub b_transposed: bool,
    pub lda: u64,
    pub ldb: u64,
    pub ldd: u64,
    pub stride_a: u64,
    pub stride_b: u64,
    pub stride_d: u64,
    /// Elements between the bias vectors of consecutive batches (0: one bias for every batch).
    pub stride_bias: u64,
    pub epilogue: GemmEpilogue,
    pub alpha: f32,
    pub accumulate: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct AlgoKey {
    dims: [u64; 11],
    dtype: DType,
    b_transposed: bool,
    epilogue: GemmEpilogue,
    accumulate: bool,
    align: u32,
}

struct CachedAlgo(lt::cublasLtMatmulAlgo_t);
// SAFETY: an algo is a plain 64-byte value struct.
unsafe impl Send for CachedAlgo {}

/// A cuBLASLt handle with its workspace and a per-shape algorithm cache.
pub struct BlasLt {
    handle: lt::cublasLtHandle_t,
    ctx: Arc<Context>,
    workspace: u64,
    workspace_len: usize,
    algos: Mutex<HashMap<AlgoKey, CachedAlgo>>,
}

// SAFETY: the handle is used with the context bound; cuBLASLt handles are thread-safe for matmul.
unsafe impl Send for BlasLt {}
// SAFETY: as above; the algo cache is behind a mutex.
unsafe impl Sync for BlasLt {}

const WORKSPACE: usize = 32 << 20;

/// `WANRT_GEMM_SIMT=1` restricts cuBLASLt to kernels without tensor ops, for compute-sanitizer
/// racecheck runs: cuBLAS's Hopper tensor-core kernels (`nvjet_sm90_*`) report hazards racecheck
/// cannot attribute, and excluding them from instrumentation crashes the sanitizer (CUDA 13.0). Slow;
/// results differ from the default kernels' by accumulation order, so compare runs under one setting.
pub const SIMT_ENV: &str = "WANRT_GEMM_SIMT";

fn simt_only() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var(SIMT_ENV).is_ok_and(|v| v == "1"))
}

fn lt_check(call: &'static str, s: lt::cublasStatus_t) -> Result<()> {
    if s == lt::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        Ok(())
    } else {
        Err(Error::Cublas { call, msg: format!("{s:?}") })
    }
}

fn data_type(d: DType) -> lt::cudaDataType {
    match d {
        DType::F32 => lt::cudaDataType::CUDA_R_32F,
        DType::BF16 => lt::cudaDataType::CUDA_R_16BF,
        DType::F16 => lt::cudaDataType::CUDA_R_16F,
    }
}

/// Owns a cuBLASLt descriptor object and destroys it on every exit path.
struct Guard<T: Copy>(T, unsafe fn(T) -> lt::cublasStatus_t);
impl<T: Copy> Drop for Guard<T> {
    fn drop(&mut self) {
        // SAFETY: the object was created by the matching create call and is destroyed once.
        unsafe {
            (self.1)(self.0);
        }
    }
}

fn set_attr<T>(
    desc: lt::cublasLtMatmulDesc_t,
    attr: lt::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> Result<()> {
    // SAFETY: `v` points to a value of the size the attribute expects (callers pass the documented type).
    lt_check("cublasLtMatmulDescSetAttribute", unsafe {
        lt::cublasLtMatmulDescSetAttribute(desc, attr, v as *const T as *const c_void, std::mem::size_of::<T>())
    })
}

fn layout(dtype: DType, rows: u64, cols: u64, ld: u64, batch: u64, stride: u64) -> Result<Guard<lt::cublasLtMatrixLayout_t>> {
    let mut l = std::ptr::null_mut();
    // SAFETY: out-pointer valid.
    lt_check("cublasLtMatrixLayoutCreate", unsafe { lt::cublasLtMatrixLayoutCreate(&mut l, data_type(dtype), rows, cols, ld as i64) })?;
    let g = Guard(l, lt::cublasLtMatrixLayoutDestroy as unsafe fn(_) -> _);
    if batch > 1 {
        let count = batch as i32;
        let stride = stride as i64;
        // SAFETY: attribute types are int32 (count) and int64 (stride) as documented.
        unsafe {
            lt_check("cublasLtMatrixLayoutSetAttribute", lt::cublasLtMatrixLayoutSetAttribute(
                l, lt::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                &count as *const i32 as *const c_void, 4))?;
            lt_check("cublasLtMatrixLayoutSetAttribute", lt::cublasLtMatrixLayoutSetAttribute(
                l, lt::cublasLtMatrixLayoutAttribute_t::CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                &stride as *const i64 as *const c_void, 8))?;
        }
    }
    Ok(g)
}

impl BlasLt {
    pub(crate) fn new(ctx: Arc<Context>) -> Result<BlasLt> {
        // SAFETY: probes the shared library only.
        if !unsafe { lt::is_culib_present() } {
            return Err(Error::Cublas { call: "cublasLtCreate", msg: "libcublasLt (CUDA 13) is not installed".into() });
        }
        ctx.bind()?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: out-pointer valid; context bound.
        lt_check("cublasLtCreate", unsafe { lt::cublasLtCreate(&mut handle) })?;
        let mut ws = 0u64;
        // SAFETY: plain allocation owned by this handle, freed in Drop. Not from the pool: the workspace
        // lives as long as the device and is reported by `workspace_bytes`.
        super::check("cuMemAlloc", unsafe { cudarc::driver::sys::cuMemAlloc_v2(&mut ws, WORKSPACE) })?;
        Ok(BlasLt { handle, ctx, workspace: ws, workspace_len: WORKSPACE, algos: Mutex::new(HashMap::new()) })
    }

    pub fn workspace_bytes(&self) -> usize {
        self.workspace_len
    }

    /// Queues `desc` on `stream`. Pointers are device addresses whose extents the caller (the typed
    /// launcher in `runtime::ops::gemm`) has checked against `desc`.
    pub fn matmul(&self, desc: &GemmDesc, a: u64, b: u64, bias: Option<u64>, d: u64, stream: &Stream) -> Result<()> {
        let needs_bias = desc.epilogue == GemmEpilogue::Bias;
        if needs_bias != bias.is_some() {
            return Err(Error::invalid(format!("gemm: epilogue {:?} and bias pointer disagree", desc.epilogue)));
        }
        self.ctx.bind()?;
        let mut mdesc = std::ptr::null_mut();
        // SAFETY: out-pointer valid.
        lt_check("cublasLtMatmulDescCreate", unsafe {
            lt::cublasLtMatmulDescCreate(&mut mdesc, lt::cublasComputeType_t::CUBLAS_COMPUTE_32F, lt::cudaDataType::CUDA_R_32F)
        })?;
        let _mdesc = Guard(mdesc, lt::cublasLtMatmulDescDestroy as unsafe fn(_) -> _);
        use lt::cublasLtMatmulDescAttributes_t as A;
        let op_t: i32 = 1; // CUBLAS_OP_T (cublasOperation_t is an int32 attribute)
        let op_n: i32 = 0; // CUBLAS_OP_N
        // Row-major D = A·op(B) is column-major Dᵀ = op(B)ᵀ·Aᵀ: cuBLAS's "A" is our B.
        set_attr(mdesc, A::CUBLASLT_MATMUL_DESC_TRANSA, if desc.b_transposed { &op_t } else { &op_n })?;
        set_attr(mdesc, A::CUBLASLT_MATMUL_DESC_TRANSB, &op_n)?;
        let epi = match desc.epilogue {
            GemmEpilogue::None => lt::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT,
            GemmEpilogue::Bias => lt::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS,
        };
        set_attr(mdesc, A::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi)?;
        if let Some(bp) = bias {
            set_attr(mdesc, A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp)?;
            set_attr(mdesc, A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &data_type(desc.dtype))?;
            if desc.batch > 1 {
                let stride = desc.stride_bias as i64;
                set_attr(mdesc, A::CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &stride)?;
            }
        }
        let la = if desc.b_transposed {
            layout(desc.dtype, desc.k, desc.n, desc.ldb, desc.batch, desc.stride_b)?
        } else {
            layout(desc.dtype, desc.n, desc.k, desc.ldb, desc.batch, desc.stride_b)?
        };
        let lb = layout(desc.dtype, desc.k, desc.m, desc.lda, desc.batch, desc.stride_a)?;
        let ld = layout(desc.dtype, desc.n, desc.m, desc.ldd, desc.batch, desc.stride_d)?;

        let align = [a, b, d, bias.unwrap_or(256)].iter().map(|p| 1u64 << p.trailing_zeros().min(8)).min().unwrap_or(256) as u32;
        let key = AlgoKey {
            dims: [desc.m, desc.n, desc.k, desc.batch, desc.lda, desc.ldb, desc.ldd, desc.stride_a, desc.stride_b, desc.stride_d, desc.stride_bias],
            dtype: desc.dtype,
            b_transposed: desc.b_transposed,
            epilogue: desc.epilogue,
            accumulate: desc.accumulate,
            align,
        };
        // The lock is released before a heuristic query, which may take long.
        let algo = self.algos.lock().get(&key).map(|a| a.0);
        let algo = match algo {
            Some(a) => a,
            None => {
                let a = self.heuristic(mdesc, la.0, lb.0, ld.0, align, desc)?;
                self.algos.lock().insert(key, CachedAlgo(a));
                a
            }
        };
        let alpha = desc.alpha;
        let beta: f32 = if desc.accumulate { 1.0 } else { 0.0 };
        // SAFETY: descriptors are live; pointers are device addresses sized for the layouts (checked by
        // the typed launcher); the workspace is owned by this handle.
        lt_check("cublasLtMatmul", unsafe {
            lt::cublasLtMatmul(
                self.handle,
                mdesc,
                &alpha as *const f32 as *const c_void,
                b as *const c_void,
                la.0,
                a as *const c_void,
                lb.0,
                &beta as *const f32 as *const c_void,
                d as *const c_void,
                ld.0,
                d as *mut c_void,
                ld.0,
                &algo,
                self.workspace as *mut c_void,
                self.workspace_len,
                stream.raw as lt::cudaStream_t,
            )
        })
        .map_err(|e| Error::Cublas { call: "cublasLtMatmul", msg: format!("{e} for {desc:?}") })
    }

    fn heuristic(
        &self,
        mdesc: lt::cublasLtMatmulDesc_t,
        la: lt::cublasLtMatrixLayout_t,
        lb: lt::cublasLtMatrixLayout_t,
        ld: lt::cublasLtMatrixLayout_t,
        align: u32,
        desc: &GemmDesc,
    ) -> Result<lt::cublasLtMatmulAlgo_t> {
        let mut pref = std::ptr::null_mut();
        // SAFETY: out-pointer valid.
        lt_check("cublasLtMatmulPreferenceCreate", unsafe { lt::cublasLtMatmulPreferenceCreate(&mut pref) })?;
        let _pref = Guard(pref, lt::cublasLtMatmulPreferenceDestroy as unsafe fn(_) -> _);
        use lt::cublasLtMatmulPreferenceAttributes_t as P;
        let ws = self.workspace_len as u64;
        let set = |attr: P, v: *const c_void, size: usize| {
            // SAFETY: value pointer and size match the attribute's documented type.
            lt_check("cublasLtMatmulPreferenceSetAttribute", unsafe { lt::cublasLtMatmulPreferenceSetAttribute(pref, attr, v, size) })
        };
        set(P::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws as *const u64 as *const c_void, 8)?;
        if simt_only() {
            // Every implementation except the tensor-op ones (cublasLtNumericalImplFlags_t: HMMA 0x02,
            // IMMA 0x04, DMMA 0x08, ..., TENSOR_OP_MASK 0xfe).
            let mask: u64 = !0xfe;
            set(P::CUBLASLT_MATMUL_PREF_IMPL_MASK, &mask as *const u64 as *const c_void, 8)?;
        }
        for attr in [
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
            P::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
        ] {
            set(attr, &align as *const u32 as *const c_void, 4)?;
        }
        // SAFETY: zeroed result structs are valid out-parameters.
        let mut results: [lt::cublasLtMatmulHeuristicResult_t; 1] = unsafe { std::mem::zeroed() };
        let mut count = 0;
        // SAFETY: all descriptors live; `results` has room for the one requested result.
        lt_check("cublasLtMatmulAlgoGetHeuristic", unsafe {
            lt::cublasLtMatmulAlgoGetHeuristic(self.handle, mdesc, la, lb, ld, ld, pref, 1, results.as_mut_ptr(), &mut count)
        })
        .map_err(|e| Error::Cublas { call: "cublasLtMatmulAlgoGetHeuristic", msg: format!("{e} for {desc:?}") })?;
        if count == 0 {
            return Err(Error::Cublas { call: "cublasLtMatmulAlgoGetHeuristic", msg: format!("no algorithm for {desc:?}") });
        }
        Ok(results[0].algo)
    }
}

impl Drop for BlasLt {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: owned handle and workspace, destroyed once.
            unsafe {
                lt::cublasLtDestroy(self.handle);
                cudarc::driver::sys::cuMemFree_v2(self.workspace);
            }
        }
    }
}
