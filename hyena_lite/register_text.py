"""A second broad training text of everyday modern English, in registers the corpus and the
Python documentation both lack: the fortune cookies of Debian's `fortunes` (quips, quotations,
dialogue, verse and anecdotes on politics, love, work, science and more; BSD fortune, public
domain or freely redistributable) and the example sentences of WordNet 3.0's synsets
(`wordnet-base`, Princeton's WordNet licence: short sentences of everyday usage across the whole
vocabulary): about 4.2M characters, 1M GPT-2 tokens. Issue 20's out-of-domain gap lies in what
the training text covers (chapter 12); this text measures what more registers buy. The
out-of-domain texts stay unseen: none of them, nor any part of them, is in either source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

REGISTER_PACKAGES = ("fortunes", "wordnet-base")
FORTUNES = "usr/share/games/fortunes"
WORDNET = "usr/share/wordnet"
# fortune files that are pictures or lists rather than prose
_NOT_PROSE = {"ascii-art", "art"}
_EXAMPLE = re.compile(r'"([^"]{12,})"')
_WORDNET_PARTS = ("noun", "verb", "adj", "adv")
EXAMPLES_PER_PARAGRAPH = 8


def fortune_cookies(root: Path) -> str:
    """Every cookie of the prose fortune files (sorted by name), one paragraph each: the '%'
    separators dropped, tabs (attribution indents) to spaces."""
    from hyena_lite.corpus_sources import AssetError

    folder = root / FORTUNES
    if not folder.is_dir():
        raise AssetError(f"{folder} is missing: is the Debian package fortunes unpacked?")
    cookies: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix or path.name in _NOT_PROSE or path.is_symlink() or not path.is_file():
            continue  # .dat indexes, .u8 links, pictures
        text = path.read_text(encoding="utf-8", errors="replace").replace("\t", "    ")
        for cookie in text.split("\n%\n"):
            cookie = "\n".join(line.rstrip() for line in cookie.strip("%\n").split("\n"))
            if cookie.strip():
                cookies.append(cookie.strip("\n"))
    return "\n\n".join(cookies)


def wordnet_examples(root: Path) -> str:
    """The quoted example sentences of WordNet's synsets (nouns, verbs, adjectives, adverbs, in
    file order), EXAMPLES_PER_PARAGRAPH sentences to a paragraph, each begun with a capital and
    ended with a full stop (WordNet writes them lower-case, unstopped)."""
    from hyena_lite.corpus_sources import AssetError

    sentences: list[str] = []
    for part in _WORDNET_PARTS:
        path = root / WORDNET / f"data.{part}"
        if not path.is_file():
            raise AssetError(f"{path} is missing: is the Debian package wordnet-base unpacked?")
        for line in path.read_text(encoding="latin-1").split("\n"):
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header
            for example in _EXAMPLE.findall(line.split("|", 1)[1]):
                example = example.strip()
                example = example[0].upper() + example[1:]
                sentences.append(example if example[-1] in ".!?" else example + ".")
    return "\n\n".join(
        " ".join(sentences[i : i + EXAMPLES_PER_PARAGRAPH])
        for i in range(0, len(sentences), EXAMPLES_PER_PARAGRAPH)
    )


def register_text(cache: Path, log: Callable[[str], None]) -> str:
    """The fortune cookies, then WordNet's example sentences, cleaned as every asset text."""
    from hyena_lite.corpus_sources import (
        _clean,
        _debian_root,
        download_debian_files,
        pinned_files,
    )

    download_debian_files(cache, log, [n for p in REGISTER_PACKAGES for n in pinned_files(p)])
    root = _debian_root(cache, log, REGISTER_PACKAGES)
    return _clean(fortune_cookies(root) + "\n\n" + wordnet_examples(root))
