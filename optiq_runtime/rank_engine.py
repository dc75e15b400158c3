"""One generation engine over several ranks: rank 0 takes requests, the others follow it step by step.

Under tensor parallelism every forward pass is a collective, so every rank must run the same
generations with the same decisions. Rank 0 wraps its engine in ``LeaderEngine``: before each
generation it sends the request (prompt, sampling, guide, MTP on or off) to the other ranks, which
run it in ``follow``. Decisions only rank 0 can make (the caller's ``should_stop`` and ``stop``) are
sent as one flag per call; everything else (greedy tokens, guide masks, MTP acceptance) is computed
identically on every rank. A seed is always chosen on rank 0, so sampled runs agree too.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path

import mlx.core as mx

from optiq_runtime.engine import Engine, Step
from optiq_runtime.errors import OptiqError
from optiq_runtime.guide import CallGuide, Signature, TokenPieces
from optiq_runtime.mtp_policy import Decision
from optiq_runtime.ranks import broadcast_bytes, broadcast_flag
from optiq_runtime.sampling import Sampling
from optiq_runtime.stats import GenerationStats


class LeaderEngine:
    """Rank 0's view of a tensor-parallel ``Engine``: the same surface, each call mirrored on the other ranks."""

    def __init__(self, engine: Engine, group: mx.distributed.Group):
        self.engine, self.group = engine, group
        self.closed = False

    def __getattr__(self, name):  # what only rank 0 reads and no caller needs mirrored: model, head, policy, ...
        return getattr(self.engine, name)

    @property
    def mtp_enabled(self) -> bool:
        return self.engine.mtp_enabled

    @mtp_enabled.setter
    def mtp_enabled(self, value: bool) -> None:
        self.engine.mtp_enabled = value  # sent with each request

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def model_path(self) -> Path:
        return self.engine.model_path

    @property
    def last_stats(self) -> GenerationStats:
        return self.engine.last_stats

    @property
    def mtp_available(self) -> bool:
        return self.engine.mtp_available

    @property
    def mtp_depth(self) -> int:
        return self.engine.mtp_depth

    @property
    def mtp_decision(self) -> Decision:
        return self.engine.mtp_decision

    @property
    def context_length(self) -> int | None:
        return self.engine.context_length

    def stream(
        self,
        prompt_tokens: list[int],
        sampling: Sampling = Sampling(),
        *,
        stop: Callable[[list[int]], bool] | None = None,
        should_stop: Callable[[], bool] | None = None,
        guide: CallGuide | None = None,
    ) -> Generator[Step, None, None]:
        """``Engine.stream``, run on every rank."""
        if sampling.seed is None:
            sampling = replace(sampling, seed=secrets.randbits(63))
        request = {
            "op": "stream",
            "prompt": list(prompt_tokens),
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "seed": sampling.seed,
            "mtp": self.engine.mtp_enabled,
            "stop": stop is not None,
            "guide": _guide_spec(guide),
        }
        self._send(request)
        steps = self.engine.stream(
            prompt_tokens,
            sampling,
            stop=self._decided(stop) if stop else None,
            should_stop=self._decided(should_stop),
            guide=guide,
        )
        try:
            yield from steps
        except GeneratorExit:
            steps.close()
            if self.engine.last_stats.finish_reason == "closed":  # closed mid-run, not after its last step
                broadcast_flag(True, self.group)  # the followers ask whether to stop next: yes
            raise

    def generate(self, prompt_tokens: list[int], sampling: Sampling = Sampling(), **options) -> list[int]:
        return [t for step in self.stream(prompt_tokens, sampling, **options) for t in step.tokens]

    def reset(self, *, mtp_history: bool = False) -> None:
        self._send({"op": "reset", "mtp_history": mtp_history})
        self.engine.reset(mtp_history=mtp_history)

    def close(self) -> None:
        """Let the other ranks return (once; later calls do nothing)."""
        if not self.closed:
            self._send({"op": "stop"})
            self.closed = True

    def _decided(self, decide: Callable | None) -> Callable:
        def decided(*args) -> bool:
            return broadcast_flag(bool(decide(*args)) if decide is not None else False, self.group)

        return decided

    def _send(self, request: dict) -> None:
        if self.closed:
            raise OptiqError("the tensor-parallel engine was closed; the other ranks have stopped")
        broadcast_bytes(json.dumps(request).encode(), self.group)


def follow(engine: Engine, group: mx.distributed.Group) -> None:
    """Run rank 0's requests on this rank until it says stop (ranks other than 0 call this instead of serving)."""
    while True:
        request = json.loads(broadcast_bytes(None, group))
        if request["op"] == "stop":
            return
        if request["op"] == "reset":
            engine.reset(mtp_history=request["mtp_history"])
            continue
        _follow_stream(engine, group, request)


def _follow_stream(engine: Engine, group: mx.distributed.Group, request: dict) -> None:
    def told(*_) -> bool:
        return broadcast_flag(False, group)

    engine.mtp_enabled = request["mtp"] and engine.head is not None
    guide = _guide_from(request["guide"], engine.tokenizer)
    try:
        sampling = Sampling(
            max_tokens=request["max_tokens"],
            temperature=request["temperature"],
            top_p=request["top_p"],
            top_k=request["top_k"],
            seed=request["seed"],
        )
        for _ in engine.stream(
            request["prompt"], sampling, stop=told if request["stop"] else None, should_stop=told, guide=guide
        ):
            pass
    except OptiqError:
        pass  # rank 0 raised the same error for the same request, before any collective


def _guide_spec(guide: CallGuide | None) -> dict | None:
    if guide is None:
        return None
    functions = {
        name: {"params": s.params, "required": s.required, "choices": s.choices} for name, s in guide.functions.items()
    }
    return {"functions": functions, "prefix": guide.prefix}


def _guide_from(spec: dict | None, tokenizer) -> CallGuide | None:
    if spec is None:
        return None
    functions = {
        name: Signature(tuple(s["params"]), tuple(s["required"]), {p: tuple(c) for p, c in s["choices"].items()})
        for name, s in spec["functions"].items()
    }
    return CallGuide(TokenPieces.of(tokenizer), functions, spec["prefix"])


def open_tensor_parallel(
    path, group: mx.distributed.Group, *, mtp: bool = True, mtp_depth: int = 2
) -> LeaderEngine | None:
    """Under ``mlx.launch``: rank 0's engine (closed at exit), or None on the other ranks once rank 0 is done.

    The other ranks load their slice and follow rank 0 until it closes; only rank 0 may print or serve.
    """
    import atexit

    from optiq_runtime.errors import BadInputError
    from optiq_runtime.tensor_parallel import load_sharded

    if path is None:
        raise BadInputError("under mlx.launch, give --model DIR (a model folder every host can read)")
    engine = load_sharded(path, group, mtp=mtp, mtp_depth=mtp_depth)
    if group.rank() != 0:
        follow(engine, group)
        return None
    leader = LeaderEngine(engine, group)
    atexit.register(leader.close)
    return leader
