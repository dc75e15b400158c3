"""Words made of the tokenizer's own letter pieces, so that every piece a name or value can hold is one
the model has written.

Session 21 found the tiny model garbling names whose pieces its replies almost never hold: ``wifi``
(``w`` + ``ifi``) came out ``wlar``, ``apples`` (``ap`` + ``ples``; ``ples`` is about one assistant token
in 77,000) ``apF``. A word of one or two pieces drawn uniformly from the vocabulary's letter pieces puts
each of them in replies and calls as often as any other.
"""

from __future__ import annotations

import functools
import json
import random
import re

from optiq_runtime import embedded_base_path


@functools.cache
def letter_pieces() -> tuple[str, ...]:
    """The lowercase letter pieces (two letters or more) of the shipped tiny-agent's BPE vocabulary (the
    rounds fine-tune it with its own tokenizer)."""
    vocab = json.loads((embedded_base_path() / "tokenizer.json").read_text())["model"]["vocab"]
    return tuple(sorted(piece for piece in vocab if re.fullmatch(r"[a-z]{2,}", piece)))


def piece_word(rng: random.Random) -> str:
    """One letter piece, or two run together (``ples``, ``ifiboru``)."""
    pieces = letter_pieces()
    return "".join(rng.choice(pieces) for _ in range(1 if rng.random() < 0.7 else 2))
