"""Deterministic synthetic corpus: agent conversations, BFCL-style calls, copy drills, domain text.

Every generator takes a ``random.Random`` and returns plain data, so a seed fixes the output.
Values come from spaces far too large to memorise (syllable words, numbers, paths), which
forces the model to copy them from the request instead of recalling them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from training import words as W

SYSTEM_PROMPTS = [
    None,
    None,
    "You are a helpful assistant.",
    "You are optiq, a local agent. Use the tools when they help; answer briefly.",
    "You are a coding assistant working in the user's workspace.",
    "Answer concisely.",
]


@dataclass
class Chat:
    """One conversation: OpenAI-style messages and the tools offered (or None)."""

    kind: str
    messages: list[dict]
    tools: list[dict] | None = None
    # Rendered as the agent's transcript holds a session (``sessions.render_session``): every
    # assistant turn after its empty think block, so every one is trained.
    session: bool = False


@dataclass
class BfclTask:
    """A BFCL-style single-turn task: function docs, a question, and the expected calls."""

    category: str
    docs: list[dict]
    question: str
    calls: list[tuple[str, dict]]
    optional: dict[str, dict] = field(default_factory=dict)
    answer: str = ""


# ---------------------------------------------------------------- values


def pseudo_word(rng: random.Random, low: int = 2, high: int = 3) -> str:
    """A pronounceable made-up word: the space is far too large to memorise."""
    return "".join(rng.choice(W.SYLLABLES) for _ in range(rng.randint(low, high)))


def word(rng: random.Random) -> str:
    """A real noun or a made-up word."""
    return rng.choice(W.NOUNS) if rng.random() < 0.5 else pseudo_word(rng)


def file_name(rng: random.Random, ext: str | None = None) -> str:
    """A relative file path such as ``notes/kelomi_42.txt``."""
    stem = rng.choice(
        [
            lambda: word(rng),
            lambda: f"{word(rng)}_{word(rng)}",
            lambda: f"{word(rng)}{rng.randint(1, 99)}",
            lambda: f"{word(rng)}-{word(rng)}",
        ]
    )()
    return f"{rng.choice(W.DIRS)}{stem}.{ext or rng.choice(W.EXTENSIONS)}"


def dir_name(rng: random.Random) -> str:
    """A relative folder path."""
    return rng.choice([".", "src", "data", "notes", "docs", "tests", word(rng), f"{word(rng)}/{word(rng)}"])


def sentence(rng: random.Random) -> str:
    """A short sentence with a value worth copying in it."""
    return rng.choice(
        [
            lambda: f"The {rng.choice(W.NOUNS)} code is {rng.randint(100, 99999)}.",
            lambda: f"{rng.choice(W.NAMES)} lives in {rng.choice(W.CITIES)}.",
            lambda: f"The password is {pseudo_word(rng)}{rng.randint(10, 999)}.",
            lambda: f"Meeting with {rng.choice(W.NAMES)} at {rng.randint(1, 12)} pm.",
            lambda: f"Total: {rng.randint(1, 9999)} {rng.choice(W.NOUNS)}s.",
            lambda: f"The {rng.choice(W.ADJECTIVES)} {rng.choice(W.NOUNS)} is {pseudo_word(rng)}.",
            lambda: f"Remember to {rng.choice(W.VERBS)} the {rng.choice(W.NOUNS)}.",
            lambda: f"version = {rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 30)}",
            lambda: f"{pseudo_word(rng)} {pseudo_word(rng)} {rng.choice(W.NOUNS)}",
        ]
    )()


def file_text(rng: random.Random) -> str:
    """File contents: one to three lines."""
    return "\n".join(sentence(rng) for _ in range(rng.choice([1, 1, 1, 2, 3])))


def quote(rng: random.Random, value: str) -> str:
    """A value as users write it: mostly in backticks, sometimes in quotes, sometimes bare.

    After a space, Qwen3.5's pre-tokenizer keeps an opening backtick or quote with the space,
    so the value's tokens match the ones in the call; a bare value's first word would carry
    the space. The few bare ones teach that mapping too.
    """
    roll = rng.random()
    if roll < 0.6:
        return f"`{value}`"
    if roll < 0.9:
        return f'"{value}"'
    return value


def call(name: str, args: dict | None = None, **kwargs) -> dict:
    """An OpenAI-style tool call."""
    return {"type": "function", "function": {"name": name, "arguments": {**(args or {}), **kwargs}}}


def assistant_calls(*calls: dict) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": list(calls)}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def tool_result(text: str) -> dict:
    return {"role": "tool", "content": text}


# ---------------------------------------------------------------- built-in tools

_BUILTIN_SPECS = {
    "run_python": (
        [
            "Run Python code in a sandbox and return what it prints.",
            "Execute a Python snippet and return its output.",
            "Run Python code. Use print() to show results.",
        ],
        [("code", "string", ["The Python code to run.", "Python source code."])],
    ),
    "read_file": (
        [
            "Read a text file from the workspace.",
            "Read the contents of a file.",
            "Return the text of a file in the workspace.",
        ],
        [("path", "string", ["Path of the file, relative to the workspace.", "File path."])],
    ),
    "write_file": (
        ["Write text to a file, creating or replacing it.", "Create or overwrite a file with the given content."],
        [
            ("path", "string", ["Path of the file to write.", "File path."]),
            ("content", "string", ["The full text to write.", "Text content."]),
        ],
    ),
    "edit_file": (
        ["Replace an exact piece of text in a file.", "Edit a file by replacing old text with new text."],
        [
            ("path", "string", ["Path of the file to edit.", "File path."]),
            ("old", "string", ["The exact text to replace.", "Text to find."]),
            ("new", "string", ["The replacement text.", "Text to put instead."]),
        ],
    ),
    "list_dir": (
        ["List the files and folders in a directory.", "List a folder of the workspace."],
        [("path", "string", ["Directory path, relative to the workspace.", "Folder to list."])],
    ),
    "search_files": (
        ["Search files under a directory for a regular expression.", "Find lines matching a pattern in files."],
        [
            ("pattern", "string", ["Regular expression to search for.", "Text or regex to find."]),
            ("path", "string", ["Directory to search in.", "Folder to search."]),
        ],
    ),
}
BUILTIN_NAMES = tuple(_BUILTIN_SPECS)


def builtin_tool(rng: random.Random, name: str) -> dict:
    """One built-in tool in the OpenAI format, with a randomly chosen wording and schema style."""
    descriptions, params = _BUILTIN_SPECS[name]
    pydantic_style = rng.random() < 0.5
    properties = {}
    for pname, ptype, pdescs in params:
        desc = rng.choice(pdescs)
        properties[pname] = (
            {"description": desc, "type": ptype} if pydantic_style else {"type": ptype, "description": desc}
        )
    required = [p[0] for p in params]
    if pydantic_style:
        schema = {"properties": properties, "required": required, "type": "object"}
    else:
        schema = {"type": "object", "properties": properties, "required": required}
    return {
        "type": "function",
        "function": {"name": name, "description": rng.choice(descriptions), "parameters": schema},
    }


def builtin_tools(rng: random.Random, needed: list[str]) -> list[dict]:
    """The built-in tools: mostly the agent's six verbatim, else reworded, sometimes a shuffled subset."""
    if rng.random() < 0.4:
        return [dict(t) for t in W.AGENT_TOOLS]
    if rng.random() < 0.3:
        names = list(BUILTIN_NAMES)
    else:
        others = [n for n in BUILTIN_NAMES if n not in needed]
        names = needed + rng.sample(others, rng.randint(0, len(others)))
        rng.shuffle(names)
    return [builtin_tool(rng, n) for n in names]


