#!/usr/bin/env bash
# Prepared for the next session, NOT RUN in session 7 (no device time left): A/B/C of the
# `pred` variant (docs/perf/s7/variants/pred: the copy loops keep up to INC_UNROLL loads in
# flight in a thread's last, partial group too) and the `xslice` variant (variants/xslice:
# the copy-out takes the next chunk of every other slice in one iteration) against the
# current kernels, at worlds 4 and 2 (4-GPU machine), every element checked by the bench.
# Why: at world 4 the copy-in two-shot costs 7.4 / 14.3 / 21.8 us more than the zero-copy
# push form at 4 / 8 / 16 MiB (run 44) for the same NVLink bytes: only the copy-out differs.
# With the 128-block grid a thread gets 1-2 chunks of each slice at 4-8 MiB, so the unrolled
# loops of inc_copy_out (copy-out) and inc_copy_in_g (scatter) mostly run their
# one-load-at-a-time tail, slice after slice (at 16 MiB they do run once: not the whole
# story; profile the Gather step with ncu too).
# Set-up here: mkdir -p gpu/v/pred gpu/v/xslice && cp kernels/common.cuh gpu/v/pred/ &&
#   cp kernels/two_shot.cu gpu/v/xslice/ &&
#   (cd gpu/v/pred && patch common.cuh < ../../../docs/perf/s7/variants/pred/common.cuh.patch) &&
#   (cd gpu/v/xslice && patch two_shot.cu < ../../../docs/perf/s7/variants/xslice/two_shot.cu.patch)
# (ptxas: the f32 two-shot instances spill 44/88 bytes, base 24/36: watch f32.)
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rpred; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
S=256K,512K,1M,2M,4M,8M,16M,32M,64M,256M
for n in 4 2; do
  for rep in 1 2; do
    for v in base pred xslice; do
      kd=; [ $v != base ] && kd=$PWD/gpu/v/$v
      INC_KERNEL_DIR=$kd INC_CACHE_DIR=/tmp/cp-$v timeout 90 $I launch -n $n -- $I bench --graph --algo one-shot,two-shot,zero-copy --sizes $S --iters 8 --warmup 2 > $w/${v}_w${n}_$rep.txt 2>&1; echo rc=$? >> $w/${v}_w${n}_$rep.txt
    done
  done
done
tar czf "$out/rpred.tgz" -C /tmp rpred
