"""Each training step's rows: conversations rendered with their loss masks (``Encoder``), packed
whole into rows (``pack``), made in the trainer or ahead of it by worker processes (``Batches``).

Step k's rows come from ``Random(f"{seed}:{k}")`` and the step's curriculum phase alone, so a
worker makes exactly the rows the trainer would have made: a run with workers sees the same
batches as one without. Workers matter where the model trains faster than one Python process
writes conversations (a lent GPU trains ~186,000 tokens/s; one core renders and tokenizes ~70,000).
A batch made ahead under a phase that has changed since (the curriculum moved on) is made again.
"""

from __future__ import annotations

import multiprocessing
import random
import re
import time
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult

import torch
from tokenizers import Tokenizer

from training.corpus import PHASE_MIXES, Chat, training_chat
from training.retries import UNTRAINED
from training.template import render


class Encoder:
    """Renders chats and marks the tokens the model is trained to produce."""

    def __init__(self, tokenizer: Tokenizer, copy_weight: float = 1.0):
        self.tokenizer = tokenizer
        self.copy_weight = copy_weight
        self.think_end = tokenizer.token_to_id("</think>")
        self.im_end = tokenizer.token_to_id("<|im_end|>")
        self.pad = tokenizer.token_to_id("<|endoftext|>")

    def encode(self, chat: Chat) -> tuple[list[int], list[float]]:
        """Token ids and a loss-weight mask: 0 on context, 1 on each assistant reply that follows an
        empty think block, ``copy_weight`` on the reply tokens that copy (see ``copy_positions``).

        Those replies are exactly what the model produces after ``enable_thinking=False``'s
        generation prompt; the prompt side (tools, user turns, tool results) is context only.
        """
        if chat.session:
            from training.sessions import render_session

            text = render_session(chat.messages, chat.tools)
        else:
            text = render(chat.messages, chat.tools)
        encoding = self.tokenizer.encode(text)
        mask = self.reply_mask(encoding.ids, untrained_replies(chat.messages, chat.session))
        if self.copy_weight != 1.0:
            for i in copy_positions(text, encoding, mask):
                mask[i] = self.copy_weight
        return encoding.ids, mask

    def reply_mask(self, ids: list[int], untrained: frozenset[int] = frozenset()) -> list[float]:
        """1 on every token of the assistant replies but the ``untrained`` ones (counted from 0), 0 elsewhere."""
        mask = [0] * len(ids)
        i, reply = 0, -1
        while i < len(ids):
            if ids[i] != self.think_end:
                i += 1
                continue
            i += 2  # skip "</think>" and the "\n\n" after it: both are the generation prompt
            reply += 1
            while i < len(ids):
                mask[i] = 0 if reply in untrained else 1
                i += 1
                if ids[i - 1] == self.im_end:
                    break
        return mask


def untrained_replies(messages: list[dict], session: bool) -> frozenset[int]:
    """Which rendered replies (those after an empty think block, counted in order) are marked ``untrained``.

    A session renders every assistant turn after its think block; the chat template only those after
    the last request.
    """
    if not any(m.get(UNTRAINED) for m in messages):
        return frozenset()
    start = 0 if session else max(i for i, m in enumerate(messages) if m["role"] == "user")
    replies = [m for m in messages[start:] if m["role"] == "assistant"]
    return frozenset(k for k, m in enumerate(replies) if m.get(UNTRAINED))


_ARGUMENT_VALUE = re.compile(r"<parameter=[^>\n]*>\n(.*?)\n</parameter>", re.DOTALL)
_TOOL_RESPONSE = re.compile(r"<tool_response>\n(.*?)\n</tool_response>", re.DOTALL)
_TOOL_CALL = re.compile(r"<tool_call>.*?</tool_call>", re.DOTALL)


def copy_positions(text: str, encoding, mask: list[float]) -> list[int]:
    """Reply tokens that copy: every token of a call's argument values, and each answer token
    (outside calls) with letters or digits whose id occurs in the latest tool result before it."""
    values = [m.span(1) for m in _ARGUMENT_VALUE.finditer(text)]
    calls = [m.span() for m in _TOOL_CALL.finditer(text)]
    responses = [(m.start(1), m.end(1)) for m in _TOOL_RESPONSE.finditer(text)]
    response_ids: list[set[int]] = [set() for _ in responses]
    positions = []
    for i, ((start, end), token) in enumerate(zip(encoding.offsets, encoding.ids)):
        for k, (lo, hi) in enumerate(responses):
            if lo <= start and end <= hi:
                response_ids[k].add(token)
        if not mask[i]:
            continue
        if any(lo <= start and end <= hi for lo, hi in values):
            positions.append(i)
        elif not any(lo <= start < hi for lo, hi in calls) and any(c.isalnum() for c in encoding.tokens[i]):
            latest = [k for k, (lo, _) in enumerate(responses) if lo < start]
            if latest and token in response_ids[latest[-1]]:
                positions.append(i)
    return positions


