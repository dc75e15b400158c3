"""The calibration mix and held-out text: read JSONL samples, render them through the chat template, pack tokens."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx

from optiq_runtime.errors import BadInputError

DATA_DIR = Path(__file__).parent / "data"
CALIBRATION_FILE = DATA_DIR / "calibration.jsonl"
HELDOUT_FILE = DATA_DIR / "heldout.jsonl"


@dataclass(frozen=True)
class Sample:
    """One line of a calibration or held-out file: plain text, or a chat with optional tools."""

    domain: str
    text: str | None = None
    messages: list = field(default_factory=list)
    tools: list | None = None


def _parse_line(path: Path, number: int, line: str) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise BadInputError(f"{path} is not JSONL: line {number} is not JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise BadInputError(f"{path} line {number}: expected an object with 'text' or 'messages'")
    domain = str(record.get("domain", "default"))
    if isinstance(record.get("text"), str):
        return Sample(domain, text=record["text"])
    if isinstance(record.get("messages"), list) and record["messages"]:
        tools = record.get("tools")
        return Sample(domain, messages=record["messages"], tools=tools if isinstance(tools, list) else None)
    raise BadInputError(f"{path} line {number}: expected a 'text' string or a non-empty 'messages' list")


def read_samples(path: str | os.PathLike) -> list[Sample]:
    """Every sample of a JSONL file; BadInputError naming the file and line when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"data file {str(path)!r} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise BadInputError(f"{path} is not JSONL: it is not UTF-8 text") from error
    samples = [_parse_line(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not samples:
        raise BadInputError(f"{path} holds no samples")
    return samples


def render(sample: Sample, tokenizer) -> list[int]:
    """Token ids of one sample; chats go through the tokenizer's chat template, with tools when given."""
    if sample.text is not None:
        return list(tokenizer.encode(sample.text))
    if not getattr(tokenizer, "chat_template", None):  # a base model without a template: plain turns
        text = "\n\n".join(f"{m.get('role', '')}: {m.get('content') or ''}" for m in sample.messages)
        return list(tokenizer.encode(text))
    kwargs = {"tools": sample.tools} if sample.tools else {}
    try:
        text = tokenizer.apply_chat_template(sample.messages, tokenize=False, **kwargs)
    except Exception as error:  # jinja raises many types; the user needs to know which sample broke it
        raise BadInputError(f"the chat template cannot render a {sample.domain!r} sample: {error}") from error
    return list(tokenizer.encode(text, add_special_tokens=False))


def stratify(samples: list[Sample], fraction: float) -> list[Sample]:
    """About ``fraction`` of the samples, the same share of every domain, interleaved across domains."""
    by_domain: dict[str, list[Sample]] = {}
    for sample in samples:
        by_domain.setdefault(sample.domain, []).append(sample)
    picked = [group[: max(1, round(len(group) * fraction))] for group in by_domain.values()]
    longest = max(len(group) for group in picked)
    return [group[i] for i in range(longest) for group in picked if i < len(group)]


@dataclass(frozen=True)
class TokenSet:
    """Packed token rows (``[rows, seq_len]``) and a digest of their content."""

    rows: mx.array
    domains: dict[str, int]

    @property
    def tokens(self) -> int:
        return self.rows.size

    @property
    def digest(self) -> str:
        return hashlib.sha256(memoryview(self.rows.astype(mx.int32))).hexdigest()[:16]


def _eos_id(tokenizer) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    return int(eos if eos is not None else 0)


def _domain_quotas(samples: list[Sample], max_tokens: int) -> dict[str, int]:
    """Tokens each domain may take: its share of the samples, of ``max_tokens``."""
    counts: dict[str, int] = {}
    for sample in samples:
        counts[sample.domain] = counts.get(sample.domain, 0) + 1
    return {domain: -(-max_tokens * n // len(samples)) for domain, n in counts.items()}


def pack(samples: list[Sample], tokenizer, seq_len: int, max_tokens: int | None = None) -> TokenSet:
    """Render the samples and pack them end to end (separated by EOS) into rows of ``seq_len``.

    With ``max_tokens``, every domain gets its share of the samples as its share of the tokens,
    so long chats cannot crowd out short prose, and each sample contributes at most ``seq_len``
    tokens (a chat its last ones, where the answer and tool calls are).
    """
    quotas = _domain_quotas(samples, max_tokens) if max_tokens else None
    stream: list[int] = []
    domains: dict[str, int] = {}
    eos = _eos_id(tokenizer)
    for sample in stratify(samples, 1.0):
        ids = render(sample, tokenizer) + [eos]
        if quotas is not None:
            ids = ids[:seq_len] if sample.text is not None else ids[-seq_len:]
            ids = ids[: max(0, quotas[sample.domain] - domains.get(sample.domain, 0))]
        if ids:
            stream.extend(ids)
            domains[sample.domain] = domains.get(sample.domain, 0) + len(ids)
    rows = len(stream) // seq_len
    if max_tokens:
        rows = min(rows, max(1, max_tokens // seq_len))
    if rows == 0:
        raise BadInputError(f"the data holds {len(stream)} tokens, fewer than one row of {seq_len}")
    return TokenSet(mx.array(stream[: rows * seq_len], dtype=mx.int32).reshape(rows, seq_len), domains)


def calibration_tokens(tokenizer, path=None, seq_len: int = 256, max_tokens: int | None = None) -> TokenSet:
    """The calibration mix (the shipped six-domain file unless ``path``), packed."""
    return pack(read_samples(path or CALIBRATION_FILE), tokenizer, seq_len, max_tokens)


def heldout_tokens(tokenizer, path=None, seq_len: int = 256, max_tokens: int | None = None) -> TokenSet:
    """The held-out text (never the calibration mix unless asked), packed."""
    return pack(read_samples(path or HELDOUT_FILE), tokenizer, seq_len, max_tokens)
