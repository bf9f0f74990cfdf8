#!/usr/bin/env bash
# GPU run 141 (session 17, one GPU, carry ["gpu"]): the GPU test that failed in run 140
# (gpu_symmetric_tensors_zero_copy: four virtual ranks on one GPU, rank 1's kernel not
# started within the 60 s timeout), alone, three times on the new build.
out=${OUT:-/tmp/out}; w=/tmp/r141; mkdir -p "$out" $w
cd gpu/gt && export INC_REQUIRE_GPU=1 INC_CACHE_DIR=/tmp/c141
for i in 1 2 3; do
  timeout 150 ./bin/cuda_gpu-* gpu_symmetric_tensors_zero_copy --include-ignored --test-threads=1 --nocapture > $w/t$i.txt 2>&1; echo rc=$? >> $w/t$i.txt
  tail -3 $w/t$i.txt
done
tar czf "$out/r141.tgz" -C /tmp r141
