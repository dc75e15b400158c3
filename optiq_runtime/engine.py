"""The generation engine: streams tokens from a loaded model, with MTP speculative decoding on or off.

One generation at a time per engine. The engine keeps the caches of the last sequence it
processed (and a snapshot at the end of the last prompt), so a prompt that extends either
is prefilled from there on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from optiq_runtime.backbone import Backbone, Drafter, text_args
from optiq_runtime.cpuplan import CpuPlan, apply_plan, plan_for, quantized_layers
from optiq_runtime.errors import BadInputError
from optiq_runtime.fused import FusedRounds
from optiq_runtime.guide import CallGuide
from optiq_runtime.hybrid_cache import HybridCache, Snapshot
from optiq_runtime.mtp import MTPHead, load_mtp_head
from optiq_runtime.mtp_policy import Decision, MtpPolicy, RunMode, check_depth
from optiq_runtime.sampling import KeyStream, Sampling
from optiq_runtime.speculative import Decoder
from optiq_runtime.stats import GenerationStats

log = logging.getLogger("optiq")

# OpenBLAS threads once a model is loaded for generation, unless its CPU plan measured otherwise:
# decode passes multiply a few rows.
DECODE_BLAS_THREADS = 1


@dataclass
class Step:
    """Tokens emitted by one decoding step and the text they complete."""

    tokens: list[int]
    text: str


class Engine:
    """Streams generations from one model; ``policy`` (MTP on, off or auto, and the depth) can change between runs.

    ``mtp``: ``"auto"``, ``"on"``/True or ``"off"``/False; ``mtp_depth`` None lets the policy choose.
    """

    def __init__(
        self, model, tokenizer, model_path: Path, head: MTPHead | None, *, mtp="on", mtp_depth: int | None = None
    ):
        check_depth(mtp_depth)
        self.model = model
        self.tokenizer = tokenizer
        self.model_path = Path(model_path)
        self.backbone = Backbone(model)
        self.head = head
        self.draft_tokens: list[int] | None = None  # the reduced draft vocabulary, when drafting over one
        self.drafter: Drafter | None = None
        self.fused: FusedRounds | None = None
        self.use_draft_vocab(None)
        self.fuse_rounds = True
        self.policy = MtpPolicy(mtp, mtp_depth, available=head is not None)
        self.blas_threads: int | None = None  # OpenBLAS decode threads set at load (part of the machine's MTP cost key)
        self.dequantized = False  # float32 copies of quantized layers made at load (CPU backend)
        self.cpu_plan: CpuPlan | None = None  # which weights and BLAS threads each kind of pass uses
        self.last_stats = GenerationStats()
        self._lock = threading.Lock()
        self._state: HybridCache | None = None
        self._prompt_snapshot: Snapshot | None = None

    @classmethod
    def load(cls, path=None, *, mtp="auto", mtp_depth: int | None = None, dequantize: bool | None = None) -> Engine:
        """Load a model folder (default: the embedded base) and its MTP head when it has one.

        On the CPU backend a quantized model runs as this machine's measured plan says
        (``optiq_runtime.cpuplan``): float32 copies of its layers for the kinds of pass where
        they are faster and fit in memory. ``dequantize`` True / False forces copies for every
        pass / none.

        With ``mtp="auto"`` the MTP cost model of this build on this machine is read from its
        cache, or measured first (seconds on tiny-agent; see ``optiq_runtime.mtp_cost``).
        """
        from optiq_runtime.draft_vocab import read_draft_vocab
        from optiq_runtime.fastcpu import set_blas_threads
        from optiq_runtime.load import load_model

        policy = MtpPolicy(mtp, mtp_depth)  # a bad --mtp or --mtp-depth fails before the model loads
        loaded = load_model(path)
        blas = DECODE_BLAS_THREADS if set_blas_threads(DECODE_BLAS_THREADS) else None
        head = load_mtp_head(loaded.path, text_args(loaded.model))
        if head is None and policy.mode != "off":
            log.warning("optiq: %s has no MTP head; decoding without MTP", loaded.path)
        plan = _cpu_plan([m for m in (loaded.model, head) if m is not None], dequantize)
        engine = cls(loaded.model, loaded.tokenizer, loaded.path, head, mtp=policy.mode, mtp_depth=mtp_depth)
        engine.dequantized, engine.cpu_plan = plan is not None and plan.dense, plan
        engine._set_threads(prefill=False)
        engine.blas_threads = plan.decode_threads if plan is not None else blas
        if head is not None:
            engine.use_draft_vocab(read_draft_vocab(loaded.path))
        if head is not None and policy.mode == "auto":
            engine.measure_mtp()
        return engine

    def use_draft_vocab(self, tokens: list[int] | None) -> None:
        """Draft over ``tokens`` only (None: the whole vocabulary); verification always uses the whole vocabulary."""
        from optiq_runtime.draft_vocab import DraftProjection

        if self.head is None:
            return
        projection = None
        if tokens is not None:
            output = self.backbone.lm_head if self.backbone.lm_head is not None else self.backbone.body.embed_tokens
            projection = DraftProjection(output, tokens, self.backbone.args.vocab_size)
        self.draft_tokens = tokens
        self.drafter = Drafter(self.head, self.backbone, projection)
        # Greedy MTP rounds as one graph each (engine.fuse_rounds False: drafts, verification and catch-up apart).
        self.fused = FusedRounds(self.backbone, self.drafter)

    def measure_mtp(self, *, fresh: bool = False) -> None:
        """Give the policy this build's MTP cost model on this machine: cached, else measured now (``fresh``: always)."""
        from optiq_runtime.mtp_cost import DEPTHS, load_or_measure, measure

        depths = tuple(sorted({*DEPTHS, self.policy.depth or DEPTHS[0]}))
        self.policy.costs = measure(self, depths) if fresh else load_or_measure(self, depths)

    @property
    def fingerprint(self) -> str:
        """What identifies this model build as the engine runs it (for the MTP cost cache)."""
        from optiq_runtime.mtp_cost import model_fingerprint

        plan = self.cpu_plan  # its key names the machine, the BLAS and the kernel's build; a new one measures again
        return model_fingerprint(
            self.model_path,
            self.dequantized,
            self.fuse_rounds and self.backbone.compiled,
            len(self.draft_tokens or ()),
            plan and (plan.key, plan.decode, plan.decode_threads, plan.prefill, plan.prefill_threads),
        )

    @property
    def mtp_decision(self) -> Decision:
        """MTP on or off for the next run, at which depth, and why."""
        return self.policy.decision

    @property
    def mtp_enabled(self) -> bool:
        return self.policy.decision.mtp

    @mtp_enabled.setter
    def mtp_enabled(self, on: bool) -> None:
        self.policy.mode = "on" if on else "off"

    @property
    def mtp_depth(self) -> int:
        """The depth MTP runs at (when on): the one asked for, else the policy's choice."""
        return self.policy.decision.depth or self.policy.depth or 2

    @mtp_depth.setter
    def mtp_depth(self, depth: int) -> None:
        self.policy.depth = check_depth(depth)

    @property
    def auto_fallback(self) -> bool:
        """Whether the in-run speed guard (and its memory of losing runs) may turn MTP off."""
        return self.policy.guard_enabled

    @auto_fallback.setter
    def auto_fallback(self, on: bool) -> None:
        self.policy.guard_enabled = on

    @property
    def mtp_available(self) -> bool:
        return self.head is not None

    @property
    def context_length(self) -> int | None:
        """The model's context in tokens: its config's ``max_position_embeddings``, else the tokenizer's limit."""
        return getattr(self.backbone.args, "max_position_embeddings", None) or getattr(
            self.tokenizer, "model_max_length", None
        )

    def reset(self, *, mtp_history: bool = False) -> None:
        """Forget the cached sequence (and, with ``mtp_history``, what MTP was worth in past runs)."""
        with self._lock:
            self._state, self._prompt_snapshot = None, None
            if mtp_history:
                self.policy.forget_history()

    def stream(
        self,
        prompt_tokens: list[int],
        sampling: Sampling = Sampling(),
        *,
        stop: Callable[[list[int]], bool] | None = None,
        should_stop: Callable[[], bool] | None = None,
        guide: CallGuide | None = None,
    ) -> Generator[Step, None, None]:
        """Generate after ``prompt_tokens``; stops at EOS, ``sampling.max_tokens``, ``stop(tokens)`` or ``should_stop()``.

        ``guide`` limits the tokens of tool-call names to the offered ones (see ``optiq_runtime.guide``).
        """
        if not prompt_tokens:
            raise BadInputError("the prompt is empty; expected at least one token")
        if sampling.max_tokens < 1:
            raise BadInputError(f"max_tokens must be at least 1; got {sampling.max_tokens}")
        with self._lock:
            yield from self._generate(list(prompt_tokens), sampling, stop, should_stop, guide)

    def generate(self, prompt_tokens: list[int], sampling: Sampling = Sampling(), **options) -> list[int]:
        """All tokens of one generation (see ``stream``)."""
        return [t for step in self.stream(prompt_tokens, sampling, **options) for t in step.tokens]

    # internals ----------------------------------------------------------------------
    def _generate(self, prompt, sampling: Sampling, stop, should_stop, guide) -> Iterator[Step]:
        stats = self.last_stats = GenerationStats(prompt_tokens=len(prompt))
        started = time.perf_counter()
        state, stats.reused_prompt_tokens = self._cache_for(prompt)
        fused = self.fused if self.fuse_rounds and self.backbone.compiled else None  # fused rounds are compiled graphs
        decoder = Decoder(self.backbone, self.drafter, state, sampling, KeyStream(sampling.seed), fused)
        mode = self.policy.start_run(stats)
        limits = _Limits(sampling.max_tokens, stop, guide, self.backbone.args.vocab_size)
        try:
            suffix = prompt[stats.reused_prompt_tokens :]
            allowed = limits.mask([])
            self._set_threads(prefill=True)
            try:
                first = decoder.prefill(suffix, allowed) if suffix else decoder.next_from_tail(allowed)
            finally:
                self._set_threads(prefill=False)
            self._prompt_snapshot = state.snapshot()
            if mode.mtp:
                decoder.prime(first, mode.depth)
            decode_start, cpu_start = time.perf_counter(), time.process_time()
            stats.prefill_s = decode_start - started
            for step in self._decode(decoder, mode, first, limits, should_stop, stats):
                stats.decode_s, stats.decode_cpu_s = time.perf_counter() - decode_start, time.process_time() - cpu_start
                yield step
        except GeneratorExit:
            stats.finish_reason = stats.finish_reason or "closed"
            raise  # closed between steps: the caches are consistent
        except BaseException:
            self._state, self._prompt_snapshot = None, None  # stopped inside a forward pass
            raise
        finally:
            decoder.cancel_ahead()
            if self._state is state:
                state.settle()
        stats.decode_s, stats.decode_cpu_s = time.perf_counter() - decode_start, time.process_time() - cpu_start

    def _set_threads(self, *, prefill: bool) -> None:
        """BLAS threads for prefill or for decoding, as the CPU plan measured (unchanged without one)."""
        if self.cpu_plan is None:
            return
        from optiq_runtime.fastcpu import set_blas_threads

        set_blas_threads(self.cpu_plan.prefill_threads if prefill else self.cpu_plan.decode_threads)

    def _cache_for(self, prompt: list[int]) -> tuple[HybridCache, int]:
        """A cache holding the longest reusable prefix of ``prompt``, and that prefix's length."""
        state, snap = self._state, self._prompt_snapshot
        if state is not None:
            if len(state) <= len(prompt) and prompt[: len(state)] == state.tokens:
                return state, len(state)
            if (
                snap is not None
                and len(snap.tokens) <= len(prompt)
                and tuple(prompt[: len(snap.tokens)]) == snap.tokens
            ):
                state.restore(snap)
                return state, len(state)
        self._state, self._prompt_snapshot = self.backbone.new_cache(self.head is not None), None
        return self._state, 0

    def _decode(
        self, decoder: Decoder, mode: RunMode, first: int, limits: _Limits, should_stop, stats
    ) -> Iterator[Step]:
        detok = self.tokenizer.detokenizer
        eos = set(self.tokenizer.eos_token_ids)
        generated: list[int] = []
        tokens, commit, interrupted = [first], None, False
        while True:
            emitted, finish = limits.clip(tokens, generated, eos)
            finish = finish or ("interrupted" if interrupted else "")
            if commit is not None:
                commit(len(emitted) + (finish == "eos"))
            for token in emitted:
                detok.add_token(token)
            generated += emitted
            stats.tokens, stats.decode_tokens = len(generated), max(0, len(generated) - 1)
            if finish:
                detok.finalize()
                stats.finish_reason = finish
            text = detok.last_segment
            if emitted or text:
                yield Step(emitted, text)
            if finish:
                mode.finish()
                return
            if should_stop is not None and should_stop():
                tokens, commit, interrupted = [], None, True
                continue
            tokens, commit = mode.advance(decoder, emitted[-1], limits.mask(generated))


