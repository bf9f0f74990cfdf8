#!/usr/bin/env bash
# GPU run 112 (session 14, 2 GPUs, one command line): the zero-copy one-shot (zero-copy column of the
# run-108 binary) against the forced zero-copy two-shot at 4.5-6 MiB, three times.
source gpu/env.sh; export INC_BUFFER_BYTES=64M INC_CACHE_DIR=/tmp/c-prev; mkdir -p $OUT/r112; I=gpu/bench_prev/inc
for rep in 1 2 3; do timeout 60 $I launch -n 2 -- $I bench --graph --algo zero-copy,zero-copy-two-shot --sizes 4718592,5242880,5505024,5767168,6291456 --iters 8 --warmup 2 > $OUT/r112/sw_$rep.txt 2>&1; done
