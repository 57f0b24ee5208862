"""`depthscope reproduce --ladder`: the report's residual-vs-Block-AttnRes comparison at growing scale.

Each rung of the ladder grows depth, width and training tokens together; the recipe (sequence length, batch,
learning rate and schedule, heads, recording) is `reproduce`'s (a ReproduceConfig per corpus and rung), Block
AttnRes keeps S = `block_size` sublayers per block (so N grows with depth), and every seed is trained, recorded
and analysed (analyses.analysis, block_attnres against residual). For each of the report's claims
(analyses.report.CLAIMS) and the saw-tooth reset statistic, each rung gets the statistic over seeds with a 95 %
interval; the ladder says whether each claim holds at the top and which way it moves with scale.

Intervals over seeds: each seed's recording gives a bootstrap CI (analyses.comparison), read as a standard error
se_i = (high - low) / (2 z); the rung's value is the mean over seeds, with variance mean(se_i^2) / n + s^2 / n
(s^2 the variance between seeds, n seeds) and a normal 95 % interval. The reset statistic pools every block
boundary of every seed (Student t over boundaries). The trend is the top rung minus the bottom rung, its
interval from the two rungs' standard errors.

Layout: OUT/work/<corpus>/<rung>/ (checkpoints, runs, per-seed analyses; not committed: large), and in OUT:
settings.json, losses.csv, ladder_seeds.csv, ladder.csv, trends.csv, figures/<claim>.svg, report.md.
Everything is skipped when already there with the same settings, so an interrupted ladder resumes.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from depthscope.reproduce import ReproduceConfig

MIXERS = ("residual", "block_attnres")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: transformer blocks (each two sublayers), width and training tokens per model."""
    n_layers: int
    d_model: int
    budget_tokens: int

    @property
    def name(self) -> str:
        return f"L{2 * self.n_layers}_d{self.d_model}"

    def spec(self) -> str:
        return f"{self.n_layers}x{self.d_model}:{self.budget_tokens}"


# Sized for about 45 minutes of training on 2 free CPU cores. Measured training tokens per CPU-second, one
# thread, batch 16 x 128 (residual / Block AttnRes, measured on a loaded machine): 4x48 17.4k / 9.1k,
# 8x64 6.4k / 4.3k, 16x80 1.9k / 2.0k; the default ladder is ~3,600 CPU-seconds of training (~60 min on
# one thread, ~35-45 min on two).
DEFAULT_RUNGS = (Rung(4, 48, 250_000), Rung(8, 64, 500_000), Rung(16, 80, 750_000))


@dataclass
class LadderConfig:
    out: Path
    rungs: tuple[Rung, ...] = DEFAULT_RUNGS
    # corpus -> the rungs (1-based) it is trained at; None = every rung
    corpora: dict[str, tuple[int, ...] | None] = field(default_factory=lambda: {"pydoc": None, "bible": (1, 3)})
    seeds: tuple[int, ...] = (0, 1)
    block_size: int = 4  # Block AttnRes sublayers per block (the report's S), the same at every rung
    recipe: ReproduceConfig = field(default_factory=lambda: ReproduceConfig(out=None))
    progress: bool = True
    figures: bool = True  # False: tables and report.md only (a machine without Chromium for kaleido)

    def __post_init__(self) -> None:
        if not self.rungs:
            raise ValueError("the ladder needs at least one rung")
        if not self.seeds:
            raise ValueError("the ladder needs at least one seed")
        for corpus, chosen in self.corpora.items():
            bad = [i for i in (chosen or ()) if not 1 <= i <= len(self.rungs)]
            if bad:
                raise ValueError(f"corpus {corpus!r}: rungs {bad} are not among 1..{len(self.rungs)}")

    def rungs_of(self, corpus: str) -> list[tuple[int, Rung]]:
        chosen = self.corpora[corpus]
        return [(i, r) for i, r in enumerate(self.rungs, start=1) if chosen is None or i in chosen]

    def reproduce_config(self, corpus: str, rung: Rung) -> ReproduceConfig:
        """The report's recipe at this rung: only shape, tokens, corpus, seeds and mixers change."""
        model = replace(self.recipe.model, n_layers=rung.n_layers, d_model=rung.d_model,
                        n_blocks=max(1, math.ceil(2 * rung.n_layers / self.block_size)))
        return replace(self.recipe, out=self.out / "work" / corpus / rung.name, corpus=corpus, seeds=self.seeds,
                       model=model, budget_tokens=rung.budget_tokens, mixers=MIXERS, progress=self.progress)


