//! Weight units and their packing.
//!
//! A model declares its weights as an ordered list of units (one Linear, one norm's parameters, one
//! block, ...). Each unit's tensors are packed into one region at 256-byte-aligned offsets, and a
//! group of consecutive units is the concatenation of their regions. Every mode (resident, streamed,
//! any group size) uses this same packing, so each tensor has the same 256-byte alignment wherever
//! it lives: cuBLASLt picks its algorithm from pointer alignment, and bit-identical output across
//! modes needs identical algorithms.

use std::collections::HashMap;
use std::ops::Range;

use super::declare::UnitId;
use crate::{DType, Error, Result};

/// Alignment of every tensor inside a unit, and of every unit inside a group.
pub const ALIGN: u64 = 256;

/// One weight tensor: its checkpoint name, shape and the dtype it is computed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, shape: &[usize], dtype: DType) -> TensorSpec {
        TensorSpec { name: name.into(), shape: shape.to_vec(), dtype }
    }

    /// Element bytes, `None` on overflow.
    pub fn bytes(&self) -> Option<u64> {
        self.shape.iter().try_fold(self.dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64))
    }
}

/// One unit: tensors uploaded and released together. `block` tags the transformer block (or layer)
/// the unit belongs to; block-level modes group units by it. Units outside any block (embeddings,
/// heads) have `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitSpec {
    pub name: String,
    pub block: Option<usize>,
    pub tensors: Vec<TensorSpec>,
}

impl UnitSpec {
    pub fn new(name: impl Into<String>, block: Option<usize>, tensors: Vec<TensorSpec>) -> UnitSpec {
        UnitSpec { name: name.into(), block, tensors }
    }
}

/// Where a unit's tensors sit inside its packed region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitLayout {
    /// Byte offset of each tensor (same order as `UnitSpec::tensors`), multiples of [`ALIGN`].
    pub offsets: Vec<u64>,
    /// Region length: the end of the last tensor rounded up to [`ALIGN`].
    pub bytes: u64,
}

/// The ordered units of one model, validated and packed.
#[derive(Clone, Debug)]
pub struct ModelUnits {
    units: Vec<UnitSpec>,
    layouts: Vec<UnitLayout>,
    by_name: HashMap<String, usize>,
}

fn align_up(v: u64) -> Option<u64> {
    v.checked_add(ALIGN - 1).map(|x| x / ALIGN * ALIGN)
}

fn pack(unit: &UnitSpec) -> Result<UnitLayout> {
    let mut offsets = Vec::with_capacity(unit.tensors.len());
    let mut end = 0u64;
    for t in &unit.tensors {
        let overflow = || Error::invalid(format!("unit {}: tensor {} {:?} overflows the address space", unit.name, t.name, t.shape));
        let off = align_up(end).ok_or_else(overflow)?;
        end = t.bytes().and_then(|b| off.checked_add(b)).ok_or_else(overflow)?;
        offsets.push(off);
    }
    let bytes = align_up(end).ok_or_else(|| Error::invalid(format!("unit {} overflows", unit.name)))?;
    Ok(UnitLayout { offsets, bytes })
}

impl ModelUnits {
    /// Validates and packs the units: at least one unit, every unit non-empty, unit names and tensor
    /// names unique, and each block's units consecutive (a block is one run in declared order).
    pub fn new(units: Vec<UnitSpec>) -> Result<ModelUnits> {
        if units.is_empty() {
            return Err(Error::invalid("a model must declare at least one weight unit"));
        }
        let mut by_name = HashMap::new();
        let mut tensor_names = HashMap::new();
        let mut finished_blocks = HashMap::new();
        let mut layouts = Vec::with_capacity(units.len());
        for (i, u) in units.iter().enumerate() {
            if u.tensors.is_empty() {
                return Err(Error::invalid(format!("unit {i} ({}) has no tensors", u.name)));
            }
            if let Some(j) = by_name.insert(u.name.clone(), i) {
                return Err(Error::invalid(format!("units {j} and {i} are both named {}", u.name)));
            }
            for t in &u.tensors {
                if let Some(prev) = tensor_names.insert(t.name.clone(), u.name.clone()) {
                    return Err(Error::invalid(format!("tensor {} is declared in unit {prev} and again in unit {}", t.name, u.name)));
                }
            }
            // A block may not reappear after another block or a non-block unit interrupted it.
            if let Some(b) = u.block {
                let prev_same = i > 0 && units[i - 1].block == Some(b);
                if !prev_same && finished_blocks.insert(b, i).is_some() {
                    return Err(Error::invalid(format!(
                        "unit {i} ({}) belongs to block {b}, whose units are not consecutive in the declared order",
                        u.name
                    )));
                }
            }
            layouts.push(pack(u)?);
        }
        let total = layouts.iter().try_fold(0u64, |acc, l| acc.checked_add(l.bytes));
        if total.is_none() {
            return Err(Error::invalid("the model's total weight bytes overflow"));
        }
        Ok(ModelUnits { units, layouts, by_name })
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
    pub fn units(&self) -> &[UnitSpec] {
        &self.units
    }
    pub fn unit(&self, i: usize) -> &UnitSpec {
        &self.units[i]
    }
    pub fn layout(&self, i: usize) -> &UnitLayout {
        &self.layouts[i]
    }
    /// Packed bytes of unit `i` (a multiple of [`ALIGN`]).
    pub fn unit_bytes(&self, i: usize) -> u64 {
        self.layouts[i].bytes
    }
    /// Packed bytes of consecutive units (their regions concatenated).
    pub fn range_bytes(&self, r: Range<usize>) -> u64 {
        self.layouts[r].iter().map(|l| l.bytes).sum()
    }
    pub fn total_bytes(&self) -> u64 {
        self.range_bytes(0..self.len())
    }
    /// Index of the unit with this name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
    /// The unit with this name.
    pub fn id_of(&self, name: &str) -> Option<UnitId> {
        self.index_of(name).map(UnitId)
    }
    /// Every unit in declared order.
    pub fn ids(&self) -> impl Iterator<Item = UnitId> {
        (0..self.units.len()).map(UnitId)
    }
    /// The largest unit: (index, packed bytes).
    pub fn largest_unit(&self) -> (usize, u64) {
        let mut best = (0, 0);
        for (i, l) in self.layouts.iter().enumerate() {
            if l.bytes > best.1 {
                best = (i, l.bytes);
            }
        }
        best
    }
}
