//! Element types as stored in safetensors files (a superset of the compute dtypes).

use std::fmt;

use crate::DType;

/// Element type of a stored tensor, named as in the safetensors header (`"BF16"`, `"I64"`, ...).
/// Fixtures also hold int64 timesteps and f64 references, hence more than the compute dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageDType {
    F64,
    F32,
    BF16,
    F16,
    I64,
    I32,
    U8,
    Bool,
}

impl StorageDType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            StorageDType::F64 | StorageDType::I64 => 8,
            StorageDType::F32 | StorageDType::I32 => 4,
            StorageDType::BF16 | StorageDType::F16 => 2,
            StorageDType::U8 | StorageDType::Bool => 1,
        }
    }

    /// The header's spelling.
    pub const fn name(self) -> &'static str {
        match self {
            StorageDType::F64 => "F64",
            StorageDType::F32 => "F32",
            StorageDType::BF16 => "BF16",
            StorageDType::F16 => "F16",
            StorageDType::I64 => "I64",
            StorageDType::I32 => "I32",
            StorageDType::U8 => "U8",
            StorageDType::Bool => "BOOL",
        }
    }

    /// Parses the header's spelling; `None` for dtypes this runtime does not read (F8, I8, ...).
    pub fn parse(s: &str) -> Option<StorageDType> {
        Some(match s {
            "F64" => StorageDType::F64,
            "F32" => StorageDType::F32,
            "BF16" => StorageDType::BF16,
            "F16" => StorageDType::F16,
            "I64" => StorageDType::I64,
            "I32" => StorageDType::I32,
            "U8" => StorageDType::U8,
            "BOOL" => StorageDType::Bool,
            _ => return None,
        })
    }

    /// Whether this is a floating-point type that converts to the compute dtypes.
    pub const fn is_float(self) -> bool {
        matches!(self, StorageDType::F64 | StorageDType::F32 | StorageDType::BF16 | StorageDType::F16)
    }
}

impl From<DType> for StorageDType {
    fn from(d: DType) -> Self {
        match d {
            DType::F32 => StorageDType::F32,
            DType::BF16 => StorageDType::BF16,
            DType::F16 => StorageDType::F16,
        }
    }
}

impl fmt::Display for StorageDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
