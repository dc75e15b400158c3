"""Test-wide setup. OpenBLAS preloading happens in optiq_runtime.pytest_openblas (see pyproject addopts)."""
