"""Training on another machine: rows made by worker processes, the device flag, no MLX on the training side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tiny_shape import SMALL  # noqa: E402

from optiq_runtime import embedded_base_path  # noqa: E402
from training import build  # noqa: E402
from training.batches import Batches, BatchSpec  # noqa: E402
from training.train import TrainConfig, train  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizers.Tokenizer.from_file(str(embedded_base_path() / "tokenizer.json"))


def test_worker_processes_make_exactly_the_trainers_batches(tokenizer):
    spec = BatchSpec(tokenizer.to_str(), copy_weight=3.0, mix="curriculum", seed=7, rows=2, seq_len=512)
    # Phase 1 for steps 0-2, then the curriculum moves on: step 3's batch, made ahead under phase 1, is remade.
    steps = [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)]
    with Batches(spec) as here, Batches(spec, workers=2, ahead=2) as ahead:
        for step, phase in steps:
            ids, mask = ahead.get(step, phase)
            want_ids, want_mask = here.get(step, phase)
            assert torch.equal(ids, want_ids) and torch.equal(mask, want_mask), (step, phase)
            assert (mask > 0).any()


def test_training_with_a_data_worker_and_rows_of_its_own(tmp_path, tokenizer):
    cfg = TrainConfig(seconds=0.5, rows=1, seq_len=512, data_workers=1, checkpoint_seconds=0.0)
    train(tmp_path, tokenizer, SMALL, cfg, log=lambda _: None)
    saved = torch.load(tmp_path / "last.pt", weights_only=False)
    assert saved["state"]["step"] >= 1
    assert saved["state"]["config"]["batch_rows"] == 1
    assert saved["state"]["tokens"] <= 512 * saved["state"]["step"]


def test_a_run_of_steps_cut_short_and_resumed_trains_as_one_run_in_one_go(tmp_path, tokenizer):
    """A run bounded by steps keeps its schedule and data when a sitting ends early (CPU shared, session over)."""

    def config(seconds: float) -> TrainConfig:
        return TrainConfig(seconds=seconds, steps=4, rows=1, seq_len=512, checkpoint_seconds=1e9, warmup_steps=2)

    train(tmp_path / "whole", tokenizer, SMALL, config(1e9), log=lambda _: None)
    train(tmp_path / "cut", tokenizer, SMALL, config(1e-9), log=lambda _: None)  # one step, then the sitting ends
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert cut["state"]["step"] == 1
    lines: list[str] = []
    train(tmp_path / "cut", tokenizer, SMALL, config(1e9), log=lines.append)
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)
    resumed = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert lines[0].startswith("resumed at step 1")
    assert whole["state"]["step"] == resumed["state"]["step"] == 4
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])


def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--out", str(tmp_path / "o"), "--workdir", str(tmp_path / "w"), "--device", "cuda"])
    assert exit_info.value.code == 2
    assert "--device cuda: torch sees no CUDA GPU" in capsys.readouterr().err
    assert build.resolve_device("auto") == "cpu"


@pytest.mark.parametrize("flag", ["--rows=0", "--data-workers=-1", "--rows=many", "--steps=0", "--steps=1.5"])
def test_bad_row_and_worker_counts_are_refused(tmp_path, flag):
    with pytest.raises(SystemExit) as exit_info:
        build.main(["--out", str(tmp_path / "o"), flag])
    assert exit_info.value.code == 2


# The project's dependencies a lent GPU machine's image lacks (its python3 has torch, transformers, tokenizers).
NOT_ON_THE_GPU_IMAGE = ["mlx", "mlx_lm", "pydantic", "jsonschema", "textual", "RestrictedPython", "mcp", "openai"]


def test_the_training_side_needs_nothing_the_gpu_image_lacks():
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({NOT_ON_THE_GPU_IMAGE!r}))\n"
        "import training.build, training.train, training.batches, training.export, training.probe, training.card\n"
        "print('imported')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "imported"


@pytest.mark.slow
def test_the_device_round_script_trains_and_exports_what_comes_back(tmp_path):
    # The script a lent GPU runs, run here on the CPU: what it leaves in OUT is what the device tool returns.
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # python3 there is the one with torch
        "OUT": str(out),
        "DEVICE": "cpu",
        "MINUTES": "0.02",
        "ROWS": "1",
        "WORKERS": "1",
        "WORKDIR": str(tmp_path / "work"),
    }
    script = Path(__file__).parents[2] / "training" / "device_round.sh"
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert {"log.jsonl", "gpu.txt", "model/model.safetensors", "model/config.json"} <= set(files)
    assert len(files) <= 8  # the device tool returns at most 8 files
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "fp8"
    assert (out / "model" / "model.safetensors").stat().st_size < 16 * 2**20
