"""Evaluate any Hugging Face causal LM, teacher or student: perplexity and bits per byte per text,
agreement with a teacher, cloze, recall and perplexity against position.

Perplexity uses sliding windows of `context` tokens moved by `stride`; each window scores only the
tokens no earlier window scored, so every token is counted exactly once and (but for the first
window) sees at least `context - stride` tokens of context. Bits per byte, the summed NLL in nats
divided by ln 2 times the UTF-8 bytes of the text, does not depend on the tokenizer, so models with
different tokenizers compare.

The standard zero-shot suite runs online with lm-evaluation-harness, which loads a student through
`AutoModelForCausalLM` once `hyena_lite` is imported (so use its Python API, not its bare command)::

    pip install "lm_eval[hf]"
    python -c "import hyena_lite, lm_eval, json; print(json.dumps(lm_eval.simple_evaluate(
        model='hf', model_args='pretrained=artifacts/distill/gpu/best/student,dtype=float32',
        tasks=['lambada_openai', 'wikitext', 'piqa', 'arc_easy', 'hellaswag'],
        batch_size=16)['results'], indent=1))"

It needs the hub (for the task data sets), so the offline book never runs it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hyena_lite.probes import cloze_accuracy, cloze_examples, copy_curve, model_device, mqar_curve
from hyena_lite.profiles import Profile

TASKS = ("ppl", "agreement", "cloze", "recall", "length")
DEFAULT_TASKS = ("ppl", "cloze", "recall", "length")  # plus agreement when a teacher is given
_SLACK = (
    64  # tokens tokenized beyond a budget, so that cutting the text does not change the kept ones
)


# --- tokens, bytes and windows ----------------------------------------------------------------


@dataclass(frozen=True)
class EncodedText:
    """Token ids of a text (after a start token when the tokenizer has one) and the bytes they
    cover."""

    ids: torch.Tensor
    n_bytes: int
    n_text_tokens: int


def encode_text(text: str, tokenizer, max_tokens: int = 0, name: str = "text") -> EncodedText:
    """Tokenize `text`, keep its first `max_tokens` tokens (0: all), prepend BOS (or EOS) when there
    is one.

    The start token lets the model predict the text's first token too, so that the NLL covers every
    byte counted. Without BOS and EOS the first token is context only.
    Taught in chapter 8.
    """
    if not text.strip():
        raise ValueError(f"{name} is empty: there is nothing to evaluate")
    chars = max_tokens * 8 if max_tokens else len(text)
    # Tokenize a prefix that holds the budget and some slack: a cut word changes only its tokens.
    while True:
        encoded = tokenizer(
            text[:chars], add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        if chars >= len(text) or len(ids) >= max_tokens + _SLACK:
            break
        chars *= 2
    if max_tokens and len(ids) > max_tokens:
        ids, covered = ids[:max_tokens], text[: offsets[max_tokens - 1][1]]
    else:
        covered = text
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prefix = [] if start is None else [start]
    return EncodedText(torch.tensor(prefix + ids), len(covered.encode("utf-8")), len(ids))


def sliding_windows(n_tokens: int, context: int, stride: int) -> list[tuple[int, int]]:
    """Windows over n_tokens ids as (begin, n_new): ids[begin:begin + context] scores its last n_new
    targets.

    Target t (t >= 1) is predicted from positions < t. The first window scores targets 1..context-1,
    every later window the next `stride` ones (the last is moved back to end at the text's end, so
    all windows have `context` tokens); together they score targets 1..n_tokens-1 exactly once.
    Taught in chapter 8.
    """
    if context < 2:
        raise ValueError(f"context must be at least 2 tokens, got {context}")
    if not 1 <= stride < context:
        raise ValueError(f"stride must be in [1, context - 1] = [1, {context - 1}], got {stride}")
    if n_tokens < context:
        raise ValueError(f"{n_tokens} tokens are fewer than one window of {context}")
    windows, scored_end, begin = [], 1, 0
    while True:
        end = min(begin + context, n_tokens)
        windows.append((end - context, end - scored_end))
        if end == n_tokens:
            return windows
        scored_end, begin = end, begin + stride


def _window_logits(
    model: torch.nn.Module,
    ids: torch.Tensor,
    windows: Sequence[tuple[int, int]],
    context: int,
    batch_size: int,
    desc: str,
) -> Iterator[tuple[int, torch.Tensor]]:
    """For each window, (position of its first new target, float32 logits [n_new, vocab] predicting
    them).

    Only the logits a batch needs are computed (`logits_to_keep`): the head over a large vocabulary
    costs more than a small model's layers.
    """
    device = model_device(model)
    for i in tqdm(range(0, len(windows), batch_size), desc=desc, leave=False):
        chunk = windows[i : i + batch_size]
        batch = torch.stack([ids[begin : begin + context] for begin, _ in chunk]).to(device)
        keep = max(n_new for _, n_new in chunk) + 1
        logits = model(input_ids=batch, logits_to_keep=keep).logits[:, -keep:]
        for row, (begin, n_new) in enumerate(chunk):
            yield begin + context - n_new, logits[row, keep - n_new - 1 : keep - 1].float()


@torch.inference_mode()
def window_scores(
    model: torch.nn.Module,
    ids: torch.Tensor,
    context: int,
    stride: int,
    batch_size: int = 8,
    teacher: torch.nn.Module | None = None,
    desc: str = "perplexity",
) -> dict[str, torch.Tensor]:
    """Per target ids[1:], each scored once by sliding windows: "nll" in nats (float64), and with a
    teacher "top1" (the two argmaxes agree) and "kl" (KL(teacher || model) in nats)."""
    windows = sliding_windows(len(ids), context, stride)
    scores = {"nll": torch.zeros(len(ids) - 1, dtype=torch.float64)}
    if teacher is not None:
        scores.update(
            top1=torch.zeros(len(ids) - 1, dtype=torch.bool),
            kl=torch.zeros(len(ids) - 1, dtype=torch.float64),
        )
        theirs = (
            _window_logits(teacher, ids, windows, context, batch_size, f"{desc} (teacher)")
            if teacher is not model
            else None
        )
    for first, logits in _window_logits(model, ids, windows, context, batch_size, desc):
        where = slice(first - 1, first - 1 + len(logits))
        log_q = F.log_softmax(logits, -1)
        targets = ids[first : first + len(logits)].to(logits.device)
        scores["nll"][where] = -log_q.gather(1, targets[:, None])[:, 0].double().cpu()
        if teacher is not None:
            teacher_logits = logits if theirs is None else next(theirs)[1].to(logits.device)
            log_p = F.log_softmax(teacher_logits, -1)
            scores["top1"][where] = (teacher_logits.argmax(-1) == logits.argmax(-1)).cpu()
            scores["kl"][where] = (
                F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1).double().cpu()
            )
    return scores


def token_nll(
    model: torch.nn.Module, ids: torch.Tensor, context: int, stride: int, batch_size: int = 8
) -> torch.Tensor:
    """The NLL in nats of every target ids[1:], each scored once by sliding windows, as a float64
    tensor. Taught in chapter 8."""
    return window_scores(model, ids, context, stride, batch_size)["nll"]


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Bits per UTF-8 byte from a summed NLL in nats: nll / (ln 2 * bytes). Taught in chapter 8."""
    if n_bytes <= 0:
        raise ValueError(f"bits per byte needs a positive byte count, got {n_bytes}")
    return nll_nats / (math.log(2) * n_bytes)


