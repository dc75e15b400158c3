"""Build tiny-agent's byte-level BPE tokenizer on the synthetic corpus and write its files.

The normalizer and pre-tokenizer are exactly Qwen3.5's: transformers 5 rebuilds every
``qwen3_5`` tokenizer with them whatever ``tokenizer.json`` says, so training must use the
same split or the model would see different tokens at run time. Under that split a value
written in backticks or quotes after a space (`` `notes.txt` ``) is cut into the same tokens
as after the newline of ``<parameter=path>``: the corpus quotes its values that way, which is
what lets a small model learn to copy arguments.

The merges are learned under a stricter split that never joins punctuation or a space to
letters, so that at run time ``=path`` (from ``<parameter=path>``) and ``"path"`` (in the tools
JSON) both end in the token ``path``, and a bare word after a space (`` memo.txt``) is a space token
and then exactly the tokens of ``memo.txt`` at the start of a value: names and values read the same
wherever the template or the user puts them. Until session 9 the merges could join a space to the
letters after it (`` memo`` was ``Ġmem o``, ``memo`` was ``m emo``) and copying a bare name into a
call meant respelling it; ``without_space_word_merges`` takes those merges out of a trained
tokenizer and keeps every token id, which is how the shipped weights moved over.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from training.corpus import tokenizer_texts
from training.template import CHAT_TEMPLATE, SPECIAL_TOKENS

VOCAB_SIZE = 4096
# transformers' Qwen3_5Tokenizer PRETOKENIZE_REGEX, copied so the build does not depend on it.
SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# Merges are learned with this split: like SPLIT_PATTERN, but nothing leads a letter run.
TRAIN_PATTERN = SPLIT_PATTERN.replace(r"[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+", r"[\p{L}\p{M}]+")


def train_tokenizer(seed: int = 0, samples: int = 20000, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE of exactly ``vocab_size`` entries (special tokens included)."""
    tokenizer = Tokenizer(
        models.BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = _pre_tokenizer(TRAIN_PATTERN)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_texts(seed, samples), trainer=trainer)
    tokenizer.pre_tokenizer = _pre_tokenizer(SPLIT_PATTERN)
    if tokenizer.get_vocab_size() != vocab_size:
        raise RuntimeError(
            f"BPE stopped at {tokenizer.get_vocab_size()} tokens; expected {vocab_size}: the corpus is too small"
        )
    return tokenizer


def without_space_word_merges(tokenizer: Tokenizer) -> Tokenizer:
    """``tokenizer`` without the merges that join a space to a letter; every token keeps its id.

    Under Qwen3.5's split `` memo`` stays one piece; with these merges gone it becomes ``Ġ`` and then
    the tokens of ``memo`` alone. The space-led word tokens stay in the vocabulary, never produced.
    """
    spec = json.loads(tokenizer.to_str())
    merges = spec["model"]["merges"]
    spec["model"]["merges"] = [m for m in merges if not _joins_space_to_letter(*_pair(m))]
    return Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))


def _pair(merge: str | list[str]) -> list[str]:
    return merge.split(" ") if isinstance(merge, str) else merge


def _joins_space_to_letter(left: str, right: str) -> bool:
    joined = left + right  # byte-level: "Ġ" is the space
    return joined.startswith("Ġ") and len(joined) > 1 and joined[1].isalpha()


def _pre_tokenizer(pattern: str) -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def tokenizer_config() -> dict:
    """``tokenizer_config.json``: special tokens, the chat template and the tool-call parser name."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 4096,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
        "chat_template": CHAT_TEMPLATE,
        "tool_parser_type": "qwen3_coder",
    }


def save_tokenizer(tokenizer: Tokenizer, out: Path) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2, ensure_ascii=False) + "\n")
