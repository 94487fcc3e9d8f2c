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
