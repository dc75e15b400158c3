"""Train TinyAgent on the synthetic corpus: packed rows, loss on assistant tokens, joint MTP loss.

The data of step k is drawn from ``Random(f"{seed}:{k}")``, so a resumed run sees exactly the
batches it would have seen. The schedule runs on wall seconds of the run (kept in the checkpoint),
because the budget is wall time: warmup, the copy curriculum, then cosine decay to the end.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from training.arch import Shape, TinyAgent
from training.batches import PEOPLE_PHASE, Batches, BatchSpec


@dataclass
class TrainConfig:
    seed: int = 0
    seconds: float = 3600.0
    seq_len: int = 1024
    batch_rows: int = 3
    lr: float = 3e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.05
    mtp_weight: float = 0.3
    curriculum: float = 0.15
    copy_focus: float = 0.45
    # Phase 4 weights calls over fresh schemas: the first run (82 min) ended copying values
    # into built-in calls but not into several freshly named parameters.
    schema_focus: float = 0.5
    checkpoint_seconds: float = 180.0
    eval_seconds: float = 600.0
    # One thread: on a shared, oversubscribed CPU two threads stall on each other at every op.
    threads: int = 1
    # "curriculum": the four phases of PHASE_MIXES (training from scratch); "people": one phase of
    # sessions.people_mix() (fine-tuning the shipped model on people's requests, issue #20).
    mix: str = "curriculum"
    # Loss weight of the reply tokens that copy: call argument values, and answer words that repeat
    # the last tool result. Issue #20's misses are mostly garbled copies (`memo.txt` -> `mo.txt`),
    # a few tokens among many easy template tokens; 1.0 weighs every reply token alike.
    copy_weight: float = 1.0
    # "cpu" or "cuda" (a lent GPU: bf16 autocast); checkpoints load onto it and are read back anywhere.
    device: str = "cpu"
    # Rows per step; 0 keeps the mix's own (3 rows of 1024, or 2 of 2048 for "people"). A GPU wants more.
    rows: int = 0
    # Processes that write the rows ahead of the trainer (0: the trainer writes them itself).
    data_workers: int = 0
    # A run of this many steps (0: ``seconds`` of training time is the run). The schedule then follows
    # steps, not the clock, and ``seconds`` bounds one sitting: a run that shares the CPU with other work,
    # or is cut by the end of a session and resumed, trains exactly as one that ran alone in one go.
    steps: int = 0


def losses(model: TinyAgent, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token loss and MTP (t+2) loss, both only where the target is an assistant token.

    The next-token loss is the mean weighted by ``mask`` (copy tokens may weigh more); the MTP
    loss weighs every reply token alike, since its acceptance counts on every token."""
    pre_norm, post_norm, rope = model(ids)
    target = mask[:, 1:] > 0
    weights = mask[:, 1:][target].float()
    logits = model.logits(post_norm[:, :-1][target])
    per_token = F.cross_entropy(logits.float(), ids[:, 1:][target], reduction="none")
    main = (per_token * weights).sum() / weights.sum()
    mtp_target = mask[:, 2:] > 0
    mtp_hidden = model.mtp_hidden(ids, pre_norm, rope)[:, :-1]
    mtp_logits = model.logits(mtp_hidden[mtp_target])
    mtp = F.cross_entropy(mtp_logits.float(), ids[:, 2:][mtp_target])
    return main, mtp


PEOPLE_ROWS = (2048, 2)  # (seq_len, rows per step) of the people mix


def training_phase(cfg: TrainConfig, progress: float) -> int:
    """The curriculum phase at ``progress`` (0..1) of the run: copy drills, full mix, long copies, fresh schemas."""
    if cfg.mix == "people":
        return PEOPLE_PHASE
    bounds = (cfg.curriculum, cfg.copy_focus, cfg.schema_focus)
    return 1 + sum(progress >= bound for bound in bounds)


def run_progress(cfg: TrainConfig, state: dict) -> float:
    """How far through its run the training is (0..1): by steps when the run has a step count, else by time."""
    return state["step"] / cfg.steps if cfg.steps else state["seconds"] / cfg.seconds


def run_done(cfg: TrainConfig, state: dict) -> bool:
    return state["step"] >= cfg.steps if cfg.steps else state["seconds"] >= cfg.seconds


def sitting_done(cfg: TrainConfig, state: dict, sitting: float) -> bool:
    """The run is done, or (a run of ``steps``) this sitting has had its ``seconds``."""
    return run_done(cfg, state) or (cfg.steps > 0 and sitting >= cfg.seconds)


def ends_run(cfg: TrainConfig, state: dict, elapsed: float) -> bool:
    """The step just taken (``state`` counts it, not yet its ``elapsed`` seconds) is the run's last."""
    return state["step"] >= cfg.steps if cfg.steps else state["seconds"] + elapsed >= cfg.seconds


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps)
    cosine = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * warm * cosine


def make_optimizer(model: TinyAgent, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )


def save_checkpoint(path: Path, model: TinyAgent, opt, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, tmp)
    os.replace(tmp, path)


class BadCheckpoint(Exception):
    """A file that is not a training checkpoint of this model."""


def load_checkpoint(path: Path, shape: Shape) -> tuple[TinyAgent, int | None]:
    """The model saved in a ``last.pt``/``best.pt`` (eval mode), and the training step it was saved at."""
    try:
        saved = torch.load(path, weights_only=False, map_location="cpu")
        if not isinstance(saved, dict) or "model" not in saved:
            raise ValueError("no model state in it")
        model = TinyAgent(shape)
        model.load_state_dict(saved["model"])
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise BadCheckpoint(f"{path}: not a tiny-agent training checkpoint ({type(exc).__name__}: {exc})") from exc
    return model.eval(), saved.get("state", {}).get("step")