def token_byte_lengths(tokenizer) -> torch.Tensor:
    """UTF-8 bytes of each token of a byte-level BPE (one character of a token is one byte); 0 for
    special tokens."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_ids)
    return torch.tensor([0 if i in special else len(t) for i, t in enumerate(tokens)])


@torch.inference_mode()
def window_bits_per_byte(
    model: torch.nn.Module, ids: torch.Tensor, seq_len: int, nbytes: torch.Tensor
) -> float:
    """Bits per byte of every predicted non-special token of non-overlapping windows of `ids`,
    bytes from `token_byte_lengths` (comparable across vocabularies; the quick score of the
    teacher sweeps, not the sliding-window protocol of `score_texts`)."""
    device = next(model.parameters()).device
    windows = ids[: len(ids) // seq_len * seq_len].view(-1, seq_len).long()
    nats, total = 0.0, 0
    for i in range(0, len(windows), 32):
        batch = windows[i : i + 32].to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), batch[:, 1:], reduction="none"
        )
        weight = nbytes.to(device)[batch[:, 1:]]
        nats += float(nll[weight > 0].sum())
        total += int(weight.sum())
    return bits_per_byte(nats, total)


def check_same_tokenizer(tokenizer, teacher_tokenizer) -> None:
    """Raise unless the two tokenizers have the same vocabulary (agreement compares token by
    token)."""
    if tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise ValueError(
            f"agreement needs the teacher's tokenizer, but the vocabularies differ "
            f"({len(tokenizer)} vs {len(teacher_tokenizer)} tokens): compare models with "
            f"different tokenizers by bits per byte instead"
        )


def score_text(
    model: torch.nn.Module,
    tokenizer,
    text: str,
    context: int,
    stride: int | None = None,
    max_tokens: int = 0,
    batch_size: int = 8,
    name: str = "text",
    teacher: torch.nn.Module | None = None,
) -> dict:
    """Sliding-window scores of one text: {"tokens", "bytes", "ppl", "bpb", "by_class"} (by_class:
    `by_copy_class`, copying's reach the context every scored token sees), and with a teacher
    (same tokenizer) "top1" (agreement) and "kl" (mean KL(teacher || model), nats per token).
    Taught in chapter 8."""
    encoded = encode_text(text, tokenizer, max_tokens, name)
    if len(encoded.ids) < context:
        raise ValueError(
            f"{name} has {encoded.n_text_tokens} tokens, fewer than one window of {context}: "
            f"give a longer text or a smaller --context"
        )
    report = score_ids(model, encoded.ids, context, stride, batch_size, name, teacher)
    return {
        **report,
        "bytes": encoded.n_bytes,
        "bpb": bits_per_byte(_summed_nll([report]), encoded.n_bytes),
    }


def score_ids(
    model: torch.nn.Module,
    ids: torch.Tensor,
    context: int,
    stride: int | None = None,
    batch_size: int = 8,
    name: str = "tokens",
    teacher: torch.nn.Module | None = None,
) -> dict:
    """Sliding-window scores of a 1-D tensor of token ids (a text already encoded, or a model's
    samples): {"tokens", "ppl", "by_class"}, with a teacher also "top1" and "kl" (score_text)."""
    stride = stride or context // 2
    if len(ids) < context:
        raise ValueError(
            f"{name} has {len(ids)} tokens, fewer than one window of {context}: give more tokens "
            f"or a smaller context"
        )
    scores = window_scores(model, ids, context, stride, batch_size, teacher, name)
    total, n = float(scores["nll"].sum()), len(scores["nll"])
    report = {
        "tokens": n,
        "ppl": math.exp(total / n),
        "by_class": by_copy_class(scores["nll"], ids, context - stride),
    }
    if teacher is not None:
        report.update(top1=float(scores["top1"].double().mean()), kl=float(scores["kl"].mean()))
    return report


def by_copy_class(nll: torch.Tensor, ids: torch.Tensor, reach: int) -> dict:
    """Perplexity of the targets ids[1:] that copying predicts within `reach` tokens
    (`copy_loss.copyable_in_text`) and of the others: {"copyable": {"tokens", "ppl"}, "other":
    ...}; ppl None where a class is empty. Tells a student's recall gap from its knowledge gap."""
    from hyena_lite.copy_loss import copyable_in_text

    copyable = copyable_in_text(ids, reach)
    out = {}
    for name, where in (("copyable", copyable), ("other", ~copyable)):
        n = int(where.sum())
        out[name] = {"tokens": n, "ppl": math.exp(float(nll[where].mean())) if n else None}
    return out


def score_texts(
    model: torch.nn.Module,
    tokenizer,
    texts: dict[str, str],
    context: int,
    stride: int | None = None,
    max_tokens: int = 0,
    batch_size: int = 8,
    teacher: torch.nn.Module | None = None,
) -> dict:
    """Sliding-window scores (score_text) of every text, and over all of them, token-weighted:
    {"texts": {name: {"tokens", "bytes", "ppl", "bpb"}}, "tokens", "bytes", "ppl", "bpb"}; with a
    teacher also "top1" and "kl" per text and pooled.

    The overall perplexity is exp of the summed NLL over the summed tokens, so a long text weighs
    more than a short one; bits per byte likewise over the summed bytes. max_tokens caps each text.
    """
    if not texts:
        raise ValueError("no texts to score: give at least one text")
    per_text = {
        name: score_text(
            model, tokenizer, text, context, stride, max_tokens, batch_size, name, teacher
        )
        for name, text in texts.items()
    }
    return {"texts": per_text, **pooled(per_text.values())}


def pooled(scores: Iterable[dict]) -> dict:
    """Several texts' scores ({"tokens", "bytes", "ppl"} each) as one, token-weighted:
    {"tokens", "bytes", "ppl", "bpb"}, the perplexity exp of the summed NLL over the summed
    tokens and bits per byte over the summed bytes; "by_class" pooled too where every text has
    it, and "top1" and "kl" (token-weighted means) where every text has them."""
    scores = list(scores)
    if not scores:
        raise ValueError("nothing to pool: give at least one text's scores")
    nll = _summed_nll(scores)
    tokens = sum(s["tokens"] for s in scores)
    n_bytes = sum(s["bytes"] for s in scores)
    report = {
        "tokens": tokens,
        "bytes": n_bytes,
        "ppl": math.exp(nll / tokens),
        "bpb": bits_per_byte(nll, n_bytes),
    }
    if all("by_class" in s for s in scores):
        report["by_class"] = {
            name: _pooled_class([s["by_class"][name] for s in scores])
            for name in ("copyable", "other")
        }
    for key in ("top1", "kl"):
        if all(key in s for s in scores):
            report[key] = sum(s[key] * s["tokens"] for s in scores) / tokens
    return report


def _pooled_class(rows: list[dict]) -> dict:
    """One copy class of several texts ({"tokens", "ppl"} each, ppl None when empty) as one."""
    tokens = sum(r["tokens"] for r in rows)
    return {"tokens": tokens, "ppl": math.exp(_summed_nll(rows) / tokens) if tokens else None}


def _summed_nll(rows: Iterable[dict]) -> float:
    """The summed NLL in nats of scores {"tokens", "ppl"}: log(ppl) times tokens, over the rows
    that scored any token."""
    return sum(math.log(r["ppl"]) * r["tokens"] for r in rows if r["tokens"])


# --- perplexity against position --------------------------------------------------------------


def max_length(model: torch.nn.Module) -> int:
    """The longest input the model accepts: the Hyena filters' l_max or the learned position
    table. Taught in chapter 8."""
    config = model.config
    limits = [
        getattr(config, key)
        for key in ("l_max", "hyena_l_max", "n_positions", "max_position_embeddings")
        if isinstance(getattr(config, key, None), int)
    ]
    if not limits:
        raise ValueError(
            f"cannot tell the longest input of a {type(model).__name__}: its config has none of "
            f"l_max, n_positions, max_position_embeddings; pass --length"
        )
    return min(limits)


@torch.inference_mode()
def length_curve(
    model: torch.nn.Module, ids: torch.Tensor, length: int, bins: int = 12, batch_size: int = 8
) -> dict:
    """Perplexity against position: NLL at position p (given p tokens) averaged over non-overlapping
    windows of `length` tokens, grouped into geometric bins of positions.

    Returns {"length", "windows", "position" (each bin's last position), "ppl"}.
    """
    n_windows = len(ids) // length
    if n_windows == 0:
        raise ValueError(
            f"the text has {len(ids)} tokens, fewer than one window of {length} for the length "
            f"curve"
        )
    windows = ids[: n_windows * length].view(n_windows, length)
    device, total = model_device(model), torch.zeros(length - 1, dtype=torch.float64)
    for i in tqdm(range(0, n_windows, batch_size), desc=f"length {length}", leave=False):
        batch = windows[i : i + batch_size].to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        nll = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="none"
        )
        total += nll.view(len(batch), -1).double().sum(0).cpu()
    mean = (total / n_windows).numpy()
    edges = np.unique(np.geomspace(1, length, bins + 1).astype(int))
    return {
        "length": length,
        "windows": n_windows,
        "position": [int(e) - 1 for e in edges[1:]],
        "ppl": [
            float(np.exp(mean[a - 1 : b - 1].mean()))
            for a, b in zip(edges[:-1], edges[1:], strict=False)
        ],
    }


