"""The broad training text: reStructuredText reduced to prose, and the built file."""

import re

import pytest

from hyena_lite.broad_text import broad_tokens, load_broad_text, rest_to_prose
from hyena_lite.paths import assets_dir

SOURCE = """.. _tut-if:

:keyword:`!if` Statements
=========================

Perhaps the most well-known statement is :keyword:`if`, see :ref:`the tutorial <tut-x>`.
For example::

   >>> x = int(input("Please enter an integer: "))
   More

There can be ``elif`` parts [#]_ and *emphasis* or **strong** words, and `a link
<https://example.org>`_ across lines.

.. function:: open(file, mode='r')
   :noindex:

   Open *file* and return a file object.

.. code-block:: python

   print("never prose")

.. index::
   statement: for

+-----+-----+
| a   | b   |
+-----+-----+

Last words: ::

   code again
"""


def test_rest_to_prose_keeps_prose_and_drops_code_and_markup():
    prose = rest_to_prose(SOURCE)
    assert "if Statements" in prose and "====" not in prose
    assert "Perhaps the most well-known statement is if, see the tutorial." in prose
    assert "For example:\n\nThere" in prose and "input(" not in prose and "More" not in prose
    assert "There can be elif parts and emphasis or strong words, and a link across lines." in prose
    assert "Open file and return a file object." in prose  # a directive's content, dedented
    assert "open(file" not in prose and "noindex" not in prose  # its signature and options
    assert "never prose" not in prose and "statement: for" not in prose
    assert "| a" not in prose and "+---" not in prose and "code again" not in prose
    assert "Last words:" in prose and "tut-if" not in prose and "`" not in prose


def test_broad_tokens_cut_at_paragraphs_equal_one_pass():
    from hyena_lite.data import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    text = "First paragraph here.\n\nSecond one, a bit longer.\n\nThird.\n"
    whole = broad_tokens(tokenizer, text, chunk_chars=10_000)
    assert whole.tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert broad_tokens(tokenizer, text, chunk_chars=30).tolist() == whole.tolist()


@pytest.mark.skipif(
    not (assets_dir() / "broad" / "manifest.json").is_file(),
    reason="the broad text is not built: python -m hyena_lite data",
)
def test_built_broad_text_is_python_prose():
    text = load_broad_text()
    assert 4_000_000 < len(text) <= 6_000_000
    assert text.startswith("Appendix\n\nInteractive Mode\n\nError Handling\n\nWhen an error occurs")
    assert not re.search(r"^(>>> |\.\. [\w:-]+::)", text, re.M)  # doctests, directives
    assert text.count(":func:`") < 3 and "``" not in text[:200_000]  # markup, bar a few quoted


def test_registers_text_reads_fortune_cookies_and_wordnet_examples(tmp_path):
    from hyena_lite.corpus_sources import AssetError
    from hyena_lite.register_text import FORTUNES, WORDNET, fortune_cookies, wordnet_examples

    with pytest.raises(AssetError, match="fortunes unpacked"):
        fortune_cookies(tmp_path)
    with pytest.raises(AssetError, match="wordnet-base unpacked"):
        wordnet_examples(tmp_path)
    cookies = tmp_path / FORTUNES
    cookies.mkdir(parents=True)
    (cookies / "politics").write_text("A first quip.\n\t-- Someone\n%\nSecond,\ntwo lines.\n%\n")
    (cookies / "politics.dat").write_bytes(b"\x00\x01")  # an index
    (cookies / "ascii-art").write_text("  /\\_/\\\n%\n")  # a picture
    assert fortune_cookies(tmp_path) == "A first quip.\n    -- Someone\n\nSecond,\ntwo lines."
    wordnet = tmp_path / WORDNET
    wordnet.mkdir(parents=True)
    header = "  1 This software and database is being provided to you\n"
    synset = '00039297 04 n 01 contact 2 | close interaction; "they kept in daily contact"; "ok"\n'
    (wordnet / "data.noun").write_text(header + synset)
    (wordnet / "data.verb").write_text('00001 29 v 01 run 0 | move fast; "she ran home!"\n')
    for part in ("adj", "adv"):
        (wordnet / f"data.{part}").write_text(header)
    # capitalised and stopped; examples under 12 characters left out
    assert wordnet_examples(tmp_path) == "They kept in daily contact. She ran home!"


def test_load_broad_text_names_the_texts_it_has():
    with pytest.raises(ValueError, match="python_docs, registers"):
        load_broad_text("novels")


@pytest.mark.skipif(
    not (assets_dir() / "broad" / "registers.txt").is_file(),
    reason="the broad texts are not built: python -m hyena_lite data",
)
def test_built_registers_text_is_fortunes_then_wordnet():
    text = load_broad_text("registers")
    assert 4_000_000 < len(text) < 4_400_000
    assert "\n%\n" not in text and "Moby-Dick" not in text and "Loomings" not in text
    wordnet = text[text.index("They kept in daily contact.") - 2000 :]
    assert re.search(r"\. [A-Z]", wordnet)
