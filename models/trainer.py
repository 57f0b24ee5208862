"""A small, deterministic trainer: AdamW, linear warm-up then cosine decay, periodic held-out loss, checkpoints.

Determinism: the model is initialised right after `torch.manual_seed(seed)` and batches come from a
`torch.Generator` seeded with `seed` alone, so on CPU the same seed gives bit-identical losses.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .version import __version__
from .checkpoint import save_checkpoint
from .config import ModelConfig, option
from .data import Corpus
from .transformer import DepthTransformer

StepCallback = Callable[[int, DepthTransformer, float], None]


def steps_for_budget(budget_tokens: int, batch_size: int, seq_len: int) -> int:
    """Optimiser steps that train on about `budget_tokens` tokens: whole steps of batch_size x seq_len, at least
    one. Every workflow that trains at a token budget (reproduce, the ladder, the sweep) counts steps here."""
    return max(1, int(budget_tokens) // (batch_size * seq_len))


def warmup_for(steps: int) -> int:
    """The default warm-up: the first 10 % of the steps, at least one."""
    return max(1, steps // 10)


@dataclass
class TrainConfig:
    steps: int = option(300, "optimiser steps")
    batch_size: int = option(16, "sequences per step")
    seq_len: int = option(128, "tokens (bytes) per sequence")
    lr: float = option(3e-3, "peak AdamW learning rate")
    weight_decay: float = option(0.1, "AdamW weight decay on weight matrices only")
    warmup_steps: int = option(30, "linear warm-up steps before the cosine decay")
    # the cosine decays to lr * min_lr_ratio at the last step
    min_lr_ratio: float = option(0.1, "final learning rate as a fraction of --lr")
    # held-out loss every this many steps (and at step 0 and the end); 0 = start/end only
    eval_every: int = option(50, "held-out loss every this many steps")
    # held-out windows = eval_batches * batch_size, spread evenly over the held-out text
    eval_batches: int = option(4, "held-out windows = this * --batch-size")
    grad_clip: float = option(1.0, "max global gradient norm, 0 for none")
    seed: int = option(0, "seed of initialisation and batch sampling")
    device: str = option("cpu", "torch device")
    # also write out_dir/step_XXXXXX/ at step 0 and every this many steps; 0 = final only
    save_every: int = option(0, "also save DIR/step_XXXXXX/ at step 0 and every N steps (default: final only)",
                              metavar="N", show_default=False)
    # CPU threads while training (restored afterwards); None keeps torch's default. On a busy machine 1 can be
    # several times faster than the default. Bit-identical losses need the same seed AND the same thread count.
    num_threads: int | None = option(None, "CPU threads (default: torch's choice); on a busy machine 1 can be "
                                            "several times faster", flag="--threads")

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "eval_batches", "save_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {self.num_threads}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    @property
    def tokens(self) -> int:
        """Training tokens: steps x batch_size x seq_len."""
        return self.steps * self.batch_size * self.seq_len

    def with_budget(self, budget_tokens: int, **changes) -> "TrainConfig":
        """This recipe at a token budget: steps_for_budget, warm-up over the first 10 % (warmup_for)."""
        steps = steps_for_budget(budget_tokens, self.batch_size, self.seq_len)
        return replace(self, **{"steps": steps, "warmup_steps": warmup_for(steps), **changes})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: DepthTransformer
    model_config: ModelConfig
    train_config: TrainConfig
    train_losses: list[float]  # one per step
    lrs: list[float]  # learning rate used at each step
    eval_steps: list[int]  # steps at which the held-out loss was measured (0 = before training)
    heldout_losses: list[float]
    tokens_seen: int
    wall_time_s: float  # whole run, evaluation and saving included
    train_time_s: float  # optimisation steps only
    checkpoint_dir: Path | None = None
    step_checkpoints: list[Path] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.train_time_s if self.train_time_s > 0 else float("nan")

    @property
    def final_train_loss(self) -> float:
        return self.train_losses[-1] if self.train_losses else float("nan")

    @property
    def first_heldout_loss(self) -> float:
        return self.heldout_losses[0]

    @property
    def final_heldout_loss(self) -> float:
        return self.heldout_losses[-1]


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """LR for optimiser step `step` (0-based): linear warm-up to cfg.lr, then cosine down to lr * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps - 1)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on the weight matrices of Linear and Embedding modules only.

    Everything else is exempt: norm gains, AttnRes pseudo-queries and key gains, DenseFormer averages,
    Hyper-Connection static matrices and scales, and any 1-d parameter.
    """
    decayed: set[int] = set()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.ndim >= 2:
            decayed.add(id(module.weight))
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if id(param) in decayed else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@torch.no_grad()
def evaluate(model: DepthTransformer, corpus: Corpus, seq_len: int, n_windows: int, batch_size: int, device) -> float:
    """Mean next-token cross-entropy (nats) on a fixed set of held-out windows."""
    was_training = model.training
    model.eval()
    inputs, targets = corpus.eval_batch(n_windows, seq_len)
    total, count = 0.0, 0
    for a in range(0, n_windows, batch_size):
        x, y = inputs[a : a + batch_size].to(device), targets[a : a + batch_size].to(device)
        logits = model(x)  # [batch, tokens, vocab]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    return total / count


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    corpus: Corpus,
    out_dir: str | Path | None = None,
    progress: bool = True,
    callback: StepCallback | None = None,
) -> TrainResult:
    """Train a fresh DepthTransformer(model_cfg) on `corpus`; write the final checkpoint to out_dir if given.

    callback(step, model, loss) runs every step (1-based) after loss.backward() and before gradient clipping
    and the optimiser step, so the parameters' .grad hold this step's raw gradients.
    """
    if train_cfg.seq_len > model_cfg.max_seq_len:
        raise ValueError(f"seq_len={train_cfg.seq_len} exceeds the model's max_seq_len={model_cfg.max_seq_len}")
    if model_cfg.vocab_size != corpus.vocab_size:
        raise ValueError(f"model vocab_size={model_cfg.vocab_size} != corpus vocab_size={corpus.vocab_size}")
    if train_cfg.save_every and out_dir is None:
        raise ValueError("save_every needs an out_dir")
    threads_before = torch.get_num_threads()
    if train_cfg.num_threads is not None:
        torch.set_num_threads(train_cfg.num_threads)
    try:
        return _train(model_cfg, train_cfg, corpus, out_dir, progress, callback)
    finally:
        torch.set_num_threads(threads_before)


def _train(model_cfg, train_cfg, corpus, out_dir, progress, callback) -> TrainResult:
    started = time.perf_counter()
    device = torch.device(train_cfg.device)
    torch.manual_seed(train_cfg.seed)
    model = DepthTransformer(model_cfg).to(device)
    model.train()
    generator = torch.Generator().manual_seed(train_cfg.seed)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, train_cfg.weight_decay), lr=train_cfg.lr, betas=(0.9, 0.95), eps=1e-8
    )
    n_eval = max(1, train_cfg.eval_batches * train_cfg.batch_size)
    out = Path(out_dir) if out_dir is not None else None

    train_losses: list[float] = []
    lrs: list[float] = []
    eval_steps: list[int] = []
    heldout: list[float] = []
    step_dirs: list[Path] = []
    train_time = 0.0

    def run_eval(step: int) -> None:
        eval_steps.append(step)
        heldout.append(evaluate(model, corpus, train_cfg.seq_len, n_eval, train_cfg.batch_size, device))

    def summary(step: int) -> dict:
        return {
            "steps": step,
            "tokens_seen": step * train_cfg.batch_size * train_cfg.seq_len,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "final_heldout_loss": heldout[-1] if heldout else None,
            "first_heldout_loss": heldout[0] if heldout else None,
            "train_losses": list(train_losses),
            "lrs": list(lrs),
            "eval_steps": list(eval_steps),
            "heldout_losses": list(heldout),
            "seed": train_cfg.seed,
            "corpus": corpus.name,
            "corpus_split_seed": corpus.split_seed,
            "heldout_fraction": corpus.heldout_fraction,
            "train_config": train_cfg.to_dict(),
            "wall_time_s": time.perf_counter() - started,
            "train_time_s": train_time,
            "tokens_per_s": (step * train_cfg.batch_size * train_cfg.seq_len / train_time) if train_time else None,
            "torch_version": torch.__version__,
            "depthscope_version": __version__,
        }

    def save_step(step: int) -> None:
        if out is not None and train_cfg.save_every and step % train_cfg.save_every == 0:
            step_dirs.append(save_checkpoint(model, out / f"step_{step:06d}", summary(step), corpus.tokenizer))

    run_eval(0)
    save_step(0)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=train_cfg.steps, desc=f"train {model_cfg.mixer}", unit="step", dynamic_ncols=True)
    try:
        for step in range(1, train_cfg.steps + 1):
            tick = time.perf_counter()
            lr = learning_rate(step - 1, train_cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs, targets = corpus.sample_batch(train_cfg.batch_size, train_cfg.seq_len, generator)
            inputs, targets = inputs.to(device), targets.to(device)
            logits = model(inputs)  # [batch, tokens, vocab]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"training loss became {loss_value} at step {step} (mixer {model_cfg.mixer}, lr {lr:.3g}); "
                    "try a lower --lr or stronger --grad-clip"
                )
            if callback is not None:
                callback(step, model, loss_value)
            if train_cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()
            train_time += time.perf_counter() - tick
            train_losses.append(loss_value)
            lrs.append(lr)
            if step == train_cfg.steps or (train_cfg.eval_every and step % train_cfg.eval_every == 0):
                run_eval(step)
            save_step(step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", heldout=f"{heldout[-1]:.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()

    final_dir = None
    if out is not None:
        final_dir = save_checkpoint(model, out, summary(train_cfg.steps), corpus.tokenizer)
    model.eval()
    return TrainResult(
        model=model,
        model_config=model_cfg,
        train_config=train_cfg,
        train_losses=train_losses,
        lrs=lrs,
        eval_steps=eval_steps,
        heldout_losses=heldout,
        tokens_seen=train_cfg.tokens,
        wall_time_s=time.perf_counter() - started,
        train_time_s=train_time,
        checkpoint_dir=final_dir,
        step_checkpoints=step_dirs,
    )


__all__ = ["TrainConfig", "TrainResult", "train", "evaluate", "learning_rate", "parameter_groups", "steps_for_budget",
           "warmup_for"]
