//! Shared vocabulary of the inc workspace (data types, reduction ops, algorithms, the call
//! signature, the signal-pad layout, error codes), defined in inc-proto and re-exported
//! here so that `inc_sim::X` and `inc_sim::types::X` keep naming them.

pub use inc_proto::types::*;
