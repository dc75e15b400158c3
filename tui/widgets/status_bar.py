"""The status bar: model, quantization mix, MTP and its acceptance, speed, context used."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


def quant_mix(counts: dict[str, int] | None) -> str:
    """``4-bit×20 8-bit×6`` from metadata counts keyed by bit width; empty when unknown."""
    if not counts:
        return ""
    parts = [f"{bits}-bit×{n}" for bits, n in sorted(counts.items(), key=lambda kv: int(kv[0])) if n]
    return " ".join(parts)


class StatusBar(Static):
    """One line at the bottom of the chat; every field is a reactive the screen sets."""

    DEFAULT_CSS = """
    StatusBar { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    """

    model: reactive[str] = reactive("")
    mix: reactive[str] = reactive("")
    mtp: reactive[bool | None] = reactive(None)  # None: the model has no MTP head
    mtp_reason: reactive[str] = reactive("")  # the MTP policy's why ("MTP off: a round costs 3.50 steps ...")
    acceptance: reactive[float | None] = reactive(None)
    tok_s: reactive[float | None] = reactive(None)
    context_used: reactive[int] = reactive(0)
    context_size: reactive[int] = reactive(0)
    state: reactive[str] = reactive("loading")

    def render(self) -> str:
        return " │ ".join(part for part in self.parts() if part)

    def parts(self) -> list[str]:
        return [self._show_state(), self.model, self.mix, self._show_mtp(), self._show_speed(), self._show_context()]

    def _show_state(self) -> str:
        return {"loading": "◌ loading", "ready": "● ready", "generating": "◉ writing", "failed": "✗ no model"}.get(
            self.state, self.state
        )

    def _show_mtp(self) -> str:
        if self.mtp is None:
            return "MTP n/a" if self.model else ""
        if not self.mtp:
            return self.mtp_reason or "MTP off"
        on = self.mtp_reason.split(":", 1)[0] if self.mtp_reason else "MTP on"
        return on + (f" {self.acceptance:.0%}" if self.acceptance is not None else "")

    def _show_speed(self) -> str:
        return f"{self.tok_s:.1f} tok/s" if self.tok_s is not None else ""

    def _show_context(self) -> str:
        return f"ctx {self.context_used}/{self.context_size}" if self.context_size else ""
