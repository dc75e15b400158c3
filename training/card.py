"""The model card (README.md) written beside the exported checkpoint, from the run's log and scores."""

from __future__ import annotations

import json
from pathlib import Path

from training.arch import Shape, TinyAgent
from training.grow import workdir_shape

GOALS = {
    "builtin_first_call": ("first call right, built-in tools", ">= 0.90"),
    "unseen_schema_first_call": ("first call right, unseen BFCL-style schemas", ">= 0.60"),
    "no_tool": ("no call on requests that need none", ">= 0.90"),
    "mtp_accept": ("MTP greedy acceptance, 1 draft token", ">= 0.70"),
}


# What the runs taught; kept here so that a rebuilt card says it too.
NOTES = """## What worked and what did not

- **Copying is the whole game, and it arrives late and suddenly.** For the first 3.7M tokens
  the model learned the chat and XML call format perfectly, answered small talk without a call,
  and copied nothing: every argument came out as a frequent word of the corpus (`path`, `topic`,
  `calculate`). Teacher-forced exact replies stayed at 0% on copy drills, built-in calls and
  unseen schemas. What broke it: a phase of long made-up values to repeat or pass as one argument
  (`long_copy_chat`), where most reply tokens can only come from the request. Within ~1.5M tokens
  of that phase the loss fell from 2.2 to below 0.5 and exact copy drills, built-in calls and the
  MTP head all jumped (teacher-forced probe at step 2517: copy 38%, built-in first call 56%, MTP
  92%; at the end, step 3903: copy 50%, built-in 81%, no-tool 100%, MTP 95%). The training loss went
  from 1.4 to 0.22 in that phase. It was still improving when the time budget ran out.
- **Tokenization decides whether copying is learnable.** transformers 5 rebuilds every
  `qwen3_5` tokenizer with Qwen3.5's own pre-tokenizer, so that split is the one the model lives
  with. Under it a letter run takes one leading punctuation or space character, so a value would be
  different tokens in the request and in `<parameter=k>\nVALUE`. Two fixes: the corpus quotes
  values after a space (`` `notes.txt` ``, where the space-and-backtick stays one piece) and the
  BPE merges never join punctuation to letters, so `path` is one token in `"path"` and in
  `=path`.
- **The agent's real tools block costs most of the compute.** The six built-in tool definitions
  (shown verbatim in 40% of agent samples) take ~450 tokens; an agent conversation is 700-900
  tokens of which ~40 are trained. Loss on assistant tokens only keeps the gradient on what the
  model must produce, but the forward/backward still pays for the context.
- **CPU contention.** The 2 cores were shared with other jobs (load average 5-10). Two torch
  threads under `nice 10` stalled each other (95 tokens/s); one thread ran at 1,000-3,300 tokens/s.
  On an otherwise idle machine two threads ran at ~5,800 tokens/s against ~3,500 for one (`--threads 2`).
  The reference chunked Gated DeltaNet in PyTorch is the bottleneck; no GPU was available.
- **Fresh schemas come after built-in calls, and slowly.** At step 3903 (82 minutes, 10.7M tokens)
  the model copied values into built-in calls (81% teacher-forced) but got 0% of calls over unseen
  schemas exactly right. Resumed with phase 4 (BFCL-style calls over fresh schemas weighted 8 of
  ~16, lr back up to 1.6e-3 and cosine down again), the teacher-forced unseen-schema score rose to
  19% within 1.5M tokens and to 31% by the end (step 8313, 22.7M tokens); generated first calls over
  unseen schemas went from 0% to 25%, built-in ones from 75% to 80%, MTP acceptance from 0.925 to
  0.965. Still rising when the budget ended.
- **MTP acceptance depends on what is decoded.** Along greedy first replies of the quality sets (the
  score below) one draft token is accepted 96.5% of the time; over all assistant turns of the held-out
  agent conversations (answers from tool results included) optiq's engine accepts about 80% at depth
  1 and 40% at the second position of depth 2. Teacher-forced on reference text the head agrees 94%
  where the main model is right: the harder positions are the ones the model's own output visits.
- **A reference answer has to be predictable.** Arithmetic requests were answered with
  `print(expr)` three times in four and `result = expr` / `print(result)` otherwise, at random. No
  model can call that coin, and the exact check failed a right call a quarter of the time (2 of the
  40 built-in quality prompts). The corpus now writes one form; the draw stays, so every other
  held-out value is unchanged.
- **Names are where a tiny model fails first; values are where it stays wrong.** Of the 30 wrong
  unseen-schema first calls at step 8313, about half had every value right and a function or
  parameter name recalled from training (`cancelloud_1` for `cancelPrice`, `bottle` for
  `basket_code`). optiq's guided call names (`optiq_runtime/guide.py`) limit those tokens to the
  offered names at run time: with the step-8313 weights, unseen-schema first calls went from 0.25 to
  0.675 at 0.955x decode speed (`python bench/guide.py`). What remains wrong is values: a copied
  sentence drifts into a memorised one (`Xavier lives in Chicago.` for `... Austin.`), a list loses
  an element, a parallel request's second values land in the first call.
- **Low learning rate, long enough, finished the job for unseen schemas.** Session 3 resumed at step
  8313 and ran phase 4 on to step 21,638 (lr 1.2e-3 cosine down to 1.5e-4; two threads on an
  idle machine, so 57M tokens in all). The model's own unseen-schema first calls rose from 0.25 to
  0.625 and built-in ones from 0.80 to 0.875 (0.85 of that with the step-8313 weights once the
  arithmetic coin was gone), MTP acceptance to 0.983; the shipped checkpoint is the one from step
  20,925 (best of the in-training probe; the last, step 21,638, measured the same on every score).
- **Forty prompts are a coarse ruler; pick checkpoints on other ones.** `python -m
  training.select CKPT...` exports checkpoints and scores their greedy first calls on 60
  validation prompts per score (seed `validation`, disjoint from the reported ones). On it the
  shipped checkpoint gets 0.783 built-in, 0.667 unseen-schema and 1.00 no-tool. Its 0.875 below is
  about 1.5 standard errors (0.06 at 40 prompts) above that; its true built-in rate is nearer 0.8.
- **More copied-value tasks did not move it (session 4, not shipped).** A phase 5 that drew writes,
  edits and searches 5 of 17 (bfcl calls back at 8 after 2,200 steps, when unseen-schema calls had
  fallen from 27 to 24 of 40) ran 105 minutes on from step 21,638 to 32,740 (+30M tokens, lr 5.6e-4
  cosine to 1.5e-4). The validation best, step 31,124, scored 0.80 / 0.683 / 1.00 against the
  shipped 0.783 / 0.667 / 1.00, one prompt in 60 each, and 0.875 / 0.60 / 1.00 on the reported
  prompts (MTP 0.976). Within noise, so the shipped weights stayed. What the misses share: a made-up
  word inside a path or pattern (`tests/kure-kelo.md` copied as `tests/kure-profile.md`), sometimes
  derailing into a special token mid-value. With one attention layer of 2 heads at hidden 128, copying
  multi-token made-up words looks like the capacity limit; a deeper or wider model (a GPU session
  trains ~100x faster) is the likely way to 0.90, not more of this data.
- **Run history, for honesty.** One run of 305 minutes, resumed to change the data mix
  (step ~820: copy-heavier phase 2; step 1393: copy-focused phase 3; step 3903: phase 4, with the
  budget raised from 82 to 164 minutes so that phase 4 starts at 50%), then continued at low lr in
  two more sessions (to 230 minutes of budget, then to 316). Twice two or three processes trained
  side by side in the same folder for a few minutes after a restart went wrong; each time the later
  ones resumed from a checkpoint the first had written and the first was stopped, so the weights are
  one run's (the log holds the extra lines). The code encodes the final recipe (phase 1 to 15% of
  the run, phase 2 to 45%, phase 3 to 50%, phase 4 after); a rebuild follows it rather than this run's
  detours.
- **Reached and not reached.** No-tool restraint (100%), MTP acceptance (0.983) and
  the model's own unseen-schema first calls (62.5%, goal 60%) reach their goals; built-in first calls
  (87.5%, 35 of 40) fall one prompt short of 90%. Every built-in miss is a value: a sentence to write
  drifts into a memorised one, a search pattern or a path is garbled. With optiq's guided call names
  (what the agent, `optiq eval` and `optiq serve` use) unseen-schema first calls are 85% and built-in
  ones stay 87.5%: guidance fixes names, not values. "What is 37 * 91? Use Python." goes through the
  agent end to end (`run_python` with `print(37 * 91)`, then the answer 3367), from this folder and from
  the default OptiQ build of it.
"""


