#!/usr/bin/env bash
# GPU run 15b (session 5, 2 GPUs): host-path floors, LL poll variant (no regression at w2),
# two-shot AG-by-pull variant and grid sweep at w2. Variants via INC_KERNEL_DIR, ABAB order.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r15b; mkdir -p "$out" $w
source gpu/env.sh
I=gpu/bench/inc
nvidia-smi -L > $w/gpus.txt
(cd gpu/exp && nvcc -O2 -arch=sm_90 hostfloor.cu -lcuda -o /tmp/hostfloor && /tmp/hostfloor) > $w/hostfloor.txt 2>&1
b() { # tag n kerneldir args...
  local tag=$1 n=$2 kd=$3; shift 3
  env ${kd:+INC_KERNEL_DIR=$kd} timeout 150 $I launch -n $n -- $I bench "$@" --csv $w/$tag.csv > $w/$tag.txt 2>&1; echo "rc=$?" >> $w/$tag.txt
}
LL="--both --algo push-one-shot --sizes 1K,4K,16K,64K --iters 10 --warmup 3"
b ll_base_w2 2 "" $LL
b ll_v_w2 2 gpu/exp/v_ll $LL
TS="--graph --algo two-shot,one-shot,zero-copy --sizes 256K,512K,1M,2M,4M,16M,64M --iters 8 --warmup 2"
for r in 1 2; do
  b ts_base_w2_$r 2 "" $TS
  b ts_v_w2_$r 2 gpu/exp/v_ts $TS
done
for nb in 16 32 64 128; do
  INC_BLOCKS=$nb b ts_blocks${nb}_w2 2 "" --graph --algo two-shot,one-shot,zero-copy --sizes 256K,512K,1M,2M,4M,16M --iters 8 --warmup 2
done
b eager_auto_w2 2 "" --eager --algo auto --sizes 1K,16K,256K --iters 20 --warmup 5
tar czf "$out/r15b.tgz" -C /tmp r15b
