"""The model card (README.md) written beside the exported checkpoint."""

from __future__ import annotations

from pathlib import Path


def model_card(workdir: Path, scores: dict | None) -> str:
    return "# tiny-agent\n\nTraining in progress; the card is written with the measured scores at export.\n"
