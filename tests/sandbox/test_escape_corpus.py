"""The held-out escape corpus (``escape_payloads.json``): RestrictedPython's own guard-test classes,
published Python-jail escapes, and the type and name confusions of issue 16. Every payload, if it
got out, would create a marker file or print a secret file's content; both are world-accessible,
so only the sandbox stands in the way. Each must fail, with nothing done and nothing read."""

import json
import os
import tempfile
from pathlib import Path

import pytest

from sandbox import Sandbox

PAYLOADS = json.loads((Path(__file__).parent / "escape_payloads.json").read_text(encoding="utf-8"))
SECRET = "corpus-secret-9d41"


@pytest.fixture(scope="module")
def host():
    folder = tempfile.mkdtemp(prefix="optiq-corpus-")
    os.chmod(folder, 0o777)
    secret = Path(folder) / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(0o644)
    yield Path(folder)
    for path in Path(folder).iterdir():
        path.unlink()
    os.rmdir(folder)


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox() as box:
        yield box


def test_corpus_is_large_and_named_uniquely():
    ids = [p["id"] for p in PAYLOADS]
    assert len(ids) >= 100 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p["id"] for p in PAYLOADS])
def test_payload_does_not_escape(sandbox, host, payload):
    marker = host / f"marker-{payload['id']}"
    code = payload["code"].replace("MARKER", str(marker)).replace("SECRET", str(host / "secret.txt"))
    result = sandbox.run(code, timeout=5)
    assert not marker.exists(), result
    shown = " ".join(str(part) for part in (result.stdout, result.value, result.error))
    assert SECRET not in shown, result
    assert not result.ok, result
    assert result.error_kind in ("policy", "runtime", "syntax"), result