def parse_rungs(text: str) -> tuple[Rung, ...]:
    """'4x48:250k,8x64:500k' -> rungs (transformer blocks x width : training tokens, k/M suffixes allowed)."""
    rungs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            shape, tokens = part.split(":")
            layers, width = shape.lower().split("x")
            scale = {"k": 1_000, "m": 1_000_000}.get(tokens[-1].lower(), 1)
            number = tokens[:-1] if scale > 1 else tokens
            rungs.append(Rung(int(layers), int(width), int(float(number) * scale)))
        except ValueError:
            raise ValueError(f"rung {part!r}: expected BLOCKSxWIDTH:TOKENS, e.g. 8x64:500k") from None
    return tuple(rungs)


def parse_corpora(text: str) -> dict[str, tuple[int, ...] | None]:
    """'pydoc,bible:1+3' -> {'pydoc': None (every rung), 'bible': (1, 3)}."""
    out: dict[str, tuple[int, ...] | None] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, chosen = part.partition(":")
        try:
            out[name] = tuple(int(i) for i in chosen.split("+")) if chosen else None
        except ValueError:
            raise ValueError(f"corpus {part!r}: expected NAME or NAME:RUNG+RUNG, e.g. bible:1+3") from None
    if not out:
        raise ValueError("the ladder needs at least one corpus")
    return out


def parameter_count(model_cfg) -> int:
    from depthscope.models import DepthTransformer

    return sum(p.numel() for p in DepthTransformer(model_cfg).parameters())


# ------------------------------------------------------------------------------------------- per-seed stage


def _run_name(mixer: str, seed: int) -> str:
    return f"{mixer}_seed{seed}"


def seed_rows(analysis) -> list[dict]:
    """The claims' statistics of one seed's analysis (Block AttnRes vs residual), plus one `resets` row per
    Block AttnRes boundary (log of the input RMS at a block's first sublayer over the previous block's last)."""
    from depthscope.analyses import CLAIMS

    est = analysis.tables.get("estimates", pd.DataFrame(columns=["run", "statistic"]))
    cmp = analysis.tables.get("compare", pd.DataFrame(columns=["statistic"]))
    run = {"residual": analysis.baseline.name, "attnres": analysis.name}
    rows = []
    for key, claim in CLAIMS.items():
        if claim.scope == "diff":
            hit = cmp[cmp["statistic"] == claim.statistic]
            value_column = "diff"
        else:
            hit = est[(est["run"] == run[claim.scope]) & (est["statistic"] == claim.statistic)]
            value_column = "value"
        if len(hit):
            r = hit.iloc[0]
            rows.append(dict(claim=key, value=float(r[value_column]), ci_low=float(r["ci_low"]),
                             ci_high=float(r["ci_high"])))
    resets = analysis.tables.get("block_resets")
    if resets is not None:
        part = resets[(resets["quantity"] == "input_rms") & np.isfinite(resets["boundary"].astype(float))]
        rows += [dict(claim=RESETS.key, value=float(np.log(b)), ci_low=np.nan, ci_high=np.nan)
                 for b in part["boundary"].astype(float)]
    return rows