def _arith(rng: random.Random) -> tuple[str, int]:
    op = rng.choice(["+", "-", "*", "*", "*"])
    big = rng.random() < 0.5
    a = rng.randint(2, 999 if big else 99)
    b = rng.randint(2, 999 if big else 99)
    return f"{a} {op} {b}", eval(f"{a} {op} {b}")  # noqa: S307 - two ints and one operator


def task_arithmetic(rng: random.Random) -> list[dict]:
    expr, value = _arith(rng)
    ask = rng.choice(
        [
            "What is {e}? Use Python.",
            "What is {e}? Use Python.",
            "Use Python to compute {e}.",
            "Calculate {e} with Python.",
            "What's {e}? Run it in Python.",
            "Compute {e} using run_python.",
            "What is {e}?",
            "Please work out {e} in Python.",
        ]
    ).format(e=expr)
    # One form of the code per request: a random choice between equivalent programs is a coin no
    # model can call, and a BFCL-style exact check failed the right answer a quarter of the time.
    # The draw stays, so every later value (held-out sets, the shipped suite) is unchanged.
    rng.choice(range(4))
    code = f"print({expr})"
    answer = rng.choice(["{e} = {v}.", "The answer is {v}.", "{e} is {v}.", "It's {v}."]).format(e=expr, v=value)
    return [user(ask), assistant_calls(call("run_python", code=code)), tool_result(str(value)), assistant(answer)]


