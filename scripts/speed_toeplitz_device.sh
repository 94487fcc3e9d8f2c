#!/usr/bin/env bash
# Issue 16 on one GPU, in two device calls of under ten minutes each (part a, then part b):
#   a: the direct convolution's CUDA tests, its tile shapes against cuFFT, the Monarch kernel and
#      causal attention's core (scripts/monarch_fftconv_probe.py), then the operator rows at 1K-8K
#      with every forward variant, FastPath.toeplitz included (scripts/speed_h200.py);
#   b: the training step at 16K, timed in three processes (how far it moves between them).
# Every step runs even if one before it fails; each writes its log and JSON under OUT.
#
#   bash scripts/speed_toeplitz_device.sh a|b OUT
set -u
part=$1 out=$2
mkdir -p "$out"
export PYTHONPATH=. HYENA_LITE_GIT_COMMIT="${HYENA_LITE_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}"
step() {  # step NAME COMMAND...: one step, its output in OUT/NAME.log, its exit status last
    local name=$1
    shift
    echo "== $name" && "$@" > "$out/$name.log" 2>&1
    echo "$name: exit $?" | tee -a "$out/$name.log"
}
shapes=64:64:4:bf16,64:64:8:bf16,64:128:8:bf16,32:64:4:bf16,32:128:4:bf16,16:128:4:bf16,64:64:4:tf32
if [ "$part" = a ]; then
    step tests python3 -m pytest -q -p no:cacheprovider tests/test_toeplitz_conv.py -k "not monarch"
    step probe python3 scripts/monarch_fftconv_probe.py --out "$out/toeplitz_probe.json" \
        --lengths 1024,2048,4096,8192 --toeplitz "$shapes"
    step operator python3 scripts/speed_h200.py --only operator --no-compile \
        --lengths 1024,2048,4096,8192 --budget-s 240 --out "$out/operator"
elif [ "$part" = b ]; then
    for run in 1 2 3; do
        step "training$run" python3 scripts/speed_h200.py --only training --lengths 16384 \
            --budget-s 50 --out "$out/training$run"
    done
else
    echo "part must be a or b, got $part" >&2
    exit 2
fi
tail -n 2 "$out"/*.log
