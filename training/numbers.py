"""Numbers as people write them: digits, words ("seven hundred and twelve"), operators as words."""

from __future__ import annotations

import random

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000: 712 -> "seven hundred and twelve", 49 -> "forty-nine"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {number_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    head = f"{number_words(thousands)} thousand"
    if not rest:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def spoken_number(rng: random.Random) -> int:
    """A number as people say one in words: a teen a third of the time.

    Session 19: the dev sets' number-word misses were all teens and twelve ("nineteen by twelve" ->
    ``9 * 2``, "seventeen plus twenty-eight" -> ``7 + 28``), which uniform draws gave ~4% of the time."""
    roll = rng.random()
    if roll < 0.35:
        return rng.randint(10, 19)
    return rng.randint(2, 99) if roll < 0.75 else rng.randint(100, 999)


def say_number(rng: random.Random, n: int, words: float = 0.15) -> str:
    """``n`` in digits, or (with probability ``words``, small numbers more often) in words."""
    if n < 0 or n >= 1_000_000:
        return str(n)
    if rng.random() < (words * 2 if n <= 20 else words):
        return number_words(n)
    return str(n)


# How each operator is said; the code always uses the symbol.
OPERATOR_WORDS = {
    "+": ["+", "+", "plus", "added to"],
    "-": ["-", "-", "minus", "take away"],
    "*": ["*", "*", "times", "multiplied by", "x"],
    "/": ["/", "/", "divided by", "over"],
    "**": ["**", "to the power of", "^"],
    "%": ["%", "mod", "modulo"],
}
