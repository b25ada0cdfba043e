//! The element types a client may send (the Open Inference Protocol's set, which every
//! frontend's tensors use) and the ones the model's forward takes (libtorch's, as the
//! handler world's `dtype`). A protocol names them its own way; the core only knows
//! what they are.

use crate::sandbox::Dtype;

pub use crate::sandbox::Tensor;

/// An element type: the Open Inference Protocol's datatypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Datatype {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    Bf16,
    F32,
    F64,
    /// Variable-length byte strings: the handler's way into a model.
    Bytes,
}

impl Datatype {
    pub const ALL: [Datatype; 14] = [
        Datatype::Bool,
        Datatype::U8,
        Datatype::U16,
        Datatype::U32,
        Datatype::U64,
        Datatype::I8,
        Datatype::I16,
        Datatype::I32,
        Datatype::I64,
        Datatype::F16,
        Datatype::Bf16,
        Datatype::F32,
        Datatype::F64,
        Datatype::Bytes,
    ];

    /// The protocol's name (`FP32`, `BYTES`, …).
    pub fn name(self) -> &'static str {
        match self {
            Datatype::Bool => "BOOL",
            Datatype::U8 => "UINT8",
            Datatype::U16 => "UINT16",
            Datatype::U32 => "UINT32",
            Datatype::U64 => "UINT64",
            Datatype::I8 => "INT8",
            Datatype::I16 => "INT16",
            Datatype::I32 => "INT32",
            Datatype::I64 => "INT64",
            Datatype::F16 => "FP16",
            Datatype::Bf16 => "BF16",
            Datatype::F32 => "FP32",
            Datatype::F64 => "FP64",
            Datatype::Bytes => "BYTES",
        }
    }

    /// The datatype named `name` (exact, upper case, as the protocol writes them).
    pub fn from_name(name: &str) -> Option<Datatype> {
        Datatype::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element; `None` for BYTES.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            Datatype::Bool | Datatype::U8 | Datatype::I8 => 1,
            Datatype::U16 | Datatype::I16 | Datatype::F16 | Datatype::Bf16 => 2,
            Datatype::U32 | Datatype::I32 | Datatype::F32 => 4,
            Datatype::U64 | Datatype::I64 | Datatype::F64 => 8,
            Datatype::Bytes => return None,
        })
    }

    /// The forward's tensor type for this datatype; `None` where libtorch (through
    /// tch) has none: UINT16/32/64 (as Triton's PyTorch backend), BYTES.
    pub fn dtype(self) -> Option<Dtype> {
        Some(match self {
            Datatype::Bool => Dtype::Boolean,
            Datatype::U8 => Dtype::Uint8,
            Datatype::I8 => Dtype::Int8,
            Datatype::I16 => Dtype::Int16,
            Datatype::I32 => Dtype::Int32,
            Datatype::I64 => Dtype::Int64,
            Datatype::F16 => Dtype::Float16,
            Datatype::Bf16 => Dtype::Bfloat16,
            Datatype::F32 => Dtype::Float32,
            Datatype::F64 => Dtype::Float64,
            Datatype::U16 | Datatype::U32 | Datatype::U64 | Datatype::Bytes => return None,
        })
    }

    /// The datatype of a forward's tensor type.
    pub fn of(dtype: Dtype) -> Datatype {
        match dtype {
            Dtype::Boolean => Datatype::Bool,
            Dtype::Uint8 => Datatype::U8,
            Dtype::Int8 => Datatype::I8,
            Dtype::Int16 => Datatype::I16,
            Dtype::Int32 => Datatype::I32,
            Dtype::Int64 => Datatype::I64,
            Dtype::Float16 => Datatype::F16,
            Dtype::Bfloat16 => Datatype::Bf16,
            Dtype::Float32 => Datatype::F32,
            Dtype::Float64 => Datatype::F64,
        }
    }
}

impl std::fmt::Display for Datatype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_agree_with_dtypes() {
        for d in Datatype::ALL {
            assert_eq!(Datatype::from_name(d.name()), Some(d));
            if let Some(dt) = d.dtype() {
                assert_eq!(Datatype::of(dt), d);
            }
        }
        assert_eq!(Datatype::from_name("fp32"), None);
        assert_eq!(Datatype::F16.size(), Some(2));
        assert_eq!(Datatype::Bytes.size(), None);
        assert_eq!(Datatype::U32.dtype(), None);
    }
}
