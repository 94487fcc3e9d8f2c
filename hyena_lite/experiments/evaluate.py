"""The `evaluate` command: load saved models (or teachers by name), score them on the corpus
or on text files with `hyena_lite.evaluate.evaluate_model`, and write the results with their
provenance (chapter 8 shows results/evaluation_cpu.json).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from hyena_lite import runs
from hyena_lite.evaluate import (
    DEFAULT_TASKS,
    TASKS,
    corpus_texts,
    evaluate_model,
    out_of_domain_texts,
    pooled,
)
from hyena_lite.profiles import Profile, get_profile
from hyena_lite.provenance import command_line, provenance


def file_texts(paths: Sequence[str]) -> dict[str, str]:
    """Each UTF-8 text file by its path (missing, empty, binary or non-UTF-8 files are errors that
    say so)."""
    from hyena_lite.data import load_text

    return {str(path): load_text(path)[0]["text"] for path in paths}


def load_model(name_or_dir: str, profile: Profile) -> tuple[torch.nn.Module, object]:
    """(model in eval mode, tokenizer) from a saved folder (teacher or student) or a teacher
    name."""
    path = Path(name_or_dir)
    if path.is_dir():
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import hyena_lite.models  # noqa: F401  registers the student classes with AutoModelForCausalLM

        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path} holds no config.json: it is not a model saved with save_pretrained"
            )
        if not any(
            (path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")
        ):
            raise FileNotFoundError(
                f"{path} holds a model but no tokenizer: save one beside it with "
                f"tokenizer.save_pretrained({str(path)!r})"
            )
        model, tokenizer = (
            AutoModelForCausalLM.from_pretrained(path),
            AutoTokenizer.from_pretrained(path),
        )
    else:
        from hyena_lite.teachers import TeacherUnavailable, load_teacher

        try:
            model, tokenizer = load_teacher(name_or_dir, profile)
        except (ValueError, KeyError) as error:
            raise ValueError(
                f"unknown model {name_or_dir!r}: not a folder saved with save_pretrained, "
                f"and not a teacher name ({error})"
            ) from None
        except TeacherUnavailable as error:  # 'models/studnet' reads like a hub id: say both
            raise TeacherUnavailable(
                f"{name_or_dir!r} is no folder here (check the path), and as a hub model: {error}"
            ) from None
    return model.to(profile.device).eval(), tokenizer


# --- command line -----------------------------------------------------------------------------


def _meta(args: argparse.Namespace, profile: Profile) -> dict:
    """Where a result came from (the command that gives `args`, rebuilt from them so that it is
    right when called in-process too), the profile and the threads."""
    command = command_line(["python", "-m", "hyena_lite", "evaluate"], vars(args), True)
    return {**provenance(command), "profile": profile.name, "threads": torch.get_num_threads()}


def add_models_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable `--model [LABEL=]DIR_OR_NAME` of the commands that score several models."""
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[LABEL=]DIR_OR_NAME",
        help="a saved model folder or a teacher name; repeat to compare several",
    )


def cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m hyena_lite evaluate`."""
    add_models_argument(parser)
    parser.add_argument(
        "--text", action="append", default=[], metavar="FILE", help="a UTF-8 text file; repeatable"
    )
    parser.add_argument(
        "--split",
        default=None,
        help="a split of the profile's corpus, per domain (default: validation without --text)",
    )
    parser.add_argument(
        "--out-of-domain",
        action="store_true",
        help="also score the out-of-domain texts, never trained on (ood/NAME: "
        "hyena_lite.evaluate.out_of_domain_texts)",
    )
    parser.add_argument(
        "--tasks",
        default=None,
        help=f"comma-separated, among {','.join(TASKS)} (default: "
        f"{','.join(DEFAULT_TASKS)}, plus agreement with --teacher)",
    )
    parser.add_argument(
        "--teacher", default=None, help="a model folder or teacher name for the agreement task"
    )
    parser.add_argument(
        "--context",
        type=int,
        default=None,
        help="window in tokens (default: the profile's seq_len)",
    )
    parser.add_argument(
        "--stride", type=int, default=None, help="window stride in tokens (default: context / 2)"
    )
    parser.add_argument(
        "--length",
        type=int,
        default=None,
        help="longest window of the length task (default and cap: each model's own limit)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument(
        "--eval-tokens",
        type=int,
        default=None,
        help="tokens scored per evaluation, shared by the texts (default: the profile's; 0: "
        "every token of every text)",
    )
    parser.add_argument(
        "--profile", default=None, help="smoke, cpu or gpu (default: $HYENA_BOOK_PROFILE)"
    )
    parser.add_argument(
        "--note", default=None, help="a remark stored with the results (what the models are)"
    )
    parser.add_argument(
        "--json", required=True, metavar="FILE", help="where to write the results (-: stdout)"
    )


def cli_main(args: argparse.Namespace) -> int:
    """Evaluate every --model on the texts and write {"meta", "models": {label: report}} to
    --json."""
    profile = get_profile(args.profile)
    if args.eval_tokens is not None:  # at least 0: hyena_lite.cli.CHECKS
        profile = profile.replace(eval_tokens=args.eval_tokens)
    tasks = (
        args.tasks.split(",")
        if args.tasks
        else list(DEFAULT_TASKS) + (["agreement"] if args.teacher else [])
    )
    groups = {"files": file_texts(args.text)}
    split = args.split or (None if args.text else "validation")
    if split:
        groups[split] = corpus_texts(split, profile.corpus)
    if args.out_of_domain:
        groups["out_of_domain"] = out_of_domain_texts()
    groups = {group: found for group, found in groups.items() if found}
    texts = {name: text for found in groups.values() for name, text in found.items()}
    teacher = load_model(args.teacher, profile) if args.teacher else None
    results = {
        "meta": {
            **_meta(args, profile),
            "tasks": tasks,
            "text_groups": {group: list(found) for group, found in groups.items()},
            "teacher": args.teacher,
            "note": args.note,
        },
        "models": {},
    }
    for spec in args.model:
        label, _, where = spec.rpartition("=")
        model, tokenizer = load_model(where, profile)
        report = evaluate_model(
            model,
            tokenizer,
            texts,
            profile,
            tasks,
            teacher,
            args.context,
            args.stride,
            args.length,
            args.batch_size,
        )
        if "texts" in report:  # each group's texts as one, token-weighted
            report["pooled"] = {
                group: pooled(report["texts"][name] for name in found)
                for group, found in groups.items()
            }
        results["models"][label or where] = report
    out = runs.write_json(args.json, results)  # atomic (hyena_lite.runs)
    print(f"wrote {out}")
    return 0
