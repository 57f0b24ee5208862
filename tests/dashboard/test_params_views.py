"""Controls that do what they show, checked on the views behind them with the demo bundle: one rule per URL
parameter / number box, 0 kept in the URL, defaults that show something, the suggested run and baseline,
stable run colours, trainings named by name."""
from __future__ import annotations

import pytest

from depthscope.dashboard import views
from depthscope.dashboard.components import make_search, parse_search
from depthscope.dashboard.params import ParamError, parse, problems


@pytest.mark.parametrize("key,value,text", [
    ("start", "-4", "From token must be a whole number of at least 0, got '-4'"),
    ("wlen", "-1", "Window length must be a whole number from 1 to 4096"),
    ("wlen", "100000", "Window length must be a whole number from 1 to 4096"),
    ("wlen", 0, "Window length must be"),
    ("k", "-1", "Long-range k must be a number of at least 0"),
    ("step", "abc", "Training step must be a whole number"),
    ("step", "1.5", "Training step must be a whole number"),
    ("doc", "nan", "Document must be"),
])
def test_a_value_breaking_its_rule_is_refused_with_the_control_named(key, value, text):
    with pytest.raises(ParamError, match=text.replace("(", r"\(").replace(")", r"\)")) as err:
        parse({key: value}, key)
    assert err.value.key == key
    assert problems({key: value, "run": "x"}) == {key: str(err.value)}


def test_good_values_and_zero_pass_and_stay_in_the_url():
    assert parse({"step": "0"}, "step") == 0 and parse({"k": "0.5"}, "k") == 0.5 and parse({}, "wlen", 512) == 512
    search = make_search({"step": 0, "k": 0, "doc": 0, "run": "a", "empty": "", "none": None, "off": False})
    assert parse_search(search) == {"step": "0", "k": "0", "doc": "0", "run": "a"}


def test_tokens_window_refuses_instead_of_clamping(demo_catalogue):
    for bad in ({"wlen": "100000"}, {"wlen": "0"}, {"wstart": "-5"}, {"wstart": "99999"}):
        with pytest.raises(ParamError):
            views.token_text(demo_catalogue, {"run": "block_attnres", **bad})
    with pytest.raises(ParamError, match="From token"):
        views.routing(demo_catalogue, {"run": "block_attnres", "start": "-4"})


def test_tokens_default_statistic_shows_something(demo_catalogue):
    block = demo_catalogue.ready_data("block_attnres")
    stat = views.token_stat(block, {"run": "block_attnres"})
    assert stat != "long_range"  # exactly 0 for every Block AttnRes token at the middle sublayer
    assert block.stat_kinds(0, 512, views.slot_of(block, {}))[stat] == "varies"
    mhc = demo_catalogue.ready_data("mhc")
    assert mhc.stat_kinds(0, 512, views.slot_of(mhc, {}))[views.token_stat(mhc, {"run": "mhc"})] != "undefined"


def test_mhc_long_range_says_why_and_names_what_exists(demo_catalogue):
    mhc = demo_catalogue.ready_data("mhc")
    with pytest.raises(ParamError, match="no depth distance") as err:
        views.token_stat(mhc, {"run": "mhc", "stat": "long_range"})
    assert "normalised entropy" in str(err.value) and "long-range mass, " not in str(err.value).split("Choose")[1]


def test_first_visit_suggests_block_attnres_and_the_matching_baseline(demo_catalogue):
    from depthscope.dashboard.app import with_suggestions

    assert with_suggestions(demo_catalogue, {}) == {"run": "block_attnres", "baseline": "residual"}
    assert with_suggestions(demo_catalogue, {"run": "mhc"})["baseline"] == "residual"  # same shape, residual
    assert with_suggestions(demo_catalogue, {"run": "mhc", "baseline": "full_attnres"})["baseline"] == "full_attnres"
    assert demo_catalogue.suggest_baseline("residual") is None  # no other residual run of that shape


def test_signal_keeps_each_runs_colour_and_names_runs_lacking_the_quantity(demo_catalogue):
    params = {"run": "block_attnres", "baseline": "residual", "others": "denseformer"}
    colours = {}
    for quantity in ("output_rms", "residual_rms"):
        fig = views.signal(demo_catalogue, {**params, "quantity": quantity})
        for trace in fig.data:
            if trace.mode == "lines+markers" and trace.showlegend is not False:
                colours.setdefault(trace.legendgroup, set()).add(trace.line.color)
    assert set(colours) == {"block_attnres", "residual", "denseformer"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert views.signal_missing(demo_catalogue, {**params, "quantity": "residual_rms"}) == ["block_attnres"]
    assert views.signal_missing(demo_catalogue, {**params, "quantity": "output_rms"}) == []


def test_evolution_names_the_training_and_validates_step(demo_catalogue):
    training, infos, trainings = views.evolution_runs(demo_catalogue, {"run": "block_attnres"})
    label = views.training_label(training, infos)
    assert "../" not in label and label.startswith("block_attnres · ") and "steps 0–488" in label
    fig = views.evolution_routing(demo_catalogue, {"training": training, "step": "0"})
    assert "step 0 " in fig.layout.title.text and "../" not in fig.layout.title.text
    for bad in ("abc", "1.5", "7"):
        with pytest.raises(ParamError, match="Training step"):
            views.evolution_runs(demo_catalogue, {"step": bad})
    with pytest.raises(ParamError, match="Training must be one of"):
        views.evolution_runs(demo_catalogue, {"training": "nope"})


def test_statistics_page_draws_on_a_run_with_sinks(demo_catalogue):
    """The Statistics table of depth sinks (the dash 4.4 `id=None` crash) is built for a run that has sinks."""
    from depthscope.dashboard.pages.statistics import table

    stats = views.routing_stats(demo_catalogue, {"run": "block_attnres"})
    sinks = stats.sources[stats.sources["is_sink"]]
    assert len(sinks)  # the demo run has sinks: the path that broke is taken
    built = table(sinks, ("sublayer_label", "source_label", "mean_share"))
    assert not hasattr(built, "id") or built.id is not None
