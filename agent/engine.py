"""What the agent, the server and the TUI ask of an engine: the ``Engine`` protocol.

``optiq_runtime.engine.Engine`` (one process), ``optiq_runtime.rank_engine.LeaderEngine`` (rank 0 of a
tensor-parallel group) and the tests' scripted engines satisfy it; nothing here needs more of them.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from optiq_runtime.guide import CallGuide
from optiq_runtime.sampling import Sampling
from optiq_runtime.stats import GenerationStats

if (
    TYPE_CHECKING
):  # for annotations only: importing the engine itself loads mlx-lm (seconds), which the agent never needs
    from optiq_runtime.engine import Step
    from optiq_runtime.mtp_policy import Decision


@runtime_checkable
class Engine(Protocol):
    """Streams generations from one model and says how it runs them."""

    mtp_enabled: bool  # MTP on for the next runs; the TUI's /mtp sets it

    @property
    def tokenizer(self) -> Any:
        """mlx-lm's TokenizerWrapper (encode, decode, apply_chat_template, detokenizer)."""

    @property
    def model_path(self) -> Path: ...

    @property
    def last_stats(self) -> GenerationStats:
        """The counts of the latest ``stream`` call (updated while it runs)."""

    @property
    def mtp_available(self) -> bool:
        """Whether the model has an MTP head (``mtp_enabled`` can be True)."""

    @property
    def mtp_depth(self) -> int: ...

    @property
    def mtp_decision(self) -> Decision | None:
        """MTP on or off for the next run, at which depth, and why; None for an engine without a policy."""

    @property
    def context_length(self) -> int | None:
        """The model's context in tokens, or None when neither its config nor its tokenizer says."""

    def stream(
        self,
        prompt_tokens: list[int],
        sampling: Sampling = Sampling(),
        *,
        stop: Callable[[list[int]], bool] | None = None,
        should_stop: Callable[[], bool] | None = None,
        guide: CallGuide | None = None,
    ) -> Generator[Step, None, None]:
        """Generate after ``prompt_tokens``: steps of tokens and the text they complete."""
        ...
