"""Where optiq keeps what it builds: ``$OPTIQ_HOME``, else ``$XDG_CACHE_HOME/optiq``, else ``~/.cache/optiq``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """The cache folder (not created)."""
    if explicit := os.environ.get("OPTIQ_HOME"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "optiq"
    return Path.home() / ".cache" / "optiq"


def models_dir() -> Path:
    """The folder that holds built models, one subfolder each."""
    return cache_home() / "models"