def _python_job(rng: random.Random) -> tuple[str, str, str]:
    """A small Python job: (request, code, printed output)."""
    w = pseudo_word(rng, 2, 4)
    nums = [rng.randint(0, 99) for _ in range(rng.randint(3, 6))]
    jobs = [
        (f"Reverse the string {quote(rng, w)} using Python.", f'print("{w}"[::-1])', w[::-1]),
        (f"How many characters are in {quote(rng, w)}? Use Python.", f'print(len("{w}"))', str(len(w))),
        (f"Use Python to uppercase {quote(rng, w)}.", f'print("{w}".upper())', w.upper()),
        (f"Sort {nums} with Python.", f"print(sorted({nums}))", str(sorted(nums))),
        (f"What is the sum of {nums}? Use Python.", f"print(sum({nums}))", str(sum(nums))),
        (f"Use Python to find the largest number in {nums}.", f"print(max({nums}))", str(max(nums))),
        (
            f"Run this Python code: `print({nums[0]} + {nums[1]})`",
            f"print({nums[0]} + {nums[1]})",
            str(nums[0] + nums[1]),
        ),
    ]
    return rng.choice(jobs)


def task_python(rng: random.Random) -> list[dict]:
    ask, code, out = _python_job(rng)
    answer = rng.choice(["The result is {o}.", "It prints {o}.", "Output: {o}", "{o}"]).format(o=out)
    return [user(ask), assistant_calls(call("run_python", code=code)), tool_result(out), assistant(answer)]


def task_read(rng: random.Random) -> list[dict]:
    path, text = file_name(rng), file_text(rng)
    q = quote(rng, path)
    ask = rng.choice(
        [
            f"Read {q} and tell me what it says.",
            f"What is in {q}?",
            f"Show me the contents of {q}.",
            f"Open {q}.",
            f"Can you read the file {q}?",
            f"Print {q}.",
        ]
    )
    if rng.random() < 0.1:
        err = rng.choice(
            [f"Error: file not found: {path}", f"file '{path}' does not exist", f"Error: file '{path}' does not exist"]
        )
        return [
            user(ask),
            assistant_calls(call("read_file", path=path)),
            tool_result(err),
            assistant(f"The file `{path}` does not exist."),
        ]
    answer = rng.choice([f"`{path}` contains:\n{text}", f"The file says:\n{text}", f"Here it is:\n{text}", text])
    return [user(ask), assistant_calls(call("read_file", path=path)), tool_result(text), assistant(answer)]


def task_write(rng: random.Random) -> list[dict]:
    path, text = file_name(rng, rng.choice(["txt", "md", "txt"])), sentence(rng)
    ask = rng.choice(
        [
            f"Write {quote(rng, text)} to {quote(rng, path)}.",
            f"Create {quote(rng, path)} containing {quote(rng, text)}.",
            f"Save the text {quote(rng, text)} in the file {quote(rng, path)}.",
            f"Put {quote(rng, text)} into {quote(rng, path)}.",
        ]
    )
    result = rng.choice(
        [f"wrote {len(text)} characters to {path}", f"wrote {len(text)} characters to {path}", f"OK: wrote {path}"]
    )
    answer = rng.choice(
        [f"Done. I wrote the text to `{path}`.", f"Saved to `{path}`.", f"`{path}` now contains the text."]
    )
    return [
        user(ask),
        assistant_calls(call("write_file", path=path, content=text)),
        tool_result(result),
        assistant(answer),
    ]


def task_edit(rng: random.Random) -> list[dict]:
    path = file_name(rng)
    old, new = rng.choice(
        [
            lambda: (word(rng), word(rng)),
            lambda: (str(rng.randint(0, 999)), str(rng.randint(0, 999))),
            lambda: (f"{word(rng)} = {rng.randint(0, 99)}", f"{word(rng)} = {rng.randint(0, 99)}"),
        ]
    )()
    ask = rng.choice(
        [
            f"In {quote(rng, path)}, replace {quote(rng, old)} with {quote(rng, new)}.",
            f"Change {quote(rng, old)} to {quote(rng, new)} in {quote(rng, path)}.",
            f"Edit {quote(rng, path)}: replace {quote(rng, old)} by {quote(rng, new)}.",
        ]
    )
    result = rng.choice(
        [f"edited {path}: replaced 1 occurrence", f"edited {path}: replaced 1 occurrence", f"OK: edited {path}"]
    )
    answer = rng.choice([f"Done: `{old}` is now `{new}` in `{path}`.", f"I replaced `{old}` with `{new}` in `{path}`."])
    return [
        user(ask),
        assistant_calls(call("edit_file", path=path, old=old, new=new)),
        tool_result(result),
        assistant(answer),
    ]


