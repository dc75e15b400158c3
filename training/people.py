"""Requests phrased the way people write them, one turn each, over a workspace that a session shares.

The first corpus asked in a handful of fixed sentences ("What is 37 * 91? Use Python."), so the
model learned those sentences rather than requests. Here every request kind is said many ways:
questions, imperatives, polite and terse forms, context before or after, numbers in words or
digits, values bare, in quotes, after a colon or in backticks. Each turn works on a ``Workspace``
whose files, last result and last file later turns of the same session can refer to ("save that
to ...", "open that file"); tool results are the built-in tools' real wording, and answers use them.

Nothing here is taken from the hand-written people suite (``data/people_suite.jsonl``): it is held out.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from training import words as W
from training.corpus import assistant, assistant_calls, call, pseudo_word, tool_result, user
from training.english import common_word, common_words
from training.numbers import OPERATOR_WORDS, number_words, say_number, spoken_number
from training.pieces import piece_word

STEMS = """
plan report summary budget ideas output results journal diary recipe recipes list groceries
tasks agenda minutes letter reply answers scores contacts address poem story quote quotes message
welcome setup install usage guide schedule receipt inventory errors warnings main server client
utils helpers sample example itinerary packing expenses lessons chores playlist
""".split()
EXTS = ["txt"] * 6 + ["md"] * 3 + ["py", "py", "json", "csv", "log", "ini", "cfg", "yaml", "html", "toml"]
FOLDERS = ["manuals", "notes", "data", "src", "logs", "out", "drafts", "config", "reports", "tmp", "backup", "work"]
PHRASES = """
all set|call the plumber|pick up the kids|see you soon|meeting moved|buy more coffee|ship it
|done for today|back at noon|water the garden|tests are green|out of office|read chapter four
|book the flights|fix the login bug|send the invoice|walk the dog|lights off|deploy on Friday
|happy birthday|ready to go|pay the rent|it works|welcome aboard|bring snacks|good night
|draft three|pending review|keep it simple|on hold|print the tickets|rain tomorrow|check the oven
""".replace("\n", "").split("|")


@dataclass
class Workspace:
    """What a session has seen so far: the files, the last computed value, the last file touched."""

    files: dict[str, str] = field(default_factory=dict)
    number: int | float | None = None
    path: str | None = None
    text: str | None = None
    hit: str | None = None


# ---------------------------------------------------------------- values and how they are said


def short_stem(rng: random.Random) -> str:
    """A name of one or two characters, as scratch files are called: ``a``, ``c``, ``x2``, ``f``."""
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    roll = rng.random()
    return letter if roll < 0.6 else f"{letter}{rng.randint(1, 9)}" if roll < 0.85 else letter + rng.choice("abcxyz")


def stem(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.06:  # scratch names: "Read c.txt." had no file like it to follow
        return short_stem(rng)
    if roll < 0.14:  # every letter piece of the vocabulary, as often as any other
        return piece_word(rng)
    if rng.random() < 0.4:  # any everyday word: the name is in the request, not in the model's memory
        word = common_word(rng, 3)
        roll = rng.random()
        return word if roll < 0.8 else f"{word}_{common_word(rng, 3)}" if roll < 0.9 else f"{word}{rng.randint(1, 99)}"
    roll = rng.random()
    if roll < 0.55:
        return rng.choice(STEMS)
    if roll < 0.7:
        return f"{rng.choice(STEMS)}_{rng.choice(STEMS + [str(rng.randint(1, 9))])}"
    if roll < 0.8:
        return f"{rng.choice(STEMS)}{rng.randint(1, 99)}"
    if roll < 0.9:
        return rng.choice(W.NOUNS)
    return pseudo_word(rng)


def new_path(rng: random.Random, ws: Workspace | None = None, folder: float = 0.2) -> str:
    """A file name people would use: mostly ``word.ext`` at the top, sometimes in a folder or without extension."""
    for _ in range(20):
        name = stem(rng)
        name = name.upper() if rng.random() < 0.04 else f"{name}.{rng.choice(EXTS)}"
        path = f"{rng.choice(FOLDERS)}/{name}" if rng.random() < folder else name
        if ws is None or path not in ws.files:
            return path
    return path


def phrase(rng: random.Random) -> str:
    """A short text worth writing to a file."""
    if rng.random() < 0.3:
        words = common_words(rng, 1, 4)
        return words if rng.random() < 0.7 else f"{words.capitalize()}{rng.choice(['.', '!'])}"
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(PHRASES)
    if roll < 0.5:
        return f"{rng.choice(PHRASES).capitalize()}{rng.choice(['', '.', '!'])}"
    if roll < 0.6:
        return str(rng.choice([rng.randint(0, 99), rng.randint(100, 99999)]))
    if roll < 0.7:
        return f"{rng.choice(W.NAMES)} {rng.choice(['Lopez', 'Smith', 'Chen', 'Okafor', 'Novak', 'Berg', 'Rossi', 'Khan'])}"
    if roll < 0.78:
        return f"{rng.choice(['x', 'total', 'count', 'name', 'mode', 'limit'])} = {rng.randint(0, 500)}"
    if roll < 0.85:
        return f"print('{rng.choice(PHRASES)}')"
    if roll < 0.92:
        items = ["eggs", "milk", "rice", "bread", "tea", "apples", "soap", "pasta", "beans"]
        if rng.random() < 0.5:  # any short words, listed: colours, names, everyday words
            items = [common_word(rng, 3) for _ in range(5)]
        return ", ".join(dict.fromkeys(rng.sample(items, rng.randint(2, 5))))
    return f"{pseudo_word(rng)} {rng.randint(1, 999)}"


def in_quotes(rng: random.Random, value: str, bare: float = 0.25) -> str:
    """``value`` in backticks, single or double quotes, or (with probability ``bare``) as it is."""
    roll = rng.random()
    if roll < bare:
        return value
    if "'" in value:
        return rng.choice([f'"{value}"', f"`{value}`"])
    return rng.choice([f"'{value}'", f'"{value}"', f"`{value}`", f"'{value}'"])


def file_ref(rng: random.Random, path: str) -> str:
    """How a request names a file: bare, quoted, or with 'the file'."""
    said = in_quotes(rng, path, bare=0.55)
    roll = rng.random()
    if roll < 0.15:
        return f"the file {said}"
    if roll < 0.2:
        return f"the file called {said}"
    if roll < 0.25 and "/" not in path:
        return f"the {said} file"
    return said


def polite(rng: random.Random, request: str) -> str:
    """The request with a courtesy or some context around it, or as it is."""
    roll = rng.random()
    if roll < 0.45:
        return request
    if roll < 0.6:
        return request.rstrip(".?!") + rng.choice(
            [" please.", ", please.", " pls", ", thanks!", " for me.", ". Thank you!"]
        )
    if roll < 0.8:
        lead = rng.choice(
            [
                "Quick question: ",
                "Hey, ",
                "OK, ",
                "So, ",
                "Hi! ",
                "Next: ",
                "One more thing: ",
                "I'm busy, so: ",
                "Small task: ",
                "Right. ",
                "Hello, ",
            ]
        )
        return lead + _lower_first(request)
    return request + rng.choice(
        [
            " I need it for a report.",
            " Thanks.",
            " It's for my homework.",
            " No rush.",
            " Keep the answer short.",
            " I'm in a hurry.",
            " That would help a lot.",
        ]
    )


def _lower_first(text: str) -> str:
    """``text`` with its first word lowercased when that is a plain capitalised word (not a path, "I" or a name)."""
    first = text.split(" ", 1)[0]
    if first.isalpha() and first[1:].islower() and first not in W.NAMES and first != "I":
        return text[:1].lower() + text[1:]
    return text


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# ---------------------------------------------------------------- arithmetic through Python


@dataclass
class Sum:
    """A calculation: how it is said, the code that computes it, and the value it prints."""

    said: str
    code: str
    value: int | float
    # The same calculation as an imperative ("Multiply 64 by 38"), where there is one.
    order: str | None = None

    @property
    def shown(self) -> str:
        return str(self.value)


def _binary(rng: random.Random) -> Sum:
    op = rng.choice(["+", "-", "*", "*", "/", "**", "%", "+", "-"])
    big = rng.random()
    a = rng.randint(2, 99) if big < 0.4 else rng.randint(100, 9999) if big < 0.85 else rng.randint(10000, 999999)
    b = rng.randint(2, 99) if rng.random() < 0.6 else rng.randint(100, 9999)
    if op == "**":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
    if op == "/" and rng.random() < 0.6:
        a = b * rng.randint(2, 99)
    if rng.random() < 0.1 and op in "+-*":
        a = round(rng.uniform(1, 100), 1)
    word = rng.choice(OPERATOR_WORDS[op])
    sa, sb = say_number(rng, a) if isinstance(a, int) else str(a), say_number(rng, b)
    # "nineteen times twelve": both in words, teens often. 0.1 until session 20: the number-word drill
    # alone taught the mapping, but sums inside agent turns still read "nineteen" as 9.
    if op in ("+", "-", "*") and rng.random() < 0.3:
        a, b = spoken_number(rng), spoken_number(rng)
        sa, sb = number_words(a), number_words(b)
    elif isinstance(a, int) and a < 1000 and b < 1000 and rng.random() < 0.12:  # "twenty-six times fourteen"
        sa, sb = number_words(a), number_words(b)
    order = rng.choice(_ORDERS.get(op, [None])) if rng.random() < 0.35 else None
    value = eval(f"{a} {op} {b}")  # noqa: S307 - two numbers and one operator
    return Sum(f"{sa} {word} {sb}", f"{a} {op} {b}", value, order.format(a=sa, b=sb) if order else None)


# Imperatives for a op b; each says a before b or names the operands unambiguously.
_ORDERS = {
    "+": ["Add {a} and {b}", "Add {b} to {a}", "Sum {a} and {b}"],
    "-": ["Subtract {b} from {a}", "Take {b} away from {a}", "Take {b} off {a}"],
    "*": ["Multiply {a} by {b}", "Multiply {a} and {b}"],
    "/": ["Divide {a} by {b}", "Split {a} into {b} equal parts, how big is each"],
    "**": ["Raise {a} to the power of {b}"],
}


def _many(rng: random.Random) -> Sum:
    nums = [rng.randint(2, 999) for _ in range(rng.randint(3, 4))]
    listed = ", ".join(str(n) for n in nums[:-1]) + rng.choice([" and ", ", ", " and "]) + str(nums[-1])
    kind = rng.randrange(3)
    if kind == 0:
        said = rng.choice(
            [f"the sum of {listed}", f"the total of {listed}", f"{listed} added up", f"{listed} added together"]
        )
        order = rng.choice([f"Add up {listed}", f"Add {listed} together", f"Sum {listed}", f"Total up {listed}"])
        return Sum(said, " + ".join(map(str, nums)), sum(nums), order if rng.random() < 0.5 else None)
    if kind == 1:
        code = " + ".join(map(str, nums))
        return Sum(f"the average of {listed}", f"({code}) / {len(nums)}", eval(f"({code}) / {len(nums)}"))  # noqa: S307
    code = " * ".join(map(str, nums[:3]))
    return Sum(f"the product of {', '.join(map(str, nums[:2]))} and {nums[2]}", code, eval(code))  # noqa: S307


def _math(rng: random.Random) -> Sum:
    kind = rng.randrange(5)
    if kind == 0:
        n = rng.randint(3, 15)
        import math

        return Sum(
            rng.choice([f"{n}!", f"the factorial of {n}", f"{say_number(rng, n)} factorial"]),
            f"math.factorial({n})",
            math.factorial(n),
        )
    if kind == 1:
        n = rng.randint(2, 99)
        return Sum(rng.choice([f"the square root of {n * n}", f"sqrt({n * n})"]), f"math.sqrt({n * n})", float(n))
    if kind == 2:
        n = rng.randint(2, 999)
        return Sum(rng.choice([f"{n} squared", f"the square of {n}"]), f"{n} ** 2", n * n)
    if kind == 3:
        p, n = rng.choice([5, 10, 15, 20, 25, 30, 40, 50, 75]), rng.randint(10, 9999)
        return Sum(rng.choice([f"{p}% of {n}", f"{p} percent of {n}"]), f"{n} * {p} / 100", n * p / 100)
    a, b = rng.randint(100, 99999), rng.randint(3, 97)
    return Sum(
        rng.choice(
            [f"the remainder of {a} divided by {b}", f"{a} mod {b}", f"what is left when {a} is divided by {b}"]
        ),
        f"{a} % {b}",
        a % b,
    )


def _story(rng: random.Random) -> Sum:
    """A small word problem: the numbers are in a sentence, the code multiplies or divides them."""
    a, b = rng.randint(2, 500), rng.randint(2, 60)
    thing = rng.choice(["eggs", "pages", "bottles", "chairs", "tickets", "boxes", "books", "apples"])
    stories = [
        (f"A crate holds {a} {thing}. How many {thing} are in {b} crates", f"{a} * {b}", a * b),
        (f"I earn {a} an hour and worked {b} hours. How much is that", f"{a} * {b}", a * b),
        (f"I read {b} pages a day. How many pages is that in {a} days", f"{b} * {a}", b * a),
        (f"We have {a * b} {thing} to share between {b} people. How many each", f"{a * b} / {b}", a * b / b),
        (f"I had {a + b} {thing} and gave away {b}. How many are left", f"{a + b} - {b}", a),
        (f"My phone plan costs {a} a week. What is that over 52 weeks", f"{a} * 52", a * 52),
        (f"There are {a} {thing} on each shelf and {b} shelves. What is the total", f"{a} * {b}", a * b),
        (f"One of the {thing} costs {a}. What do {b} of them cost", f"{a} * {b}", a * b),
        (f"Each box weighs {a} grams. How heavy are {b} boxes", f"{a} * {b}", a * b),
    ]
    said, code, value = rng.choice(stories)
    if rng.random() < 0.25:  # "in nine crates": the count (b, at most 60) said in words, as people often do
        said = said.replace(f" {b} ", f" {number_words(b)} ", 1)
    return Sum(said, code, value)


def a_sum(rng: random.Random) -> Sum:
    return rng.choices([_binary, _many, _math, _story], weights=[6, 1.5, 1.5, 1.2])[0](rng)


def code_for(s: Sum) -> str:
    return f"import math\nprint({s.code})" if "math." in s.code else f"print({s.code})"


_PY = [
    "Use Python.",
    "Use python.",
    "Calculate it with Python.",
    "Run it in Python.",
    "Check with Python.",
    "Use the Python tool.",
    "Do it in Python.",
    "(use python)",
    "Python please.",
]
_PY_IN = ["in Python", "with Python", "using Python", "using python", "in python", "with the python tool", "via Python"]


def ask_sum(rng: random.Random, s: Sum) -> str:
    """One way to ask for a calculation; most name Python, as people using a Python tool do."""
    e, py, py_in = s.said, rng.choice(_PY), rng.choice(_PY_IN)
    verb = rng.choice(["calculate", "compute", "work out", "figure out", "find", "evaluate", "get"])
    if s.order:
        o = s.order
        return rng.choice(
            [
                f"{o} {py_in}.",
                f"{o}. {py}",
                f"Can you {_lower_first(o)} {py_in}?",
                f"Please {_lower_first(o)} {py_in}.",
                f"{o}, {py_in}, and tell me the result.",
                f"{cap(py_in)}: {_lower_first(o)}.",
                f"{o}? {py}",
            ]
        )
    if s.said[:1].isupper():  # a word problem: a sentence of its own
        return rng.choice([f"{e}? {py}", f"{e}? Work it out {py_in}.", f"{py_in.capitalize()}: {e}?", f"{e}? {py}"])
    return rng.choice(
        [
            f"What is {e}? {py}",
            f"What's {e}? {py}",
            f"what's {e} {py_in}",
            f"{cap(verb)} {e} {py_in}.",
            f"Can you {verb} {e} {py_in}?",
            f"Could you use Python to {verb} {e}?",
            f"{cap(py_in)}, what is {e}?",
            f"python: {e}",
            f"{e} in python",
            f"{e} {py_in}.",
            f"{e} = ? {py}",
            f"How much is {e}? {py}",
            f"Please {verb} {e} {py_in}.",
            f"I need {e}. {py}",
            f"Tell me {e}, {py_in}.",
            f"Use Python to {verb} {e}.",
            f"{e}? {py}",
            f"What is {e}?",
            f"Need {e} {py_in}",
            f"{cap(verb)} {e} for me {py_in}, and tell me the result.",
            f"Run {e} through Python.",
            f"What do you get for {e}? {py}",
        ]
    )


def answer_sum(rng: random.Random, s: Sum) -> str:
    v = s.shown
    if s.said[:1].isupper():
        return rng.choice([f"That comes to {v}.", f"The answer is {v}.", f"{v}.", f"It's {v}."])
    return rng.choice(
        [
            f"{s.code} = {v}.",
            f"The answer is {v}.",
            f"It's {v}.",
            f"{s.said} is {v}.",
            f"The result is {v}.",
            f"{v}",
            f"That gives {v}.",
        ]
    )


def turn_arithmetic(rng: random.Random, ws: Workspace) -> list[dict]:
    s = a_sum(rng)
    ws.number = s.value
    return [
        user(polite(rng, ask_sum(rng, s))),
        assistant_calls(call("run_python", code=code_for(s))),
        tool_result(s.shown),
        assistant(answer_sum(rng, s)),
    ]


def turn_python(rng: random.Random, ws: Workspace) -> list[dict]:
    """A small string or list job for Python."""
    w = rng.choice([pseudo_word(rng, 2, 4), rng.choice(W.NOUNS), rng.choice(PHRASES)])
    nums = [rng.randint(0, 999) for _ in range(rng.randint(3, 6))]
    q, shown = in_quotes(rng, w, bare=0.1), str(nums)
    jobs = [
        (
            rng.choice(
                [
                    f"Reverse {q} with Python.",
                    f"What is {q} backwards? Use Python.",
                    f"Use python to reverse the string {q}.",
                ]
            ),
            f'print("{w}"[::-1])',
            w[::-1],
        ),
        (
            rng.choice(
                [
                    f"How many characters are in {q}? Use Python.",
                    f"Count the letters in {q} with python.",
                    f"What's the length of {q}? Check in Python.",
                ]
            ),
            f'print(len("{w}"))',
            str(len(w)),
        ),
        (
            rng.choice(
                [
                    f"Make {q} uppercase using Python.",
                    f"Use Python to uppercase {q}.",
                    f"{q} in capitals please, with python",
                ]
            ),
            f'print("{w}".upper())',
            w.upper(),
        ),
        (
            rng.choice(
                [
                    f"Sort these numbers with Python: {shown}",
                    f"Use python to sort {shown}.",
                    f"Can you sort {shown} in Python?",
                ]
            ),
            f"print(sorted({shown}))",
            str(sorted(nums)),
        ),
        (
            rng.choice(
                [
                    f"Add up {shown} in Python.",
                    f"What is the total of {shown}? Use Python.",
                    f"Sum {shown} with python.",
                ]
            ),
            f"print(sum({shown}))",
            str(sum(nums)),
        ),
        (
            rng.choice([f"Which is the biggest of {shown}? Use Python.", f"Find the max of {shown} with Python."]),
            f"print(max({shown}))",
            str(max(nums)),
        ),
        (
            rng.choice([f"Which is the smallest of {shown}? Use Python.", f"Find the min of {shown} using python."]),
            f"print(min({shown}))",
            str(min(nums)),
        ),
    ]
    ask, code, out = rng.choice(jobs)
    if out.lstrip("-").isdigit():
        ws.number = int(out)
    answer = rng.choice([f"The result is {out}.", f"It prints {out}.", f"Python says {out}.", out, f"Answer: {out}"])
    return [user(polite(rng, ask)), assistant_calls(call("run_python", code=code)), tool_result(out), assistant(answer)]


# ---------------------------------------------------------------- files


def file_content(rng: random.Random) -> tuple[str, str, str]:
    """File text, plus one (key, value) it holds that a question can ask for."""
    roll = rng.randrange(5)
    if roll == 0:
        key = rng.choice(["port", "host", "user", "mode", "level", "timeout", "color", "theme", "version", "limit"])
        value = (
            str(rng.randint(1, 9999))
            if key in ("port", "timeout", "limit", "level")
            else rng.choice([pseudo_word(rng), common_word(rng, 3)])
        )
        other = rng.choice(["name", "debug", "retries", "path"])
        lines = [
            f"{key} = {value}",
            f"{other} = {rng.choice(['true', 'false', str(rng.randint(0, 9)), pseudo_word(rng)])}",
        ]
        rng.shuffle(lines)
        return "\n".join(lines) + "\n", key, value
    if roll == 1:
        key = rng.choice(["password", "code", "pin", "room", "phone", "order number"])
        value = rng.choice([f"{pseudo_word(rng)}-{rng.randint(10, 99)}", str(rng.randint(1000, 999999))])
        return f"The {key} is {value}.", key, value
    if roll == 2:
        items = rng.sample(
            [
                "milk",
                "eggs",
                "call Ana",
                "pay bills",
                "fix bike",
                "email Tom",
                "buy stamps",
                "clean desk",
                "book dentist",
                "return books",
            ],
            2,
        )
        return "".join(f"- {item}\n" for item in items), "first item", items[0]
    if roll == 3:
        day = rng.choice(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])
        hour = f"{rng.randint(7, 18)}:{rng.choice(['00', '15', '30', '45'])}"
        event = rng.choice(["Dentist", "Team call", "Gym", "Lunch with Ravi", "Flight to Oslo", "Haircut"])
        return f"{event} on {day} at {hour}.", "day", day
    version = f"{rng.randint(3, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    return f"v{version}\n", "version", version


def existing_file(rng: random.Random, ws: Workspace) -> str:
    """A file the workspace holds (made up now when the session has none yet)."""
    if ws.files and rng.random() < 0.5:
        return rng.choice(sorted(ws.files))
    path = new_path(rng, ws)
    ws.files[path] = file_content(rng)[0]
    return path


def turn_read(rng: random.Random, ws: Workspace) -> list[dict]:
    path = new_path(rng, ws)
    text, key, value = file_content(rng)
    ws.files[path] = text
    ref = file_ref(rng, path)
    plain = rng.choice(
        [
            f"What does {ref} say?",
            f"What's in {ref}?",
            f"Read {ref}.",
            f"Read {ref} and tell me what it says.",
            f"Show me {ref}.",
            f"Can you open {ref}?",
            f"Open {ref} for me.",
            f"cat {ref}",
            f"Print the contents of {ref}.",
            f"Could you read {ref} to me?",
            f"Have a look at {ref}.",
            f"I'd like to see {ref}.",
            f"What is written in {ref}?",
            f"Tell me what {ref} says.",
            f"Tell me what's in {ref}.",
            f"What does {ref} contain?",
            f"I want to know what {ref} says.",
            f"Let me see what is in {ref}.",
        ]
    )
    pointed = rng.choice(
        [
            f"Open {ref} and tell me the {key}.",
            f"What's the {key} in {ref}?",
            f"Check {ref}: what is the {key}?",
            f"I need the {key}. It's in {ref}.",
            f"Look in {ref} and find the {key}.",
            f"My {key} is saved in {ref}. What is it?",
            f"The {key} is in {ref}, can you tell me what it is?",
            f"{cap(ref)} has the {key} in it. What is the {key}?",
            f"I wrote the {key} down in {ref}. Remind me what it is?",
            f"I forgot the {key}. I think it's in {ref}.",
        ]
    )
    if rng.random() < 0.35:
        answer = rng.choice([f"The {key} is {value}.", f"It's {value}.", f"`{path}` says the {key} is {value}."])
        ask = pointed
    else:
        body = text.rstrip("\n")
        answer = rng.choice([f"It says:\n{body}", f"`{path}` contains:\n{body}", body, f"Here it is:\n{body}"])
        ask = plain
    ws.path, ws.text = path, text
    return [user(polite(rng, ask)), assistant_calls(call("read_file", path=path)), tool_result(text), assistant(answer)]


def turn_read_missing(rng: random.Random, ws: Workspace) -> list[dict]:
    path = new_path(rng, ws)
    ask = rng.choice([f"What does {file_ref(rng, path)} say?", f"Read {file_ref(rng, path)}."])
    return [
        user(ask),
        assistant_calls(call("read_file", path=path)),
        tool_result(f"error: file '{path}' does not exist"),
        assistant(rng.choice([f"There is no file called `{path}`.", f"`{path}` does not exist."])),
    ]


def ask_write(rng: random.Random, ref: str, content: str) -> str:
    q = in_quotes(rng, content, bare=0.0)
    forms = [
        f"Write {q} to {ref}.",
        f"Write the text {q} to {ref}",
        f"Save {q} in {ref}.",
        f"Put {q} into {ref}.",
        f"Create {ref} with {q} in it.",
        f"Make {ref} say {q}.",
        f"Can you write {q} into {ref}?",
        f"Store {q} in {ref}.",
        f"{ref} should contain {q}.",
        f"Please put {q} in {ref}",
        # the value after a colon or bare at the end: no quotes to mark it
        f"Create {ref} with the content: {content}",
        f"Write this to {ref}: {content}",
        f"Make a file {ref} containing: {content}",
        f"New file {ref}, text: {content}",
        f"Save the following in {ref}: {content}",
        f"Make a file called {ref} with the text: {content}",
        f"Create a file named {ref} with this text: {content}",
        f"Create {ref} containing {q}.",
        f"Write a file {ref} that says {q}.",
        f"{ref}: {content}",
        f"Could you make {ref} with: {content}",
        f"Make {ref} with {q}.",
        f"Record {q} in {ref}.",
        f"Keep {q} in {ref}.",
    ]
    if content.isdigit():
        forms += [f"Put the number {content} in {ref}.", f"Write {content} to {ref}."]
    if re.fullmatch(r"[A-Za-z]+( [A-Za-z]+){0,2}", content) and rng.random() < 0.4:
        # A few plain words said bare between words. One form among thirty (session 21) was too rare:
        # round 19 still wrote "lemon tea into drink." for "Put lemon tea into drink.txt."
        bare = [f"Write {content} to {ref}", f"Save {content} in {ref}.", f"Put {content} into {ref}."]
        if " " not in content:
            bare += [f"Put the word {content} into {ref}.", f"Write the word {content} to {ref}."]
        return rng.choice(bare)
    if " " in content and content[0].isupper() and "," not in content and "=" not in content:
        forms += [f"Write my name, {content}, to {ref}.", f"Save the name {content} in {ref}."]
    if content.startswith("print("):
        forms += [f"Make a file named {ref} containing {content}", f"Create a Python file {ref} with {content}"]
    return rng.choice(forms)


def turn_write(rng: random.Random, ws: Workspace, content: str | None = None) -> list[dict]:
    path, content = new_path(rng, ws), content if content is not None else phrase(rng)
    ws.files[path] = content
    ws.path, ws.text = path, content
    ask = polite(rng, ask_write(rng, file_ref(rng, path), content))
    answer = rng.choice(
        [
            f"Done. `{path}` now contains {content!r}.",
            f"I wrote it to `{path}`.",
            f"Saved to `{path}`.",
            f"Done: wrote {len(content)} characters to `{path}`.",
            f"`{path}` is written.",
        ]
    )
    return [
        user(ask),
        assistant_calls(call("write_file", path=path, content=content)),
        tool_result(f"wrote {len(content)} characters to {path}"),
        assistant(answer),
    ]


def _swap(rng: random.Random) -> tuple[str, str, str]:
    """File text and an (old, new) pair where old occurs once in it."""
    kind = rng.randrange(7)
    if kind == 6:  # one everyday word for another, inside a line of text
        old, new = common_word(rng, 3), common_word(rng, 3)
        while new == old:
            new = common_word(rng, 3)
        return f"{common_words(rng, 0, 2)} {old} {common_words(rng, 0, 2)}".strip() + "\n", old, new
    if kind == 0:
        key = rng.choice(["verbose", "cache", "dark_mode", "enabled", "logging"])
        old, new = rng.sample(["true", "false"], 2)
        sep = rng.choice(["=", " = ", ": "])
        return f"{key}{sep}{old}\nlevel{sep}{rng.randint(1, 9)}\n", f"{key}{sep}{old}", f"{key}{sep}{new}"
    if kind == 1:
        year = rng.choice([y for y in range(1990, 2031) if y != 2023])
        return f"<p>(c) {year} {rng.choice(W.NAMES)}</p>\n", str(year), str(year + 1)
    if kind == 2:
        good = rng.choice(
            ["garden", "world", "thanks", "because", "receive", "friend", "address", "schedule", "tomorrow"]
            + [common_word(rng, 5)] * 9
        )
        i = rng.randrange(1, len(good) - 1)
        typo = good[:i] + good[i + 1 :]
        return f"{typo} {rng.choice(PHRASES)}\n", typo, good
    if kind == 3:
        old, new = rng.sample(["num", "n", "tmp", "val", "res", "idx", "total", "count", "value", "result"], 2)
        return f"{old} = {rng.randint(0, 9)}\n", old, new
    if kind == 4:
        old, new = rng.sample([n for n in W.NAMES if n != "Bob"], 2)
        return f"{rng.choice(W.NAMES[:3])}\n{old}\n" if old not in W.NAMES[:3] else f"{old}\n", old, new
    a, b, c = rng.randint(2, 9), rng.randint(0, 20), rng.randint(0, 9)
    if rng.random() < 0.5:  # major.minor
        return f"version {a}.{b}\n", f"{a}.{b}", f"{a}.{b + 1}"
    return f"version {a}.{b}.{c}\n", f"{a}.{b}.{c}", f"{a}.{b + 1}.0"


def _named_edits(old: str, o: str, n: str, ref: str) -> list[str]:
    """Edit requests that name what the old value is, a lead word the call must not copy."""
    if re.fullmatch(r"\d+(\.\d+)+", old):
        return [f"Change version {o} to {n} in {ref}.", f"In {ref}, bump version {o} to {n}."]
    if re.fullmatch(r"[A-Za-z]+", old):
        return [f"Change the word {o} to {n} in {ref}.", f"In {ref}, replace the word {o} with {n}."]
    return []


def turn_edit(rng: random.Random, ws: Workspace) -> list[dict]:
    path = new_path(rng, ws)
    text, old, new = _swap(rng)
    if text.count(old) != 1:
        text = f"{old}\n"
    ws.files[path] = text.replace(old, new, 1)
    ws.path, ws.text = path, ws.files[path]
    ref, o, n = file_ref(rng, path), in_quotes(rng, old, bare=0.45), in_quotes(rng, new, bare=0.45)
    ask = rng.choice(
        [
            f"In {ref}, change {o} to {n}.",
            f"Replace {o} with {n} in {ref}",
            f"Change {o} to {n} in {ref}.",
            f"Fix {ref}: {o} should be {n}.",
            f"In {ref} replace {o} by {n}.",
            f"Edit {ref} so that {o} becomes {n}.",
            f"Can you swap {o} for {n} in {ref}?",
            f"Update {ref}: {o} -> {n}",
            f"Rename {o} to {n} in {ref}.",
            f"{ref}: replace {o} with {n}",
            f"There's a mistake in {ref}, {o} should say {n}. Fix it please.",
            # the new value first
            f"In {ref}, put {n} instead of {o}.",
            f"Set {n} instead of {o} in {ref}.",
        ]
    )
    named = _named_edits(old, o, n, ref)
    if named and rng.random() < 0.35:  # one form in fifteen (session 21) left round 19 copying "version"
        ask = rng.choice(named)
    answer = rng.choice(
        [
            f"Done: `{old}` is now `{new}` in `{path}`.",
            f"I replaced `{old}` with `{new}` in `{path}`.",
            f"Updated `{path}`.",
            "Done.",
        ]
    )
    return [
        user(polite(rng, ask)),
        assistant_calls(call("edit_file", path=path, old=old, new=new)),
        tool_result(f"edited {path}: replaced 1 occurrence"),
        assistant(answer),
    ]


def turn_search(rng: random.Random, ws: Workspace) -> list[dict]:
    pattern = rng.choice(
        [
            rng.choice([n for n in W.NOUNS if n != "invoice"]),
            pseudo_word(rng),
            common_word(rng, 4),
            common_word(rng, 4),
            rng.choice(
                ["FIXME", "XXX", "secret_key", "error", "important", "due date", "password", "cancelled", "import os"]
            ),
        ]
    )
    folder = rng.choice(FOLDERS) if rng.random() < 0.25 else None
    hit = new_path(rng, ws, folder=0.0)
    hit = f"{folder}/{hit}" if folder else hit
    line_no = rng.randint(1, 3)
    lines = [rng.choice(PHRASES) for _ in range(line_no - 1)] + [
        f"{rng.choice(['note:', '#', '-', ''])} {pattern} {rng.choice(PHRASES)}".strip()
    ]
    ws.files[hit] = "\n".join(lines) + "\n"
    other = new_path(rng, ws)
    ws.files.setdefault(other, f"{rng.choice(PHRASES)}\n")
    p = in_quotes(rng, pattern, bare=0.45)
    where = f" in {in_quotes(rng, folder, bare=0.6)}" if folder else ""
    ask = rng.choice(
        [
            f"Which file mentions {p}?",
            f"Which file talks about {p}?",
            f"What file has {p} in it?",
            f"Look through my files{where} for the word {p}.",
            f"Search for {p}{where}.",
            f"Find {p}{where}.",
            f"Where does {p} appear{where}?",
            f"Is there a file{where} that contains {p}?",
            f"grep {p}{where}",
            f"Look for {p} in my files{where}.",
            f"Which of my files{where} has {p} in it?",
            f"Can you find the word {p}{where}?",
            f"Search{where or ' the project'} for {p}.",
            f"Find the word {p} in my files{where}.",
            f"Search my files{where} for {p}.",
            f"Look for the word {p}{where}.",
            f"Find {p} in my files.",
        ]
    )
    args = {"pattern": pattern, **({"path": folder} if folder else {})}
    if rng.random() < 0.12:
        del ws.files[hit]
        return [
            user(polite(rng, ask)),
            assistant_calls(call("search_files", args)),
            tool_result(f"no matches for '{pattern}'"),
            assistant(rng.choice([f"No file mentions `{pattern}`.", f"I found no `{pattern}` anywhere."])),
        ]
    result = f"{hit}:{line_no}: {lines[-1]}"
    ws.hit, ws.path = hit, hit
    answer = rng.choice(
        [
            f"`{pattern}` appears in `{hit}` (line {line_no}).",
            f"It's in `{hit}`, line {line_no}: {lines[-1]}",
            f"`{hit}` mentions it.",
            f"Found it in {hit}.",
        ]
    )
    return [user(polite(rng, ask)), assistant_calls(call("search_files", args)), tool_result(result), assistant(answer)]


def turn_list(rng: random.Random, ws: Workspace) -> list[dict]:
    folder = rng.choice(FOLDERS) if rng.random() < 0.55 else "."
    for _ in range(rng.randint(1, 4)):
        name = new_path(rng, ws, folder=0.0)
        ws.files[name if folder == "." else f"{folder}/{name}"] = "x\n"
    prefix = "" if folder == "." else folder + "/"
    names = sorted(
        {
            p[len(prefix) :].split("/")[0] + ("/" if "/" in p[len(prefix) :] else "")
            for p in ws.files
            if p.startswith(prefix)
        }
    )
    f = in_quotes(rng, folder, bare=0.6)
    if folder == ".":
        ask = rng.choice(
            [
                "List the files.",
                "What files do I have?",
                "Show me the files in this folder.",
                "ls",
                "What's in the current directory?",
                "Which files are here?",
                "List everything in the workspace.",
                "What do we have in here?",
                "list files",
                "Can I get a list of what is here?",
                "Show me what files there are.",
                "What files are there?",
                "Can you list the files here?",
                "Tell me which files exist.",
                "What's in this workspace?",
                "Which files do we have?",
                "Any files here?",
            ]
        )
    else:
        ask = rng.choice(
            [
                f"What files are in {f}?",
                f"List {f}.",
                f"Show me the {f} folder.",
                f"ls {f}",
                f"What's inside the {f} directory?",
                f"Which files are in {f}/?",
                f"List the contents of {f}.",
            ]
        )
    answer = rng.choice(
        [
            f"There are {len(names)}: {', '.join(names)}.",
            f"Files: {', '.join(names)}.",
            f"`{folder}` has " + ", ".join(names) + ".",
        ]
    )
    return [
        user(polite(rng, ask)),
        assistant_calls(call("list_dir", path=folder)),
        tool_result("\n".join(names)),
        assistant(answer),
    ]


# ---------------------------------------------------------------- no tool, and exact copies


CHAT = [
    ("Hey!", "Hi! What can I do for you?"),
    ("hello", "Hello! How can I help?"),
    ("Hi, how are you?", "I'm fine, thanks. What do you need?"),
    ("Good evening!", "Good evening! How can I help?"),
    ("Good afternoon.", "Good afternoon! What can I do for you?"),
    ("yo", "Hi! What do you need?"),
    ("Thank you so much!", "You're welcome!"),
    ("thanks", "You're welcome."),
    ("Great, thanks.", "Glad to help."),
    ("Perfect, that's it.", "Great. Let me know if you need anything else."),
    ("That's everything, thank you.", "You're welcome. Have a good day!"),
    ("ok thanks bye", "Bye!"),
    ("Cheers!", "Cheers! Anything else?"),
    ("What are you?", "I'm a small local assistant. I can run Python and work with your files."),
    (
        "What tools do you have?",
        "I can run Python, read, write and edit files, list folders, search files and run shell commands.",
    ),
    (
        "How can you help me?",
        "I can do calculations in Python and read, write, edit, list and search files in this workspace.",
    ),
    ("What do you do?", "I run Python and work with files in your workspace. Ask me for a calculation or a file task."),
    ("Nice, that worked.", "Great!"),
    ("Awesome.", "Glad it helped."),
    ("see you later", "See you!"),
    ("Morning!", "Morning! What's up?"),
    ("Hello there, anyone home?", "Yes, I'm here. What can I do?"),
    ("Cool.", "Anything else?"),
    ("No, that's all.", "Okay. Bye!"),
]


_HELLO = ["Hi", "Hello", "Hey", "Hi there", "Hello there", "Good morning", "Hey there", "Greetings"]
_SMALL_TALK = [
    "pleased to meet you",
    "how's it going",
    "how are you today",
    "I'm new here",
    "just saying hi",
    "hope you're well",
    "glad you're here",
    "long day today",
]


def small_talk(rng: random.Random) -> tuple[str, str]:
    """A greeting with a bit of small talk, which needs no tool."""
    talk = rng.choice(_SMALL_TALK)
    said = f"{rng.choice(_HELLO)}, {talk}{rng.choice(['.', '!', '', '?' if talk.startswith('how') else '.'])}"
    replies = ["Hello! How can I help?", "Hi! What do you need?", "Hi! What can I do for you?"]
    if talk == "pleased to meet you":
        replies = ["Nice to meet you too! What can I do for you?", "Likewise! How can I help?"]
    reply = rng.choice(replies)
    return said if rng.random() < 0.7 else said.lower(), reply


def turn_chat(rng: random.Random, ws: Workspace) -> list[dict]:
    roll = rng.random()
    if roll < 0.3:
        question, answer = rng.choice(W.FACTS)
    elif roll < 0.5:
        question, answer = small_talk(rng)
    else:
        question, answer = rng.choice(CHAT)
    return [user(question), assistant(answer)]


def turn_echo(rng: random.Random, ws: Workspace) -> list[dict]:
    """An exact-copy drill said as people say it; no tool."""
    value = rng.choice(
        [
            phrase(rng),
            new_path(rng),
            str(rng.randint(0, 10 ** rng.randint(2, 7))),
            f"{pseudo_word(rng)}-{rng.randint(1, 99)}",
        ]
    )
    ask = rng.choice(
        [
            f"Repeat after me: {value}",
            f"Say {in_quotes(rng, value, 0.0)}.",
            f"Echo {in_quotes(rng, value, 0.2)}",
            f"Just reply with {in_quotes(rng, value, 0.0)} and nothing else.",
            f"Type back exactly: {value}",
        ]
    )
    return [user(ask), assistant(value)]


# ---------------------------------------------------------------- follow-ups that refer to earlier turns


def turn_more_maths(rng: random.Random, ws: Workspace) -> list[dict]:
    prev = ws.number
    k = rng.randint(2, 12)
    op, said = rng.choice(
        [
            ("*", f"multiply that by {say_number(rng, k)}"),
            ("*", f"times {k}"),
            ("+", f"add {k} to it"),
            ("-", f"subtract {k} from that"),
            ("/", f"divide it by {k}"),
            ("**", "square it"),
        ]
    )
    if said == "square it":
        k = 2
    if said.startswith("double") or rng.random() < 0.1:
        op, k, said = "*", 2, rng.choice(["double it", "double that", "and twice that?"])
    ask = rng.choice(
        [f"Now {said}.", f"And {said}?", f"OK, {said} with Python.", f"{cap(said)}.", f"Then {said} in python."]
    )
    code = f"{prev} {op} {k}"
    value = eval(code)  # noqa: S307 - a number and one operator
    ws.number = value
    return [
        user(ask),
        assistant_calls(call("run_python", code=f"print({code})")),
        tool_result(str(value)),
        assistant(rng.choice([f"{code} = {value}.", f"That's {value}.", f"The result is {value}."])),
    ]


def turn_save_result(rng: random.Random, ws: Workspace) -> list[dict]:
    path = new_path(rng, ws)
    content = str(ws.number)
    ref = file_ref(rng, path)
    ask = rng.choice(
        [
            f"Save that to {ref}.",
            f"Now store the result in {ref}.",
            f"Put the answer in {ref}.",
            f"Write that number into {ref}.",
            f"Great, store it in {ref}.",
        ]
    )
    ws.files[path], ws.path, ws.text = content, path, content
    return [
        user(ask),
        assistant_calls(call("write_file", path=path, content=content)),
        tool_result(f"wrote {len(content)} characters to {path}"),
        assistant(f"Saved {content} to `{path}`."),
    ]


def turn_open_hit(rng: random.Random, ws: Workspace) -> list[dict]:
    path = ws.hit
    text = ws.files[path]
    ask = rng.choice(
        [
            "Show me that file.",
            "Read it.",
            "What's in that one?",
            "Open it.",
            "Read the file you found.",
            "Now open it and show me the text.",
        ]
    )
    ws.path, ws.text = path, text
    return [
        user(ask),
        assistant_calls(call("read_file", path=path)),
        tool_result(text),
        assistant(rng.choice([f"`{path}` says:\n{text.rstrip()}", text.rstrip()])),
    ]


def turn_read_back(rng: random.Random, ws: Workspace) -> list[dict]:
    path, text = ws.path, ws.files[ws.path]
    ref = file_ref(rng, path)
    ask = rng.choice(
        [
            f"Now read {ref} back to me.",
            f"What does {ref} say now?",
            "Read it back to check.",
            f"Please read {ref} to confirm.",
            f"Show me {ref} again.",
            "Can you check that it was saved?",
        ]
    )
    ws.text = text
    return [
        user(ask),
        assistant_calls(call("read_file", path=path)),
        tool_result(text),
        assistant(rng.choice([f"It says:\n{text.rstrip()}", f"`{path}` contains:\n{text.rstrip()}", text.rstrip()])),
    ]


def turn_copy_it(rng: random.Random, ws: Workspace) -> list[dict]:
    src, text = ws.path, ws.files[ws.path]
    dot = src.rfind(".")
    dst = rng.choice([f"{src[:dot]}_copy{src[dot:]}" if dot > 0 else f"{src}.bak", f"{src}.bak", new_path(rng, ws)])
    ask = rng.choice(
        [
            f"Now make a copy of it called {file_ref(rng, dst)}.",
            f"Copy that into {file_ref(rng, dst)}.",
            f"Save the same text to {file_ref(rng, dst)}.",
            f"Back it up as {file_ref(rng, dst)}.",
        ]
    )
    ws.files[dst], ws.path = text, dst
    return [
        user(ask),
        assistant_calls(call("write_file", path=dst, content=text)),
        tool_result(f"wrote {len(text)} characters to {dst}"),
        assistant(f"Copied it to `{dst}`."),
    ]


def turn_edit_it(rng: random.Random, ws: Workspace) -> list[dict]:
    path, text = ws.path, ws.files[ws.path]
    words = [w for w in text.replace("\n", " ").split(" ") if w and text.count(w) == 1]
    if not words:
        return turn_edit(rng, ws)
    old = rng.choice(words)
    new = rng.choice([pseudo_word(rng), rng.choice(PHRASES).split()[0], str(rng.randint(0, 999)), common_word(rng, 3)])
    o, n = in_quotes(rng, old, 0.4), in_quotes(rng, new, 0.4)
    ref = rng.choice(["it", file_ref(rng, path)])
    ask = rng.choice(
        [
            f"Now change {o} to {n} in {ref}.",
            f"In {ref}, replace {o} with {n}.",
            f"Replace {o} with {n} there.",
            f"Change {o} to {n}.",
        ]
    )
    ws.files[path] = text.replace(old, new, 1)
    return [
        user(ask),
        assistant_calls(call("edit_file", path=path, old=old, new=new)),
        tool_result(f"edited {path}: replaced 1 occurrence"),
        assistant(f"Done: `{old}` is now `{new}`."),
    ]


# ---------------------------------------------------------------- the space-to-no-space bridge


def _listable(rng: random.Random) -> str:
    """A word or file name as a request would say it bare."""
    roll = rng.random()
    if roll < 0.35:  # session 22: the vocabulary's letter pieces, each as often as any other
        return piece_word(rng)
    if roll < 0.6:
        return common_word(rng, 2)
    if roll < 0.85:
        return new_path(rng, folder=0.1)
    if roll < 0.93:
        return stem(rng)
    return pseudo_word(rng)


def word_list_chat(rng: random.Random) -> list[dict]:
    """Words said after a space, written back one per line: the tokens a value starts with.

    Written (session 8) when a word after a space (`` year``) was other tokens than the same word
    at the start of a value (``year`` after ``<parameter=path>`` and a newline), to train that
    mapping. Since session 9 the tokenizer has no merge joining a space to a letter, so `` year`` is
    the space token and then ``year``'s own tokens, and this is a plain copy drill: a handful of
    words in a few dozen tokens, without the sessions' 925-token tools block.
    """
    items = [_listable(rng) for _ in range(rng.randint(2, 7))]
    joiner = rng.choice([" ", ", ", " and "]) if len(items) == 2 else rng.choice([" ", ", "])
    said = joiner.join(items)
    ask = rng.choice(
        [
            # No "write" or "put": those ask for write_file, and this drill answers in the chat.
            f"Repeat these one per line: {said}",
            f"Say these back, one per line: {said}",
            f"Echo each of these on its own line: {said}",
            f"Split this into lines: {said}",
            f"Reply with these words, one per line: {said}",
        ]
    )
    return [user(ask), assistant("\n".join(items))]


def number_words_chat(rng: random.Random) -> list[dict]:
    """Numbers said in words written back in digits: "twenty-six times fourteen" -> ``26 * 14``.

    Added in session 13, when round 9 computed ``22 * 45`` for "twenty-six times fourteen" (a
    dev-set miss): a few dozen tokens each, without the tools block, like the word-list drill. Since
    session 19 most of the numbers are ``spoken_number``'s, a third of them teens.
    """
    nums = [spoken_number(rng) if rng.random() < 0.6 else rng.randint(0, 999) for _ in range(rng.choice([1, 2, 2]))]
    if len(nums) == 1:
        said, digits = number_words(nums[0]), str(nums[0])
    else:
        op = rng.choice(["+", "-", "*", "/"])
        word = rng.choice([w for w in OPERATOR_WORDS[op] if w.isalpha() or " " in w])
        said, digits = f"{number_words(nums[0])} {word} {number_words(nums[1])}", f"{nums[0]} {op} {nums[1]}"
    ask = rng.choice(
        [
            f"Write {said} in digits.",
            f"{cap(said)} in digits, please.",
            f"How do you write {said} with digits?",
            f"Digits only: {said}",
            f"Turn this into digits: {said}",
        ]
    )
    return [user(ask), assistant(digits)]
