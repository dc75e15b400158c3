"""Test-wide setup. OpenBLAS preloading happens in optiq_runtime.pytest_openblas (see pyproject addopts)."""

import pytest


@pytest.fixture(autouse=True)
def _own_config_home(tmp_path_factory, monkeypatch):
    """No test reads the user's optiq config (its MCP servers file would start real programs)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