def _cpu_plan(modules: list[nn.Module], forced: bool | None) -> CpuPlan | None:
    """Measure (or recall) and apply the CPU plan of ``modules``; None off the CPU backend or when nothing is quantized.

    ``forced`` True / False: float32 copies for every pass / for none, without measuring.
    """
    from optiq_runtime.backbone import MAX_FAST_TOKENS
    from optiq_runtime.load import cpu_backend

    if forced is False or not any(quantized_layers(m) for m in modules):
        return None
    if forced:
        plan = CpuPlan(decode="dense", prefill="dense", key="forced")
    elif not cpu_backend():
        return None
    else:
        measured = plan_for(modules, dense_bytes=sum(float32_nbytes(m) for m in modules))
        if measured is None:
            return None
        plan = measured
    for module in modules:
        apply_plan(module, plan, MAX_FAST_TOKENS)
    return plan


def float32_nbytes(module: nn.Module) -> int:
    """The size of ``module``'s weights once every quantized layer is float32."""
    elements = sum(v.size for _, v in tree_flatten(module.parameters()))
    for layer in quantized_layers(module):
        extras = [a for a in (layer.scales, getattr(layer, "biases", None)) if a is not None]
        elements += layer.weight.size * (32 // layer.bits - 1) - sum(a.size for a in extras)
    return 4 * elements


@dataclass
class _Limits:
    """Where a run's output is cut: EOS, the token budget, the caller's stop test, the call guide."""

    max_tokens: int
    stop: Callable[[list[int]], bool] | None
    guide: CallGuide | None
    vocab_size: int

    def clip(self, tokens: list[int], generated: list[int], eos: set[int]) -> tuple[list[int], str]:
        """The prefix of ``tokens`` to emit, and why generation ends after it ('' when it goes on).

        A token after the first that the guide forbids ends the prefix (the first was chosen under
        the guide's mask); the next step chooses that position again, within the mask. As drafts
        are kept only where the main model agrees, this keeps the main model's choice whenever it
        is allowed, and otherwise takes its best (or its renormalised draw) among the allowed.
        """
        emitted: list[int] = []
        for i, token in enumerate(tokens):
            if i and self.guide is not None and not self.guide.permits(generated + emitted, token):
                return emitted, ""
            if token in eos:
                return emitted, "eos"
            emitted.append(token)
            if len(generated) + len(emitted) >= self.max_tokens:
                return emitted, "length"
            if self.stop is not None and self.stop(generated + emitted):
                return emitted, "stop"
        return emitted, ""

    def mask(self, generated: list[int]) -> mx.array | None:
        """The tokens allowed after ``generated`` as a mask over the vocabulary; None when any is."""
        allowed = self.guide.allowed(generated) if self.guide is not None else None
        if allowed is None:
            return None
        flags = np.zeros(self.vocab_size, dtype=np.bool_)
        flags[[t for t in allowed if t < self.vocab_size]] = True
        return mx.array(flags)
