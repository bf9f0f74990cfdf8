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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sig_is_fnv1a_of_the_11_bytes() {
        let bytes: Vec<u8> = [1u8, 2, 3]
            .into_iter()
            .chain(1000u64.to_le_bytes())
            .collect();
        let mut h: u32 = 0x811c9dc5;
        for b in bytes {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x01000193);
        }
        assert_eq!(call_sig(Algo::TwoShot, DType::F32, ReduceOp::Max, 1000), h);
        // counts that differ only above bit 32 still differ
        assert_ne!(
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, 1),
            call_sig(Algo::OneShot, DType::F32, ReduceOp::Sum, 1 + (1u64 << 32))
        );
    }

    #[test]
    fn error_record_round_trips_through_bytes() {
        let r = ErrorRecord {
            code: ERR_TIMEOUT,
            rank: 3,
            block: 17,
            peer: 5,
            phase: 2,
            _pad: 0,
            expected: flag_word(9, 0xdead_beef),
            seen: flag_word(8, 0xdead_beef),
        };
        let mut b = [0u8; ERROR_RECORD_BYTES];
        b[0..4].copy_from_slice(&r.code.to_le_bytes());
        b[4..8].copy_from_slice(&r.rank.to_le_bytes());
        b[8..12].copy_from_slice(&r.block.to_le_bytes());
        b[12..16].copy_from_slice(&r.peer.to_le_bytes());
        b[16..20].copy_from_slice(&r.phase.to_le_bytes());
        b[24..32].copy_from_slice(&r.expected.to_le_bytes());
        b[32..40].copy_from_slice(&r.seen.to_le_bytes());
        assert_eq!(error_record_from_le_bytes(&b), r);
        let s = r.to_string();
        assert!(
            s.contains("timeout on rank 3 block 17 (peer 5, step 2)"),
            "{s}"
        );
        assert!(s.contains("epoch 9"), "{s}");
    }

    #[test]
    fn pad_layout_matches_protocol() {
        assert_eq!(PadLayout::ABORT, 0);
        let flags = 2 * MAX_BLOCKS * MAX_RANKS * 8;
        assert_eq!(PadLayout::MID, 64 + flags);
        assert_eq!(PadLayout::END, 64 + 2 * flags);
        // one epoch word per block after the flags
        assert_eq!(PadLayout::EPOCHS, 64 + 3 * flags);
        assert_eq!(PadLayout::USED, 64 + 3 * flags + 4 * MAX_BLOCKS);
        assert_eq!(PadLayout::PAD_BYTES % 4096, 0);
    }
}