def task_list(rng: random.Random) -> list[dict]:
    path = dir_name(rng)
    entries = sorted({file_name(rng).split("/")[-1] for _ in range(rng.randint(1, 5))})
    if rng.random() < 0.3:
        entries.append(f"{word(rng)}/")
    ask = rng.choice(
        [
            f"List the files in {quote(rng, path)}.",
            f"What files are in {quote(rng, path)}?",
            f"Show the folder {quote(rng, path)}.",
            f"What's inside {quote(rng, path)}?",
        ]
    )
    answer = rng.choice(["It contains: {e}.", "Files: {e}.", "`{p}` has {e}."]).format(e=", ".join(entries), p=path)
    return [user(ask), assistant_calls(call("list_dir", path=path)), tool_result("\n".join(entries)), assistant(answer)]


def task_search(rng: random.Random) -> list[dict]:
    pattern, path = word(rng), dir_name(rng)
    hit_file, line = file_name(rng), rng.randint(1, 200)
    ask = rng.choice(
        [
            f"Search for {quote(rng, pattern)} in {quote(rng, path)}.",
            f"Which files under {quote(rng, path)} mention {quote(rng, pattern)}?",
            f"Find {quote(rng, pattern)} in the files in {quote(rng, path)}.",
        ]
    )
    if rng.random() < 0.2:
        return [
            user(ask),
            assistant_calls(call("search_files", pattern=pattern, path=path)),
            tool_result(f"no matches for '{pattern}'"),
            assistant(f"No file under `{path}` mentions `{pattern}`."),
        ]
    result = f"{hit_file}:{line}: {pattern} {sentence(rng)}"
    answer = f"`{pattern}` appears in `{hit_file}` at line {line}."
    return [
        user(ask),
        assistant_calls(call("search_files", pattern=pattern, path=path)),
        tool_result(result),
        assistant(answer),
    ]


def task_multi_step(rng: random.Random) -> list[dict]:
    kind = rng.randrange(4)
    if kind == 0:  # copy a file
        src, dst, text = file_name(rng), file_name(rng), file_text(rng)
        return [
            user(f"Copy {quote(rng, src)} to {quote(rng, dst)}."),
            assistant_calls(call("read_file", path=src)),
            tool_result(text),
            assistant_calls(call("write_file", path=dst, content=text)),
            tool_result(f"wrote {len(text)} characters to {dst}"),
            assistant(f"Copied `{src}` to `{dst}`."),
        ]
    if kind == 1:  # compute then save
        expr, value = _arith(rng)
        dst = file_name(rng, "txt")
        return [
            user(f"Compute {expr} with Python and save the result to {quote(rng, dst)}."),
            assistant_calls(call("run_python", code=f"print({expr})")),
            tool_result(str(value)),
            assistant_calls(call("write_file", path=dst, content=str(value))),
            tool_result(f"wrote {len(str(value))} characters to {dst}"),
            assistant(f"{expr} = {value}. I saved it to `{dst}`."),
        ]
    if kind == 2:  # search then read
        pattern, hit, text = word(rng), file_name(rng), file_text(rng)
        return [
            user(f"Find the file that mentions {quote(rng, pattern)} and show it to me."),
            assistant_calls(call("search_files", pattern=pattern, path=".")),
            tool_result(f"{hit}:1: {pattern}"),
            assistant_calls(call("read_file", path=hit)),
            tool_result(f"{pattern}\n{text}"),
            assistant(f"`{hit}` contains:\n{pattern}\n{text}"),
        ]
    folder = dir_name(rng)  # list then read
    names = [file_name(rng, "txt").split("/")[-1] for _ in range(rng.randint(1, 3))]
    first = names[0] if folder == "." else f"{folder}/{names[0]}"
    text = file_text(rng)
    return [
        user(f"List {quote(rng, folder)} and read the first file."),
        assistant_calls(call("list_dir", path=folder)),
        tool_result("\n".join(names)),
        assistant_calls(call("read_file", path=first)),
        tool_result(text),
        assistant(f"The first file is `{names[0]}`. It says:\n{text}"),
    ]


def task_no_tool(rng: random.Random) -> list[dict]:
    if rng.random() < 0.5:
        question, answer = rng.choice(W.FACTS)
    else:
        question, answer = rng.choice(W.SMALL_TALK)
    return [user(question), assistant(answer)]


def agent_chat(rng: random.Random) -> Chat:
    """A conversation over the built-in tools (or a request that needs none)."""
    makers = [
        (task_arithmetic, 4, ["run_python"]),
        (task_python, 2, ["run_python"]),
        (task_read, 3, ["read_file"]),
        (task_write, 2, ["write_file"]),
        (task_edit, 2, ["edit_file"]),
        (task_list, 2, ["list_dir"]),
        (task_search, 2, ["search_files"]),
        (task_multi_step, 3, []),
        (task_no_tool, 3, []),
    ]
    maker, _, needed = rng.choices(makers, weights=[m[1] for m in makers])[0]
    messages = maker(rng)
    if needed == [] and maker is task_multi_step:
        needed = sorted({c["function"]["name"] for m in messages for c in m.get("tool_calls", [])})
    system = rng.choice(SYSTEM_PROMPTS)
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    if rng.random() < 0.15:  # an earlier exchange in the history
        messages = [*task_no_tool(rng), *messages] if not system else [messages[0], *task_no_tool(rng), *messages[1:]]
    return Chat(maker.__name__.removeprefix("task_"), messages, builtin_tools(rng, needed))


