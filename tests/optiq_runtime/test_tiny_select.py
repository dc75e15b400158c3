"""tiny.select: checkpoints are exported and scored by generation on validation prompts, not the reported ones."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from optiq_runtime import embedded_base_path  # noqa: E402
from training import select  # noqa: E402
from training.arch import Shape, TinyAgent  # noqa: E402
from training.quality import first_call, quality_sets  # noqa: E402

TOKENIZER = embedded_base_path() / "tokenizer.json"


def test_validation_prompts_are_not_the_reported_ones():
    # (Single calls can coincide where the value space is tiny: list_dir on `docs`.)
    reported, validation = quality_sets(40), quality_sets(40, select.VALIDATION_SEED)
    for name in ("builtin_first_call", "unseen_schema_first_call"):
        prompts = lambda chats: {json.dumps(c.messages[:3]) for c in chats}  # noqa: E731
        assert not prompts(reported[name]) & prompts(validation[name])
        assert {repr(first_call(c)) for c in reported[name]} != {repr(first_call(c)) for c in validation[name]}


def test_an_untrained_checkpoint_is_exported_and_scored(tmp_path, capsys):
    path = tmp_path / "last.pt"
    torch.save({"model": TinyAgent(Shape(), seed=3).state_dict(), "state": {"step": 7}}, path)
    assert select.main([str(path), "--tokenizer", str(TOKENIZER), "--count", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 7 and result["builtin_first_call"] == 0.0 and result["unseen_schema_first_call"] == 0.0
    assert result["sum"] == pytest.approx(sum(result[k] for k in select.SCORED))


def test_a_missing_checkpoint_is_one_line_and_exit_two(tmp_path, capsys):
    assert select.main([str(tmp_path / "none.pt"), "--tokenizer", str(TOKENIZER)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("kind", ["bytes", "other shapes"])
def test_a_file_that_is_not_a_checkpoint_is_one_line_and_exit_two(tmp_path, capsys, kind):
    bad = tmp_path / "last.pt"
    if kind == "bytes":
        bad.write_bytes(b"not a checkpoint\n" * 10)
    else:
        torch.save({"model": TinyAgent(Shape(hidden_size=64, intermediate_size=128)).state_dict()}, bad)
    assert select.main([str(bad), "--tokenizer", str(TOKENIZER)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a tiny-agent training checkpoint" in err


def test_exporting_a_corrupt_checkpoint_is_one_line_and_exit_two(tmp_path, capsys):
    from training import build

    (tmp_path / "best.pt").write_bytes(b"truncated")
    (tmp_path / "tokenizer.json").write_bytes(TOKENIZER.read_bytes())
    out = tmp_path / "out"
    assert build.main(["--export-only", "--workdir", str(tmp_path), "--out", str(out), "--no-measure"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a tiny-agent training checkpoint" in err and not out.exists()
