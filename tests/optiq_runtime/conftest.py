"""Checkpoints that several runtime test modules only read: written once per session."""

from __future__ import annotations

import pytest
from checkpoints import write_random_checkpoint

from optiq_runtime.build import BuildOptions, build


@pytest.fixture(scope="session")
def random_base(tmp_path_factory):
    """A random Qwen3.5 checkpoint in Hugging Face layout (read only)."""
    return write_random_checkpoint(tmp_path_factory.mktemp("random-base"), seed=3)


@pytest.fixture(scope="session")
def uniform_build(random_base, tmp_path_factory):
    """``random_base`` built as uniform 4-bit (read only)."""
    out = tmp_path_factory.mktemp("built") / "uniform"
    return build(BuildOptions(out=out, base=random_base, method="uniform"), log=lambda _: None).path
