"""The first-run build screen: it says what to install when MLX would run on its slow reference BLAS."""

from __future__ import annotations

import sys

import pytest
from textual.app import App
from textual.widgets import Static

from optiq_runtime import fastcpu
from tui.screens.build import BuildScreen

pytestmark = pytest.mark.anyio


class _BuildApp(App[None]):
    def on_mount(self) -> None:
        self.push_screen(BuildScreen())


@pytest.mark.parametrize("openblas_found", [True, False])
async def test_advice_shows_only_without_openblas(monkeypatch, openblas_found):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(fastcpu.DISABLE_VAR, raising=False)
    monkeypatch.setattr(
        fastcpu, "find_openblas", (lambda: "/lib/libopenblas.so.0") if openblas_found else (lambda: None)
    )
    app = _BuildApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        advice = app.screen.query_one("#build-advice", Static)
        shown = not openblas_found and sys.platform.startswith("linux")
        assert advice.display is shown
        if shown:
            assert "libopenblas0-pthread" in str(advice.render())
