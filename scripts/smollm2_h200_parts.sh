#!/usr/bin/env bash
# Run the four parts of the SmolLM2 experiment side by side, one GPU each, until they finish or SECONDS
# have passed: all-Hyena and hybrid students of the transfer recipe, the all-Hyena student of the best
# recipe (the ablation of transfer), and the scratch baseline. Checkpoints go to CKPT; a part stopped at
# the deadline saves the step it is on, and running this again with the same TOKENS resumes every part.
#
#   bash scripts/smollm2_h200_parts.sh TOKENS SECONDS CKPT OUT [HYBRID_LAYERS]
#
# The teacher must be loadable (load_teacher('smollm2-135m') once before); needs 4 GPUs.
set -u
tokens=$1 seconds=$2 ckpt=$3 out=$4 layers=${5:-10,20}
common=(--tokens "$tokens" --out "$ckpt" --no-progress)
mkdir -p "$out"
part() {  # part GPU NAME ARGS...: one part on one GPU, stopped by SIGTERM at the deadline
    local gpu=$1 name=$2
    shift 2
    CUDA_VISIBLE_DEVICES=$gpu timeout -s TERM "$seconds" python3 scripts/smollm2_h200.py "$@" "${common[@]}" \
        --json "$out/$name.json" > "$out/$name.log" 2>&1
    echo "$name: exit $?" >> "$out/$name.log"
}
part 0 hyena distill --only hyena --recipe transfer &
part 1 hybrid distill --only hybrid --recipe transfer --attention-layers "$layers" &
part 2 hyena_best distill --only hyena --recipe best --name hyena_best &
part 3 scratch scratch &
wait
tail -n 3 "$out"/*.log
