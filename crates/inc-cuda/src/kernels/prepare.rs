//! Validation of a call and its kernel arguments (no device access): `plan`, `prepare`,
//! `prepare_push`, `prepare_symmetric`.

use super::*;

impl Kernels {
    /// The launch configuration a call would use (same inputs give the same plan on every
    /// rank of identical GPUs: it depends on the instance's own occupancy, never on which
    /// other instances happen to be loaded). Compiles the instance on first use.
    pub fn plan(
        &self,
        bufs: &PeerBuffers,
        algo: Algo,
        dtype: DType,
        op: ReduceOp,
        count: u64,
        blocks: Option<u32>,
    ) -> Result<LaunchPlan> {
        let limits = DeviceLimits {
            sm_count: self.sm_count,
            blocks_per_sm: self.occupancy(algo, dtype, op)?,
            ranks_on_device: bufs.ranks_on_device(),
        };
        let mut plan = launch::plan(algo, dtype, count, &limits, blocks)?;
        if algo == Algo::PushOneShot && blocks.is_none() && plan.blocks == 1 {
            // A block just large enough for the LL lines of a small call (measured on 2
            // and 4 H200s: 0.05-0.1 us faster at 1-2 KiB, equal above).
            let lines = launch::chunks(dtype, count).unwrap_or(0).saturating_mul(2);
            plan.threads =
                u32::try_from((lines.div_ceil(32) * 32).clamp(64, u64::from(launch::LL_THREADS)))
                    .unwrap_or(launch::LL_THREADS);
        }
        Ok(plan)
    }

    /// Blocks of a two-shot of lines: 8 threads a line, every line of the W slices, at
    /// most the co-resident cap (the same on every rank).
    fn lines_blocks(
        &self,
        bufs: &PeerBuffers,
        dtype: DType,
        op: ReduceOp,
        bytes: u64,
        threads: u32,
    ) -> Result<u32> {
        let limits = DeviceLimits {
            sm_count: self.sm_count,
            blocks_per_sm: self.occupancy(Algo::TwoShot, dtype, op)?,
            ranks_on_device: bufs.ranks_on_device(),
        };
        Ok(launch::lines_blocks(bytes, bufs.world(), threads, &limits))
    }

