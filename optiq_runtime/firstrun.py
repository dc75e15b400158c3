"""First run: build the OptiQ model from the embedded base (or ``--base``) into the cache once, reuse it after."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from optiq_runtime.build import BuildOptions, build
from optiq_runtime.build_metadata import RECIPE_VERSION
from optiq_runtime.build_publish import BuildBusy, wait_for
from optiq_runtime.checkpoint import checkpoint_digest, open_base
from optiq_runtime.embedded import EMBEDDED_NAME
from optiq_runtime.home import models_dir
from optiq_runtime.load import read_metadata
from optiq_runtime.progress import ProgressCallback, stderr_callback

# Fewer calibration tokens keep the first run short on a CPU; `optiq quantize` measures over more.
# Formats are BuildOptions' defaults (3/4/5/6/8-bit at group size 64 or 32).
FIRST_RUN_SETTINGS: dict[str, Any] = {"seq_len": 128, "max_tokens": 1536}


def model_name(base: str | os.PathLike | None) -> str:
    """``tiny-agent-OptiQ-4bit`` for the embedded base, ``<last part of the base>-OptiQ-4bit`` otherwise."""
    if base is None:
        return f"{EMBEDDED_NAME}-OptiQ-4bit"
    stem = Path(os.fspath(base).rstrip("/\\")).name or "base"
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '-', stem)}-OptiQ-4bit"


def is_current(folder: Path, digest: str) -> bool:
    """Whether ``folder`` is a finished build of the base with this digest, by the current recipe."""
    if not (folder / "config.json").is_file():
        return False
    metadata = read_metadata(folder)
    return metadata.get("base_digest") == digest and metadata.get("recipe") == RECIPE_VERSION


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_model(
    base: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    log=_say,
) -> Path:
    """The cached OptiQ build of ``base`` (default: the embedded tiny-agent), building it first if needed."""
    checkpoint = open_base(base)
    folder = models_dir() / model_name(base)
    if is_current(folder, checkpoint_digest(checkpoint)):
        return folder
    log(f"optiq: building {folder.name} from {checkpoint.path} (first run only)")
    options = BuildOptions(out=folder, base=base, force=folder.exists(), **FIRST_RUN_SETTINGS)
    try:
        build(options, progress=progress if progress is not None else stderr_callback(), log=log)
    except BuildBusy as busy:  # another optiq (a second terminal) is building it: use theirs
        log("optiq: another optiq process is building it; waiting for it to finish")
        wait_for(busy.lock_file)
        if not is_current(folder, checkpoint_digest(checkpoint)):
            return ensure_model(base, progress, log)
    return folder
