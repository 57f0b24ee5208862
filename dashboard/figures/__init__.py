"""Figure builders: one function per figure, each returning a plotly.graph_objects.Figure.

The app, notebooks and `depthscope export` all draw with these. Inputs are tidy pandas frames (from
depthscope.analyses or dashboard.data), never runs, so every builder can be called on hand-made data.
"""
from .evolution import statistic_over_steps
from .gradients import gradients_vs_depth, uniformity_over_steps
from .ladder import ladder_lines
from .mixing import mixing_matrices
from .routing import cell_distribution, routing_difference, routing_heatmap
from .signal import signal_vs_depth
from .statistics import ablation_vs_mass, jump_histogram, long_range_per_sublayer, sinks
from .style import empty_figure
from .sweep import sweep_lines
from .tokens import norm_profile, token_heatmap, token_text

__all__ = [
    "ablation_vs_mass", "cell_distribution", "empty_figure", "gradients_vs_depth", "jump_histogram", "ladder_lines",
    "long_range_per_sublayer", "mixing_matrices", "norm_profile", "routing_difference", "routing_heatmap", "signal_vs_depth",
    "sinks", "statistic_over_steps", "sweep_lines", "token_heatmap", "token_text", "uniformity_over_steps",
]