def run_rung(cfg: LadderConfig, corpus: str, index: int, rung: Rung, corpus_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train, record and analyse every seed of both mixers at one rung; returns (losses, per-seed claim rows)."""
    from depthscope.analyses import analyze, write
    from depthscope.reproduce import record_one, train_one

    rc = cfg.reproduce_config(corpus, rung)
    rc.out.mkdir(parents=True, exist_ok=True)
    params = parameter_count(rc.model_config("residual"))
    meta = dict(corpus=corpus, rung=index, rung_name=rung.name, n_layers=rung.n_layers,
                sublayers=2 * rung.n_layers, d_model=rung.d_model, n_blocks=rc.model.n_blocks, params=params,
                tokens=rc.train_config(cfg.seeds[0]).tokens)
    losses, rows = [], []
    for seed in cfg.seeds:
        runs = {}
        for mixer in MIXERS:
            checkpoint = rc.out / "checkpoints" / _run_name(mixer, seed)
            losses.append({**meta, **train_one(rc, mixer, seed, checkpoint, corpus_data)})
            runs[mixer] = record_one(rc, checkpoint, corpus, rc.out / "runs" / _run_name(mixer, seed))
        folder = rc.out / "analysis" / f"seed{seed}"
        stamp = {m: json.loads((runs[m] / "recorded_from.json").read_text()) for m in MIXERS}
        cached = folder / "ladder_rows.csv"
        if (folder / "stamp.json").exists() and json.loads((folder / "stamp.json").read_text()) == stamp:
            seed_frame = pd.read_csv(cached)
        else:
            analysis = analyze(runs["block_attnres"], baseline=runs["residual"])  # no causal check
            write(analysis, folder)
            seed_frame = pd.DataFrame(seed_rows(analysis))
            seed_frame.to_csv(cached, index=False)
            (folder / "stamp.json").write_text(json.dumps(stamp))
        rows.append(seed_frame.assign(seed=seed, **meta))
    return pd.DataFrame(losses), pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------------------------------- combining


@dataclass(frozen=True)
class ResetsClaim:
    """Block AttnRes's saw-tooth (the paper: the hidden state's magnitude resets at each block boundary)."""
    key: str = "resets"
    statistic: str = "log_boundary_ratio"
    scope: str = "attnres"
    threshold: float = 0.0
    side: str = "<"
    text: str = "Block AttnRes's input RMS drops at block boundaries (saw-tooth: mean log first-of-block / last-of-previous < 0)"


RESETS = ResetsClaim()


def ladder_claims() -> dict:
    from depthscope.analyses import CLAIMS

    return {**CLAIMS, RESETS.key: RESETS}


def combine_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (corpus, rung, claim): mean over seeds and a 95 % interval (module docstring), the verdict."""
    from depthscope.analyses import seed_interval
    from depthscope.analyses import verdict

    claims = ladder_claims()
    keys = ["corpus", "rung", "rung_name", "n_layers", "sublayers", "d_model", "n_blocks", "params", "tokens", "claim"]
    out = []
    for key, group in rows.groupby(keys, sort=False):
        record = dict(zip(keys, key))
        claim = claims[record["claim"]]
        if claim.key == RESETS.key:
            value, low, high = seed_interval(group["value"])
            se = (high - value) / _t_quantile(len(group)) if np.isfinite(high) else np.nan
            extra = dict(boundaries=len(group), resets=int((group["value"] < 0).sum()))
        else:
            v = group["value"].to_numpy(float)
            se_within = ((group["ci_high"] - group["ci_low"]).to_numpy(float) / (2 * Z95))
            n = len(v)
            between = v.var(ddof=1) if n > 1 else 0.0
            # a recording too short for a bootstrap interval adds nothing within; one seed without one: no interval
            within = float(np.mean(se_within[np.isfinite(se_within)] ** 2)) if np.isfinite(se_within).any() else (
                0.0 if n > 1 else np.nan)
            se = float(np.sqrt(within / n + between / n))
            value = float(v.mean())
            low, high = value - Z95 * se, value + Z95 * se
            extra = dict(boundaries=np.nan, resets=np.nan)
        out.append({**record, "statistic": claim.statistic, "seeds": group["seed"].nunique(), "value": value,
                    "ci_low": low, "ci_high": high, "se": se, **extra,
                    "verdict": verdict(low, high, claim.threshold, claim.side)})
    return pd.DataFrame(out)


def _t_quantile(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1))


