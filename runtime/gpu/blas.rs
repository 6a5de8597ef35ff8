//! cuBLASLt matrix multiplication with row-major semantics, f32 accumulation and a fused bias.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublaslt::sys as lt;
use parking_lot::Mutex;

use super::device::Context;
use super::stream::Stream;
use crate::{DType, Error, Result, Tensor};

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
    /// The dtype of `A`, `B` and the bias.
    pub dtype: DType,
    /// The dtype of `D`: `dtype`, or f32 for a product kept unrounded (bf16/f16 inputs, no bias).
    pub out_dtype: DType,
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
    out_dtype: DType,
    b_transposed: bool,
    epilogue: GemmEpilogue,
    accumulate: bool,
    align: u32,
}

struct CachedAlgo(lt::cublasLtMatmulAlgo_t);
// SAFETY: an algo is a plain 64-byte value struct.
unsafe impl Send for CachedAlgo {}

/// A cuBLASLt handle with one workspace per stream and a per-shape algorithm cache.
///
/// A GEMM uses its workspace until it has run on the device, so two streams must never share one: the
/// first GEMM queued on a stream allocates that stream's workspace (the compute stream's is allocated
/// with the handle). GEMMs of one stream run in order and share its workspace safely.
pub struct BlasLt {
    handle: lt::cublasLtHandle_t,
    ctx: Arc<Context>,
    /// (stream handle, workspace address): a device has two streams, so a short list.
    workspaces: Mutex<Vec<(usize, u64)>>,
    workspace_len: usize,
    algos: Mutex<HashMap<AlgoKey, CachedAlgo>>,
}

// SAFETY: the handle is used with the context bound; cuBLASLt handles are thread-safe for matmul.
unsafe impl Send for BlasLt {}
// SAFETY: as above; the workspace list and the algo cache are behind mutexes.
unsafe impl Sync for BlasLt {}

const WORKSPACE: usize = 32 << 20;

/// `WANRT_GEMM_SIMT=1` ([`crate::settings::Settings::gemm_simt`]): cuBLASLt without its tensor-op kernels.
fn simt_only() -> bool {
    crate::settings::settings().gemm_simt
}

