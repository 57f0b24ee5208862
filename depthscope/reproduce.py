"""`depthscope reproduce`: train every mixer at one compute budget, record, analyse, and report against the paper.

Stages (each skipped when its output already exists with the same settings, so an interrupted run resumes):
  1. train   residual, full_attnres, block_attnres, denseformer and mHC on one corpus at the same token budget,
             for several seeds (loss confidence intervals); seed 0 also leaves checkpoints along the Block AttnRes
             training (the Evolution page) and a Block AttnRes model on the synthetic recall task.
  2. record  each seed-0 checkpoint over held-out text with gradients, into runs/<name>/.
  3. report  analyses and figures; report.md sets the paper's findings beside what was measured here.

Output layout: OUT/checkpoints/<name>/ (seed 0, float16 weights), OUT/seeds/ (the other seeds' checkpoints, not
part of the bundle), OUT/runs/<name>/, OUT/losses.csv, OUT/figures/, OUT/analysis/, OUT/report.md.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from depthscope.models import ModelConfig, TrainConfig, option, steps_for_budget
from depthscope.options import token_count

# name -> ModelConfig overrides; the names are the run ids the dashboard and the report show.
MIXER_VARIANTS: dict[str, dict] = {
    "residual": dict(mixer="residual"),
    "full_attnres": dict(mixer="full_attnres"),
    "block_attnres": dict(mixer="block_attnres"),
    "denseformer": dict(mixer="denseformer"),
    "mhc": dict(mixer="hyper", mhc=True),
}
RECALL_NAME = "recall_block_attnres"


def _model_template() -> ModelConfig:
    # ModelConfig's defaults but N = 4 blocks; the mixer comes from MIXER_VARIANTS, and max_seq_len follows the
    # training's seq_len (model_config)
    return ModelConfig(n_blocks=4, max_seq_len=TrainConfig().seq_len)


def _train_template() -> TrainConfig:
    # TrainConfig's defaults; steps, warm-up, evaluation, seed and step checkpoints are set per model from the
    # budget (train_config)
    return TrainConfig()


@dataclass
class ReproduceConfig:
    """The report's recipe: one model shape (`model`, the mixer set per variant) and one training recipe
    (`train`, steps from the token budget), the same for every mixer."""

    out: Path | None = option(None, "folder for checkpoints, runs, figures, report.md", metavar="DIR", required=True)
    model: ModelConfig = field(default_factory=_model_template)
    train: TrainConfig = field(default_factory=_train_template)
    # training tokens per model: equal compute for every mixer
    budget_tokens: int = option(1_000_000, "training tokens per model, the same for every mixer", flag="--budget",
                                parse=token_count)
    seeds: tuple[int, ...] = option((0, 1, 2), "comma-separated training seeds; the first is recorded")
    corpus: str = option("pydoc", "training corpus")
    record_tokens: int = option(4096, "held-out tokens recorded per model")
    evolution_checkpoints: int = 4  # checkpoints along the seed-0 Block AttnRes training, the last included
    recall_budget_tokens: int = option(500_000, "training tokens of the synthetic recall model",
                                       flag="--recall-budget", parse=token_count)
    mixers: tuple[str, ...] = option(tuple(MIXER_VARIANTS), f"comma-separated subset of {', '.join(MIXER_VARIANTS)}; "
                                     "residual is the baseline and must be among them (default: all)")
    progress: bool = option(True, "no progress bars", flag="--no-progress")

    @property
    def steps(self) -> int:
        return steps_for_budget(self.budget_tokens, self.train.batch_size, self.train.seq_len)

    def model_config(self, name: str) -> ModelConfig:
        overrides = MIXER_VARIANTS["block_attnres"] if name == RECALL_NAME else MIXER_VARIANTS[name]
        return replace(self.model, max_seq_len=self.train.seq_len, **overrides)

    def train_config(self, seed: int, budget_tokens: int | None = None, save_every: int = 0) -> TrainConfig:
        cfg = self.train.with_budget(budget_tokens or self.budget_tokens, seed=seed, save_every=save_every)
        return replace(cfg, eval_every=max(1, cfg.steps // 10))  # the held-out loss at every tenth of the training


def _done(checkpoint_dir: Path, model_cfg, train_cfg) -> bool:
    """True when checkpoint_dir holds a finished checkpoint trained with exactly these settings."""
    from depthscope.models import CheckpointError, read_checkpoint_info

    try:
        info = read_checkpoint_info(checkpoint_dir)
    except CheckpointError:
        return False
    return info.config == model_cfg and (info.training or {}).get("train_config") == train_cfg.to_dict()


def train_one(cfg: ReproduceConfig, name: str, seed: int, directory: Path, corpus, save_every: int = 0) -> dict:
    """Train mixer `name` with `seed` into `directory` unless a finished checkpoint with these exact settings is
    there already (so an interrupted run resumes); returns its row of losses.csv."""
    from depthscope.models import read_checkpoint_info, train

    model_cfg = cfg.model_config(name)
    train_cfg = cfg.train_config(seed, save_every=save_every)
    if not _done(directory, model_cfg, train_cfg):
        if directory.exists():
            shutil.rmtree(directory)
        train(model_cfg, train_cfg, corpus, out_dir=directory, progress=cfg.progress)
    training = read_checkpoint_info(directory).training
    return dict(mixer=name, seed=seed, steps=training["steps"], tokens=training["tokens_seen"],
                first_heldout_loss=training["first_heldout_loss"], final_heldout_loss=training["final_heldout_loss"],
                final_train_loss=training["final_train_loss"], tokens_per_s=training["tokens_per_s"],
                checkpoint=str(directory.relative_to(cfg.out)))


def train_all(cfg: ReproduceConfig) -> pd.DataFrame:
    """Stage 1. Returns one row per (mixer, seed): held-out losses, tokens, speed."""
    from depthscope.models import load_corpus, train

    corpus = load_corpus(cfg.corpus, seed=0)
    rows = []
    jobs = [(name, seed) for seed in cfg.seeds for name in cfg.mixers]
    for name, seed in jobs:
        every = max(1, cfg.steps // cfg.evolution_checkpoints) if (name == "block_attnres" and seed == cfg.seeds[0]) else 0
        # Seed 0 is the bundle; the other seeds only give loss intervals and stay out of it (OUT/seeds/).
        directory = cfg.out / "checkpoints" / name if seed == cfg.seeds[0] else cfg.out / "seeds" / f"{name}_seed{seed}"
        rows.append(train_one(cfg, name, seed, directory, corpus, save_every=every))
    recall_cfg = cfg.model_config(RECALL_NAME)
    recall_train = cfg.train_config(cfg.seeds[0], budget_tokens=cfg.recall_budget_tokens)
    recall_dir = cfg.out / "checkpoints" / RECALL_NAME
    if not _done(recall_dir, recall_cfg, recall_train):
        if recall_dir.exists():
            shutil.rmtree(recall_dir)
        train(recall_cfg, recall_train, load_corpus("recall", seed=0), out_dir=recall_dir, progress=cfg.progress)
    losses = pd.DataFrame(rows)
    losses.to_csv(cfg.out / "losses.csv", index=False)
    return losses


def compact(cfg: ReproduceConfig) -> None:
    """Keep the bundle small: bundled checkpoints store float16 weights (loading restores float32), and the last
    step checkpoint of the evolution training, a copy of the final one, is dropped."""
    import torch
    from safetensors import safe_open

    from depthscope.models import WEIGHTS_FILE, find_checkpoints, load_checkpoint, save_checkpoint

    final_steps = cfg.steps
    for name in [*cfg.mixers, RECALL_NAME]:
        for directory in find_checkpoints(cfg.out / "checkpoints" / name):
            if directory.name == f"step_{final_steps:06d}":
                shutil.rmtree(directory)
                continue
            with safe_open(str(directory / WEIGHTS_FILE), framework="pt") as handle:
                if handle.get_tensor("embed.weight").dtype == torch.float16:
                    continue
            model, info = load_checkpoint(directory)
            save_checkpoint(model, directory, info.training, info.tokenizer, storage_dtype=torch.float16)


def record_all(cfg: ReproduceConfig) -> list[Path]:
    """Stage 2. Records every seed-0 checkpoint (and the evolution checkpoints) with gradients."""
    jobs: list[tuple[Path, str, str]] = []
    for name in cfg.mixers:
        jobs.append((cfg.out / "checkpoints" / name, cfg.corpus, name))
    for step_dir in sorted((cfg.out / "checkpoints" / "block_attnres").glob("step_*")):
        jobs.append((step_dir, cfg.corpus, f"block_attnres_{step_dir.name}"))
    jobs.append((cfg.out / "checkpoints" / RECALL_NAME, "recall", RECALL_NAME))
    return [record_one(cfg, checkpoint, corpus, cfg.out / "runs" / run_name) for checkpoint, corpus, run_name in jobs]


def record_one(cfg: ReproduceConfig, checkpoint: Path, corpus: str, out: Path) -> Path:
    """Record `checkpoint` over `corpus` into `out` with gradients, unless `out` already holds that recording
    (a stamp names the checkpoint, its weights' mtime, the corpus and the token count)."""
    from depthscope.record import record_run

    stamp = out / "recorded_from.json"
    want = {"checkpoint": str(checkpoint.resolve()), "tokens": cfg.record_tokens, "corpus": corpus,
            "mtime": (checkpoint / "model.safetensors").stat().st_mtime}
    if stamp.exists() and json.loads(stamp.read_text()) == want:
        return out
    record_run(checkpoint, corpus, out, tokens=cfg.record_tokens, grads=True, seq_len=cfg.train.seq_len,
               overwrite=True, device=cfg.train.device, progress=cfg.progress)
    stamp.write_text(json.dumps(want))
    return out


def write_settings(cfg: ReproduceConfig) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    (cfg.out / "settings.json").write_text(json.dumps(settings, indent=2))


# ---------------------------------------------------------------------------------------------------- report


def loss_table(losses: pd.DataFrame, baseline: str = "residual") -> pd.DataFrame:
    """Final held-out loss per mixer over seeds: mean, 95 % t-interval, and the seed-paired difference to the
    baseline with its own 95 % t-interval (the same seed gives the same data order to every mixer)."""
    from depthscope.analyses import seed_interval as interval

    base = losses[losses.mixer == baseline].set_index("seed")["final_heldout_loss"]
    rows = []
    for mixer, group in losses.groupby("mixer", sort=False):
        own = group.set_index("seed")["final_heldout_loss"]
        mean, low, high = interval(own)
        paired = (own - base).dropna()
        d_mean, d_low, d_high = interval(paired) if mixer != baseline else (0.0, 0.0, 0.0)
        rows.append(dict(mixer=mixer, seeds=len(own), loss=mean, loss_low=low, loss_high=high,
                         vs_baseline=d_mean, vs_baseline_low=d_low, vs_baseline_high=d_high,
                         tokens_per_s=float(group["tokens_per_s"].mean())))
    return pd.DataFrame(rows)


def _mixing_frames(cfg: ReproduceConfig) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """M of every seed-0 model, from its taps on held-out text (so hyper/mHC is unrolled per token too)."""
    import torch

    from depthscope.analyses import mixing_from_model
    from depthscope.models import load_checkpoint, load_corpus

    corpus = load_corpus(cfg.corpus, seed=0)
    inputs, _ = corpus.eval_batch(8, cfg.train.seq_len)
    frames, ranks = {}, []
    for name in cfg.mixers:
        model, _ = load_checkpoint(cfg.out / "checkpoints" / name)
        with torch.no_grad():
            mix = mixing_from_model(model.eval(), inputs)
        frames[name] = mix.frame()
        ranks.append({"mixer": name, **mix.ranks()})
    return frames, pd.DataFrame(ranks)


def _fmt_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    if pd.isna(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def write_report(cfg: ReproduceConfig, losses: pd.DataFrame) -> Path:
    """Stage 3: analyses, figures (SVG, vector heatmaps) and report.md."""
    from depthscope.analyses import analyze, summary_markdown, write
    from depthscope.causal_check import causal_from_run
    from depthscope.dashboard import FigureSet, write_figure_set

    missing = {"residual", "full_attnres", "block_attnres"} - set(cfg.mixers)
    if missing:
        raise ValueError(f"the report sets Full and Block AttnRes beside the residual baseline; add {sorted(missing)}")
    runs = cfg.out / "runs"
    # the paper's figure set (`depthscope figures`): Figs. 5b/c, 8 (Full, Block, recall), 9 (every mixer)
    spec = FigureSet(run="block_attnres", baseline="residual", others=["full_attnres"],
                     routing=["full_attnres", RECALL_NAME], mixing=list(cfg.mixers),
                     checkpoints=cfg.out / "checkpoints", fmt="svg", style="double")
    write_figure_set(runs, spec, cfg.out / "figures")
    fig_paths = {key: str((cfg.out / "figures" / f"{stem}.svg").relative_to(cfg.out)) for key, stem in (
        ("signal_output", "fig5b_output_magnitude"), ("signal_input", "fig5b_input_magnitude"),
        ("grad_param", "fig5c_gradient_magnitude"), ("grad_activation", "fig5c_activation_gradient"),
        ("routing_full", "fig8_routing_full_attnres"), ("routing_block", "fig8_routing_block_attnres"),
        ("routing_recall", f"fig8_routing_{RECALL_NAME}"), ("mixing", "fig9_mixing"))}
    _, ranks = _mixing_frames(cfg)
    ranks.to_csv(cfg.out / "mixing_ranks.csv", index=False)

    summaries = {}
    for name in ("block_attnres", "full_attnres"):
        analysis = analyze(runs / name, baseline=runs / "residual", causal=causal_from_run)
        write(analysis, cfg.out / "analysis" / name)
        summaries[name] = summary_markdown(analysis)

    table = loss_table(losses)
    table.to_csv(cfg.out / "loss_table.csv", index=False)
    train = cfg.train_config(cfg.seeds[0])
    lines = [
        "# Reproducing *Attention Residuals* at small scale",
        "",
        f"Written by `depthscope reproduce` (settings in `settings.json`). Every mixer: {cfg.model.n_layers} transformer "
        f"blocks ({cfg.model.n_sublayers} sublayers), d_model {cfg.model.d_model}, byte-level `{cfg.corpus}` "
        f"corpus, {train.steps} steps x {train.batch_size} x {train.seq_len} = {train.tokens:,} "
        f"training tokens per model (equal compute up to the mixers' own small overhead), seeds "
        f"{', '.join(map(str, cfg.seeds))}. Block AttnRes uses N = {cfg.model.n_blocks} blocks. Recordings: "
        f"{cfg.record_tokens:,} held-out tokens per model, with gradients of the mean next-token loss.",
        "",
        "The paper trained 194M-48B-parameter models on up to 1T tokens; these models have well under a million "
        "parameters. Qualitative signal effects can show at this scale; loss differences are small and noisy, "
        "so they are given with 95 % intervals over seeds and should be read as such. How the findings move "
        "with scale: `depthscope reproduce --ladder` (in this repository, [assets/ladder/report.md]"
        "(../ladder/report.md)).",
        "",
        "## Held-out loss at equal compute",
        "",
        "| mixer | seeds | final held-out loss (95 % CI over seeds) | minus residual, paired by seed (95 % CI) | training tokens/s |",
        "|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        lines.append(f"| {row.mixer} | {row.seeds} | {_fmt_ci(row.loss, row.loss_low, row.loss_high)} | "
                     f"{_fmt_ci(row.vs_baseline, row.vs_baseline_low, row.vs_baseline_high)} | {row.tokens_per_s:,.0f} |")
    lines += [
        "",
        "Paper: at 436M activated parameters, baseline 1.766, DenseFormer 1.767, mHC 1.747, Full AttnRes 1.737, "
        "Block AttnRes (S = 4) 1.746; AttnRes lower at every size.",
        "",
        "## Signal growth (paper Fig. 5b) and gradient magnitude (Fig. 5c)",
        "",
        "The paper plots output magnitude and gradient magnitude per transformer block without defining the norm. "
        "Here: RMS over d_model of each sublayer's output f_l and input h_l, per token, median with percentile "
        "bands; gradients as the per-sublayer parameter-gradient norm per batch and the per-token RMS of "
        "dLoss/dh_l.",
        "",
        f"![sublayer output RMS]({fig_paths['signal_output']})",
        "",
        f"![sublayer input RMS]({fig_paths['signal_input']})",
        "",
        f"![parameter-gradient norm]({fig_paths['grad_param']})",
        "",
        f"![activation-gradient RMS]({fig_paths['grad_activation']})",
        "",
        "## Routing (paper Fig. 8)",
        "",
        "Token-averaged depth attention; rows are the consuming sublayer, columns the sources, pre-attention and "
        "pre-MLP in separate panels.",
        "",
        f"![Full AttnRes routing]({fig_paths['routing_full']})",
        "",
        f"![Block AttnRes routing]({fig_paths['routing_block']})",
        "",
        "Block AttnRes trained on the synthetic recall task (`recall` corpus: the answer to `?key=` was given "
        "far earlier in the sequence):",
        "",
        f"![recall routing]({fig_paths['routing_recall']})",
        "",
        "## Effective mixing matrix of every mixer (paper Fig. 9)",
        "",
        f"![mixing matrices]({fig_paths['mixing']})",
        "",
        "| mixer | effective rank | numerical rank | effective rank (row-normalised) |",
        "|---|---|---|---|",
    ]
    for row in ranks.itertuples():
        lines.append(f"| {row.mixer} | {row.effective_rank:.2f} | {row.rank} | {row.effective_rank_normalised:.2f} |")
    n_blocks = len(cfg.model_config("block_attnres").block_bounds)
    size = cfg.model_config("block_attnres").block_size
    lines += ["", f"The paper puts the Block matrix's effective rank between N and N + S; here N = {n_blocks} "
                  f"blocks of S = {size}.", ""]
    for name, text in summaries.items():
        lines += [f"## {name} against the residual baseline: statistics and verdicts", "",
                  _demote_headings(text), ""]
    path = cfg.out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _demote_headings(markdown: str) -> str:
    return "\n".join("##" + line if line.startswith("#") else line for line in markdown.splitlines())


def reproduce(cfg: ReproduceConfig) -> Path:
    write_settings(cfg)
    losses = train_all(cfg)
    compact(cfg)
    record_all(cfg)
    return write_report(cfg, losses)
