#!/usr/bin/env bash
# GPU run 22 (session 5, 1 GPU): host CPU time of one eager call, layer by layer
# (benches/benches/host_path.rs, criterion --quick).
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r22; mkdir -p "$out" $w
source gpu/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $w/gpus.txt
for r in 1 2; do timeout 200 gpu/hp/host_path --bench --quick --noplot > $w/host_path_$r.txt 2>&1; echo "rc=$?" >> $w/host_path_$r.txt; done
tar czf "$out/r22.tgz" -C /tmp r22