/// Elements a `rows` × `cols` row-major matrix with leading dimension `ld`, `batch` times `stride`
/// apart, spans from its first element (`None` on overflow).
fn span(rows: u64, cols: u64, ld: u64, batch: u64, stride: u64) -> Option<u64> {
    if rows == 0 || cols == 0 || batch == 0 {
        return Some(0);
    }
    (batch - 1).checked_mul(stride)?.checked_add((rows - 1).checked_mul(ld)?)?.checked_add(cols)
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
    /// A handle with the workspace of `first` (the compute stream) allocated.
    pub(crate) fn new(ctx: Arc<Context>, first: &Stream) -> Result<BlasLt> {
        // SAFETY: probes the shared library only.
        if !unsafe { lt::is_culib_present() } {
            return Err(Error::Cublas { call: "cublasLtCreate", msg: "libcublasLt (CUDA 13) is not installed".into() });
        }
        ctx.bind()?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: out-pointer valid; context bound.
        lt_check("cublasLtCreate", unsafe { lt::cublasLtCreate(&mut handle) })?;
        let blas = BlasLt { handle, ctx, workspaces: Mutex::new(Vec::new()), workspace_len: WORKSPACE, algos: Mutex::new(HashMap::new()) };
        blas.workspace(first)?;
        Ok(blas)
    }

    /// Bytes of workspace allocated (one workspace per stream that ran a GEMM).
    pub fn workspace_bytes(&self) -> usize {
        self.workspace_len * self.workspaces.lock().len()
    }

    /// The workspace of `stream`, allocated on its first GEMM.
    fn workspace(&self, stream: &Stream) -> Result<u64> {
        let key = stream.raw as usize;
        let mut list = self.workspaces.lock();
        if let Some(&(_, ws)) = list.iter().find(|(s, _)| *s == key) {
            return Ok(ws);
        }
        self.ctx.bind()?;
        let mut ws = 0u64;
        // SAFETY: plain allocation owned by this handle, freed in Drop. Not from the pool: a workspace
        // lives as long as the device and is reported by `workspace_bytes`.
        super::check("cuMemAlloc", unsafe { cudarc::driver::sys::cuMemAlloc_v2(&mut ws, self.workspace_len) })
            .map_err(|e| Error::Cuda { call: "cuMemAlloc", msg: format!("{e} (cuBLASLt workspace for the {} stream)", stream.name()) })?;
        list.push((key, ws));
        Ok(ws)
    }

    /// Queues `desc` on `stream` over tensors: checks that every tensor has `desc`'s dtype, lives on
    /// this device (lease-checked), and holds every element `desc` reads or writes from its first
    /// element on, then runs [`BlasLt::matmul_raw`].
    pub fn matmul(&self, desc: &GemmDesc, a: &Tensor, b: &Tensor, bias: Option<&Tensor>, d: &Tensor, stream: &Stream) -> Result<()> {
        let (bt_rows, bt_cols) = if desc.b_transposed { (desc.n, desc.k) } else { (desc.k, desc.n) };
        let bias_span = if desc.n == 0 || desc.batch == 0 {
            Some(0)
        } else {
            (desc.batch - 1).checked_mul(desc.stride_bias).and_then(|x| x.checked_add(desc.n))
        };
        let mut operands = vec![
            ("a", a, span(desc.m, desc.k, desc.lda, desc.batch, desc.stride_a)),
            ("b", b, span(bt_rows, bt_cols, desc.ldb, desc.batch, desc.stride_b)),
            ("d", d, span(desc.m, desc.n, desc.ldd, desc.batch, desc.stride_d)),
        ];
        operands.extend(bias.map(|t| ("bias", t, bias_span)));
        let mut ptrs = [0u64; 4];
        for (i, (name, t, need)) in operands.iter().enumerate() {
            if !Arc::ptr_eq(&t.device().ctx, &self.ctx) {
                return Err(Error::invalid(format!("gemm: {name} is on another device than the cuBLASLt handle")));
            }
            let want = if *name == "d" { desc.out_dtype } else { desc.dtype };
            if t.dtype() != want {
                return Err(Error::DType { op: "gemm", name: name.to_string(), expected: want.to_string(), got: t.dtype() });
            }
            let room = t.buffer().len().saturating_sub(t.byte_offset()) / want.size() as u64;
            if need.is_none_or(|n| n > room) {
                return Err(Error::invalid(format!(
                    "gemm: {name} ({t:?}) holds {room} elements from its start, {desc:?} spans {need:?}"
                )));
            }
            ptrs[i] = t.device_ptr()?;
        }
        if !Arc::ptr_eq(&stream.ctx, &self.ctx) {
            return Err(Error::invalid("gemm: the stream belongs to another device"));
        }
        // SAFETY: every address is a lease-checked tensor of this device whose buffer holds the span
        // `desc` addresses (checked above), in `desc`'s dtype; the caller's borrows keep the buffers
        // alive until the GEMM is queued, and their frees are stream-ordered after it.
        unsafe { self.matmul_raw(desc, ptrs[0], ptrs[1], bias.map(|_| ptrs[3]), ptrs[2], stream) }
    }

    /// Queues `desc` on `stream` over raw device addresses.
    ///
    /// # Safety
    ///
    /// `a`, `b`, `d` (and `bias`) are device addresses of this handle's device, valid until the GEMM
    /// has run, each holding every element `desc` addresses from it (`(batch − 1)·stride +
    /// (rows − 1)·ld + cols` elements of `desc.dtype`, `d`'s of `desc.out_dtype`); `d` is not read or written by other work while
    /// the GEMM runs; `stream` belongs to this device.
    pub unsafe fn matmul_raw(&self, desc: &GemmDesc, a: u64, b: u64, bias: Option<u64>, d: u64, stream: &Stream) -> Result<()> {
        if desc.out_dtype != desc.dtype && (desc.out_dtype != DType::F32 || bias.is_some()) {
            return Err(Error::invalid(format!("gemm: a {} product can be written as {} only without a bias and only to f32", desc.dtype, desc.out_dtype)));
        }
        let needs_bias = desc.epilogue == GemmEpilogue::Bias;
        if needs_bias != bias.is_some() {
            return Err(Error::invalid(format!("gemm: epilogue {:?} and bias pointer disagree", desc.epilogue)));
        }
        let workspace = self.workspace(stream)?;
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
        let ld = layout(desc.out_dtype, desc.n, desc.m, desc.ldd, desc.batch, desc.stride_d)?;

        let align = [a, b, d, bias.unwrap_or(256)].iter().map(|p| 1u64 << p.trailing_zeros().min(8)).min().unwrap_or(256) as u32;
        let key = AlgoKey {
            dims: [desc.m, desc.n, desc.k, desc.batch, desc.lda, desc.ldb, desc.ldd, desc.stride_a, desc.stride_b, desc.stride_d, desc.stride_bias],
            dtype: desc.dtype,
            out_dtype: desc.out_dtype,
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
        // SAFETY: descriptors are live; pointers are device addresses sized for the layouts (the caller's
        // contract, see # Safety); the workspace is this stream's alone.
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
                workspace as *mut c_void,
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
            // SAFETY: owned handle and workspaces, destroyed once.
            unsafe {
                lt::cublasLtDestroy(self.handle);
                for &(_, ws) in self.workspaces.lock().iter() {
                    cudarc::driver::sys::cuMemFree_v2(ws);
                }
            }
        }
    }
}
