#!/usr/bin/env bash
# GPU run 20 (session 5): correctness after the merges + the first call (issue 18).
# 1. the first CUDA processes on this machine: demo with an empty kernel cache (embedded
#    CUBINs), then with INC_EMBEDDED_CUBINS=0 (NVRTC), then warm; 2. the GPU test bundle
#    (gpu_embedded included); 3. soak 10^5 calls (zero-copy mixed in).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r20; mkdir -p "$out" $w
source gpu/env.sh
B=gpu/gt; I=$B/inc
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader > $w/gpus.txt
n=$(nvidia-smi -L | wc -l)
filter='before rendezvous|cuda backend created|kernel loaded|communicator ready|inc demo: rank|PASS|FAIL|rror'
demo() { local tag=$1 mode=$2 cache=$3
  s=$(date +%s.%N)
  INC_CACHE_DIR=$cache INC_EMBEDDED_CUBINS=$mode RUST_LOG=inc_comm=info timeout 240 $I launch -n $n -- $I demo --backend cuda > $w/$tag.full 2>&1; echo "rc=$?" >> $w/$tag.full
  e=$(date +%s.%N); python3 -c "print('wall %.2f s' % ($e - $s))" >> $w/$tag.full
  sed -e 's/\x1b\[[0-9;]*m//g' $w/$tag.full | grep -E "$filter|rc=|wall" > $w/$tag.txt
  echo "cache files: $(ls $cache 2>/dev/null | grep -c cubin)" >> $w/$tag.txt
}
demo cold_embedded 1 /tmp/c20-a
demo cold_nvrtc 0 /tmp/c20-b
demo warm_embedded 1 /tmp/c20-a
demo warm_nvrtc 0 /tmp/c20-b
(export INC_REQUIRE_GPU=1; for t in $B/bin/gpu_embedded-*; do timeout 200 "$t" --include-ignored --test-threads=1 --nocapture; done) > $w/gpu_embedded.txt 2>&1; echo "rc=$?" >> $w/gpu_embedded.txt
(cd $B && INC_CACHE_DIR=/tmp/c20-gt timeout 300 bash run.sh) > $w/gpu_test.txt 2>&1; echo "rc=$?" >> $w/gpu_test.txt
timeout 150 $I launch -n $n -- $I soak --calls 100000 --max-bytes 4M --full-every 4 --time-limit 120 > $w/soak.txt 2>&1; echo "rc=$?" >> $w/soak.txt
tar czf "$out/r20.tgz" -C /tmp r20
