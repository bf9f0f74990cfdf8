#!/usr/bin/env bash
# Prepared for the next session, NOT RUN in session 8 (no device time left): where the
# copy-in two-shot's fixed cost goes. At world 4 the two-shot costs 8.7 us at 1 KiB and 9.7
# at 64 KiB against the one-shot's 3.9 / 4.7 (run 57); one more barrier, a local reduce and
# a local gather should account for ~2.5 us of the ~4.8, so ~2 us are unexplained, and they
# are what 1 MiB at world 4 (13.1 us, target 11.5) misses. The `tsteps` variant
# (docs/perf/s8/variants/tsteps: kernels/one_shot.cu and two_shot.cu with globaltimer marks
# after each step, block 0 of rank 0 printing one call in 2048 with device printf; NVRTC
# 13.0 compiles it, checked here) prints lines
#   TS two-shot ...: 1 <prologue> 2 <scatter> 3 <barrier 1> 4 <reduce> 5 <barrier 2> 6 <gather> 7 <epilogue> ns
# (cumulative ns after kernel entry; the marks add a __syncthreads each).
# Set-up here: mkdir -p gpu/v/tsteps && cp kernels/one_shot.cu kernels/two_shot.cu gpu/v/tsteps/ &&
#   (cd gpu/v/tsteps && patch one_shot.cu < ../../../docs/perf/s8/variants/tsteps/one_shot.cu.patch &&
#    patch two_shot.cu < ../../../docs/perf/s8/variants/tsteps/two_shot.cu.patch)
# (patches against the kernels of commit f3a1f60).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rts; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
for n in 4 2; do
  INC_KERNEL_DIR=$PWD/gpu/v/tsteps INC_CACHE_DIR=/tmp/c-ts timeout 90 $I launch -n $n -- $I bench --graph --graph-calls 50 --algo one-shot,two-shot --sizes 1K,64K,256K,1M,4M --iters 60 --warmup 2 > $w/ts_w$n.txt 2>&1; echo rc=$? >> $w/ts_w$n.txt
  grep "TS " $w/ts_w$n.txt | sort | uniq -c | head -50 > $w/ts_w${n}_lines.txt
done
tar czf "$out/rts.tgz" -C /tmp rts
