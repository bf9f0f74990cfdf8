#!/usr/bin/env bash
# GPU run 53 (session 8, 4 GPUs): the final tables at worlds 4 and 2 (run 41's script: every
# algorithm, NCCL, NCCL-symm and the torch script on the same sizes), eager tables too.
set -uo pipefail
out=${OUT:-/tmp/out}; w=/tmp/r53; mkdir -p "$out" $w
T=260 N=4 bash gpu/run41.sh; cp -r /tmp/r41-w4 $w/bench-w4; tar czf "$out/r53.tgz" -C /tmp r53
T=200 N=2 bash gpu/run41.sh; cp -r /tmp/r41-w2 $w/bench-w2; tar czf "$out/r53.tgz" -C /tmp r53
