//! `Tensor`: a typed, shaped view into device memory. Cloning shares the memory (like a slice);
//! launchers take outputs as `&Tensor` and write through them.

use std::sync::Arc;

use half::{bf16, f16};

use crate::gpu::{Device, DeviceBuffer, PinnedBuffer, Stream};
use crate::{DType, Error, Result};

#[derive(Clone)]
pub struct Tensor {
    buf: Arc<DeviceBuffer>,
    offset: u64,
    dtype: DType,
    shape: Vec<usize>,
    strides: Vec<usize>,
    /// Set on views of offload-engine weights: the unit borrow they came from. Once the borrow ends
    /// the memory may be overwritten by the copy stream, so [`Tensor::device_ptr`] refuses the view.
    lease: Option<Arc<Lease>>,
}

/// The validity of a borrow of device memory that someone else reuses (an offload unit's weights):
/// views made under it are usable until [`Lease::end`].
#[derive(Debug)]
pub struct Lease {
    live: std::sync::atomic::AtomicBool,
    what: String,
}

impl Lease {
    pub fn new(what: impl Into<String>) -> Arc<Lease> {
        Arc::new(Lease { live: std::sync::atomic::AtomicBool::new(true), what: what.into() })
    }
    /// Ends the borrow: every view made under it is refused from now on.
    pub fn end(&self) {
        self.live.store(false, std::sync::atomic::Ordering::Release);
    }
    pub fn is_live(&self) -> bool {
        self.live.load(std::sync::atomic::Ordering::Acquire)
    }
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} {:?}, strides {:?})", self.dtype, self.shape, self.strides)
    }
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn numel_of(shape: &[usize]) -> Result<u64> {
    shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64)).ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows")))
}

/// Host-side conversion of f32 values to a compute dtype's bytes (round to nearest even).
pub fn f32_to_bytes(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => bytemuck::cast_slice(values).to_vec(),
        DType::BF16 => values.iter().flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes()).collect(),
        DType::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes()).collect(),
    }
}

/// Host-side conversion of a compute dtype's bytes to f32 (exact).
pub fn bytes_to_f32(bytes: &[u8], dtype: DType) -> Vec<f32> {
    match dtype {
        DType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DType::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect(),
        DType::F16 => bytes.chunks_exact(2).map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect(),
    }
}

impl Tensor {
    /// Uninitialized contiguous tensor. `what` names it in a budget error.
    pub fn empty_named(dev: &Arc<Device>, shape: &[usize], dtype: DType, what: &str) -> Result<Tensor> {
        let bytes = numel_of(shape)?.checked_mul(dtype.size() as u64).ok_or_else(|| Error::invalid("tensor size overflows"))?;
        let buf = Arc::new(dev.alloc(bytes, what)?);
        Ok(Tensor { buf, offset: 0, dtype, strides: contiguous_strides(shape), shape: shape.to_vec(), lease: None })
    }

    pub fn empty(dev: &Arc<Device>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::empty_named(dev, shape, dtype, &format!("tensor {dtype} {shape:?}"))
    }

    pub fn zeros(dev: &Arc<Device>, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = Tensor::empty(dev, shape, dtype)?;
        t.fill_bytes(0)?;
        Ok(t)
    }