def run_summary(workdir: Path) -> dict:
    """Steps, tokens, wall seconds and the last probe scores from ``log.jsonl``."""
    summary = {"step": 0, "tokens": 0, "seconds": 0.0, "probe": {}, "loss": None}
    path = workdir / "log.jsonl"
    if not path.exists():
        return summary
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if "eval" in record:
            summary["probe"] = record["eval"]
        else:
            summary.update({k: record[k] for k in ("step", "tokens", "seconds")})
            summary["loss"], summary["mtp_loss"] = record["loss"], record["mtp_loss"]
    return summary


def _params(shape: Shape) -> tuple[int, int]:
    model = TinyAgent(shape)
    return sum(p.numel() for p in model.lm.parameters()), sum(p.numel() for p in model.mtp.parameters())


def _scores_table(scores: dict | None) -> str:
    if not scores:
        return "Not measured yet.\n"
    guided = scores.get("guided") or {}
    rows = [
        "| score | the model alone (stock mlx-lm) | with optiq's guided call names | goal (issue #5) |",
        "| --- | --- | --- | --- |",
    ]
    for key, (what, goal) in GOALS.items():
        with_guide = guided.get(key, "same" if key == "mtp_accept" else "n/a")
        rows.append(f"| {what} | {scores.get(key, 'n/a')} | {with_guide} | {goal} |")
    return "\n".join(rows) + "\n"