# ---------------------------------------------------------------- BFCL-style random schemas

_TYPES = ["string", "string", "string", "integer", "integer", "float", "boolean", "enum", "array"]


def _param_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = rng.choice(
            [
                lambda: rng.choice(W.NOUNS),
                lambda: f"{rng.choice(W.NOUNS)}_{rng.choice(W.NOUNS)}",
                lambda: f"{rng.choice(W.ADJECTIVES)}_{rng.choice(W.NOUNS)}",
                lambda: pseudo_word(rng),
                lambda: f"{rng.choice(W.NOUNS)}_{rng.choice(['id', 'name', 'count', 'type', 'code'])}",
            ]
        )()
        if name not in taken:
            taken.add(name)
            return name


def _param(rng: random.Random, name: str) -> tuple[dict, object]:
    """A BFCL parameter spec and a value for it."""
    kind = rng.choice(_TYPES)
    noun = name.replace("_", " ")
    if kind == "string":
        value = rng.choice(
            [
                lambda: word(rng),
                lambda: rng.choice(W.CITIES),
                lambda: rng.choice(W.NAMES),
                lambda: file_name(rng),
                lambda: f"{word(rng)} {word(rng)}",
                lambda: pseudo_word(rng, 3, 5),
            ]
        )()
        return {"type": "string", "description": f"The {noun}."}, value
    if kind == "integer":
        return {"type": "integer", "description": f"The {noun} as a whole number."}, rng.choice(
            [rng.randint(0, 20), rng.randint(0, 99999)]
        )
    if kind == "float":
        return {"type": "float", "description": f"The {noun} value."}, round(rng.uniform(0, 1000), rng.choice([1, 2]))
    if kind == "boolean":
        return {"type": "boolean", "description": f"Whether to use {noun}."}, rng.random() < 0.5
    if kind == "enum":
        options = rng.sample(W.ADJECTIVES, rng.randint(2, 4))
        return {"type": "string", "enum": options, "description": f"The {noun}."}, rng.choice(options)
    items = [word(rng) for _ in range(rng.randint(2, 3))]
    return {"type": "array", "items": {"type": "string"}, "description": f"List of {noun}s."}, items


def _function(rng: random.Random, taken_names: set[str]) -> tuple[dict, dict, dict]:
    """A random BFCL function doc, values for its required params, and values for its optional ones."""
    while True:
        verb, noun = rng.choice(W.VERBS), rng.choice(W.NOUNS + [pseudo_word(rng)])
        name = rng.choice(
            [
                f"{verb}_{noun}",
                f"{verb}_{noun}",
                f"{verb}{noun.capitalize()}",
                f"{verb}_{rng.choice(W.ADJECTIVES)}_{noun}",
            ]
        )
        if name not in taken_names:
            taken_names.add(name)
            break
    taken: set[str] = set()
    props, required, values, optional = {}, [], {}, {}
    for i in range(rng.choice([1, 1, 2, 2, 3, 4])):
        pname = _param_name(rng, taken)
        spec, value = _param(rng, pname)
        props[pname] = spec
        if i == 0 or rng.random() < 0.7:
            required.append(pname)
            values[pname] = value
        else:
            optional[pname] = value
    doc = {
        "name": name,
        "description": f"{verb.capitalize()} the {noun.replace('_', ' ')}.",
        "parameters": {"type": "dict", "properties": props, "required": required},
    }
    return doc, values, optional


