"""The broad training text: modern technical English, a register the archaic corpus lacks, from
the reStructuredText sources of Python's documentation (Debian's python3.11-doc, PSF licence),
turned into plain prose: code, doctests, tables, targets and directive lines dropped, inline
markup reduced to its words. Distilling on a share of it tests what breadth buys (issue 20);
the out-of-domain texts stay unseen (the Debian Policy Manual shares the register, not the
subject)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

BROAD_PACKAGE = "python3.11-doc"  # always its file pinned in corpus_sources.DEBIAN_FILES
BROAD_CHARS = 6_000_000  # about 1.5M GPT-2 / SmolLM2 tokens
# the broad texts by name (broad/NAME.txt): what each is
BROAD_TEXTS = {
    "python_docs": "The Python 3.11 documentation, prose only (python3.11-doc)",
    "registers": "Fortune cookies (fortunes) and WordNet 3.0's example sentences (wordnet-base): "
    "everyday modern English (hyena_lite.register_text)",
}
# the documentation's parts in this order (prose first); what's new, the C API, the changelog
# and the legal pages are left out (lists of changes, signatures, licences)
BROAD_PARTS = (
    "tutorial",
    "howto",
    "faq",
    "glossary.rst.txt",
    "reference",
    "using",
    "extending",
    "installing",
    "library",
)
SOURCES = "usr/share/doc/python3.11/html/_sources"
# directives whose indented content is code, data or navigation, never prose
_CODE_DIRECTIVES = {
    "audit-event",
    "code",
    "code-block",
    "csv-table",
    "doctest",
    "figure",
    "highlight",
    "image",
    "index",
    "list-table",
    "literalinclude",
    "productionlist",
    "raw",
    "sourcecode",
    "tabularcolumns",
    "testcleanup",
    "testcode",
    "testoutput",
    "testsetup",
    "toctree",
}
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::(.*)$")
_ADORNMENT = re.compile(r"^([=\-~^*#\"'`+.:_])\1{2,}$")
_TABLE_RULE = re.compile(r"^[=+\-| ]{3,}$")
_ROLE = re.compile(r":[\w:-]+:`([^`<]*?)(?:\s*<[^>`]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>`]*>`__?")
_INLINE = [
    (re.compile(r"\s*\[(?:#\w*|\d+|\*)\]_"), ""),  # footnote references
    (re.compile(r"``([^`]+)``"), r"\1"),
    (re.compile(r"`([^`]+)`_{0,2}"), r"\1"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"\1"),
    (re.compile(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])"), r"\1"),
    (re.compile(r"\|([\w-]+)\|"), r"\1"),
]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _inline(text: str) -> str:
    """Inline markup reduced to its words: roles to their text (targets and ~ ! dropped), links
    to their text, literals, emphasis and substitutions unwrapped."""
    text = _ROLE.sub(lambda m: m.group(1).strip().lstrip("~!"), text)
    text = _LINK.sub(r"\1", text)
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return text


def rest_to_prose(source: str) -> str:
    """The prose of one reStructuredText document: paragraphs, list items and the descriptions
    inside directives, dedented; code blocks (after '::' and code directives), doctest lines,
    comments, targets, section adornments, tables and directive signatures are dropped."""
    out: list[str] = []
    skip_above: int | None = None  # skip lines indented deeper than this (or blank)
    options_of: int | None = None  # a directive's ":option:" lines follow at a deeper indent
    for raw in source.replace("\r\n", "\n").replace("\t", "    ").split("\n"):
        line, depth = raw.rstrip(), _indent(raw)
        text = line.strip()
        if skip_above is not None:
            if not text or depth > skip_above:
                continue
            skip_above = None
            out.append("")  # the skipped block ended a paragraph
        if options_of is not None and text.startswith(":") and depth > options_of:
            continue
        options_of = None
        if not text:
            out.append("")
            continue
        directive = _DIRECTIVE.match(text)
        if directive:
            if directive.group(1) in _CODE_DIRECTIVES:
                skip_above = depth
            else:  # function, class, note, versionadded...: signature dropped, content kept
                options_of = depth
            continue
        if text.startswith(".."):  # a comment, a target or a substitution definition
            skip_above = depth
            continue
        if (
            text.startswith((">>>", "... ", "$ ", "|"))
            or text == "..."
            or _ADORNMENT.match(text)
            or _TABLE_RULE.match(text)
        ):
            continue
        if text.endswith("::"):  # a literal block follows
            skip_above = depth
            text = text[:-2].rstrip()
            if not text:
                continue
            text = text if text.endswith((":", ".")) else text + ":"
        out.append(text)
    return "\n\n".join(_inline(paragraph) for paragraph in "\n".join(out).split("\n\n"))


def python_docs(root: Path, limit: int = BROAD_CHARS) -> str:
    """The documentation's prose, part by part (BROAD_PARTS, files sorted), each document
    separated by a blank line, cut at the last document end within `limit` characters."""
    from hyena_lite.corpus_sources import AssetError, _clean

    base = root / SOURCES
    if not base.is_dir():
        raise AssetError(f"{base} is missing: is the Debian package python3.11-doc unpacked?")
    documents: list[str] = []
    size = 0
    for part in BROAD_PARTS:
        path = base / part
        files = [path] if path.is_file() else sorted(path.rglob("*.rst.txt"))
        for file in files:
            prose = _clean(rest_to_prose(file.read_text(encoding="utf-8")))
            if size + len(prose) > limit:
                return "\n".join(documents)
            documents.append(prose)
            size += len(prose) + 1
    return "\n".join(documents)


def broad_files(cache: Path, log: Callable[[str], None]) -> dict[str, bytes]:
    """The broad training texts as broad/NAME.txt (BROAD_TEXTS), and broad/manifest.json."""
    from hyena_lite.corpus_sources import (
        _clean,
        _debian_root,
        download_debian_files,
        pinned_files,
    )
    from hyena_lite.register_text import register_text

    download_debian_files(cache, log, pinned_files(BROAD_PACKAGE))
    root = _debian_root(cache, log, (BROAD_PACKAGE,))
    texts = {
        "python_docs": _clean(python_docs(root)).encode("utf-8"),
        "registers": register_text(cache, log).encode("utf-8"),
    }
    manifest = [
        {"name": name, "title": BROAD_TEXTS[name], "file": f"{name}.txt", "bytes": len(text)}
        for name, text in texts.items()
    ]
    return {f"broad/{name}.txt": text for name, text in texts.items()} | {
        "broad/manifest.json": (json.dumps(manifest, indent=1) + "\n").encode("utf-8"),
    }


def load_broad_text(name: str = "python_docs") -> str:
    """broad/NAME.txt (one of BROAD_TEXTS) as `python -m hyena_lite data` built it, checked by
    sha256."""
    from hyena_lite.assets import verified_text
    from hyena_lite.paths import assets_dir

    if name not in BROAD_TEXTS:
        raise ValueError(f"no broad text {name!r}: choose one of {', '.join(BROAD_TEXTS)}")
    path = assets_dir() / "broad" / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: build the broad texts with `python -m hyena_lite data`"
        )
    return verified_text(f"broad/{name}.txt")


def broad_tokens(
    tokenizer, text: str | None = None, chunk_chars: int = 200_000, name: str = "python_docs"
) -> torch.Tensor:
    """A broad text (default: load_broad_text(name)) as one 1-D int64 tensor of tokens,
    tokenized in chunks cut at paragraph ends (no special tokens)."""
    text = load_broad_text(name) if text is None else text
    ids: list[int] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + chunk_chars)
        if end < len(text) and (cut := text.rfind("\n\n", start, end)) > start:
            end = cut  # before the blank line: BPE splits "\n\nWord" alike whole or cut
        ids += tokenizer(text[start:end], add_special_tokens=False, verbose=False)["input_ids"]
        start = end
    return torch.tensor(ids, dtype=torch.long)