def trends(table: pd.DataFrame) -> pd.DataFrame:
    """Per (corpus, claim): the verdict at every rung, the change bottom -> top with a 95 % interval, and the
    outcome: holds (at every rung), does not hold (at every rung, no trend), trend towards / away from the paper."""
    claims = ladder_claims()
    out = []
    for (corpus, key), group in table.groupby(["corpus", "claim"], sort=False):
        group = group.sort_values("params")
        claim = claims[key]
        first, last = group.iloc[0], group.iloc[-1]
        change = float(last["value"] - first["value"]) if len(group) > 1 else np.nan
        half = Z95 * float(np.hypot(first["se"], last["se"])) if len(group) > 1 else np.nan
        low, high = change - half, change + half
        towards = 1 if claim.side == ">" else -1  # the sign of a move towards the paper's side
        signed = sorted((low * towards, high * towards))  # the change's interval, positive = towards the paper
        if len(group) < 2 or not np.isfinite(half):
            direction = "no trend measurable"
        elif signed[0] > 0:
            direction = "towards the paper"
        elif signed[1] < 0:
            direction = "away from the paper"
        else:
            direction = "no clear trend"
        verdicts = list(group["verdict"])
        if all(v == "holds" for v in verdicts):
            outcome = "holds"
        elif direction == "towards the paper":
            outcome = "trend towards the paper"
        elif direction == "away from the paper":
            outcome = "trend away from the paper"
        elif all(v == "does not hold" for v in verdicts):
            outcome = "does not hold"
        else:
            outcome = "mixed / inconclusive"
        out.append(dict(corpus=corpus, claim=key, statistic=claim.statistic, rungs=len(group),
                        verdicts=" / ".join(verdicts), first=float(first["value"]), last=float(last["value"]),
                        change=change, change_low=low, change_high=high, direction=direction, outcome=outcome))
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------- driver


def write_settings(cfg: LadderConfig) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    # the recipe less what each rung or job sets (shape, tokens, steps and schedule, seed, corpus, mixers)
    model = {k: v for k, v in asdict(cfg.recipe.model).items()
             if k not in ("n_layers", "d_model", "n_blocks", "mixer", "mhc", "max_seq_len")}
    train = {k: v for k, v in asdict(cfg.recipe.train).items()
             if k not in ("steps", "warmup_steps", "eval_every", "seed", "save_every")}
    recipe = dict(model=model, train=train, record_tokens=cfg.recipe.record_tokens)
    settings = dict(rungs=[r.spec() for r in cfg.rungs], corpora={k: list(v) if v else "all" for k, v in
                                                                   cfg.corpora.items()},
                    seeds=list(cfg.seeds), block_size=cfg.block_size, mixers=list(MIXERS), recipe=recipe)
    (cfg.out / "settings.json").write_text(json.dumps(settings, indent=2))


def ladder(cfg: LadderConfig) -> Path:
    """Run (or resume) the whole ladder and write the tables, figures and report; returns report.md's path."""
    from tqdm.auto import tqdm

    from depthscope.models import load_corpus

    from depthscope.ladder_report import write_report

    write_settings(cfg)
    # Smallest rungs first, every corpus, so that an interrupted ladder already spans the most scales.
    jobs = sorted(((corpus, i, rung) for corpus in cfg.corpora for i, rung in cfg.rungs_of(corpus)),
                  key=lambda job: job[1])
    losses, rows = [], []
    bar = tqdm(jobs, desc="ladder", unit="rung", disable=not cfg.progress, dynamic_ncols=True)
    loaded: dict[str, object] = {}
    report = cfg.out / "report.md"
    for done, (corpus, i, rung) in enumerate(bar, start=1):
        bar.set_postfix_str(f"{corpus} {rung.name}")
        if corpus not in loaded:
            loaded[corpus] = load_corpus(corpus, seed=0)
        loss, seed_frame = run_rung(cfg, corpus, i, rung, loaded[corpus])
        losses.append(loss)
        rows.append(seed_frame)
        losses_frame = pd.concat(losses, ignore_index=True)
        seeds_frame = pd.concat(rows, ignore_index=True)
        losses_frame.to_csv(cfg.out / "losses.csv", index=False)
        seeds_frame.to_csv(cfg.out / "ladder_seeds.csv", index=False)
        # the report after every rung, so that a ladder stopped part-way leaves its results so far
        report = write_report(cfg, losses_frame, seeds_frame, progress=(done, len(jobs)))
    bar.close()
    return report
