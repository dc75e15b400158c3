"""Tensor parallelism over two mlx.launch ranks: the same tokens as one process, a slice of the weights each."""

import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

from optiq_runtime.embedded import embedded_base_path
from optiq_runtime.errors import BadInputError
from optiq_runtime.tensor_parallel import VocabShardedEmbedding
from tests.checkpoints import write_random_checkpoint
from tests.ranks import launch

SCRIPT = Path(__file__).with_name("tp_generate.py")


def one_process(model: Path) -> dict:
    result = subprocess.run([sys.executable, str(SCRIPT), str(model)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def two_ranks(model: Path) -> dict:
    result = launch(str(SCRIPT), str(model))
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()  # rank 0 alone prints
    return json.loads(line)


def test_a_vocabulary_split_over_one_rank_is_the_embedding():
    group = mx.distributed.init()
    embedding = mx.random.normal((8, 4))
    import mlx.nn as nn

    whole, split = nn.Embedding(8, 4), nn.Embedding(8, 4)
    whole.weight = split.weight = embedding
    sharded = VocabShardedEmbedding(split, group)
    ids = mx.array([[0, 7, 3]])
    assert mx.array_equal(sharded(ids), whole(ids)) and mx.array_equal(
        sharded.as_linear(embedding[:2]), whole.as_linear(embedding[:2])
    )
    with pytest.raises(BadInputError, match="does not split evenly"):
        VocabShardedEmbedding(nn.Embedding(7, 4), _Pretend(2))


class _Pretend:
    def __init__(self, size):
        self._size = size

    def size(self):
        return self._size

    def rank(self):
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tiny-agent", "random", "untied"])
def test_two_ranks_give_one_process_tokens_plain_mtp_sampled_and_guided(which, tmp_path):
    """Tied embeddings split by vocabulary rows; an untied lm_head split by mlx-lm and gathered."""
    if which == "tiny-agent":
        model = embedded_base_path()
    else:
        model = write_random_checkpoint(tmp_path / which, seed=2, tie_word_embeddings=which == "random")
    alone, ranked = one_process(model), two_ranks(model)
    weights = (alone.pop("weights"), ranked.pop("weights"))
    (kv, linear), (rank_kv, rank_linear) = alone.pop("heads"), ranked.pop("heads")
    assert ranked == alone
    # Each rank's caches hold its heads only (a single KV head is repeated on both, as mlx-lm shards it).
    assert 2 * rank_linear == linear and rank_kv == max(1, kv // 2)
    assert ranked["mtp"][-1] and not ranked["plain"][-1]  # MTP rounds ran where asked
    assert len(set(ranked["plain"][0])) > 1  # not a degenerate repetition
    assert weights[1] <= 0.6 * weights[0], weights


@pytest.mark.slow
def test_optiq_run_under_mlx_launch_prints_once_and_answers_as_one_process(tmp_path):
    argv = [
        "-m",
        "agent.cli",
        "run",
        "What is 37 * 91? Use Python.",
        "--model",
        str(embedded_base_path()),
        "--max-steps",
        "2",
        "--json",
        "--workspace",
        str(tmp_path),
    ]
    alone = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300)
    ranked = launch(*argv)
    assert alone.returncode == ranked.returncode == 0, ranked.stderr
    done = [json.loads(line) for line in (alone.stdout, ranked.stdout) for line in line.splitlines()[-1:]]
    assert done[0]["type"] == done[1]["type"] == "done"
    assert (done[1]["answer"], done[1]["tokens"], done[1]["steps"]) == (
        done[0]["answer"],
        done[0]["tokens"],
        done[0]["steps"],
    )
    assert ranked.stdout.count('"type":"done"') == 1