    /// Uploads little-endian element bytes (synchronously staged; `bytes` may be reused at once).
    pub fn from_bytes(dev: &Arc<Device>, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<Tensor> {
        let want = numel_of(shape)? * dtype.size() as u64;
        if bytes.len() as u64 != want {
            return Err(Error::invalid(format!("{} bytes given for a {dtype} tensor of shape {shape:?} ({want} bytes)", bytes.len())));
        }
        let t = Tensor::empty(dev, shape, dtype)?;
        t.write_bytes(bytes)?;
        Ok(t)
    }

    /// Overwrites this contiguous tensor with little-endian element bytes (synchronously staged, on
    /// the compute stream; `bytes` may be reused at once).
    pub fn write_bytes(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != self.byte_len() || !self.is_contiguous() {
            return Err(Error::invalid(format!(
                "{} bytes given for a {}contiguous {} tensor of shape {:?} ({} bytes)",
                bytes.len(),
                if self.is_contiguous() { "" } else { "non-" },
                self.dtype,
                self.shape,
                self.byte_len()
            )));
        }
        self.check_lease()?;
        let dev = self.device();
        dev.h2d_async(&self.buf, self.offset, bytes, dev.compute())
    }

    /// Uploads f32 values converted to `dtype`.
    pub fn from_f32(dev: &Arc<Device>, shape: &[usize], dtype: DType, values: &[f32]) -> Result<Tensor> {
        Tensor::from_bytes(dev, shape, dtype, &f32_to_bytes(values, dtype))
    }

    /// A view of `buf` at byte `offset` (e.g. a tensor inside a weight arena or an offload slot).
    pub fn from_buffer(buf: Arc<DeviceBuffer>, offset: u64, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = numel_of(shape)? * dtype.size() as u64;
        if offset % dtype.size() as u64 != 0 || offset.checked_add(bytes).is_none_or(|e| e > buf.len()) {
            return Err(Error::invalid(format!(
                "view {dtype} {shape:?} at byte {offset} does not fit the {}-byte buffer",
                buf.len()
            )));
        }
        Ok(Tensor { buf, offset, dtype, strides: contiguous_strides(shape), shape: shape.to_vec(), lease: None })
    }

    pub fn device(&self) -> &Arc<Device> {
        self.buf.device()
    }
    pub fn buffer(&self) -> &Arc<DeviceBuffer> {
        &self.buf
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
    /// Bytes spanned by the elements (contiguous tensors: numel × element size).
    pub fn byte_len(&self) -> u64 {
        self.numel() * self.dtype.size() as u64
    }
    /// Device address of the first element, unchecked (for printing and address arithmetic; a launch
    /// takes [`Tensor::device_ptr`]).
    pub fn ptr(&self) -> u64 {
        self.buf.ptr() + self.offset
    }

    /// Device address of the first element for queuing device work: an error when the tensor is a
    /// view of weights whose borrow has ended (the memory may already hold another unit's weights).
    pub fn device_ptr(&self) -> Result<u64> {
        self.check_lease()?;
        Ok(self.ptr())
    }

    /// An error when this is a view of weights whose borrow has ended.
    pub fn check_lease(&self) -> Result<()> {
        match &self.lease {
            Some(l) if !l.is_live() => Err(Error::invalid(format!(
                "{self:?} is a view of {} used after its borrow ended (the offload engine may already have overwritten it)",
                l.what()
            ))),
            _ => Ok(()),
        }
    }

    /// This view under `other`'s lease (a view derived from borrowed weights is as short-lived).
    pub fn with_lease_of(mut self, other: &Tensor) -> Tensor {
        self.lease = other.lease.clone();
        self
    }

    /// The same view, valid only while `lease` lives.
    pub fn with_lease(mut self, lease: &Arc<Lease>) -> Tensor {
        self.lease = Some(lease.clone());
        self
    }
    pub fn byte_offset(&self) -> u64 {
        self.offset
    }
    /// Row-major dense (strides of size-1 dimensions do not matter).
    pub fn is_contiguous(&self) -> bool {
        let want = contiguous_strides(&self.shape);
        self.shape.iter().zip(self.strides.iter().zip(&want)).all(|(&d, (&s, &w))| d == 1 || s == w)
    }

    /// Same memory, new shape (contiguous tensors only).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if !self.is_contiguous() {
            return Err(Error::invalid(format!("reshape of non-contiguous {self:?}")));
        }
        if numel_of(shape)? != self.numel() {
            return Err(Error::invalid(format!("cannot reshape {:?} to {shape:?}", self.shape)));
        }
        Ok(Tensor { strides: contiguous_strides(shape), shape: shape.to_vec(), ..self.clone() })
    }