    /// Validate a call and build its kernel arguments (no device access).
    pub fn prepare(&self, bufs: &PeerBuffers, call: &RawCall) -> Result<(KernelArgs, LaunchPlan)> {
        if call.algo == Algo::PushOneShot {
            return self.prepare_push(
                bufs,
                call.dtype,
                call.op,
                call.input,
                call.output,
                call.count,
                call.options,
            );
        }
        let ((pads, data), bytes) =
            self.check_io(bufs, call.dtype, call.input, call.output, call.count)?;
        let timeout_ns = timeout_ns(call.options.timeout)?;
        let own_data = bufs.data_ptr();
        let data_len = 2 * bufs.half_bytes();
        let zero_copy = call.input >= own_data && call.input < own_data + data_len;
        // The copy-in two-shot of a call of its own that fits the lines region runs as
        // 128-byte flagged lines, no barrier, and needs no room in the parity halves
        // (PROTOCOL.md "two-shot of lines"); every rank decides alike from the bytes, the
        // world and the slot size.
        let slot = bufs.push_slot_bytes();
        let lines = !zero_copy
            && call.algo == Algo::TwoShot
            && inc_proto::lines::use_lines(
                bytes,
                bufs.world(),
                slot as usize,
                !call.piece.defer_gather && call.piece.prev_count == 0,
            );
        let mut flags = if lines { FLAG_LINES } else { 0 };
        let mut zc_offset = 0;
        if zero_copy {
            zc_offset = call.input - own_data;
            let need = launch::chunks(call.dtype, call.count)
                .unwrap_or(u64::MAX)
                .saturating_mul(16);
            if matches!(call.algo, Algo::Hcm | Algo::TwoShot) {
                return Err(CudaError::InvalidArgument(format!(
                    "{} has no zero-copy variant (peers store into the symmetric buffer during the call): pass an input outside it, or use one-shot",
                    call.algo
                )));
            }
            if zc_offset % 16 != 0 || zc_offset.saturating_add(need) > data_len {
                return Err(CudaError::InvalidArgument(format!(
                    "zero-copy input at offset {zc_offset} (+{need} bytes) must be 16-byte aligned and inside the {data_len}-byte symmetric data area"
                )));
            }
            let overlap = call.output < call.input + bytes && call.input < call.output + bytes;
            if call.algo == Algo::OneShot && overlap {
                return Err(CudaError::InvalidArgument(
                    "zero-copy one-shot cannot write its output over its input (peers still read it); use two-shot or a separate output".into(),
                ));
            }
            flags |= FLAG_ZERO_COPY;
        } else if !lines {
            launch::check_capacity(
                call.algo,
                call.dtype,
                call.count,
                bufs.half_bytes(),
                bufs.world(),
            )?;
        }
        if call.input % 16 == 0 && call.output % 16 == 0 {
            flags |= FLAG_IO_ALIGNED;
        }
        let mut hcm = [0u32; 4];
        if call.algo == Algo::Hcm {
            hcm = bufs.hcm().ok_or_else(|| {
                CudaError::InvalidArgument(
                    "hcm needs the hybrid-cube-mesh row: PeerBuffers::set_hcm".into(),
                )
            })?;
        }
        // A piece after the first also copies out the previous piece: the grid of the
        // larger of the two (the same on every rank).
        let mut plan = self.plan(
            bufs,
            call.algo,
            call.dtype,
            call.op,
            call.count.max(call.piece.prev_count),
            call.options.blocks,
        )?;
        if lines && call.options.blocks.is_none() {
            plan.blocks = self.lines_blocks(bufs, call.dtype, call.op, bytes, plan.threads)?;
        }
        let world = bufs.world() as u32;
        let args = KernelArgs {
            pad: pads,
            data,
            input: call.input,
            output: call.output,
            count: call.count,
            half_bytes: bufs.half_bytes(),
            zc_offset,
            timeout_ns,
            host: bufs.host_block(),
            rank: bufs.rank() as u32,
            world,
            sig: call_sig(call.algo, call.dtype, call.op, call.count),
            flags,
            hcm,
            scale: if call.op == ReduceOp::Avg {
                1.0 / world as f32
            } else {
                1.0
            },
            // every call: the lines form's layout, and the window of the push region
            // every kernel zeroes (PROTOCOL.md "Wrap", rule 5)
            push_slot_bytes: u32::try_from(slot).unwrap_or(u32::MAX),
            sym: [0; MAX_RANKS],
            prev_count: 0,
        };
        let args = piece_args(args, call)?;
        Ok((args, plan))
    }

    /// The checks every call starts with, in order: a live communicator, buffers of this
    /// device, a byte size that fits u64, element-aligned non-null input and output.
    /// Gives the ranks' (pad, data) addresses and the call's byte size.
    fn check_io(
        &self,
        bufs: &PeerBuffers,
        dtype: DType,
        input: u64,
        output: u64,
        count: u64,
    ) -> Result<(PeerAddresses, u64)> {
        if let Some(r) = bufs.poisoned() {
            return Err(CudaError::Poisoned(r));
        }
        if !Arc::ptr_eq(bufs.context(), &self.ctx)
            && bufs.context().cu_device() != self.ctx.cu_device()
        {
            return Err(CudaError::InvalidArgument(
                "buffers and kernels belong to different devices".into(),
            ));
        }
        let addresses = bufs.addresses()?;
        let es = dtype.size() as u64;
        let bytes = launch::tensor_bytes(dtype, count).ok_or_else(|| {
            CudaError::InvalidArgument(format!("{count} elements overflow u64 bytes"))
        })?;
        if input % es != 0 || output % es != 0 {
            return Err(CudaError::InvalidArgument(format!(
                "input {input:#x} / output {output:#x} not aligned to the {es}-byte {dtype}"
            )));
        }
        if input == 0 || output == 0 {
            return Err(CudaError::InvalidArgument("null input or output".into()));
        }
        Ok((addresses, bytes))
    }

