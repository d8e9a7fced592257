//! Named tensors as the generic path and KServe v2 see them: a name, a shape and typed data, in every element
//! type ONNX Runtime and the Open Inference Protocol share (BOOL, UINT8–UINT64, INT8–INT64, FP16, FP32,
//! FP64), with the helpers batching and the wire need: stacking, slicing, little-endian bytes.

use half::f16;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::error::ModelError;

/// The element types the generic path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    F16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Bool,
}

impl ElementType {
    fn from_ort(t: TensorElementType) -> Option<Self> {
        Some(match t {
            TensorElementType::Float16 => ElementType::F16,
            TensorElementType::Float32 => ElementType::F32,
            TensorElementType::Float64 => ElementType::F64,
            TensorElementType::Int8 => ElementType::I8,
            TensorElementType::Int16 => ElementType::I16,
            TensorElementType::Int32 => ElementType::I32,
            TensorElementType::Int64 => ElementType::I64,
            TensorElementType::Uint8 => ElementType::U8,
            TensorElementType::Uint16 => ElementType::U16,
            TensorElementType::Uint32 => ElementType::U32,
            TensorElementType::Uint64 => ElementType::U64,
            TensorElementType::Bool => ElementType::Bool,
            _ => return None,
        })
    }

    /// The element type of an ONNX value type, if it is a tensor of a supported type.
    pub(crate) fn of(t: &ValueType) -> Option<Self> {
        t.tensor_type().and_then(Self::from_ort)
    }

    /// Bytes per element.
    pub fn width(self) -> usize {
        match self {
            ElementType::I8 | ElementType::U8 | ElementType::Bool => 1,
            ElementType::F16 | ElementType::I16 | ElementType::U16 => 2,
            ElementType::F32 | ElementType::I32 | ElementType::U32 => 4,
            ElementType::F64 | ElementType::I64 | ElementType::U64 => 8,
        }
    }
}

/// Typed, row-major tensor data.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
}

/// `$body` for the vector inside any variant, bound to `$v`.
macro_rules! each {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F16($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::Bool($v) => $body,
        }
    };
}

/// The same variant, holding `$body` made from the vector `$v`.
macro_rules! map {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::Bool($v) => TensorData::Bool($body),
        }
    };
}

/// Little-endian bytes of one element.
trait LittleEndian: Copy {
    fn put(self, out: &mut Vec<u8>);
    fn take(bytes: &[u8]) -> Self;
}

macro_rules! little_endian {
    ($($t:ty),*) => {$(
        impl LittleEndian for $t {
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().unwrap_or_default())
            }
        }
    )*};
}
little_endian!(f16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64);

impl LittleEndian for bool {
    fn put(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn take(bytes: &[u8]) -> Self {
        bytes.first().is_some_and(|b| *b != 0)
    }
}

fn read_all<T: LittleEndian>(raw: &[u8], width: usize) -> Vec<T> {
    raw.chunks_exact(width).map(T::take).collect()
}

impl TensorData {
    pub fn element_type(&self) -> ElementType {
        match self {
            TensorData::F16(_) => ElementType::F16,
            TensorData::F32(_) => ElementType::F32,
            TensorData::F64(_) => ElementType::F64,
            TensorData::I8(_) => ElementType::I8,
            TensorData::I16(_) => ElementType::I16,
            TensorData::I32(_) => ElementType::I32,
            TensorData::I64(_) => ElementType::I64,
            TensorData::U8(_) => ElementType::U8,
            TensorData::U16(_) => ElementType::U16,
            TensorData::U32(_) => ElementType::U32,
            TensorData::U64(_) => ElementType::U64,
            TensorData::Bool(_) => ElementType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        each!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `from..to` (clamped to the data).
    pub fn slice(&self, from: usize, to: usize) -> TensorData {
        let (from, to) = (from.min(self.len()), to.min(self.len()));
        map!(self, v => v[from..to.max(from)].to_vec())
    }

    /// Appends `other`'s elements; an error when the types differ.
    pub fn append(&mut self, other: TensorData) -> Result<(), ModelError> {
        macro_rules! pairs {
            ($($variant:ident),*) => {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => a.extend(b),)*
                    (a, b) => {
                        return Err(ModelError::Unsupported(format!(
                            "cannot append {:?} elements to {:?} elements",
                            b.element_type(),
                            a.element_type()
                        )))
                    }
                }
            };
        }
        pairs!(F16, F32, F64, I8, I16, I32, I64, U8, U16, U32, U64, Bool);
        Ok(())
    }

    /// The elements as packed little-endian bytes (booleans one byte each).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.element_type().width());
        each!(self, v => v.iter().for_each(|x| x.put(&mut out)));
        out
    }

    /// Elements of `t` from packed little-endian bytes; an error when `raw` is not a whole number of them.
    pub fn from_le_bytes(t: ElementType, raw: &[u8]) -> Result<TensorData, ModelError> {
        let width = t.width();
        if !raw.len().is_multiple_of(width) {
            return Err(ModelError::Unsupported(format!("{} bytes is not a whole number of {t:?} values", raw.len())));
        }
        Ok(match t {
            ElementType::F16 => TensorData::F16(read_all(raw, width)),
            ElementType::F32 => TensorData::F32(read_all(raw, width)),
            ElementType::F64 => TensorData::F64(read_all(raw, width)),
            ElementType::I8 => TensorData::I8(read_all(raw, width)),
            ElementType::I16 => TensorData::I16(read_all(raw, width)),
            ElementType::I32 => TensorData::I32(read_all(raw, width)),
            ElementType::I64 => TensorData::I64(read_all(raw, width)),
            ElementType::U8 => TensorData::U8(raw.to_vec()),
            ElementType::U16 => TensorData::U16(read_all(raw, width)),
            ElementType::U32 => TensorData::U32(read_all(raw, width)),
            ElementType::U64 => TensorData::U64(read_all(raw, width)),
            ElementType::Bool => TensorData::Bool(read_all(raw, width)),
        })
    }

