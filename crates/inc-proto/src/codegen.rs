//! kernels/proto.cuh, generated from this crate's constants: the `#define`s of the limits,
//! the signal-pad and push layouts, the host block, error codes and flag bits, and the
//! `IncErrorRecord` / `IncArgs` structs with `static_assert`s on their sizes (checked by
//! NVRTC at every kernel build). Field offsets are written as comments: NVRTC 13.0 has no
//! `__builtin_offsetof` and there are no system headers; the fields are generated in
//! Rust's order from the table whose offsets a test compares with `offset_of!`.
//!
//! `cargo xtask codegen` writes [`header`] to [`HEADER_PATH`]; a test of this crate fails
//! when the committed file differs.

use std::fmt::Write as _;
use std::mem::offset_of;

use crate::args::{
    KernelArgs, COPY_BLOCK_DIV, FLAG_DEFER_GATHER, FLAG_IO_ALIGNED, FLAG_LINES, FLAG_PREV_GATHER,
    FLAG_ZC_PUSH, FLAG_ZERO_COPY, HOST_ABORT, HOST_BLOCK_BYTES, HOST_ERROR, KERNEL_ARGS_BYTES,
    MAX_THREADS,
};
use crate::lines::{LinesLayout, LINE, LINE_PAYLOAD, SLICE_LINES_ALIGN};
use crate::push::{PushLayout, LINE_BYTES, PUSH_BUFFERS, SEQ_WINDOW};
use crate::types::{
    ErrorRecord, PadLayout, ABORT_RANK_MASK, CHUNK_BYTES, ERROR_RECORD_BYTES, ERR_CALL_MISMATCH,
    ERR_PEER_ABORT, ERR_SEQ_MISMATCH, ERR_TIMEOUT, MAX_BLOCKS, MAX_RANKS,
};

/// Where the generated header lives, relative to the workspace root.
pub const HEADER_PATH: &str = "kernels/proto.cuh";

/// One field of a generated C struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// C type (`u64`, `u32`, `float`).
    pub c_type: &'static str,
    /// Field name in C.
    pub name: &'static str,
    /// Array length, 0 for a scalar.
    pub len: usize,
    /// Byte offset in the Rust struct (`offset_of!`).
    pub offset: usize,
    /// Comment after the field.
    pub doc: &'static str,
}

impl Field {
    /// Bytes of one element of the C type.
    pub const fn elem_bytes(&self) -> usize {
        match self.c_type.as_bytes() {
            b"u64" => 8,
            _ => 4,
        }
    }

    /// Bytes of the field.
    pub const fn bytes(&self) -> usize {
        let n = if self.len == 0 { 1 } else { self.len };
        n * self.elem_bytes()
    }
}

macro_rules! field {
    ($s:ty, $c:literal, $f:ident, $len:expr, $doc:literal) => {
        Field {
            c_type: $c,
            name: stringify!($f),
            len: $len,
            offset: offset_of!($s, $f),
            doc: $doc,
        }
    };
}

