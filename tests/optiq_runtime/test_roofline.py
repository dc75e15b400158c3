"""Machine limits and model sizes for the roofline shares `optiq bench decode` prints."""

from optiq_runtime.load import load_network
from optiq_runtime.roofline import Limits, ModelSize, fractions, measure_limits, model_size


def test_limits_are_measured():
    limits = measure_limits()
    assert limits.gemm_flops > 1e8 and limits.read_bytes_s > 1e8


def _parameters(folder) -> int:
    from mlx.utils import tree_flatten

    model, _ = load_network(folder, upcast=False)
    return sum(v.size for _, v in tree_flatten(model.parameters()))


def test_a_quantized_build_counts_its_unpacked_parameters(tmp_path, uniform_build, random_base):
    base, built = model_size(random_base), model_size(uniform_build)
    assert base.params == _parameters(random_base)
    assert built.params == base.params  # packed weights count what they hold
    stored = sum(f.stat().st_size for f in uniform_build.glob("model*.safetensors"))
    assert built.weight_bytes < stored and built.weight_bytes < base.weight_bytes / 2


def test_fractions():
    shares = fractions(
        Limits(gemm_flops=200e9, read_bytes_s=10e9),
        ModelSize(params=1_000_000_000, weight_bytes=500_000_000),
        25.0,
        5.0,
    )
    assert shares["prefill_limit_tok_s"] == 100.0 and shares["prefill_fraction"] == 0.25
    assert shares["decode_limit_tok_s"] == 20.0 and shares["decode_fraction"] == 0.25
