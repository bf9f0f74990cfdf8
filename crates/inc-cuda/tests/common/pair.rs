#![allow(clippy::unwrap_used, clippy::needless_range_loop)]
//! Two virtual ranks on one GPU with a checked allreduce (`gpu_lazy.rs`,
//! `gpu_embedded.rs`): each kernel is checked to be valid by a real 2-rank allreduce.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DevicePtr};
use half::bf16;
use inc_cuda::{Algo, CallOptions, DType, Kernels, PeerBuffers, Piece, RawCall, ReduceOp};

/// Two virtual ranks on one GPU, mapped to each other.
fn pair(ctx: &Arc<CudaContext>) -> (Vec<PeerBuffers>, Vec<Arc<CudaStream>>) {
    let mut b0 = PeerBuffers::new(ctx, 0, 2, 1 << 20).unwrap();
    let mut b1 = PeerBuffers::new(ctx, 1, 2, 1 << 20).unwrap();
    b0.map_local(1, &b1).unwrap();
    b1.map_local(0, &b0).unwrap();
    for b in [&mut b0, &mut b1] {
        b.set_ranks_on_device(2).unwrap();
        b.verify_peers().unwrap();
    }
    let streams = (0..2).map(|_| ctx.new_stream().unwrap()).collect();
    (vec![b0, b1], streams)
}

enum Buf {
    H(CudaSlice<u16>),
    F(CudaSlice<f32>),
}

/// One in-place sum allreduce of `n` elements over the pair, rank r launching with `ks[r]`;
/// checks the exact result (small integers: exact in bf16 and f32).
pub fn allreduce_check(ks: [&Kernels; 2], ctx: &Arc<CudaContext>, algo: Algo, d: DType) {
    let (bufs, streams) = pair(ctx);
    let n = 4099usize;
    let val = |r: usize, i: usize| (i % 13) as f32 + r as f32;
    let mut xs = Vec::new();
    for r in 0..2 {
        let v: Vec<f32> = (0..n).map(|i| val(r, i)).collect();
        xs.push(match d {
            DType::F32 => Buf::F(streams[r].clone_htod(&v).unwrap()),
            DType::Bf16 => Buf::H(
                streams[r]
                    .clone_htod(
                        &v.iter()
                            .map(|x| bf16::from_f32(*x).to_bits())
                            .collect::<Vec<_>>(),
                    )
                    .unwrap(),
            ),
            DType::F16 => panic!("f32 and bf16 only"),
        });
    }
    for s in &streams {
        s.synchronize().unwrap();
    }
    for r in 0..2 {
        let s = &streams[r];
        let p = match &xs[r] {
            Buf::H(x) => x.device_ptr(s).0,
            Buf::F(x) => x.device_ptr(s).0,
        };
        let call = RawCall {
            algo,
            dtype: d,
            op: ReduceOp::Sum,
            input: p,
            output: p,
            count: n as u64,
            options: CallOptions::default(),
            piece: Piece::WHOLE,
        };
        // SAFETY: xs[r] holds n elements and lives until the syncs below.
        unsafe { ks[r].allreduce_raw(&bufs[r], s, &call) }.unwrap();
    }
    for s in &streams {
        s.synchronize().unwrap();
    }
    for r in 0..2 {
        bufs[r].check().unwrap();
        let got: Vec<f32> = match &xs[r] {
            Buf::F(x) => streams[r].clone_dtoh(x).unwrap(),
            Buf::H(x) => streams[r]
                .clone_dtoh(x)
                .unwrap()
                .iter()
                .map(|b| bf16::from_bits(*b).to_f32())
                .collect(),
        };
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, val(0, i) + val(1, i), "{algo} {d} rank {r} element {i}");
        }
    }
}