    /// Validate a push one-shot call and build its kernel arguments (no device access).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_push(
        &self,
        bufs: &PeerBuffers,
        dtype: DType,
        op: ReduceOp,
        input: u64,
        output: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<(KernelArgs, LaunchPlan)> {
        let ((pads, data), bytes) = self.check_io(bufs, dtype, input, output, count)?;
        let slot = bufs.push_slot_bytes();
        let cap = launch::push_capacity(slot);
        if bytes > cap {
            return Err(CudaError::InvalidArgument(format!(
                "push-one-shot carries at most {cap} bytes per rank (half the {slot}-byte LL slot); {bytes} bytes requested: use one-shot or two-shot"
            )));
        }
        let timeout_ns = timeout_ns(options.timeout)?;
        let mut flags = 0;
        if input % 16 == 0 && output % 16 == 0 {
            flags |= FLAG_IO_ALIGNED;
        }
        let plan = self.plan(bufs, Algo::PushOneShot, dtype, op, count, options.blocks)?;
        let world = bufs.world() as u32;
        let args = KernelArgs {
            pad: pads,
            data,
            input,
            output,
            count,
            half_bytes: bufs.half_bytes(),
            zc_offset: 0,
            timeout_ns,
            host: bufs.host_block(),
            rank: bufs.rank() as u32,
            world,
            sig: inc_proto::push::push_call_sig(dtype, op, count),
            flags,
            hcm: [0; 4],
            scale: if op == ReduceOp::Avg {
                1.0 / world as f32
            } else {
                1.0
            },
            push_slot_bytes: u32::try_from(slot).unwrap_or(u32::MAX),
            sym: [0; MAX_RANKS],
            prev_count: 0,
        };
        Ok((args, plan))
    }

