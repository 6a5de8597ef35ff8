//! Activation arenas: a forward pass lists the device buffers it needs for a given input (names,
//! shapes, dtypes, and views that share a region), then allocates exactly that list. The same list
//! tells the offload planner how much device memory the activations take, without a GPU, so the
//! planner's number and the forward's allocations cannot drift apart.

use std::sync::Arc;

use crate::gpu::{Device, DeviceBuffer};
use crate::{DType, Error, Result, Tensor};

/// Device allocations are charged in whole multiples of this (see `gpu::memory`).
const CHARGE_ALIGN: u64 = 256;

/// One buffer of an [`ArenaPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Buf(usize);

#[derive(Clone, Debug)]
struct Entry {
    what: &'static str,
    shape: Vec<usize>,
    dtype: DType,
    /// `Some((region, byte offset))` for a view into another entry's allocation.
    view_of: Option<(usize, u64)>,
}

/// The buffers of one forward pass for one input shape.
#[derive(Clone, Debug, Default)]
pub struct ArenaPlan {
    entries: Vec<Entry>,
}

fn elems(shape: &[usize]) -> Option<u64> {
    shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64))
}

impl ArenaPlan {
    pub fn new() -> ArenaPlan {
        ArenaPlan::default()
    }

    /// A buffer of its own.
    pub fn buffer(&mut self, what: &'static str, shape: &[usize], dtype: DType) -> Buf {
        self.entries.push(Entry { what, shape: shape.to_vec(), dtype, view_of: None });
        Buf(self.entries.len() - 1)
    }

    /// A view into `region` (a buffer of its own) at `byte_offset`, for buffers whose lifetimes do
    /// not overlap within the forward.
    pub fn view(&mut self, region: Buf, byte_offset: u64, shape: &[usize], dtype: DType) -> Buf {
        let what = self.entries.get(region.0).map_or("view", |e| e.what);
        self.entries.push(Entry { what, shape: shape.to_vec(), dtype, view_of: Some((region.0, byte_offset)) });
        Buf(self.entries.len() - 1)
    }

    /// Device bytes the plan allocates, as the device pool charges them.
    pub fn bytes(&self) -> Result<u64> {
        self.entries.iter().filter(|e| e.view_of.is_none()).try_fold(0u64, |acc, e| {
            let b = Self::entry_bytes(e)?.div_ceil(CHARGE_ALIGN) * CHARGE_ALIGN;
            acc.checked_add(b).ok_or_else(|| Error::invalid("activation arena size overflows"))
        })
    }

    fn entry_bytes(e: &Entry) -> Result<u64> {
        elems(&e.shape)
            .and_then(|n| n.checked_mul(e.dtype.size() as u64))
            .ok_or_else(|| Error::invalid(format!("activation buffer {} {:?} overflows", e.what, e.shape)))
    }

    /// Allocates every buffer (views checked to fit their region).
    pub fn allocate(&self, dev: &Arc<Device>) -> Result<Arena> {
        let mut regions: Vec<Option<Arc<DeviceBuffer>>> = vec![None; self.entries.len()];
        let mut tensors = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            let t = match e.view_of {
                None => {
                    let buf = Arc::new(dev.alloc(Self::entry_bytes(e)?, e.what)?);
                    regions[i] = Some(buf.clone());
                    Tensor::from_buffer(buf, 0, &e.shape, e.dtype)?
                }
                Some((r, off)) => {
                    let buf = regions.get(r).cloned().flatten().ok_or_else(|| Error::invalid(format!("activation view {} of a region declared after it", e.what)))?;
                    Tensor::from_buffer(buf, off, &e.shape, e.dtype)?
                }
            };
            tensors.push(t);
        }
        Ok(Arena { tensors })
    }
}

/// The allocated buffers of an [`ArenaPlan`].
pub struct Arena {
    tensors: Vec<Tensor>,
}

impl Arena {
    /// The tensor of buffer `b` (a plan's handles index only that plan's arena).
    pub fn get(&self, b: Buf) -> &Tensor {
        &self.tensors[b.0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_cost_nothing_and_buffers_round_to_the_pool_charge() {
        let mut p = ArenaPlan::new();
        let a = p.buffer("a", &[3, 5], DType::BF16); // 30 bytes, charged 256
        p.buffer("b", &[1024], DType::F32); // 4096
        p.view(a, 0, &[2], DType::BF16);
        assert_eq!(p.bytes().unwrap(), 256 + 4096);
        let mut q = ArenaPlan::new();
        q.buffer("huge", &[usize::MAX, 4], DType::F32);
        assert!(q.bytes().is_err());
    }
}