    /// The elements as JSON numbers or booleans (FP16 as its f32 value; both in their shortest form).
    pub fn to_json(&self) -> serde_json::Value {
        use crate::json_number::{f32_number, f32_numbers};
        use serde_json::json;
        match self {
            TensorData::F16(v) => serde_json::Value::Array(v.iter().map(|x| f32_number(x.to_f32())).collect()),
            TensorData::F32(v) => f32_numbers(v),
            TensorData::F64(v) => json!(v),
            TensorData::I8(v) => json!(v),
            TensorData::I16(v) => json!(v),
            TensorData::I32(v) => json!(v),
            TensorData::I64(v) => json!(v),
            TensorData::U8(v) => json!(v),
            TensorData::U16(v) => json!(v),
            TensorData::U32(v) => json!(v),
            TensorData::U64(v) => json!(v),
            TensorData::Bool(v) => json!(v),
        }
    }

    /// Elements of `t` from JSON values; the first value that does not fit is the error.
    pub fn from_json(t: ElementType, values: &[serde_json::Value]) -> Result<TensorData, String> {
        use serde_json::Value;
        fn all<T>(values: &[Value], f: impl Fn(&Value) -> Option<T>) -> Result<Vec<T>, String> {
            values.iter().map(|v| f(v).ok_or_else(|| v.to_string())).collect()
        }
        let int = |v: &Value| v.as_i64();
        let uint = |v: &Value| v.as_u64();
        Ok(match t {
            ElementType::F16 => TensorData::F16(all(values, |v| v.as_f64().map(f16::from_f64))?),
            ElementType::F32 => TensorData::F32(all(values, |v| v.as_f64().map(|x| x as f32))?),
            ElementType::F64 => TensorData::F64(all(values, Value::as_f64)?),
            ElementType::I8 => TensorData::I8(all(values, |v| int(v).and_then(|x| x.try_into().ok()))?),
            ElementType::I16 => TensorData::I16(all(values, |v| int(v).and_then(|x| x.try_into().ok()))?),
            ElementType::I32 => TensorData::I32(all(values, |v| int(v).and_then(|x| x.try_into().ok()))?),
            ElementType::I64 => TensorData::I64(all(values, int)?),
            ElementType::U8 => TensorData::U8(all(values, |v| uint(v).and_then(|x| x.try_into().ok()))?),
            ElementType::U16 => TensorData::U16(all(values, |v| uint(v).and_then(|x| x.try_into().ok()))?),
            ElementType::U32 => TensorData::U32(all(values, |v| uint(v).and_then(|x| x.try_into().ok()))?),
            ElementType::U64 => TensorData::U64(all(values, uint)?),
            ElementType::Bool => TensorData::Bool(all(values, Value::as_bool)?),
        })
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
        let value = each!(self.data, v => Tensor::from_array((shape, v)).map(|t| t.into_dyn()));
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
            Some(ElementType::F16) => extract!(f16, F16),
            Some(ElementType::F32) => extract!(f32, F32),
            Some(ElementType::F64) => extract!(f64, F64),
            Some(ElementType::I8) => extract!(i8, I8),
            Some(ElementType::I16) => extract!(i16, I16),
            Some(ElementType::I32) => extract!(i32, I32),
            Some(ElementType::I64) => extract!(i64, I64),
            Some(ElementType::U8) => extract!(u8, U8),
            Some(ElementType::U16) => extract!(u16, U16),
            Some(ElementType::U32) => extract!(u32, U32),
            Some(ElementType::U64) => extract!(u64, U64),
            Some(ElementType::Bool) => extract!(bool, Bool),
            None => {
                return Err(ModelError::Unsupported(format!("output {name} has unsupported type {:?}", value.dtype())));
            }
        };
        Ok(NamedTensor { name: name.to_string(), shape, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_json_slices_and_appends_round_trip_in_every_type() {
        let samples = [
            TensorData::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
            TensorData::F32(vec![1.5, -2.0]),
            TensorData::F64(vec![1.5, -2.0]),
            TensorData::I8(vec![-3, 4]),
            TensorData::I16(vec![-300, 4]),
            TensorData::I32(vec![-3, 70000]),
            TensorData::I64(vec![-3, 1 << 40]),
            TensorData::U8(vec![3, 255]),
            TensorData::U16(vec![3, 65535]),
            TensorData::U32(vec![3, 1 << 31]),
            TensorData::U64(vec![3, 1 << 63]),
            TensorData::Bool(vec![true, false]),
        ];
        for data in samples {
            let t = data.element_type();
            assert_eq!(TensorData::from_le_bytes(t, &data.to_le_bytes()).unwrap(), data, "{t:?} bytes");
            let json = data.to_json();
            assert_eq!(TensorData::from_json(t, json.as_array().unwrap()).unwrap(), data, "{t:?} json");
            let mut joined = data.slice(0, 1);
            joined.append(data.slice(1, 2)).unwrap();
            assert_eq!(joined, data, "{t:?} slice and append");
        }
        assert!(TensorData::from_le_bytes(ElementType::I32, &[1, 2, 3]).is_err());
        assert!(TensorData::from_json(ElementType::U8, &[serde_json::json!(300)]).is_err());
        assert!(TensorData::F32(vec![]).append(TensorData::I8(vec![1])).is_err());
    }
}
