//! Typed views of the WIT `tensor` record: building tensors from Rust slices and reading
//! them back, with the dtype and the shape checked against the data.

use crate::{Dtype, Error, Tensor};

/// A Rust element type that maps to one tensor [`Dtype`].
pub trait Element: bytemuck::NoUninit {
    /// The tensor dtype of this element type.
    const DTYPE: Dtype;
    /// Size of one element in bytes.
    const SIZE: usize;
    /// Appends the little-endian bytes of `self`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one element from exactly `SIZE` little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $dtype:ident) => {
        impl Element for $t {
            const DTYPE: Dtype = Dtype::$dtype;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("chunk of SIZE bytes"))
            }
        }
    };
}
element!(f32, Float32);
element!(f64, Float64);
element!(i64, Int64);
element!(i32, Int32);
element!(i16, Int16);
element!(i8, Int8);
element!(u8, Uint8);

impl Element for bool {
    const DTYPE: Dtype = Dtype::Boolean;
    const SIZE: usize = 1;
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
}

/// Size in bytes of one element of `dtype`.
pub fn dtype_size(dtype: Dtype) -> usize {
    match dtype {
        Dtype::Float64 | Dtype::Int64 => 8,
        Dtype::Float32 | Dtype::Int32 => 4,
        Dtype::Float16 | Dtype::Bfloat16 | Dtype::Int16 => 2,
        Dtype::Int8 | Dtype::Uint8 | Dtype::Boolean => 1,
    }
}

impl Tensor {
    /// A tensor of `shape` holding `data` (row-major). Fails when the element count of
    /// `shape` is not `data.len()`.
    ///
    /// ```
    /// # use wasmserve_handler::Tensor;
    /// let t = Tensor::from_slice(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    /// assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    /// assert!(Tensor::from_slice(&[3], &[1.0f32]).is_err());
    /// ```
    pub fn from_slice<T: Element>(shape: &[u64], data: &[T]) -> Result<Tensor, Error> {
        let numel = numel(shape)?;
        if numel != data.len() as u64 {
            return Err(Error::internal(format!(
                "tensor shape {shape:?} holds {numel} elements, but {} were given",
                data.len()
            )));
        }
        let bytes = if cfg!(target_endian = "little") {
            // Tensors are little-endian, like wasm32 and x86-64: one copy of the bytes.
            bytemuck::cast_slice::<T, u8>(data).to_vec()
        } else {
            let mut bytes = Vec::with_capacity(data.len() * T::SIZE);
            for &x in data {
                x.write_le(&mut bytes);
            }
            bytes
        };
        Ok(Tensor {
            name: String::new(),
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            data: bytes,
        })
    }

    /// The elements, when the tensor's dtype is `T` and its data matches its shape.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, Error> {
        if self.dtype != T::DTYPE {
            return Err(Error::internal(format!(
                "expected a {:?} tensor, the model gave {:?}",
                T::DTYPE,
                self.dtype
            )));
        }
        self.check()?;
        Ok(self.data.chunks_exact(T::SIZE).map(T::read_le).collect())
    }

    /// The elements converted to `f64`, whatever the dtype (half precision excepted).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>, Error> {
        Ok(match self.dtype {
            Dtype::Float32 => self.to_vec::<f32>()?.into_iter().map(f64::from).collect(),
            Dtype::Float64 => self.to_vec::<f64>()?,
            Dtype::Int64 => self
                .to_vec::<i64>()?
                .into_iter()
                .map(|x| x as f64)
                .collect(),
            Dtype::Int32 => self.to_vec::<i32>()?.into_iter().map(f64::from).collect(),
            Dtype::Int16 => self.to_vec::<i16>()?.into_iter().map(f64::from).collect(),
            Dtype::Int8 => self.to_vec::<i8>()?.into_iter().map(f64::from).collect(),
            Dtype::Uint8 => self.to_vec::<u8>()?.into_iter().map(f64::from).collect(),
            Dtype::Boolean => self
                .to_vec::<bool>()?
                .into_iter()
                .map(|b| b as u8 as f64)
                .collect(),
            Dtype::Float16 | Dtype::Bfloat16 => {
                return Err(Error::internal(
                    "half-precision tensors are not supported here; use float32",
                ));
            }
        })
    }

    /// The same tensor under another name.
    pub fn named(mut self, name: impl Into<String>) -> Tensor {
        self.name = name.into();
        self
    }

    /// The shape without its leading batch dimension of 1, if it has one.
    pub fn unbatched_shape(&self) -> &[u64] {
        match self.shape.split_first() {
            Some((1, rest)) => rest,
            _ => &self.shape,
        }
    }

    /// The number of elements its shape holds.
    pub fn numel(&self) -> u64 {
        numel(&self.shape).unwrap_or(u64::MAX)
    }

    /// Checks that the data length is the element count times the dtype size.
    pub fn check(&self) -> Result<(), Error> {
        let want = numel(&self.shape)?.checked_mul(dtype_size(self.dtype) as u64);
        if want != Some(self.data.len() as u64) {
            return Err(Error::internal(format!(
                "tensor of shape {:?} and dtype {:?} has {} bytes of data",
                self.shape,
                self.dtype,
                self.data.len()
            )));
        }
        Ok(())
    }
}

fn numel(shape: &[u64]) -> Result<u64, Error> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::internal(format!("tensor shape {shape:?} overflows")))
}

/// Finds the output called `key` among a model's outputs: an exact name, or the last
/// segment of a nested one (`"1.0.boxes"` matches `"boxes"`).
pub fn find_output<'a>(outputs: &'a [Tensor], key: &str) -> Option<&'a Tensor> {
    outputs.iter().find(|t| t.name == key).or_else(|| {
        outputs
            .iter()
            .find(|t| t.name.rsplit('.').next() == Some(key))
    })
}
