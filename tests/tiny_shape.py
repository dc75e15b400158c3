"""The small tiny-agent shape the training tests train (import after importorskip("torch"))."""

from training.arch import Shape

SMALL = Shape(
    vocab_size=4096,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=1,
    head_dim=64,
    linear_num_key_heads=1,
    linear_num_value_heads=1,
    linear_key_head_dim=32,
)
