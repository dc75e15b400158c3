"""First run: the quantizer builds the model; this screen shows its stage, progress and ETA."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import ProgressBar, Static

from optiq_runtime.fastcpu import blas_advice
from optiq_runtime.progress import ProgressEvent


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes:02d}:{secs:02d}"


class BuildScreen(Screen[None]):
    """Shown while the first run builds the model; the chat opens when it is done."""

    CSS_PATH = "build.tcss"

    progress: reactive[ProgressEvent | None] = reactive(None, init=False)
    log_line: reactive[str] = reactive("", init=False)

    def compose(self) -> ComposeResult:
        with Vertical(id="build-panel"):
            yield Static("Building your model", id="build-title")
            yield Static(
                "First run: optiq measures how sensitive each layer is and picks 4 or 8 bits per layer. "
                "This happens once; later runs open at once.",
                id="build-explain",
            )
            advice = blas_advice()  # the build is where slow CPU math costs most
            yield Static(advice or "", id="build-advice").set_styles(f"display: {'block' if advice else 'none'};")
            yield Static("", id="build-log")
            yield Static("starting", id="build-stage")
            yield ProgressBar(total=1, show_eta=False, id="build-bar")
            yield Static("", id="build-eta")

    def watch_progress(self, progress: ProgressEvent | None) -> None:
        if progress is None or not self.children:
            return  # set before the screen was composed; on_mount shows it
        self.query_one("#build-stage", Static).update(f"{progress.stage}  ({progress.done}/{progress.total})")
        self.query_one("#build-bar", ProgressBar).update(total=max(progress.total, 1), progress=progress.done)
        self.query_one("#build-eta", Static).update(
            f"elapsed {clock(progress.elapsed_s)}  ·  left {clock(progress.eta_s)}"
        )

    def watch_log_line(self, line: str) -> None:
        if self.children:
            self.query_one("#build-log", Static).update(line)

    def on_mount(self) -> None:
        self.watch_progress(self.progress)
        self.watch_log_line(self.log_line)
