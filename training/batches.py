"""Each training step's rows, made in the trainer or ahead of it by worker processes.

Step k's rows come from ``Random(f"{seed}:{k}")`` and the step's curriculum phase alone, so a
worker makes exactly the rows the trainer would have made: a run with workers sees the same
batches as one without. Workers matter where the model trains faster than one Python process
writes conversations (a lent GPU trains ~186,000 tokens/s; one core renders and tokenizes ~70,000).
A batch made ahead under a phase that has changed since (the curriculum moved on) is made again.
"""

from __future__ import annotations

import multiprocessing
import random
from dataclasses import dataclass
from multiprocessing.pool import AsyncResult

import torch
from tokenizers import Tokenizer


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
        from training.train import Encoder, run_mixes

        self.spec = spec
        self.encoder = Encoder(Tokenizer.from_str(spec.tokenizer_json), spec.copy_weight)
        self.mixes = run_mixes(spec.mix)

    def batch(self, step: int, phase: int) -> tuple[torch.Tensor, torch.Tensor]:
        from training.train import pack

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
            del self._pending[stale]
        made_phase, result = self._pending.pop(step)
        return result.get() if made_phase == phase else self._made_here(step, phase)

    def _made_here(self, step: int, phase: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._local is None:
            self._local = _Maker(self.spec)
        return self._local.batch(step, phase)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Batches:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
