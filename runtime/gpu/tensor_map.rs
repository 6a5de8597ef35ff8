//! Tensor maps for the bulk tensor copy engine (TMA, compute capability 9.0 and newer): the opaque
//! descriptor a kernel passes to `cp.async.bulk.tensor`, encoded by `cuTensorMapEncodeTiled` after the
//! driver's documented requirements are checked here (so a bad view is an error naming the problem, not
//! an opaque CUDA_ERROR_INVALID_VALUE). A map is made from a tensor, never from a bare address: the
//! address is lease-checked and every element the map spans lies inside the tensor's buffer.

use cudarc::driver::sys;

use super::check;
use super::device::Device;
use crate::{DType, Error, Result, Tensor};

/// An encoded `CUtensorMap`: 128 opaque bytes, passed to kernels by value inside their parameter block
/// (`__grid_constant__`). CUDA 13 declares it 128-byte aligned.
#[repr(C, align(128))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TensorMap {
    opaque: [u64; 16],
}

/// How the copy engine lays the box out in shared memory: 16-byte chunks permuted within spans of 32,
/// 64 or 128 bytes (chunk c of row r lands at c XOR (r mod span/16)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swizzle {
    None,
    B32,
    B64,
    B128,
}

impl Swizzle {
    fn bytes(self) -> u64 {
        match self {
            Swizzle::None => u64::MAX,
            Swizzle::B32 => 32,
            Swizzle::B64 => 64,
            Swizzle::B128 => 128,
        }
    }
    fn raw(self) -> sys::CUtensorMapSwizzle {
        match self {
            Swizzle::None => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE,
            Swizzle::B32 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_32B,
            Swizzle::B64 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_64B,
            Swizzle::B128 => sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
        }
    }
}

/// A tiled view of a tensor's memory, starting at its first element, in its dtype: `dims[0]` is the
/// innermost, unit-stride dimension; `byte_strides[i]` is the byte stride of dimension `i + 1`; each
/// copy moves one box of `box_dims` elements. Elements outside `dims` read as zero.
#[derive(Clone, Copy, Debug)]
pub struct TiledMap<'a> {
    pub tensor: &'a Tensor,
    pub dims: &'a [u64],
    pub byte_strides: &'a [u64],
    pub box_dims: &'a [u32],
    pub swizzle: Swizzle,
}

impl TiledMap<'_> {
    /// The driver's requirements on a tiled map (cuTensorMapEncodeTiled's documentation).
    pub fn validate(&self) -> Result<()> {
        let fail = |what: String| Err(Error::invalid(format!("tensor map {self:?}: {what}")));
        let rank = self.dims.len();
        if !(1..=5).contains(&rank) || self.box_dims.len() != rank || self.byte_strides.len() + 1 != rank {
            return fail(format!("rank {rank} needs 1..=5 dims, as many box dims and rank - 1 strides"));
        }
        if self.tensor.ptr() % 16 != 0 {
            return fail("the global address must be 16-byte aligned".into());
        }
        if let Some(d) = self.dims.iter().find(|&&d| d == 0 || d > 1 << 32) {
            return fail(format!("dimension {d} outside 1..=2^32"));
        }
        if let Some(s) = self.byte_strides.iter().find(|&&s| s % 16 != 0 || s >= 1 << 40) {
            return fail(format!("byte stride {s} is not a multiple of 16 below 2^40"));
        }
        if let Some(b) = self.box_dims.iter().find(|&&b| b == 0 || b > 256) {
            return fail(format!("box dimension {b} outside 1..=256"));
        }
        let esize = self.tensor.dtype().size() as u64;
        let inner = self.box_dims[0] as u64 * esize;
        if inner % 16 != 0 || inner > self.swizzle.bytes() {
            return fail(format!(
                "the box's inner extent ({inner} bytes) must be a multiple of 16 within the swizzle span"
            ));
        }
        // The last byte the map can address, against the bytes the tensor's buffer holds past its start.
        let last = self.byte_strides.iter().zip(&self.dims[1..]).try_fold((self.dims[0] - 1) * esize + esize, |acc, (&s, &d)| {
            (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
        });
        let room = self.tensor.buffer().len().saturating_sub(self.tensor.byte_offset());
        if last.is_none_or(|l| l > room) {
            return fail(format!("the map spans {last:?} bytes, the tensor's buffer holds {room} from its start"));
        }
        Ok(())
    }
}

fn data_type(dtype: DType) -> sys::CUtensorMapDataType {
    match dtype {
        DType::F32 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
        DType::BF16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
        DType::F16 => sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
    }
}

impl Device {
    /// Encodes `map` (element strides 1, no interleave, 256-byte L2 promotion, zero fill out of bounds).
    pub fn tensor_map_tiled(&self, map: &TiledMap) -> Result<TensorMap> {
        map.validate()?;
        if !std::ptr::eq(&**map.tensor.device(), self) {
            return Err(Error::invalid(format!("tensor map of {:?}: the tensor is on another device", map.tensor)));
        }
        let address = map.tensor.device_ptr()?;
        self.ctx.bind()?;
        let rank = map.dims.len();
        let elem_strides = [1u32; 5];
        let mut raw = sys::CUtensorMap { opaque: [0; 16] };
        // SAFETY: `raw` is an aligned CUtensorMap the driver writes; dims, box dims and element strides
        // hold `rank` entries and byte_strides `rank - 1` (checked by validate); the address is only
        // recorded in the map, not dereferenced here.
        let status = unsafe {
            sys::cuTensorMapEncodeTiled(
                &mut raw,
                data_type(map.tensor.dtype()),
                rank as u32,
                address as *mut std::ffi::c_void,
                map.dims.as_ptr(),
                map.byte_strides.as_ptr(),
                map.box_dims.as_ptr(),
                elem_strides.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                map.swizzle.raw(),
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        };
        check("cuTensorMapEncodeTiled", status)
            .map_err(|e| Error::Cuda { call: "cuTensorMapEncodeTiled", msg: format!("{e} ({map:?})") })?;
        Ok(TensorMap { opaque: raw.opaque })
    }
}
