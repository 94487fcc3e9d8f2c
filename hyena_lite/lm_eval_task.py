"""An offline lm-evaluation-harness task: last-word (LAMBADA-style) prediction on the corpus's
test split, scored by loglikelihood (`hyena_lastword`) and by generation (`hyena_lastword_gen`).

`write_task(folder)` writes the passages (JSON lines) and the two task YAMLs; `evaluate_lm` runs
lm_eval's `simple_evaluate` on a model already in memory, teacher or student. lm-eval is the
optional extra `eval` (`pip install hyena_lite[eval]`). Taught in chapter 8.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from hyena_lite.quiet import errors_only, no_progress_bars

TASK = "hyena_lastword"
TASK_GEN = "hyena_lastword_gen"
DATA_FILE = "lastword.jsonl"
# A sentence-final word of at least three letters: the target (its punctuation is dropped).
_FINAL_WORD = re.compile(r"(?<=\s)([A-Za-z]{3,})[.!?]")


def passages(texts: dict[str, str], n: int = 300, words: int = 48) -> list[dict[str, str]]:
    """Up to n passages {"context", "target", "domain"}: up to `words` words of running text
    (from a sentence start when one leaves at least half of them), then the sentence-final
    word that follows them as the target.

    Whitespace is collapsed to single spaces; passages never overlap; the domains take turns
    (round robin), so that each contributes. Deterministic."""
    if words < 1 or n < 1:
        raise ValueError(f"need n >= 1 passages of words >= 1 context words, got {n}, {words}")
    per_domain = {domain: _domain_passages(text, domain, words) for domain, text in texts.items()}
    chosen: list[dict[str, str]] = []
    while len(chosen) < n and any(per_domain.values()):
        for found in per_domain.values():
            if found and len(chosen) < n:
                chosen.append(found.pop(0))
    if not chosen:
        raise ValueError(f"no passage of {words} words ends in a sentence-final word here")
    return chosen


def _domain_passages(text: str, domain: str, words: int) -> list[dict[str, str]]:
    """Every non-overlapping passage of one text, in order."""
    flat = " ".join(text.split())
    found, free_from = [], 0
    for match in _FINAL_WORD.finditer(flat):
        before = flat[free_from : match.start()].split()
        if len(before) < words:
            continue
        context = before[-words:]
        ends = [i for i, word in enumerate(context[: -words // 2]) if word[-1] in ".!?"]
        if ends:  # begin at a sentence when at least half of the words remain
            context = context[ends[0] + 1 :]
        found.append({"context": " ".join(context), "target": match.group(1), "domain": domain})
        free_from = match.end()
    return found


def _yaml(task: str, data_file: Path, generative: bool) -> str:
    """The YAML of one task over the local JSON-lines file (an absolute path)."""
    head = [
        f"task: {task}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data_file))}",
        "test_split: test",
        'doc_to_text: "{{context}}"',
    ]
    if not generative:
        return "\n".join(
            head
            + [
                "output_type: loglikelihood",
                "doc_to_target: \"{{' ' + target}}\"",
                "metric_list:",
                "  - metric: acc",
                "    aggregation: mean",
                "    higher_is_better: true",
                "  - metric: perplexity",
                "    aggregation: perplexity",
                "    higher_is_better: false",
                "metadata:",
                "  version: 1.0",
            ]
        )
    return "\n".join(
        head
        + [
            "output_type: generate_until",
            'doc_to_target: "{{target}}"',
            "generation_kwargs:",
            '  until: ["\\n", ".", ",", ";", ":", "!", "?"]',
            "  max_gen_toks: 8",
            "  do_sample: false",
            "filter_list:",
            "  - name: first_word",
            "    filter:",
            "      - function: regex",
            '        regex_pattern: "[A-Za-z\']+"',
            "      - function: take_first",
            "metric_list:",
            "  - metric: exact_match",
            "    aggregation: mean",
            "    higher_is_better: true",
            "    ignore_case: true",
            "metadata:",
            "  version: 1.0",
        ]
    )


def write_task(folder: str | Path, split: str = "test", n: int = 300, words: int = 48) -> Path:
    """Write the passages of the offline corpus's `split` and the YAMLs of TASK and TASK_GEN
    into `folder` (created); return it, for `TaskManager(include_path=folder)`."""
    from hyena_lite.evaluate import corpus_texts

    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    rows = passages(corpus_texts(split), n, words)
    data_file = folder / DATA_FILE
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (folder / f"{TASK}.yaml").write_text(_yaml(TASK, data_file, False) + "\n")
    (folder / f"{TASK_GEN}.yaml").write_text(_yaml(TASK_GEN, data_file, True) + "\n")
    return folder


def _require_lm_eval() -> None:
    """Raise a one-line error naming the extra to install when lm-eval is missing."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ImportError(
            "lm-eval is not installed; pip install 'hyena_lite[eval]' (or pip install lm-eval)"
        ) from None


def harness_model(model: Any, tokenizer: Any, batch_size: int = 8) -> Any:
    """lm_eval's HFLM around a model in memory; its generate() follows the model's own
    config.use_cache (HFLM forces use_cache=True, which students without a cache refuse)."""
    _require_lm_eval()
    from lm_eval.models.huggingface import HFLM, stop_sequences_criteria

    class _ConfigCacheLM(HFLM):
        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            if getattr(self.model.config, "use_cache", True):
                return super()._model_generate(context, max_length, stop, **generation_kwargs)
            generation_kwargs.pop("temperature", None)  # greedy: the task sets do_sample false
            return self.model.generate(
                input_ids=context,
                max_length=max_length,
                stopping_criteria=stop_sequences_criteria(
                    self.tokenizer, stop, context.shape[1], context.shape[0]
                ),
                pad_token_id=self.tokenizer.pad_token_id,
                use_cache=False,
                **generation_kwargs,
            )

    with errors_only("lm_eval"):  # its warnings that a model object, not a name, was passed
        return _ConfigCacheLM(
            pretrained=model, tokenizer=tokenizer, batch_size=batch_size, backend="causal"
        )


def evaluate_lm(
    model: Any,
    tokenizer: Any,
    task_dir: str | Path,
    tasks: Sequence[str] = (TASK, TASK_GEN),
    limit: int | None = None,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """lm_eval's metrics of `model` on the tasks of `task_dir` (written by write_task), on the
    first `limit` passages (all when None): {task: {metric: value}}. With progress=False its bars
    and its warnings stay off stderr (a chapter's cell)."""
    _require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    with ExitStack() as quiet:
        if not progress:
            quiet.enter_context(no_progress_bars(force=True))
            quiet.enter_context(errors_only("lm_eval"))
        results = simple_evaluate(
            model=harness_model(model, tokenizer, batch_size),
            tasks=list(tasks),
            task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
            limit=limit,
            bootstrap_iters=0,
            log_samples=False,
        )
    return {task: _metrics(results["results"][task]) for task in tasks}


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    """{metric: value} from one task's row of lm_eval's results ("acc,none" -> "acc")."""
    return {
        key.split(",")[0]: float(value)
        for key, value in row.items()
        if "," in key and "_stderr" not in key and isinstance(value, int | float)
    }


def table(results: dict[str, dict[str, float]]) -> Iterable[str]:
    """One line per task and metric, for printing."""
    for task, metrics in results.items():
        for metric, value in metrics.items():
            yield f"{task:<20} {metric:<12} {value:.4f}"
