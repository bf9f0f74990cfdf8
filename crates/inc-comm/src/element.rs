//! [`Element`]: the element types a communicator reduces, on the host and on the device
//! (sealed: bf16, f16, f32).

use half::{bf16, f16};
use inc_sim::DType;

mod sealed {
    pub trait Sealed {}
    impl Sealed for half::bf16 {}
    impl Sealed for half::f16 {}
    impl Sealed for f32 {}
}

/// An element type an allreduce can take: `half::bf16`, `half::f16` or `f32`; the one
/// bound of host calls ([`Comm::allreduce_host`](crate::Comm::allreduce_host)) and device
/// calls ([`Comm::allreduce`](crate::Comm::allreduce), whose buffers cudarc types by it:
/// it is a `cudarc::driver::DeviceRepr`).
pub trait Element:
    sealed::Sealed
    + bytemuck::Pod
    + cudarc::driver::DeviceRepr
    + Copy
    + Send
    + Sync
    + PartialEq
    + 'static
{
    /// The inc-sim dtype of this type.
    const DTYPE: DType;
    /// Widens to f32 (exact for all three types).
    fn to_f32(self) -> f32;
    /// Rounds an f32 to this type (round to nearest even).
    fn from_f32(v: f32) -> Self;
}

impl Element for bf16 {
    const DTYPE: DType = DType::Bf16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_and_sizes_match() {
        assert_eq!(<bf16 as Element>::DTYPE.size(), std::mem::size_of::<bf16>());
        assert_eq!(<f16 as Element>::DTYPE.size(), std::mem::size_of::<f16>());
        assert_eq!(<f32 as Element>::DTYPE.size(), 4);
        assert_eq!(<bf16 as Element>::from_f32(1.5).to_f32(), 1.5);
        assert_eq!(<f16 as Element>::from_f32(-2.25).to_f32(), -2.25);
    }
}