    /// The sub-range `start..start+len` along `dim` (may be non-contiguous).
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        if dim >= self.rank() || start.checked_add(len).is_none_or(|e| e > self.shape[dim]) {
            return Err(Error::invalid(format!("narrow({dim}, {start}, {len}) out of range for {:?}", self.shape)));
        }
        let mut t = self.clone();
        t.offset += (start * self.strides[dim]) as u64 * self.dtype.size() as u64;
        t.shape[dim] = len;
        Ok(t)
    }

    /// Checks dtype and exact shape; the error names the op and the argument.
    pub fn expect(&self, op: &'static str, name: &str, dtype: DType, shape: &[usize]) -> Result<()> {
        self.expect_dtype(op, name, dtype)?;
        if self.shape != shape {
            return Err(Error::Shape { op, name: name.to_string(), expected: format!("{shape:?}"), got: self.shape.clone() });
        }
        Ok(())
    }

    pub fn expect_dtype(&self, op: &'static str, name: &str, dtype: DType) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::DType { op, name: name.to_string(), expected: dtype.to_string(), got: self.dtype });
        }
        Ok(())
    }

    pub fn expect_contiguous(&self, op: &'static str, name: &str) -> Result<()> {
        if !self.is_contiguous() {
            return Err(Error::Shape { op, name: name.to_string(), expected: "a contiguous tensor".into(), got: self.shape.clone() });
        }
        Ok(())
    }

    /// Queues a byte fill on the compute stream (contiguous tensors).
    pub fn fill_bytes(&self, value: u8) -> Result<()> {
        self.expect_contiguous("fill", "tensor")?;
        self.device().memset_async(self.device_ptr()?, value, self.byte_len(), self.device().compute())
    }

    /// Fills with NaN (all-ones bytes are a NaN in f32, bf16 and f16): tests poison outputs with it.
    pub fn fill_nan(&self) -> Result<()> {
        self.fill_bytes(0xFF)
    }

    /// Copies `src` into this tensor on the compute stream (same dtype and shape, both contiguous).
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        src.expect("copy", "source", self.dtype, &self.shape)?;
        self.expect_contiguous("copy", "destination")?;
        src.expect_contiguous("copy", "source")?;
        src.check_lease()?;
        self.check_lease()?;
        let dev = self.device();
        dev.d2d_async(&self.buf, self.offset, &src.buf, src.offset, self.byte_len(), dev.compute())
    }

    /// Waits for the compute stream and downloads the elements' bytes (contiguous tensors).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.expect_contiguous("download", "tensor")?;
        self.check_lease()?;
        let mut out = vec![0u8; self.byte_len() as usize];
        let dev = self.device();
        dev.d2h_sync(&mut out, &self.buf, self.offset, dev.compute())?;
        Ok(out)
    }

    /// Queues a download of the elements into `dst` (pinned, exactly [`Self::byte_len`] bytes) on
    /// `stream` and returns without waiting: reading `dst` ([`PinnedBuffer::as_slice`]) waits for the
    /// copy, and later work on `stream` that overwrites this tensor's memory runs after it.
    pub fn download_pinned(&self, dst: &mut PinnedBuffer, stream: &Stream) -> Result<()> {
        self.expect_contiguous("download", "tensor")?;
        self.check_lease()?;
        if dst.len() as u64 != self.byte_len() {
            return Err(Error::invalid(format!(
                "download of {} {:?} ({} bytes) into a {}-byte pinned buffer",
                self.dtype,
                self.shape,
                self.byte_len(),
                dst.len()
            )));
        }
        self.device().download_pinned(dst, &self.buf, self.offset, stream)
    }

    /// Downloads and converts to f32.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(bytes_to_f32(&self.to_bytes()?, self.dtype))
    }
}
