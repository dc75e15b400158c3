"""Turns with a mistaken first call that the tool refuses, then the right call: recovering from an error.

On the tuning sets the model's commonest slips are a path or a pattern taken from the wrong word of the
request ("Tell me what info.txt says." read ``what``) or a garbled copy; the tool answers with an error,
and the model then described the error instead of trying again. Here the mistaken call comes first, the
tool refuses it exactly as the built-in tools do (``tools/builtin/files.py``), and the model calls again
with what the request (or the session) said. The mistaken call is marked ``untrained``: the encoder gives
it no loss (``batches.Encoder``), so the model learns the retry, never the slip.

An edit that is refused is retried, about half the time, after reading the file: the refusal says "read
the file and copy it exactly", and the file's text in the context is a nearer, exact source for the old
text than the request's words (on the tuning sets a refused edit's retry garbled the text again).

A real missing file (``people.turn_read_missing``) stays as it was: the call names what the user said, so
the answer is that it does not exist. A retry follows only a call that named something else.
"""

from __future__ import annotations

import random
import re

from training.corpus import assistant_calls, call, tool_result

UNTRAINED = "untrained"
REREAD_SHARE = 0.5

_WORD = re.compile(r"[A-Za-z][A-Za-z_.-]*")


def _request_words(request: str, avoid: str) -> list[str]:
    """Words of the request a confused model might take for the value: not the value or a part of it."""
    words = {w.strip(".-_").lower() for w in _WORD.findall(request)}
    return sorted(w for w in words if len(w) > 1 and w not in avoid.lower() and avoid.lower() not in w)


def _garbled(rng: random.Random, value: str) -> str:
    """The value with one slip: a letter dropped or doubled, or the extension lost."""
    dot = value.rfind(".")
    roll = rng.random()
    if roll < 0.3 and dot > 0:
        return value[:dot]
    i = rng.randrange(max(1, (dot if dot > 0 else len(value)) - 1))
    return value[:i] + value[i + 1 :] if roll < 0.65 else value[:i] + value[i] + value[i:]


def _slip(rng: random.Random, request: str, value: str) -> str | None:
    """What a mistaken call names instead of ``value``: a word of the request or a garbled copy."""
    words = _request_words(request, value)
    slip = rng.choice(words) if words and rng.random() < 0.6 else _garbled(rng, value)
    return slip if slip and slip != value else None


def _any_word(rng: random.Random, request: str, avoid: str) -> str | None:
    words = _request_words(request, avoid)
    return rng.choice(words) if words else None


def _no_such_path(slip: str | None, files: dict[str, str]) -> str | None:
    """``slip`` if no file or folder of the workspace has that name (so the tool refuses it)."""
    if slip is None or slip in files or any(p.startswith(slip.rstrip("/") + "/") for p in files):
        return None
    return slip


def _refused(rng: random.Random, request: str, call: dict, files: dict[str, str]) -> tuple[dict, str] | None:
    """Mistaken arguments for the call and the tool's error for them, or None where no mistake applies."""
    name, args = call["name"], dict(call["arguments"])
    if name == "read_file" and (slip := _no_such_path(_slip(rng, request, args["path"]), files)):
        return {**args, "path": slip}, f"error: file '{slip}' does not exist"
    if name == "list_dir" and args.get("path", ".") != ".":
        if slip := _no_such_path(_slip(rng, request, args["path"]), files):
            return {**args, "path": slip}, f"error: folder '{slip}' does not exist"
    if name == "search_files":  # a folder the request never named ("in my files": 'my')
        slip = _slip(rng, request, args["path"]) if "path" in args else _any_word(rng, request, args["pattern"])
        if slip := _no_such_path(slip, files):
            return {**args, "path": slip}, f"error: '{slip}' does not exist"
    if name == "edit_file" and (slip := _slip(rng, request, args["old"])):
        if slip not in args["old"] and slip not in files.get(args["path"], ""):
            refusal = f"error: the text to replace was not found in '{args['path']}'; read the file and copy it exactly"
            return {**args, "old": slip}, refusal
    return None


def _file_before_edit(args: dict, files: dict[str, str]) -> str | None:
    """The edited file as it was before the edit, where the workspace after it tells that unambiguously."""
    after = files.get(args["path"])
    if after is None or not args["new"] or after.count(args["new"]) != 1:
        return None
    return after.replace(args["new"], args["old"], 1)


def _reread(rng: random.Random, function: dict, files: dict[str, str]) -> list[dict]:
    """For a refused edit, sometimes: read the file (a trained call) and its text, before the retry."""
    if function["name"] != "edit_file" or rng.random() >= REREAD_SHARE:
        return []
    text = _file_before_edit(function["arguments"], files)
    if text is None:
        return []
    return [assistant_calls(call("read_file", path=function["arguments"]["path"])), tool_result(text)]


def with_a_wrong_try(rng: random.Random, turn: list[dict], files: dict[str, str]) -> list[dict]:
    """``turn`` (a request, one call, its result, the answer) with a refused mistaken call before the call.

    ``files`` is the workspace after the turn: a mistaken name must be one the tool really refuses.
    Returns the turn unchanged where its call is not one a retry applies to.
    """
    if len(turn) < 2 or turn[0]["role"] != "user" or len(turn[1].get("tool_calls") or []) != 1:
        return turn
    function = turn[1]["tool_calls"][0]["function"]
    refused = _refused(rng, turn[0]["content"], function, files)
    if refused is None:
        return turn
    wrong_args, error = refused
    wrong = {**assistant_calls(call(function["name"], wrong_args)), UNTRAINED: True}
    recovery = _reread(rng, function, files)
    return [turn[0], wrong, tool_result(error), *recovery, *turn[1:]]