def train(
    workdir: Path,
    tokenizer: Tokenizer,
    shape: Shape,
    cfg: TrainConfig,
    evaluate=None,
    log=print,
    init: TinyAgent | None = None,
) -> TinyAgent:
    """Train (or resume) in ``workdir`` until ``cfg.seconds`` of training time (or ``cfg.steps``
    steps, ``cfg.seconds`` then bounding this call); returns the model.

    ``evaluate(model, state)`` is called every ``cfg.eval_seconds`` and returns a dict of scores;
    its ``score`` entry picks ``best.pt``. ``init``: the weights to start from when the workdir
    has no checkpoint yet (fine-tuning); a fresh optimizer and schedule go with them.
    """
    torch.set_num_threads(cfg.threads)
    workdir.mkdir(parents=True, exist_ok=True)
    if cfg.mix == "people":  # the agent's seven tools alone are 925 tokens: a session needs a longer row
        cfg.seq_len, cfg.batch_rows = PEOPLE_ROWS
    cfg.batch_rows = cfg.rows or cfg.batch_rows
    device = torch.device(cfg.device)
    model = TinyAgent(shape, seed=cfg.seed)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model.to(device)
    opt = make_optimizer(model, cfg)
    state = {"step": 0, "seconds": 0.0, "tokens": 0, "best": -1.0, "config": asdict(cfg)}
    last = workdir / "last.pt"
    if last.exists():
        restore(last, model, opt, state, device)
        log(f"resumed at step {state['step']} ({state['seconds']:.0f}s, {state['tokens']} tokens)")
    pad = tokenizer.token_to_id("<|endoftext|>")
    spec = BatchSpec(tokenizer.to_str(), cfg.copy_weight, cfg.mix, cfg.seed, cfg.batch_rows, cfg.seq_len)
    since_ckpt = since_eval = 0.0
    sitting_began = state["seconds"]
    model.train()
    with (workdir / "log.jsonl").open("a") as logfile, Batches(spec, cfg.data_workers) as batches:
        while not sitting_done(cfg, state, state["seconds"] - sitting_began):
            start = time.time()
            progress = run_progress(cfg, state)
            phase = training_phase(cfg, progress)
            ids, mask = (t.to(device) for t in batches.get(state["step"], phase))
            lr = learning_rate(cfg, state["step"], progress)
            main, mtp = step(model, opt, ids, mask, lr, cfg)
            elapsed = time.time() - start
            state["step"] += 1
            state["tokens"] += int((ids != pad).sum())
            since_ckpt += elapsed
            since_eval += elapsed
            if state["step"] % 10 == 0:
                write_log(logfile, log, step_record(state, phase, lr, main, mtp, ids.numel() / elapsed))
            if evaluate is not None and (since_eval >= cfg.eval_seconds or ends_run(cfg, state, elapsed)):
                since_eval = 0.0
                scores = evaluate_and_keep_best(evaluate, model, opt, state, workdir / "best.pt")
                write_log(logfile, log, {"step": state["step"], "eval": scores})
            state["seconds"] += time.time() - start  # the budget is wall time, evaluation included
            if since_ckpt >= cfg.checkpoint_seconds or sitting_done(cfg, state, state["seconds"] - sitting_began):
                since_ckpt = 0.0
                save_checkpoint(last, model, opt, state)
    if not last.exists():  # a run with no time left (``--minutes 0``) still leaves its starting point
        save_checkpoint(last, model, opt, state)
    return model


def write_log(logfile, log, record: dict) -> None:
    """One JSON line in the run's ``log.jsonl``, and the same line to ``log``."""
    line = json.dumps(record)
    logfile.write(line + "\n")
    logfile.flush()
    log(line)


def step_record(state: dict, phase: int, lr: float, main, mtp, tokens_per_second: float) -> dict:
    """The log line of a step."""
    return {
        "step": state["step"],
        "seconds": round(state["seconds"], 1),
        "tokens": state["tokens"],
        "phase": phase,
        "lr": round(lr, 6),
        "loss": round(main.item(), 4),
        "mtp_loss": round(mtp.item(), 4),
        "tok_per_s": round(tokens_per_second),
    }


def evaluate_and_keep_best(evaluate, model: TinyAgent, opt, state: dict, best: Path) -> dict:
    """Score the model; save it as ``best`` when its ``score`` is the run's best so far."""
    model.eval()
    scores = evaluate(model, state)
    model.train()
    if scores.get("score", -1) >= state["best"]:
        state["best"] = scores["score"]
        save_checkpoint(best, model, opt, state)
    return scores


def restore(path: Path, model: TinyAgent, opt: torch.optim.Optimizer, state: dict, device: torch.device) -> None:
    """Resume from a ``last.pt``: weights, optimizer and run state, onto ``device``."""
    saved = torch.load(path, weights_only=False, map_location=device)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    state.update(saved["state"])


def step(model: TinyAgent, opt, ids: torch.Tensor, mask: torch.Tensor, lr: float, cfg: TrainConfig):
    """One optimizer step at ``lr``; returns the next-token and MTP losses. On a GPU the forward
    pass runs under bf16 autocast (weights and optimizer stay float32)."""
    for group in opt.param_groups:
        group["lr"] = lr
    with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=ids.device.type == "cuda"):
        main, mtp = losses(model, ids, mask)
    loss = main + cfg.mtp_weight * mtp
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return main, mtp
