//! Named tensors as the generic path (and later KServe v2) sees them: a name, a shape and typed data.

use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::error::ModelError;

/// The element types the generic path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F32,
    F64,
    I32,
    I64,
    U8,
    Bool,
}

impl ElementType {
    fn from_ort(t: TensorElementType) -> Option<Self> {
        Some(match t {
            TensorElementType::Float32 => ElementType::F32,
            TensorElementType::Float64 => ElementType::F64,
            TensorElementType::Int32 => ElementType::I32,
            TensorElementType::Int64 => ElementType::I64,
            TensorElementType::Uint8 => ElementType::U8,
            TensorElementType::Bool => ElementType::Bool,
            _ => return None,
        })
    }

    /// The element type of an ONNX value type, if it is a tensor of a supported type.
    pub(crate) fn of(t: &ValueType) -> Option<Self> {
        t.tensor_type().and_then(Self::from_ort)
    }
}

/// Typed, row-major tensor data.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn element_type(&self) -> ElementType {
        match self {
            TensorData::F32(_) => ElementType::F32,
            TensorData::F64(_) => ElementType::F64,
            TensorData::I32(_) => ElementType::I32,
            TensorData::I64(_) => ElementType::I64,
            TensorData::U8(_) => ElementType::U8,
            TensorData::Bool(_) => ElementType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor with its name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl NamedTensor {
    /// Checks that the shape is non-negative and matches the data length.
    pub fn check(&self) -> Result<(), ModelError> {
        let expected =
            self.shape.iter().try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)));
        match expected {
            Some(n) if n == self.data.len() => Ok(()),
            _ => Err(ModelError::Unsupported(format!(
                "tensor {:?}: shape {:?} does not hold {} values",
                self.name,
                self.shape,
                self.data.len()
            ))),
        }
    }

    pub(crate) fn into_value(self) -> Result<DynValue, ModelError> {
        let shape = self.shape;
        let value = match self.data {
            TensorData::F32(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
            TensorData::F64(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
            TensorData::I32(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
            TensorData::I64(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
            TensorData::U8(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
            TensorData::Bool(v) => Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        };
        value.map_err(|e| ModelError::Backend(e.to_string()))
    }

    pub(crate) fn from_value(name: &str, value: &ort::value::ValueRef<'_>) -> Result<Self, ModelError> {
        let err = |e: ort::Error| ModelError::Backend(format!("output {name}: {e}"));
        macro_rules! extract {
            ($t:ty, $variant:ident) => {{
                let (shape, data) = value.try_extract_tensor::<$t>().map_err(err)?;
                (shape.to_vec(), TensorData::$variant(data.to_vec()))
            }};
        }
        let (shape, data) = match ElementType::of(value.dtype()) {
            Some(ElementType::F32) => extract!(f32, F32),
            Some(ElementType::F64) => extract!(f64, F64),
            Some(ElementType::I32) => extract!(i32, I32),
            Some(ElementType::I64) => extract!(i64, I64),
            Some(ElementType::U8) => extract!(u8, U8),
            Some(ElementType::Bool) => extract!(bool, Bool),
            None => {
                return Err(ModelError::Unsupported(format!("output {name} has unsupported type {:?}", value.dtype())));
            }
        };
        Ok(NamedTensor { name: name.to_string(), shape, data })
    }
}
