"""First run: the cache home, one build into it, reuse after, rebuild when the base changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checkpoints import write_random_checkpoint

from optiq_runtime import firstrun
from optiq_runtime.firstrun import ensure_model, model_name
from optiq_runtime.home import cache_home


def test_cache_home_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("OPTIQ_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_home() == Path.home() / ".cache" / "optiq"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_home() == tmp_path / "xdg" / "optiq"
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    assert cache_home() == tmp_path / "home"


def test_model_names():
    assert model_name(None) == "tiny-agent-OptiQ-4bit"
    assert model_name("Qwen/Qwen3.5-0.8B") == "Qwen3.5-0.8B-OptiQ-4bit"
    assert model_name("/models/my base/") == "my-base-OptiQ-4bit"


def test_builds_once_then_reuses(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(firstrun, "FIRST_RUN_SETTINGS", {"seq_len": 64, "max_tokens": 256})
    base = write_random_checkpoint(tmp_path / "base", seed=7)
    events, lines = [], []
    folder = ensure_model(base, progress=events.append, log=lines.append)
    assert folder == tmp_path / "home" / "models" / "base-OptiQ-4bit"
    assert (folder / "config.json").exists() and (folder / "mtp.safetensors").exists()
    assert events and events[-1].done == events[-1].total and lines
    built = (folder / "config.json").stat().st_mtime_ns

    again = []
    assert ensure_model(base, progress=again.append, log=again.append) == folder
    assert again == [] and (folder / "config.json").stat().st_mtime_ns == built

    write_random_checkpoint(base, seed=8)  # new weights: the cached build is stale
    ensure_model(base, log=lines.append, progress=lambda _: None)
    digest = json.loads((folder / "optiq" / "metadata.json").read_text())["base_digest"]
    assert (folder / "config.json").stat().st_mtime_ns != built and digest


def test_a_build_by_an_older_recipe_is_rebuilt(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(firstrun, "FIRST_RUN_SETTINGS", {"seq_len": 64, "max_tokens": 256})
    base = write_random_checkpoint(tmp_path / "base", seed=7)
    folder = ensure_model(base, progress=lambda _: None, log=lambda _: None)
    meta_file = folder / "optiq" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    assert meta["fine_group_size"] == 32 and {"3g64", "5g64", "6g64"} <= set(meta["widths"])
    del meta["recipe"]  # what a build before finer group sizes wrote
    meta_file.write_text(json.dumps(meta))
    lines = []
    ensure_model(base, progress=lambda _: None, log=lines.append)
    assert any("building" in line for line in lines)
    assert json.loads(meta_file.read_text())["recipe"] == firstrun.RECIPE_VERSION
    meta = json.loads(meta_file.read_text())
    for older in (2, 3, 4):  # per-layer KL probes; the KL gradient with 4/8-bit candidates only; without the MTP term
        meta = json.loads(meta_file.read_text())
        meta["recipe"] = older
        meta_file.write_text(json.dumps(meta))
        lines = []
        ensure_model(base, progress=lambda _: None, log=lines.append)
        assert any("building" in line for line in lines) and json.loads(meta_file.read_text())["recipe"] == 5


def test_progress_lines_carry_an_eta():
    import io

    from optiq_runtime.progress import Progress, stderr_callback

    out = io.StringIO()
    steps = Progress("sensitivity", 4, stderr_callback(out, every_s=0.0))
    for _ in range(4):
        steps.advance()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sensitivity") and "0/4" in lines[0] and "--:--" in lines[0]
    assert "4/4" in lines[-1] and "<00:00" in lines[-1]


def test_a_second_process_waits_for_the_first_build(monkeypatch, tmp_path):
    import fcntl
    import threading

    from optiq_runtime.build import BuildOptions, build
    from optiq_runtime.build_publish import BuildBusy

    monkeypatch.setenv("OPTIQ_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(firstrun, "FIRST_RUN_SETTINGS", {"seq_len": 64, "max_tokens": 256})
    base = write_random_checkpoint(tmp_path / "base", seed=9)
    folder = tmp_path / "home" / "models" / "base-OptiQ-4bit"
    folder.parent.mkdir(parents=True)
    lock_file = folder.parent / ".base-OptiQ-4bit.partial.lock"
    holder = open(lock_file, "w")
    fcntl.flock(holder, fcntl.LOCK_EX)  # as if another process were building

    with pytest.raises(BuildBusy):
        build(BuildOptions(out=folder, base=base, method="uniform"), log=lambda _: None)
    lines = []
    release = threading.Timer(0.5, lambda: (fcntl.flock(holder, fcntl.LOCK_UN), holder.close()))
    release.start()
    assert ensure_model(base, progress=lambda _: None, log=lines.append) == folder
    assert any("waiting" in line for line in lines) and (folder / "config.json").exists()
