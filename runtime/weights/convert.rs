//! Storage dtype -> compute dtype conversion, done once at load.
//!
//! Rounding is round-to-nearest-even, as torch's `.to()` does; f64 sources go through f32 first, since
//! torch's Half/BFloat16 constructors take a float (double rounding included). NaN stays NaN (its
//! payload bits follow `half`; torch itself differs between its scalar, SIMD and CUDA paths).
//! Large tensors are split into chunks converted by all cores.

use std::sync::Mutex;

use half::{bf16, f16};

use super::StorageDType;
use crate::{DType, Error, Result};

/// Output bytes per work item; tensors smaller than this convert on the calling thread.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Whether [`convert`] handles `from -> to` (floating-point sources only).
pub fn can_convert(from: StorageDType, to: DType) -> bool {
    kernel(from, to).is_some()
}

/// Converts `src` (elements of `from`, little-endian) into `dst` (elements of `to`); lengths must
/// describe the same element count.
pub fn convert(src: &[u8], from: StorageDType, dst: &mut [u8], to: DType) -> Result<()> {
    let Some(kernel) = kernel(from, to) else {
        return Err(Error::invalid(format!("cannot convert {from} to {to}")));
    };
    if src.len() % from.size() != 0 || src.len() / from.size() * to.size() != dst.len() {
        return Err(Error::invalid(format!(
            "converting {from} to {to}: {} source bytes do not match {} destination bytes",
            src.len(),
            dst.len()
        )));
    }
    par_chunks(src, from.size(), dst, to.size(), kernel);
    Ok(())
}

type Kernel = fn(&[u8], &mut [u8]);

/// Picks the element loop for a pair; same-dtype pairs are a plain copy, non-float sources have none.
fn kernel(from: StorageDType, to: DType) -> Option<Kernel> {
    use StorageDType as S;
    Some(match (from, to) {
        (S::F32, DType::F32) | (S::BF16, DType::BF16) | (S::F16, DType::F16) => |s, d| d.copy_from_slice(s),
        (S::F32, DType::BF16) => |s, d| map::<4, 2>(s, d, |x| bf16::from_f32(f32::from_le_bytes(x)).to_le_bytes()),
        (S::F32, DType::F16) => |s, d| map::<4, 2>(s, d, |x| f16::from_f32(f32::from_le_bytes(x)).to_le_bytes()),
        (S::BF16, DType::F32) => |s, d| map::<2, 4>(s, d, |x| bf16::from_le_bytes(x).to_f32().to_le_bytes()),
        (S::F16, DType::F32) => |s, d| map::<2, 4>(s, d, |x| f16::from_le_bytes(x).to_f32().to_le_bytes()),
        // bf16 <-> f16 via f32: exact widening, then one rounding.
        (S::BF16, DType::F16) => |s, d| map::<2, 2>(s, d, |x| f16::from_f32(bf16::from_le_bytes(x).to_f32()).to_le_bytes()),
        (S::F16, DType::BF16) => |s, d| map::<2, 2>(s, d, |x| bf16::from_f32(f16::from_le_bytes(x).to_f32()).to_le_bytes()),
        (S::F64, DType::F32) => |s, d| map::<8, 4>(s, d, |x| (f64::from_le_bytes(x) as f32).to_le_bytes()),
        (S::F64, DType::BF16) => {
            |s, d| map::<8, 2>(s, d, |x| bf16::from_f32(f64::from_le_bytes(x) as f32).to_le_bytes())
        }
        (S::F64, DType::F16) => |s, d| map::<8, 2>(s, d, |x| f16::from_f32(f64::from_le_bytes(x) as f32).to_le_bytes()),
        (S::I64 | S::I32 | S::U8 | S::Bool, _) => return None,
    })
}

/// Element loop over unaligned little-endian bytes.
#[inline(always)]
fn map<const I: usize, const O: usize>(src: &[u8], dst: &mut [u8], f: impl Fn([u8; I]) -> [u8; O]) {
    for (s, d) in src.chunks_exact(I).zip(dst.chunks_exact_mut(O)) {
        let mut x = [0u8; I];
        x.copy_from_slice(s);
        d.copy_from_slice(&f(x));
    }
}

/// Runs `kernel` over matching chunks of `src` and `dst`, on the calling thread for small tensors and
/// on all cores otherwise (workers pull chunks, so a busy core slows nobody else down).
fn par_chunks(src: &[u8], in_size: usize, dst: &mut [u8], out_size: usize, kernel: Kernel) {
    let chunk_elems = (CHUNK_BYTES / out_size.max(in_size)).max(1);
    let n_chunks = (dst.len() / out_size).div_ceil(chunk_elems);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(n_chunks);
    if threads <= 1 {
        kernel(src, dst);
        return;
    }
    let work = Mutex::new(src.chunks(chunk_elems * in_size).zip(dst.chunks_mut(chunk_elems * out_size)));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                // A poisoned lock only means another worker panicked; the scope re-raises that panic.
                let next = work.lock().unwrap_or_else(|e| e.into_inner()).next();
                match next {
                    Some((s, d)) => kernel(s, d),
                    None => break,
                }
            });
        }
    });
}