    /// Validate a zero-copy two-shot call of `form` on symmetric memory and build its
    /// arguments (no device access): `count` elements of `dtype` at byte `offset` of every
    /// rank's allocation, reduced in place.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_symmetric(
        &self,
        bufs: &PeerBuffers,
        sym: &SymmetricMemory,
        form: ZeroCopyForm,
        dtype: DType,
        op: ReduceOp,
        offset: u64,
        count: u64,
        options: CallOptions,
    ) -> Result<(KernelArgs, LaunchPlan)> {
        if sym.rank() != bufs.rank() || !Arc::ptr_eq(sym.context(), bufs.context()) {
            return Err(CudaError::InvalidArgument(
                "symmetric memory and buffers belong to different ranks or devices".into(),
            ));
        }
        let input = sym.base().saturating_add(offset);
        let ((pads, _), bytes) = self.check_io(bufs, dtype, input, input, count)?;
        let end = offset.checked_add(bytes.div_ceil(16) * 16);
        if offset % 16 != 0 || end.is_none_or(|e| e > sym.bytes()) {
            return Err(CudaError::InvalidArgument(format!(
                "zero-copy two-shot of {bytes} bytes at offset {offset}: the offset must be 16-byte aligned and the call inside the {}-byte symmetric allocation",
                sym.bytes()
            )));
        }
        if form == ZeroCopyForm::Lines {
            // the copy-in two-shot of lines, in place on my tensor (its own validation;
            // every rank decides alike from the bytes, the world and the slot size)
            let call = RawCall {
                algo: Algo::TwoShot,
                dtype,
                op,
                input,
                output: input,
                count,
                options,
                piece: Piece::WHOLE,
            };
            let (args, plan) = self.prepare(bufs, &call)?;
            if args.flags & FLAG_LINES == 0 {
                return Err(CudaError::InvalidArgument(format!(
                    "zero-copy call of {bytes} bytes does not fit the lines region"
                )));
            }
            return Ok((args, plan));
        }
        let tensors = sym.peer_bases()?;
        let (data, flags) = if form == ZeroCopyForm::Push {
            let cap = launch::zero_copy_push_max_count(dtype, bufs.half_bytes(), bufs.world());
            if count > cap {
                return Err(CudaError::TooLarge {
                    algo: Algo::TwoShot,
                    bytes,
                    needed: launch::tensor_bytes(dtype, count).unwrap_or(u64::MAX),
                    capacity: launch::tensor_bytes(dtype, cap).unwrap_or(u64::MAX),
                });
            }
            let (_, data) = bufs.addresses()?;
            (data, FLAG_ZERO_COPY | FLAG_IO_ALIGNED | FLAG_ZC_PUSH)
        } else {
            (tensors, FLAG_ZERO_COPY | FLAG_IO_ALIGNED)
        };
        let timeout_ns = timeout_ns(options.timeout)?;
        let mut plan = self.plan(bufs, Algo::TwoShot, dtype, op, count, options.blocks)?;
        if form == ZeroCopyForm::Push && options.blocks.is_none() {
            plan.blocks = launch::zero_copy_push_blocks(
                dtype,
                count,
                bufs.world(),
                plan.threads,
                plan.blocks,
            );
        }
        let world = bufs.world() as u32;
        let args = KernelArgs {
            pad: pads,
            data,
            input,
            output: input,
            count,
            half_bytes: bufs.half_bytes(),
            zc_offset: offset,
            timeout_ns,
            host: bufs.host_block(),
            rank: bufs.rank() as u32,
            world,
            sig: call_sig(Algo::TwoShot, dtype, op, count) ^ ZERO_COPY_SIG,
            flags,
            hcm: [0; 4],
            scale: if op == ReduceOp::Avg {
                1.0 / world as f32
            } else {
                1.0
            },
            // the window of the push region every kernel zeroes (PROTOCOL.md "Wrap", rule 5)
            push_slot_bytes: u32::try_from(bufs.push_slot_bytes()).unwrap_or(u32::MAX),
            sym: tensors,
            prev_count: 0,
        };
        Ok((args, plan))
    }
}

/// The flags and argument of a copy-in two-shot piece (PROTOCOL.md "Deferred gather");
/// `args` unchanged for a whole call.
fn piece_args(mut args: KernelArgs, call: &RawCall) -> Result<KernelArgs> {
    let Piece {
        defer_gather,
        prev_count,
    } = call.piece;
    if !defer_gather && prev_count == 0 {
        return Ok(args);
    }
    if call.algo != Algo::TwoShot || args.flags & FLAG_ZERO_COPY != 0 {
        return Err(CudaError::InvalidArgument(format!(
            "a deferred gather is for the copy-in two-shot in pieces, not {}{}",
            call.algo,
            if args.flags & FLAG_ZERO_COPY != 0 {
                " (zero-copy)"
            } else {
                ""
            }
        )));
    }
    let prev_bytes = launch::tensor_bytes(call.dtype, prev_count).unwrap_or(u64::MAX);
    if prev_count > 0 && (prev_bytes % 16 != 0 || call.output < prev_bytes) {
        return Err(CudaError::InvalidArgument(format!(
            "previous piece of {prev_count} elements ({prev_bytes} bytes) must be whole 16-byte chunks ending at the output {:#x}",
            call.output
        )));
    }
    if defer_gather {
        args.flags |= FLAG_DEFER_GATHER;
    }
    if prev_count > 0 {
        args.flags |= FLAG_PREV_GATHER;
        args.prev_count = prev_count;
    }
    Ok(args)
}

/// The kernel's timeout in nanoseconds (saturating); zero is an error.
fn timeout_ns(timeout: Duration) -> Result<u64> {
    let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
    if ns == 0 {
        return Err(CudaError::InvalidArgument("timeout must be > 0".into()));
    }
    Ok(ns)
}