def pack(encoder: Encoder, rng: random.Random, phase: int, rows: int, seq_len: int, mixes: dict = PHASE_MIXES):
    """``rows`` rows of whole conversations (never split), padded; returns ids and mask tensors."""
    ids = torch.full((rows, seq_len), encoder.pad, dtype=torch.long)
    mask = torch.zeros((rows, seq_len), dtype=torch.float32)
    for r in range(rows):
        used, misses = 0, 0
        while misses < 3:
            sample_ids, sample_mask = encoder.encode(training_chat(rng, phase, mixes))
            if used + len(sample_ids) > seq_len:
                misses += 1
                continue
            ids[r, used : used + len(sample_ids)] = torch.tensor(sample_ids)
            mask[r, used : used + len(sample_ids)] = torch.tensor(sample_mask)
            used += len(sample_ids)
    return ids, mask


PEOPLE_PHASE = 5  # the phase number of the people mix


def run_mixes(mix: str) -> dict:
    """The phase mixes of a run's ``mix`` ("curriculum" or "people")."""
    if mix == "people":
        from training.sessions import people_mix

        return {PEOPLE_PHASE: people_mix()}
    return PHASE_MIXES


@dataclass(frozen=True)
class BatchSpec:
    """Everything that decides a step's rows besides the step and its phase."""

    tokenizer_json: str
    copy_weight: float
    mix: str
    seed: int
    rows: int
    seq_len: int


class _Maker:
    """The encoder and mixes of a spec, built once per process."""

    def __init__(self, spec: BatchSpec):
        self.spec = spec
        self.encoder = Encoder(Tokenizer.from_str(spec.tokenizer_json), spec.copy_weight)
        self.mixes = run_mixes(spec.mix)

    def batch(self, step: int, phase: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = random.Random(f"{self.spec.seed}:{step}")
        return pack(self.encoder, rng, phase, self.spec.rows, self.spec.seq_len, self.mixes)


_WORKER: dict[str, _Maker] = {}


def _start_worker(spec: BatchSpec) -> None:
    torch.set_num_threads(1)
    _WORKER["maker"] = _Maker(spec)


def _worker_batch(step: int, phase: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _WORKER["maker"].batch(step, phase)


class Batches:
    """``get(step, phase)``: that step's ids and loss mask; with ``workers``, made ahead in parallel."""

    def __init__(self, spec: BatchSpec, workers: int = 0, ahead: int | None = None):
        self.spec = spec
        self._local: _Maker | None = None
        self._ahead = ahead if ahead is not None else 2 * workers
        self._pending: dict[int, tuple[int, AsyncResult]] = {}
        self._abandoned: list[AsyncResult] = []  # made ahead, not wanted, maybe still running
        self._pool = None
        if workers > 0:  # spawn: a forked child of a process that set up CUDA cannot use it safely
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(workers, initializer=_start_worker, initargs=(spec,))

    def get(self, step: int, phase: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pool is None:
            return self._made_here(step, phase)
        for ahead in range(step, step + self._ahead + 1):
            if ahead not in self._pending:
                self._pending[ahead] = (phase, self._pool.apply_async(_worker_batch, (ahead, phase)))
        for stale in [k for k in self._pending if k < step]:
            self._abandoned.append(self._pending.pop(stale)[1])
        self._abandoned = [result for result in self._abandoned if not result.ready()]
        made_phase, result = self._pending.pop(step)
        if made_phase == phase:
            return result.get()
        self._abandoned.append(result)
        return self._made_here(step, phase)

    def _made_here(self, step: int, phase: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._local is None:
            self._local = _Maker(self.spec)
        return self._local.batch(step, phase)

    def close(self, drain_s: float = 30.0) -> None:
        """Stop the workers, after letting the batches still in flight finish (``drain_s`` at most).

        Terminating a pool with results outstanding can race its result thread into an AssertionError
        (seen in CI); a batch takes well under a second, so waiting for them costs little.
        """
        if self._pool is not None:
            deadline = time.monotonic() + drain_s
            for result in [result for _, result in self._pending.values()] + self._abandoned:
                result.wait(max(0.0, deadline - time.monotonic()))
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
