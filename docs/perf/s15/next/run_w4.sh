#!/usr/bin/env bash
# For session 16 (4-GPU machine, `carry: ["gpu"]` with gpu/bench = `cargo xtask bench`,
# stripped; ~2 min): is world 4's zero-copy two-shot (~347 GB/s a GPU between 256M and
# 1G) below what the links carry, as world 2's was (session 15, runs 119 and 123)?
# 1. session 11's bw4.cu at 16, 32 and 64 MiB a peer: the marginal rate of each way of
#    storing into 3 peers at once (session 11 measured 2-32 MiB, launch included);
# 2. the zero-copy push two-shot taken apart at world 4 (next/make.py: sonly = scatter and
#    barriers, ronly = barriers and reduce-store; their results are wrong by design)
#    against the control, 16M-256M, alternated twice.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/rw4; mkdir -p "$out" $w
source gpu/env.sh
sed 's/size_t Ps\[3\] = {2ull << 20, 8ull << 20, 32ull << 20};/size_t Ps[3] = {16ull << 20, 32ull << 20, 64ull << 20};/' \
  docs/perf/s11/bw4.cu > /tmp/bw4m.cu
grep -q "16ull << 20, 32ull << 20, 64ull << 20" /tmp/bw4m.cu || echo "bw4.cu sizes not replaced" > $w/error.txt
nvcc -O3 -arch=sm_90 /tmp/bw4m.cu -o /tmp/bw4m > $w/nvcc.txt 2>&1 && timeout 120 /tmp/bw4m 4 > $w/bw4m_w4.txt 2>&1
I=gpu/bench/inc; export INC_BUFFER_BYTES=64M
python3 docs/perf/s15/next/make.py kernels $PWD/gpu/v16n > $w/make.txt 2>&1 || exit 1
for rep in 1 2; do
  for v in nv sonly ronly; do
    export INC_KERNEL_DIR=$PWD/gpu/v16n/$v
    INC_CACHE_DIR=/tmp/c-$v timeout 120 $I launch -n 4 -- $I bench --graph --algo zero-copy --sizes 16M,64M,256M --iters 6 --warmup 1 > $w/w4_${v}_$rep.txt 2>&1; echo rc=$? >> $w/w4_${v}_$rep.txt
  done
done
for v in nv sonly ronly; do echo "$v: $(for r in 1 2; do grep -E '^\[rank 0\] +[0-9]' $w/w4_${v}_$r.txt | awk '{printf "%s ", $7}'; echo -n '| '; done)"; done
tar czf "$out/rw4.tgz" -C /tmp rw4