/// `IncArgs`, field by field, in the order and at the offsets of [`KernelArgs`].
pub fn kernel_args_fields() -> Vec<Field> {
    vec![
        field!(
            KernelArgs,
            "u64",
            pad,
            MAX_RANKS,
            "signal pad of every rank (own included)"
        ),
        field!(
            KernelArgs,
            "u64",
            data,
            MAX_RANKS,
            "data area of every rank"
        ),
        field!(KernelArgs, "u64", input, 0, "user input (device address)"),
        field!(
            KernelArgs,
            "u64",
            output,
            0,
            "user output (may equal input)"
        ),
        field!(KernelArgs, "u64", count, 0, "elements"),
        field!(
            KernelArgs,
            "u64",
            half_bytes,
            0,
            "bytes of one parity half of the data area"
        ),
        field!(
            KernelArgs,
            "u64",
            zc_offset,
            0,
            "zero-copy: byte offset of the input inside the data area"
        ),
        field!(KernelArgs, "u64", timeout_ns, 0, "per wait"),
        field!(
            KernelArgs,
            "u64",
            host,
            0,
            "mapped host block (abort word + error mirror), 0 = none"
        ),
        field!(KernelArgs, "u32", rank, 0, "this rank"),
        field!(KernelArgs, "u32", world, 0, "world size"),
        field!(
            KernelArgs,
            "u32",
            sig,
            0,
            "call signature (FNV-1a of algo, dtype, op, count)"
        ),
        field!(KernelArgs, "u32", flags, 0, "INC_FLAG_*"),
        field!(KernelArgs, "u32", hcm, 4, "hcm: n0, n1, n2, relay"),
        field!(KernelArgs, "float", scale, 0, "avg: 1/world (f32); else 1"),
        field!(
            KernelArgs,
            "u32",
            push_slot_bytes,
            0,
            "bytes of one slot of the push region (every call; PROTOCOL.md \"Wrap\" rule 5)"
        ),
        field!(
            KernelArgs,
            "u64",
            sym,
            MAX_RANKS,
            "zero-copy two-shot, push form: every rank's symmetric tensor"
        ),
        field!(
            KernelArgs,
            "u64",
            prev_count,
            0,
            "copy-in two-shot in pieces: elements of the previous piece"
        ),
    ]
}

/// `IncErrorRecord`, field by field, at the offsets of [`ErrorRecord`] (the Rust `_pad` is
/// `pad_` in C).
pub fn error_record_fields() -> Vec<Field> {
    let mut pad = field!(ErrorRecord, "u32", _pad, 0, "keeps expected 8-byte aligned");
    pad.name = "pad_";
    vec![
        field!(ErrorRecord, "u32", code, 0, "INC_ERR_*; 0 = no error"),
        field!(ErrorRecord, "u32", rank, 0, "rank that saw the failure"),
        field!(ErrorRecord, "u32", block, 0, "block that saw it"),
        field!(ErrorRecord, "u32", peer, 0, "peer rank involved"),
        field!(ErrorRecord, "u32", phase, 0, "step index of the program"),
        pad,
        field!(ErrorRecord, "u64", expected, 0, "flag value waited for"),
        field!(ErrorRecord, "u64", seen, 0, "flag value last seen"),
    ]
}

fn define(out: &mut String, name: &str, value: impl std::fmt::Display, doc: &str) {
    if doc.is_empty() {
        let _ = writeln!(out, "#define {name} {value}");
    } else {
        let _ = writeln!(out, "#define {name} {value} // {doc}");
    }
}

fn structure(out: &mut String, name: &str, fields: &[Field], bytes: usize, rust: &str) {
    let _ = writeln!(out, "struct {name} {{");
    for f in fields {
        let decl = if f.len == 0 {
            format!("{} {};", f.c_type, f.name)
        } else {
            format!("{} {}[{}];", f.c_type, f.name, f.len)
        };
        let _ = writeln!(out, "    {decl:<26}// @{:<3} {}", f.offset, f.doc);
    }
    let _ = writeln!(out, "}};");
    let _ = writeln!(
        out,
        "static_assert(sizeof({name}) == {bytes}, \"{name} must match {rust}\");"
    );
}