# --- texts and models -------------------------------------------------------------------------


def corpus_texts(split: str, corpus: str = "offline") -> dict[str, str]:
    """One text per domain of a corpus split ("split/domain" -> its documents joined by blank
    lines). Taught in chapter 8."""
    from hyena_lite.data import load_corpus

    documents = load_corpus(corpus)
    if split not in documents:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(documents)}")
    rows = documents[split]
    return {
        f"{split}/{domain}": "\n\n".join(
            t for t, d in zip(rows["text"], rows["domain"], strict=False) if d == domain
        )
        for domain in dict.fromkeys(rows["domain"])
    }


def out_of_domain_texts() -> dict[str, str]:
    """The out-of-domain texts, never trained on ("ood/NAME" -> text; see
    hyena_lite.corpus_sources.OOD_TEXTS), built by `python -m hyena_lite data` and checked by
    sha256."""
    import json

    from hyena_lite.assets import verified_text
    from hyena_lite.paths import assets_dir

    manifest = assets_dir() / "ood" / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{manifest} is missing: build the out-of-domain texts with `python -m hyena_lite data`"
        )
    return {
        f"ood/{entry['name']}": verified_text(f"ood/{entry['file']}")
        for entry in json.loads(manifest.read_text(encoding="utf-8"))
    }


