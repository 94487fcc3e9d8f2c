"""Portable student folders: what `save_pretrained` writes beside a student's weights so that
`AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)` loads it in a process that
never imported hyena_lite, and a model card that says what the student is.

The config's `auto_map` names the classes in a small module written beside the weights
(`hyena_student.py`), which only imports them from the installed package `hyena-lite` and says how
to install it when it is missing. The model card (README.md) names the teacher, the recipe, the
training tokens and results with the protocol that measured them, from what the caller passes or a
run's log.json, and says "not recorded" for what neither gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REMOTE_MODULE = "hyena_student"  # the module file written beside the weights, without .py
INSTALL = (
    "pip install 'hyena_lite @ git+https://github.com/hyena-lite/scavenging-hyena@main' "
    "(or pip install -e . in a checkout)"
)
CARD_FIELDS = ("teacher", "recipe", "tokens", "results")

_MODULE_TEXT = '''"""Remote code of a hyena_lite student: its classes come from hyena-lite."""

try:
    from hyena_lite.students import {config_class}, {model_class}
except ImportError as error:
    raise ImportError(
        "this checkpoint is a Hyena student of hyena_lite, whose classes come from the package "
        "`hyena-lite`, which is not installed here: {install}"
    ) from error

__all__ = ["{config_class}", "{model_class}"]
'''


def auto_map(model: Any) -> dict[str, str]:
    """The config's auto_map: AutoConfig and AutoModelForCausalLM to the student's classes in the
    module written beside the weights."""
    return {
        "AutoConfig": f"{REMOTE_MODULE}.{type(model.config).__name__}",
        "AutoModelForCausalLM": f"{REMOTE_MODULE}.{type(model).__name__}",
    }


def write_remote_module(folder: Path, model: Any) -> Path:
    """Write the module that auto_map names (it imports the classes from hyena_lite)."""
    path = Path(folder) / f"{REMOTE_MODULE}.py"
    path.write_text(
        _MODULE_TEXT.format(
            config_class=type(model.config).__name__,
            model_class=type(model).__name__,
            install=INSTALL,
        )
    )
    return path


def card_from_run_log(path: Path | str) -> dict[str, Any]:
    """Model card fields from a training run's log.json (hyena_lite.training): its teacher, stage
    (as the recipe), tokens trained on, and its last validation metrics."""
    log = json.loads(Path(path).read_text())
    context = log.get("config", {}).get("context", {})
    records, evals = log.get("records") or [], log.get("evals") or []
    card: dict[str, Any] = {}
    if context.get("teacher"):
        card["teacher"] = context["teacher"]
    if context.get("stage"):
        card["recipe"] = f"stage {context['stage']} of hyena_lite.distill"
    if records:
        card["tokens"] = int(records[-1]["tokens"])
    if evals:
        last = evals[-1]
        card["results"] = [
            {
                "metric": name,
                "value": value,
                "protocol": f"the run's validation windows (hyena_lite.training), step "
                f"{last['step']}",
            }
            for name, value in last.items()
            if name != "step"
        ]
    return card


def model_card(model: Any, card: dict[str, Any] | None = None) -> str:
    """The README.md of a saved student: what it is, how to load it, and the card's fields (teacher,
    recipe, tokens, results as {metric, value, protocol}); unknown fields say so."""
    card = dict(card or {})
    unknown = sorted(set(card) - set(CARD_FIELDS))
    if unknown:
        raise ValueError(f"unknown model card fields {unknown}; give any of {list(CARD_FIELDS)}")
    config = model.config
    layers, n = list(config.hyena_layers or []), config.num_hidden_layers
    kind = "every layer Hyena" if len(layers) == n else f"{len(layers)} of {n} layers Hyena"
    teacher = card.get("teacher") or "not recorded"
    lines = [
        "---",
        "library_name: transformers",
        "tags: [hyena, distillation, hyena_lite]",
        "---",
        "",
        f"# A Hyena student of {teacher}",
        "",
        f"A {type(model).__name__} ({kind}): the teacher's architecture with the attention of "
        f"layers {layers} replaced by Hyena long-convolution operators (order "
        f"{config.hyena_order}, filter length {config.hyena_l_max or 'max positions'}), made "
        "with [hyena_lite](https://github.com/hyena-lite/scavenging-hyena).",
        "",
        "## Load it",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM",
        "",
        'model = AutoModelForCausalLM.from_pretrained("<this folder>", trust_remote_code=True)',
        "tokens = model.generate(input_ids, max_new_tokens=32)  # recurrent state: O(1) per token",
        "```",
        "",
        f"The remote code only imports the package `hyena-lite`: {INSTALL}.",
        "",
        "## Training",
        "",
        f"- Teacher: {teacher}",
        f"- Recipe: {card.get('recipe') or 'not recorded'}",
        f"- Training tokens: {_tokens(card.get('tokens'))}",
        "",
        "## Results",
        "",
    ]
    results = card.get("results") or []
    if not results:
        lines.append("Not recorded: no results were given when this folder was saved.")
    else:
        lines += ["| metric | value | protocol |", "|---|---|---|"]
        for row in results:
            missing = {"metric", "value", "protocol"} - set(row)
            if missing:
                raise ValueError(
                    f"result {row} lacks {sorted(missing)}: each result needs metric, value and "
                    f"the protocol that measured it"
                )
            lines.append(f"| {row['metric']} | {_value(row['value'])} | {row['protocol']} |")
    return "\n".join(lines) + "\n"


def _tokens(tokens: Any) -> str:
    """Training tokens as a readable number, or 'not recorded'."""
    return f"{int(tokens):,}" if tokens is not None else "not recorded"


def _value(value: Any) -> str:
    """A result value: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