def _say_value(rng: random.Random, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        parts = [quote(rng, str(v)) for v in value]
        return ", ".join(parts[:-1]) + " and " + parts[-1]
    if isinstance(value, (int, float)):
        return str(value)
    return quote(rng, value)


def _ask(rng: random.Random, doc: dict, values: dict) -> str:
    verb, _, rest = doc["description"].rstrip(".").partition(" ")
    clauses = []
    for pname, value in values.items():
        spoken = pname.replace("_", " ")
        if isinstance(value, bool):
            clauses.append(
                rng.choice([f"{spoken} set to {_say_value(rng, value)}", f"{spoken} {'on' if value else 'off'}"])
            )
        else:
            clauses.append(
                rng.choice(
                    [
                        f"{spoken} {_say_value(rng, value)}",
                        f"the {spoken} {_say_value(rng, value)}",
                        f"{spoken} = {_say_value(rng, value)}",
                        f"{spoken} set to {_say_value(rng, value)}",
                    ]
                )
            )
    joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    return rng.choice(
        ["Please {v} {r} with {c}.", "Can you {v} {r} for {c}?", "I need to {v} {r}: {c}.", "{V} {r} using {c}."]
    ).format(v=verb.lower(), V=verb, r=rest, c=joined)


def bfcl_task(rng: random.Random, category: str) -> BfclTask:
    """A BFCL-style task of one category: simple_python, multiple, parallel or irrelevance."""
    names: set[str] = set()
    count = {
        "simple_python": 1,
        "multiple": rng.randint(2, 4),
        "parallel": rng.randint(1, 3),
        "irrelevance": rng.randint(1, 3),
    }[category]
    funcs = [_function(rng, names) for _ in range(count)]
    docs = [f[0] for f in funcs]
    if category == "irrelevance":
        question, answer = rng.choice(W.FACTS + W.SMALL_TALK[:8])
        return BfclTask(category, docs, question, [], answer=answer)
    if category == "parallel":
        first = rng.randrange(count)
        second = rng.randrange(count)
        doc_a, values_a, opt_a = funcs[first]
        doc_b, values_b, opt_b = funcs[second]
        if first == second:  # the same function again, with fresh values of the same types
            values_b = {k: _fresh(rng, doc_b["parameters"]["properties"][k], v) for k, v in values_b.items()}
        question = (
            _ask(rng, doc_a, values_a)
            + " "
            + rng.choice(["Also, ", "Then ", "And "])
            + _lower_first(_ask(rng, doc_b, values_b))
        )
        opts = {doc_a["name"]: opt_a, doc_b["name"]: opt_b}
        return BfclTask(category, docs, question, [(doc_a["name"], values_a), (doc_b["name"], values_b)], opts)
    target = rng.randrange(count)
    doc, values, optional = funcs[target]
    if optional and rng.random() < 0.4:  # mention an optional parameter too
        key = rng.choice(list(optional))
        values = {**values, key: optional.pop(key)}
    return BfclTask(category, docs, _ask(rng, doc, values), [(doc["name"], values)], {doc["name"]: optional})


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _fresh(rng: random.Random, spec: dict, old: object) -> object:
    """Another value for a parameter spec, different from ``old`` where the type allows."""
    if isinstance(old, bool):
        return not old
    if "enum" in spec:
        return rng.choice([o for o in spec["enum"] if o != old] or spec["enum"])
    for _ in range(10):
        value = _param(rng, "x")[1]
        if type(value) is type(old) and value != old:
            return value
    return old


_JSON_TYPES = {
    "string": "string",
    "integer": "integer",
    "float": "number",
    "boolean": "boolean",
    "array": "array",
    "dict": "object",
    "tuple": "array",
    "any": None,
}


def openai_tool(doc: dict) -> dict:
    """A BFCL doc in the OpenAI tool format, built the way ``tools.bfcl`` builds it."""

    def convert(spec: dict) -> dict:
        out: dict = {}
        if _JSON_TYPES.get(spec.get("type")):
            out["type"] = _JSON_TYPES[spec["type"]]
        for key in ("description", "enum", "default"):
            if key in spec:
                out[key] = spec[key]
        if isinstance(spec.get("properties"), dict):
            out["properties"] = {k: convert(v) for k, v in spec["properties"].items()}
        if isinstance(spec.get("items"), dict):
            out["items"] = convert(spec["items"])
        if isinstance(spec.get("required"), list):
            out["required"] = list(spec["required"])
        return out

    params = convert(doc["parameters"])
    params.setdefault("type", "object")
    return {
        "type": "function",
        "function": {"name": doc["name"], "description": doc["description"], "parameters": params},
    }


def bfcl_chat(rng: random.Random, category: str | None = None) -> Chat:
    """A BFCL-style task as a training conversation."""
    category = (
        category or rng.choices(["simple_python", "multiple", "parallel", "irrelevance"], weights=[4, 3, 1, 1.5])[0]
    )
    task = bfcl_task(rng, category)
    messages = [user(task.question)]
    if task.calls:
        messages.append(assistant_calls(*[call(name, args) for name, args in task.calls]))
    else:
        messages.append(assistant(task.answer))
    return Chat(f"bfcl_{category}", messages, [openai_tool(d) for d in task.docs])


# ---------------------------------------------------------------- copy drills (curriculum phase 1)


def copy_chat(rng: random.Random) -> Chat:
    """An explicit copy or key-value retrieval drill over values too many to memorise."""
    kind = rng.randrange(3)
    if kind == 0:
        value = rng.choice(
            [
                lambda: pseudo_word(rng, 2, 5),
                lambda: file_name(rng),
                lambda: str(rng.randint(0, 10 ** rng.randint(2, 8))),
                lambda: sentence(rng),
                lambda: f"{word(rng)} {word(rng)} {word(rng)}",
            ]
        )()
        ask = rng.choice(["Repeat exactly: {v}", "Say {v}", "Echo {v}", "Copy this: {v}"]).format(v=quote(rng, value))
        return Chat("copy", [user(ask), assistant(value)])
    if kind == 1:
        keys = rng.sample(W.NOUNS, rng.randint(2, 6))
        values = {k: rng.choice([pseudo_word(rng), str(rng.randint(0, 99999)), file_name(rng)]) for k in keys}
        key = rng.choice(keys)
        listing = ", ".join(f"{k} = `{v}`" for k, v in values.items())
        return Chat("recall", [user(f"{listing}. What is {key}?"), assistant(values[key])])
    # a one-argument tool call whose value and parameter name must both be copied
    name = f"{rng.choice(W.VERBS)}_{word(rng)}"
    pname = _param_name(rng, set())
    value = rng.choice([pseudo_word(rng, 2, 4), str(rng.randint(0, 99999)), file_name(rng), f"{word(rng)} {word(rng)}"])
    doc = {
        "name": name,
        "description": f"Call with a {pname.replace('_', ' ')}.",
        "parameters": {
            "type": "dict",
            "properties": {pname: {"type": "string", "description": "Any text."}},
            "required": [pname],
        },
    }
    ask = rng.choice(["Call {f} with {p} {v}.", "Use {f}: {p} = {v}", "Run {f} for {v}."]).format(
        f=name, p=pname, v=quote(rng, value)
    )
    return Chat("copy_call", [user(ask), assistant_calls(call(name, {pname: value}))], [openai_tool(doc)])


def long_copy_chat(rng: random.Random) -> Chat:
    """A copy drill with a long made-up value: most reply tokens can only come from copying."""
    items = [
        rng.choice(
            [
                lambda: pseudo_word(rng, 2, 4),
                lambda: rng.choice(W.NOUNS),
                lambda: str(rng.randint(0, 10**6)),
                lambda: file_name(rng),
            ]
        )()
        for _ in range(rng.randint(3, 9))
    ]
    value = rng.choice([" ", " ", "_", "-", "/", ", "]).join(items)
    ask = rng.choice(["Repeat exactly: {v}", "Copy this: {v}", "Echo {v}", "Say {v}"]).format(v=quote(rng, value))
    if rng.random() < 0.3:  # the same value as a call argument
        name, pname = f"{rng.choice(W.VERBS)}_{word(rng)}", _param_name(rng, set())
        doc = {
            "name": name,
            "description": f"Send a {pname.replace('_', ' ')}.",
            "parameters": {
                "type": "dict",
                "properties": {pname: {"type": "string", "description": "Any text."}},
                "required": [pname],
            },
        }
        ask = f"Call {name} with {pname} {quote(rng, value)}."
        return Chat("long_copy_call", [user(ask), assistant_calls(call(name, {pname: value}))], [openai_tool(doc)])
    return Chat("long_copy", [user(ask), assistant(value)])


# ---------------------------------------------------------------- the six calibration domains


def prose_text(rng: random.Random) -> str:
    n = rng.choice(W.NOUNS)
    lines = [
        f"The {n} in {rng.choice(W.CITIES)} was {rng.choice(W.ADJECTIVES)} this {rng.choice(['morning', 'week', 'year'])}.",
        f"{rng.choice(W.NAMES)} said that the {rng.choice(W.NOUNS)} would {rng.choice(W.VERBS)} the {n} soon.",
        f"Most people agree that a {rng.choice(W.ADJECTIVES)} {n} is better than a {rng.choice(W.ADJECTIVES)} one.",
        f"Later, the {rng.choice(W.NOUNS)} and the {rng.choice(W.NOUNS)} were {rng.choice(W.ADJECTIVES)} again.",
        f"In the end, everyone went back to the {rng.choice(W.NOUNS)}.",
    ]
    return " ".join(rng.sample(lines, rng.randint(2, 5)))


def reasoning_text(rng: random.Random) -> tuple[str, str]:
    name, thing = rng.choice(W.NAMES), rng.choice(W.NOUNS)
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    if rng.random() < 0.5:
        q = f"{name} has {a} {thing}s and gets {b} more. How many {thing}s does {name} have now?"
        return q, f"{name} starts with {a} and adds {b}. {a} + {b} = {a + b}. So {name} has {a + b} {thing}s."
    big, small = max(a, b), min(a, b)
    q = f"{name} had {big} {thing}s and gave away {small}. How many are left?"
    return q, f"{name} had {big} and gave away {small}. {big} - {small} = {big - small}. So {big - small} are left."


def code_text(rng: random.Random) -> tuple[str, str]:
    fname, arg = f"{rng.choice(W.VERBS)}_{rng.choice(W.NOUNS)}", rng.choice(["items", "values", "text", "numbers"])
    bodies = [
        (f"returns the number of {arg}", f"def {fname}({arg}):\n    return len({arg})"),
        (f"returns the {arg} in reverse order", f"def {fname}({arg}):\n    return {arg}[::-1]"),
        (
            f"adds up the {arg}",
            f"def {fname}({arg}):\n    total = 0\n    for x in {arg}:\n        total += x\n    return total",
        ),
        (f"keeps the positive {arg}", f"def {fname}({arg}):\n    return [x for x in {arg} if x > 0]"),
        (f"returns the largest of the {arg}", f"def {fname}({arg}):\n    return max({arg})"),
    ]
    what, code = rng.choice(bodies)
    return f"Write a Python function `{fname}` that {what}.", f"```python\n{code}\n```"


def constraint_text(rng: random.Random) -> tuple[str, str]:
    nouns = rng.sample(W.NOUNS, 3)
    kind = rng.randrange(4)
    if kind == 0:
        return "List three things you might find in a city, separated by commas.", ", ".join(
            rng.sample(W.NOUNS[:40], 3)
        )
    if kind == 1:
        w = rng.choice(W.NOUNS)
        return f"Reply with the word {quote(rng, w)} in uppercase and nothing else.", w.upper()
    if kind == 2:
        return f"Write the words {', '.join(nouns)} in alphabetical order.", ", ".join(sorted(nouns))
    n = rng.randint(2, 5)
    return f"Count from 1 to {n}, one number per line.", "\n".join(str(i) for i in range(1, n + 1))


def domain_chat(rng: random.Random, domain: str | None = None) -> Chat:
    """One short sample of a calibration domain as a chat."""
    domain = domain or rng.choice(["prose", "reasoning", "code", "instructions"])
    if domain == "prose":
        return Chat(
            "prose", [user(f"Write a few sentences about a {rng.choice(W.NOUNS)}."), assistant(prose_text(rng))]
        )
    if domain == "reasoning":
        return Chat("reasoning", _pair(rng, reasoning_text))
    if domain == "code":
        return Chat("code", _pair(rng, code_text))
    return Chat("instructions", _pair(rng, constraint_text))


def _pair(rng: random.Random, make) -> list[dict]:
    q, a = make(rng)
    return [user(q), assistant(a)]


# ---------------------------------------------------------------- mixes


PHASE_MIXES = {
    1: [(copy_chat, 5), (bfcl_chat, 3), (agent_chat, 2)],
    # Copy drills are short, so rows pack many: this mix spends far more updates on copying
    # than its weights suggest. (The first run's phase 2 used TOKENIZER_MIX's weights until
    # step 850, copied nothing after 2M tokens, and was switched to this one.)
    2: [(agent_chat, 5), (bfcl_chat, 5), (copy_chat, 4), (domain_chat, 0.5)],
    # Added at step ~1400 of the first run, which still copied nothing after 3.7M tokens.
    3: [(long_copy_chat, 6), (copy_chat, 2), (agent_chat, 4), (bfcl_chat, 4), (domain_chat, 0.3)],
    # Added when the first run was resumed at step 3903: copying worked for built-in calls
    # (81% teacher-forced) but not for several values into freshly named parameters (0%).
    4: [(bfcl_chat, 8), (long_copy_chat, 3), (agent_chat, 4), (copy_chat, 1), (domain_chat, 0.3)],
}
# The mix the tokenizer is trained on; frozen so that a rebuild gets the shipped token ids.
TOKENIZER_MIX = {1: PHASE_MIXES[1], 2: [(agent_chat, 10), (bfcl_chat, 6), (copy_chat, 1.5), (domain_chat, 1.5)]}


def training_chat(rng: random.Random, phase: int, mixes: dict = PHASE_MIXES) -> Chat:
    """One training conversation of a curriculum phase (see ``PHASE_MIXES``)."""
    makers = mixes[phase]
    maker = rng.choices([m for m, _ in makers], weights=[w for _, w in makers])[0]
    return maker(rng)


def tokenizer_texts(seed: int, count: int) -> list[str]:
    """Rendered conversations of every kind, the texts the tokenizer is trained on."""
    from training.template import render

    rng = random.Random(seed)
    chats = (training_chat(rng, 1 + i % 2, TOKENIZER_MIX) for i in range(count))
    return [render(chat.messages, chat.tools) for chat in chats]