/// The text of kernels/proto.cuh.
pub fn header() -> String {
    let mut o = String::new();
    o.push_str(
        "// GENERATED by `cargo xtask codegen` from crates/inc-proto (inc_proto::codegen).\n\
         // Do not edit: change inc-proto, then run `cargo xtask codegen`.\n\
         //\n\
         // The protocol constants and the kernel ABI of docs/PROTOCOL.md. NVRTC compiles this\n\
         // file first (crates/inc-cuda/src/source.rs), before common.cuh; no system headers.\n\n",
    );
    o.push_str("#ifndef INC_PROTO_CUH\n#define INC_PROTO_CUH\n\n");
    o.push_str(
        "typedef unsigned long long u64;\ntypedef unsigned int u32;\ntypedef unsigned short u16;\n\n",
    );
    o.push_str("// Limits.\n");
    define(
        &mut o,
        "INC_MAX_RANKS",
        MAX_RANKS,
        "ranks in one communicator",
    );
    define(
        &mut o,
        "INC_MAX_BLOCKS",
        MAX_BLOCKS,
        "blocks of one launch (flag slots per parity)",
    );
    define(&mut o, "INC_MAX_THREADS", MAX_THREADS, "threads per block");
    define(
        &mut o,
        "INC_CHUNK_BYTES",
        CHUNK_BYTES,
        "one 128-bit load/store",
    );
    o.push_str(
        "\n// Signal pad layout (bytes). Flag arrays are [2][INC_MAX_BLOCKS][INC_MAX_RANKS] u64;\n\
         // INC_PAD_EPOCHS is [INC_MAX_BLOCKS] u32 (block b's last completed epoch).\n",
    );
    define(&mut o, "INC_PAD_ABORT", PadLayout::ABORT, "");
    define(&mut o, "INC_PAD_ERROR", PadLayout::ERROR, "IncErrorRecord");
    define(&mut o, "INC_PAD_START", PadLayout::START, "");
    define(
        &mut o,
        "INC_FLAG_ARRAY_BYTES",
        PadLayout::FLAG_ARRAY_BYTES,
        "",
    );
    define(&mut o, "INC_PAD_MID", PadLayout::MID, "");
    define(&mut o, "INC_PAD_END", PadLayout::END, "");
    define(&mut o, "INC_PAD_EPOCHS", PadLayout::EPOCHS, "");
    define(&mut o, "INC_PAD_USED", PadLayout::USED, "");
    define(
        &mut o,
        "INC_PAD_BYTES",
        PadLayout::PAD_BYTES,
        "data follows the pad",
    );
    o.push_str(
        "\n// Push one-shot (LL) region (after the two parity halves; inc_proto::push::PushLayout):\n\
         // hdr[2][INC_MAX_RANKS] 16-byte lines at INC_PUSH_HDR, slot[2][INC_MAX_RANKS] from INC_PUSH_SLOTS.\n",
    );
    define(&mut o, "INC_PUSH_HDR", PushLayout::HDR, "");
    define(&mut o, "INC_PUSH_SLOTS", PushLayout::HEADER_BYTES, "");
    define(&mut o, "INC_PUSH_BUFFERS", PUSH_BUFFERS, "");
    define(
        &mut o,
        "INC_SCRUB_BYTES",
        crate::push::SCRUB_BYTES,
        "bytes of its own push region a scrubbing call zeroes (PROTOCOL.md \"Wrap\", rule 5)",
    );
    define(
        &mut o,
        "INC_SCRUB_EVERY",
        format!("{}u", crate::push::SCRUB_EVERY),
        "calls per scrubbing pair (a power of two; inc_proto::push::SCRUB_EVERY)",
    );
    define(&mut o, "INC_PUSH_LINE_BYTES", LINE_BYTES, "");
    define(
        &mut o,
        "INC_SEQ_WINDOW",
        format!("{SEQ_WINDOW}u"),
        "a tag ahead of e by more is not newer",
    );
    o.push_str(
        "\n// Lines region (after the push region; inc_proto::lines::LinesLayout): hdr[2][INC_MAX_RANKS]\n\
         // u64 flags, then two parities of INC_MAX_RANKS * push_slot_bytes of 128-byte lines.\n",
    );
    define(&mut o, "INC_LINES_HDR_BYTES", LinesLayout::HEADER_BYTES, "");
    define(&mut o, "INC_LINE_BYTES", LINE, "");
    define(&mut o, "INC_LINE_PAYLOAD", LINE_PAYLOAD, "");
    define(
        &mut o,
        "INC_LINES_ALIGN",
        SLICE_LINES_ALIGN,
        "lines of a slice: a multiple of this",
    );
    o.push_str("\n// Host block (pinned, mapped): abort word, error record mirror.\n");
    define(&mut o, "INC_HOST_ABORT", HOST_ABORT, "");
    define(&mut o, "INC_HOST_ERROR", HOST_ERROR, "");
    define(&mut o, "INC_HOST_BLOCK_BYTES", HOST_BLOCK_BYTES, "");
    o.push_str("\n// Abort word: (1 << 31) | ((rank & INC_ABORT_RANK_MASK) << 8) | reason.\n");
    define(
        &mut o,
        "INC_ABORT_RANK_MASK",
        format!("{ABORT_RANK_MASK:#x}u"),
        "",
    );
    o.push_str("\n// Error codes.\n");
    define(&mut o, "INC_ERR_TIMEOUT", ERR_TIMEOUT, "");
    define(&mut o, "INC_ERR_SEQ_MISMATCH", ERR_SEQ_MISMATCH, "");
    define(&mut o, "INC_ERR_CALL_MISMATCH", ERR_CALL_MISMATCH, "");
    define(&mut o, "INC_ERR_PEER_ABORT", ERR_PEER_ABORT, "");
    o.push_str("\n// IncArgs.flags bits.\n");
    define(
        &mut o,
        "INC_FLAG_ZERO_COPY",
        format!("{FLAG_ZERO_COPY}u"),
        "",
    );
    define(
        &mut o,
        "INC_FLAG_IO_ALIGNED",
        format!("{FLAG_IO_ALIGNED}u"),
        "",
    );
    define(&mut o, "INC_FLAG_ZC_PUSH", format!("{FLAG_ZC_PUSH}u"), "");
    define(&mut o, "INC_FLAG_LINES", format!("{FLAG_LINES}u"), "");
    define(
        &mut o,
        "INC_FLAG_DEFER_GATHER",
        format!("{FLAG_DEFER_GATHER}u"),
        "",
    );
    define(
        &mut o,
        "INC_FLAG_PREV_GATHER",
        format!("{FLAG_PREV_GATHER}u"),
        "",
    );
    define(
        &mut o,
        "INC_COPY_BLOCK_DIV",
        format!("{COPY_BLOCK_DIV}u"),
        "one block in this many copies out the previous piece",
    );
    o.push_str("\n// First failure seen on a rank (inc_proto::ErrorRecord).\n");
    structure(
        &mut o,
        "IncErrorRecord",
        &error_record_fields(),
        ERROR_RECORD_BYTES,
        "inc_proto::ErrorRecord",
    );
    o.push_str("\n// Kernel argument block, passed by value (inc_proto::KernelArgs).\n");
    structure(
        &mut o,
        "IncArgs",
        &kernel_args_fields(),
        KERNEL_ARGS_BYTES,
        "inc_proto::KernelArgs",
    );
    o.push_str("\n#endif // INC_PROTO_CUH\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C struct laid out by C rules (each field at its natural alignment) lands every
    /// field at the Rust offset and ends at the Rust size: the table is complete and in order.
    fn check_c_layout(fields: &[Field], size: usize) {
        let mut at: usize = 0;
        let mut align = 1;
        for f in fields {
            let a = f.elem_bytes();
            align = align.max(a);
            at = at.div_ceil(a) * a;
            assert_eq!(at, f.offset, "{}", f.name);
            at += f.bytes();
        }
        assert_eq!(at.div_ceil(align) * align, size);
    }

    #[test]
    fn tables_match_the_rust_structs() {
        check_c_layout(&kernel_args_fields(), std::mem::size_of::<KernelArgs>());
        check_c_layout(&error_record_fields(), std::mem::size_of::<ErrorRecord>());
    }

    #[test]
    fn header_has_the_names_the_kernels_use() {
        let h = header();
        for name in [
            "#define INC_PAD_EPOCHS 49216",
            "#define INC_MAX_BLOCKS 128",
            "#define INC_FLAG_ZERO_COPY 1u",
            "#define INC_PUSH_SLOTS 256",
            "#define INC_HOST_ERROR 8",
            "static_assert(sizeof(IncArgs) == 296",
            "#define INC_FLAG_PREV_GATHER 16u",
            "u32 push_slot_bytes;",
            "u64 sym[8];",
        ] {
            assert!(h.contains(name), "{name}");
        }
    }
}