def texts_windows(texts: dict[str, str], tokenizer, seq_len: int, max_tokens: int) -> torch.Tensor:
    """Disjoint windows [N, seq_len] from the start of each text, an equal share of `max_tokens`
    each (at least one window a text): fixed windows for a training curve, such as the
    out-of-domain one (the reported scores are score_texts')."""
    from hyena_lite.data import eval_windows

    if not texts:
        raise ValueError("no texts given: there is nothing to cut into windows")
    share = max(seq_len, max_tokens // len(texts))
    rows = []
    for name, text in texts.items():
        ids = encode_text(text, tokenizer, share, name).ids
        if len(ids) < seq_len:
            raise ValueError(
                f"{name} has {len(ids)} tokens, fewer than one window of {seq_len}: give a "
                f"shorter seq_len or a longer text"
            )
        rows.append(eval_windows(ids, seq_len, share))
    return torch.cat(rows)


def _powers_of_two(low: int, high: int) -> list[int]:
    """low, 2 low, 4 low, ... up to high."""
    return [low << i for i in range(max(0, (high // low).bit_length()))]


def _check_windows(model: torch.nn.Module, context: int, stride: int, batch_size: int) -> None:
    """Raise ValueError naming the value and the fix when windows of `context` tokens cannot be
    scored."""
    if context < 2 or stride < 1 or batch_size < 1:
        raise ValueError(
            f"context={context}, stride={stride}, batch_size={batch_size}: give a context >= 2 "
            f"tokens, a stride >= 1 and a batch size >= 1"
        )
    try:
        limit = max_length(model)
    except ValueError:  # a model that does not say: let it try
        return
    if context > limit:
        raise ValueError(
            f"a context of {context} tokens exceeds the {limit} positions this "
            f"{type(model).__name__} accepts; give --context {limit} or less"
        )


def evaluate_model(
    model: torch.nn.Module,
    tokenizer,
    texts: dict[str, str],
    profile: Profile,
    tasks: Sequence[str] = DEFAULT_TASKS,
    teacher: tuple[torch.nn.Module, object] | None = None,
    context: int | None = None,
    stride: int | None = None,
    length: int | None = None,
    batch_size: int = 8,
) -> dict:
    """Run the chosen tasks on one model; the JSON-ready report of evaluate's CLI for that model.

    Budgets come from the profile: profile.eval_tokens tokens per evaluation (0: all), shared
    equally by the texts; windows of profile.seq_len tokens unless `context` says otherwise; cloze
    passages worth about eval_tokens tokens in all.
    Taught in chapter 8.
    """
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose among {', '.join(TASKS)}")
    if not texts:
        raise ValueError("no texts to evaluate: give --text FILE or --split NAME")
    context = profile.seq_len if context is None else context
    stride = context // 2 if stride is None else stride
    _check_windows(model, context, stride, batch_size)
    budget = profile.eval_tokens and max(context, profile.eval_tokens // len(texts))  # per text
    report: dict = {}
    if "agreement" in tasks:
        if teacher is None:
            raise ValueError("the agreement task needs a teacher: pass --teacher NAME_OR_DIR")
        check_same_tokenizer(tokenizer, teacher[1])
    if "ppl" in tasks or "agreement" in tasks:
        scores = {
            name: score_text(
                model,
                tokenizer,
                text,
                context,
                stride,
                budget,
                batch_size,
                name,
                teacher[0] if "agreement" in tasks else None,
            )
            for name, text in texts.items()
        }
        if "ppl" in tasks:
            report["texts"] = {
                name: {k: s[k] for k in ("tokens", "bytes", "ppl", "bpb", "by_class")}
                for name, s in scores.items()
            }
        if "agreement" in tasks:
            report["agreement"] = {
                name: {k: s[k] for k in ("tokens", "top1", "kl")} for name, s in scores.items()
            }
    if "cloze" in tasks:
        examples = cloze_examples(
            list(texts.values()),
            tokenizer,
            max(16, (profile.eval_tokens or 100_000) // context),
            context,
        )
        report["cloze"] = {
            "examples": len(examples),
            "length": context,
            "accuracy": cloze_accuracy(model, examples, batch_size),
        }
    if "recall" in tasks:
        # probe, smallest size, and the share of the context its largest size fills
        recall_probes = {"copy": (copy_curve, 4, 2), "mqar": (mqar_curve, 2, 4)}
        report["recall"] = {
            name: curve(
                model,
                tokenizer,
                _powers_of_two(smallest, (context - 1) // share),
                batch_size=batch_size,
                seed=profile.seed,
            )
            for name, (curve, smallest, share) in recall_probes.items()
        }
    if "length" in tasks:
        length = min(length or max_length(model), max_length(model))
        ids = torch.cat(
            [encode_text(text, tokenizer, budget, name).ids for name, text in texts.items()]
        )
        report["length"] = length_curve(
            model, ids, length, batch_size=max(1, batch_size * context // length)
        )
    return report
