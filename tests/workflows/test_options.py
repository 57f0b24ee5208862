"""Command-line options derived from the config dataclasses (depthscope.options): each option's flag, type,
default, help and choices come from the field, and the parsed options build the config back; the commands'
options give exactly the workflows' default configs; one budget-to-steps function."""
from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from depthscope.cli import build_parser
from depthscope.models.config import ModelConfig, option
from depthscope.models.trainer import TrainConfig, steps_for_budget, warmup_for
from depthscope.options import add_options, build, int_list, token_count

DEMO = Path(__file__).resolve().parents[2] / "assets" / "demo"


@dataclass
class Example:
    count: int = option(3, "how many")
    ratio: float = option(0.5, "a share", flag="--share")
    kind: str = option("a", "which kind", choices=("a", "b"))
    seeds: tuple[int, ...] = option((0, 1), "comma-separated seeds")
    limit: int | None = option(None, "an upper bound (default: none)")
    verbose: bool = option(False, "say more")
    exact: bool = option(True, "the exact form")
    progress: bool = option(True, "no progress bar", flag="--no-progress")
    budget: int = option(1000, "tokens", parse=token_count)
    hidden: int = 7  # no help text: no option


def parser_of(**kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="x")
    add_options(parser, Example, **kwargs)
    return parser


def test_fields_become_options_and_back():
    parser = parser_of()
    assert build(Example, parser.parse_args([])) == Example()
    args = parser.parse_args(["--count", "5", "--share", "0.25", "--kind", "b", "--seeds", "2,3,4", "--limit", "9",
                              "--verbose", "--no-exact", "--no-progress", "--budget", "2e3"])
    assert build(Example, args) == Example(count=5, ratio=0.25, kind="b", seeds=(2, 3, 4), limit=9, verbose=True,
                                           exact=False, progress=False, budget=2000)
    assert not hasattr(args, "hidden")
    with pytest.raises(SystemExit):
        parser.parse_args(["--kind", "c"])  # the field's choices
    with pytest.raises(SystemExit):
        parser.parse_args(["--seeds", "one"])


def test_help_says_each_default_once():
    text = parser_of().format_help()
    assert "how many (default: 3)" in text and "comma-separated seeds (default: 0,1)" in text
    assert "an upper bound (default: none)" in text and "(default: None)" not in text
    assert "--share SHARE" in text and "{a,b}" in text


def test_defaults_and_overrides_per_command():
    parser = parser_of(defaults={"count": 10}, overrides={"ratio": {"help": "the command's own words"}})
    args = parser.parse_args([])
    assert args.count == 10 and "the command's own words" in parser.format_help()
    base = Example(count=1, hidden=99)
    assert build(Example, parser.parse_args(["--verbose"]), base=base, budget=5) == Example(
        count=10, verbose=True, hidden=99, budget=5)


def test_int_list_and_token_count():
    assert int_list("0, 1,2,") == (0, 1, 2) and token_count("3e5") == 300_000 and token_count("1000") == 1000


def test_one_budget_to_steps_function():
    assert steps_for_budget(1_000_000, 16, 128) == 488 and steps_for_budget(10, 16, 128) == 1
    assert warmup_for(488) == 48 and warmup_for(5) == 1
    cfg = TrainConfig(batch_size=8, seq_len=32).with_budget(8 * 32 * 6, seed=3)
    assert (cfg.steps, cfg.warmup_steps, cfg.seed, cfg.tokens) == (6, 1, 3, 8 * 32 * 6)


def test_train_command_builds_the_configs_it_always_built(tmp_path):
    from depthscope.commands import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path)])
    assert build(TrainConfig, args, warmup_steps=warmup_for(args.steps)) == TrainConfig()
    model = build(ModelConfig, args, vocab_size=256, max_seq_len=256, two_phase=True)
    assert model == ModelConfig(mixer="block_attnres")
    args = parser.parse_args(["--out", str(tmp_path), "--threads", "2", "--streams", "3", "--mixer", "hyper", "--mhc"])
    assert build(TrainConfig, args).num_threads == 2
    assert build(ModelConfig, args, two_phase=True).hyper_streams == 3 and build(ModelConfig, args).mhc


def test_reproduce_and_sweep_options_give_the_default_configs(tmp_path):
    from depthscope.commands.reproduce import _config
    from depthscope.reproduce import ReproduceConfig
    from depthscope.sweep import SweepConfig

    parser = build_parser()
    args = parser.parse_args(["reproduce", "--out", str(tmp_path)])
    assert _config(args, out=tmp_path) == ReproduceConfig(out=tmp_path)
    args = parser.parse_args(["reproduce", "--out", str(tmp_path), "--layers", "4", "--lr", "0.01", "--budget", "1e5",
                              "--seeds", "4,5", "--mixers", "residual,mhc", "--no-progress"])
    cfg = _config(args, out=tmp_path)
    assert (cfg.model.n_layers, cfg.train.lr, cfg.budget_tokens, cfg.seeds, cfg.mixers, cfg.progress) == (
        4, 0.01, 100_000, (4, 5), ("residual", "mhc"), False)
    assert cfg.model.n_blocks == ReproduceConfig(out=None).model.n_blocks  # the command's template, not ModelConfig's
    text = parser.parse_args(["sweep", "--out", "x"])._parser.format_help()
    assert "(default: 300000)" in text and "(default: 2,4,8,16)" in text


def test_reproduce_trains_with_the_demo_bundles_recipe():
    """The training configs `reproduce` builds today are those the bundled demo checkpoints were trained with
    (the resume check compares them), so one steps-from-budget function changed nothing."""
    import json

    from depthscope.models.checkpoint import read_checkpoint_info
    from depthscope.reproduce import RECALL_NAME, ReproduceConfig

    settings = json.loads((DEMO / "settings.json").read_text())
    cfg = ReproduceConfig(out=DEMO, budget_tokens=settings["budget_tokens"],
                          recall_budget_tokens=settings["recall_budget_tokens"])
    for name, every, budget in (("residual", 0, None), ("block_attnres", cfg.steps // 4, None),
                                (RECALL_NAME, 0, cfg.recall_budget_tokens)):
        training = read_checkpoint_info(DEMO / "checkpoints" / name).training
        assert training["train_config"] == cfg.train_config(0, budget_tokens=budget, save_every=every).to_dict()


def test_top_level_help_does_not_import_torch(clean_env):
    code = ("import sys\nfrom depthscope.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'depthscope --help imported torch'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "reproduce" in done.stdout and "sweep" in done.stdout


def test_the_layers_do_not_import_the_workflows():
    """Arrows go models <- probe <- analyses <- dashboard <- CLI/workflows: no layer names a workflow module."""
    root = Path(__file__).resolve().parents[2]
    workflows = ("depthscope.record", "depthscope.causal_check", "depthscope.commands", "depthscope.cli",
                 "depthscope.reproduce", "depthscope.sweep", "depthscope.ladder", "depthscope.options")
    offenders = []
    for folder in ("models", "probe", "analyses", "dashboard"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            offenders += [f"{path.relative_to(root)}: {name}" for name in workflows
                          if f"from {name} import" in text or f"import {name}\n" in text]
    assert not offenders
