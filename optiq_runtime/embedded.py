"""Where the embedded base checkpoint lives: package data, so every install carries it."""

from __future__ import annotations

from pathlib import Path

EMBEDDED_NAME = "tiny-agent"


def embedded_base_path() -> Path:
    """The folder of the shipped ``tiny-agent`` base checkpoint (Hugging Face Qwen3.5 layout)."""
    return Path(__file__).resolve().parent / "models" / EMBEDDED_NAME
