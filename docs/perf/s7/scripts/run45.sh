#!/usr/bin/env bash
# GPU run 45 (session 7, the 4x H200 machine of run 44, still warm): the nvrtc test binary of
# the GPU bundle (cut by run 44's 150 s limit) and the world-2 tables (run 41's script, N=2).
source gpu/env.sh; mkdir -p /tmp/r45
(cd gpu/gt && export INC_REQUIRE_GPU=1 INC_CACHE_DIR=/tmp/c45-gt && timeout 150 ./bin/nvrtc-* --include-ignored --test-threads=1 --nocapture) > /tmp/r45/nvrtc.txt 2>&1; echo rc=$? >> /tmp/r45/nvrtc.txt
N=2 T=170 bash gpu/run41.sh; cp -r /tmp/r41-w2 /tmp/r45/; tar czf $OUT/r45.tgz -C /tmp r45