def model_card(workdir: Path, scores: dict | None, notes: str = "", size_bytes: int | None = None) -> str:
    shape = workdir_shape(workdir) or Shape()
    backbone, mtp = _params(shape)
    run = run_summary(workdir)
    size = f"{size_bytes / 1e6:.1f} MB" if size_bytes else "about 3.4 MB"
    return f"""# tiny-agent

optiq's embedded base model: a {backbone / 1e6:.2f}M-parameter model with the Qwen3.5 architecture
(hybrid Gated DeltaNet + gated full attention, tied embeddings, one MTP layer), trained from scratch
on a synthetic tool-calling corpus. It exists so that optiq runs, quantizes, decodes with MTP and
passes its own tests with no download. It is **not** a general language model: it knows the six
built-in tools, BFCL-style function calls, a few dozen facts and little else.

## Architecture and format

| field | value |
| --- | --- |
| layers | {shape.num_hidden_layers} (Gated DeltaNet x3 : full attention x1) |
| hidden / intermediate | {shape.hidden_size} / {shape.intermediate_size} |
| full attention | {shape.num_attention_heads} heads x {shape.head_dim}, {shape.num_key_value_heads} KV head{"s" if shape.num_key_value_heads > 1 else ""}, output gate, partial RoPE 0.25 |
| Gated DeltaNet | {shape.linear_num_key_heads} key heads x {shape.linear_key_head_dim}, {shape.linear_num_value_heads} value heads x {shape.linear_value_head_dim}, conv kernel 4 |
| vocabulary | {shape.vocab_size} (byte-level BPE) |
| parameters | {backbone:,} backbone (tied head) + {mtp:,} MTP head |
| file | `model.safetensors`, bf16, {size} |

Every Linear input dimension (hidden, intermediate, attention heads x head_dim, DeltaNet value_dim,
MTP fc's 2 x hidden) and the vocabulary are multiples of 64, so mlx quantizes every layer with group size 64.

Hugging Face Qwen3.5 layout: `config.json` (`model_type: qwen3_5`, `text_config` with
`full_attention_interval: 4`, `mtp_num_hidden_layers: 1`), weights under `model.language_model.*`,
RMSNorm weights stored as offsets, the MTP head's included (the runtime adds 1; the gated norm
inside linear attention is a plain scale), conv1d in the Hugging Face shape `(channels, 1, 4)`, and the 15 `mtp.*` tensors. Stock
`mlx_lm.load` loads it (and drops `mtp.*`). The MTP head follows the published contract:
`x = fc(concat([pre_fc_norm_embedding(embed(tok[t+1])), pre_fc_norm_hidden(h[t])]))` with `h[t]`
the backbone state before the final norm, then one full-attention decoder layer (RoPE positions as
the main model's, only differences matter), then `mtp.norm` and the tied head: it predicts token t+2.

Tokenizer: byte-level BPE with Qwen3.5's special tokens, trained on the corpus. Its normalizer and
pre-tokenizer are Qwen3.5's own (transformers 5 rebuilds every `qwen3_5` tokenizer with them, so
anything else would differ at run time); its merges were learned under a split that never joins
punctuation to letters, so `path` in `<parameter=path>` and in the tools JSON is the same token, and
a value quoted in a request (`` `notes.txt` ``) is the same tokens as in the call. The chat template
renders Qwen3.5's layout (tools as JSON lines in `<tools>`, XML calls, grouped `<tool_response>`s,
empty think block with `enable_thinking=False`, JSON-string `arguments` accepted); its
format-instruction paragraph is shorter than Qwen3.5's to spare the tiny context.

## Training

- Corpus (`training/corpus.py`, deterministic): conversations over `run_python`,
  `read_file`, `write_file`, `edit_file`, `list_dir`, `search_files` (call with arguments copied
  from the request, tool result, answer using the result; errors; multi-step tasks; arithmetic such as
  "What is 37 * 91? Use Python." -> `print(37 * 91)` -> 3367); requests that need no tool; BFCL-style
  single/multiple/parallel/irrelevance tasks over randomly generated schemas; explicit copy and
  key-value recall drills; short prose, reasoning, code and constrained-instruction samples. Values are
  made-up words, numbers and paths drawn from spaces too large to memorise.
- Curriculum: phase 1 (first 15% of the run) mostly copy drills and single-function calls; phase 2
  (to 45%) the full mix with copy drills; phase 3 adds long made-up values to copy (see below);
  phase 4 (from 50%) weights BFCL-style calls over fresh schemas highest.
- Loss only on assistant replies (what follows the empty think block), plus the MTP loss (t+2) on the
  same tokens with weight 0.3. AdamW (0.9, 0.95), lr 3e-3, warmup 100 steps, cosine to 5% over the
  run's wall-time budget, rows of 1024 tokens packed with whole conversations, 3 rows per step.
- PyTorch with transformers' own `Qwen3_5ForCausalLM` (reference implementation) on a shared 2-core
  CPU without GPU, one thread beside other jobs (`nice 10`), two on an idle machine in the last stretch.
- This run: {run["step"]:,} steps, {run["tokens"]:,} tokens (padding excluded), {run["seconds"] / 60:.0f} minutes of
  wall time; final training loss {run["loss"]} (MTP {run.get("mtp_loss")}).
- Rebuild: `python -m training.build --out DIR --minutes N` (seeded; the data of step k
  is fixed by the seed, so a resumed run sees the same batches; wall-clock speed decides how many).

## Measured scores

Measured by `python -m training.quality DIR` on 40 held-out conversations per score
(seeds training never used); a call is right when name and every argument match after typing
(BFCL-AST style). "The model alone" is stock mlx-lm greedy decoding; "guided" is optiq's engine,
greedy, with tool-call names limited to the offered ones while the model writes them
(`optiq_runtime/guide.py`; the agent, `optiq eval` and `optiq serve` decode that way by default).

{_scores_table(scores)}
{notes}
"""
