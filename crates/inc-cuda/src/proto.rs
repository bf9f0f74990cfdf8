//! Protocol vocabulary (PROTOCOL.md v1) that inc-cuda needs: data types, ops, algorithms,
//! the call signature, the signal-pad layout, error codes and [`ErrorRecord`].
//!
//! Everything comes from inc-proto, the one source of protocol constants (the kernels'
//! kernels/proto.cuh is generated from it); this module adds the u64 forms inc-cuda's size
//! arithmetic uses.

pub use inc_proto::{
    abort_word, call_sig, error_code_name, error_record_from_le_bytes, flag_word, Algo, DType,
    ErrorRecord, PadLayout, ReduceOp, ERROR_RECORD_BYTES, ERR_CALL_MISMATCH, ERR_PEER_ABORT,
    ERR_SEQ_MISMATCH, ERR_TIMEOUT, MAX_BLOCKS, MAX_RANKS, PAD_PROBE, ZERO_COPY_SIG,
};

/// Bytes of one data chunk (one 128-bit load/store), as u64 for size arithmetic.
pub const CHUNK_BYTES: u64 = inc_proto::CHUNK_BYTES as u64;

/// Name used in kernel entry points and `// STEP` markers (`one_shot`, `two_shot`, `hcm`,
/// `push_one_shot`): [`Algo::kernel_name`].
pub const fn kernel_name(algo: Algo) -> &'static str {
    algo.kernel_name()
}

/// PROTOCOL.md step names of the `inc` program of `algo`, from inc-proto (the kernels'
/// `// STEP` markers must list exactly these; inc-sim's tests hold its programs to them).
pub fn step_names(algo: Algo) -> Vec<&'static str> {
    inc_proto::step_names(algo).to_vec()
}
