"""Hugging Face `transformers` decoder-only models: the residual stream as a baseline (no depth weights).

Two namings are recognised, in any model that holds a list of decoder layers:
  Llama / Qwen / Mistral family   layers.{i}.input_layernorm, self_attn, post_attention_layernorm, mlp
  GPT-2                           h.{i}.ln_1, attn, ln_2, mlp
Each decoder layer is two sublayers: attention (h_l = the input of the pre-attention norm, f_l = the attention's
output) then MLP (h_l = the input of the pre-MLP norm, f_l = the MLP's output); the gradient norm of each takes
its norm's and its block's parameters. Layers with extra norms around their sublayers (Gemma's
pre/post_feedforward_layernorm) read differently and are not claimed.
"""
from __future__ import annotations

from torch import nn

from ..adapter import Adapter, Input, Output, Sublayer

# naming -> (pre-attention norm, attention, pre-MLP norm, MLP)
NAMINGS = {
    "llama": ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp"),
    "gpt2": ("ln_1", "attn", "ln_2", "mlp"),
}
NOT_PRE_NORM = ("pre_feedforward_layernorm", "post_feedforward_layernorm")


def _naming(layer: nn.Module) -> str | None:
    children = dict(layer.named_children())
    if any(name in children for name in NOT_PRE_NORM):
        return None
    for naming, parts in NAMINGS.items():
        if all(part in children for part in parts):
            return naming
    return None


def _decoder_layers(model: nn.Module) -> tuple[str, str, int] | None:
    """(name of the ModuleList of decoder layers, naming, number of layers) of the first list that fits."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            namings = {_naming(layer) for layer in module}
            if len(namings) == 1 and None not in namings:
                return name, namings.pop(), len(module)
    return None


def detect(model: nn.Module) -> Adapter | None:
    if not type(model).__module__.startswith("transformers."):
        return None
    found = _decoder_layers(model)
    if found is None:
        return None
    name, naming, n_layers = found
    config = getattr(model, "config", None)
    d_model = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    return hf_adapter(name, naming, n_layers, d_model, f"transformers {type(model).__name__}")


def hf_adapter(layers: str, naming: str, n_layers: int, d_model: int | None = None, name: str = "") -> Adapter:
    """The baseline adapter of `n_layers` decoder layers in the ModuleList `layers` with `naming` (NAMINGS)."""
    attn_norm, attn, mlp_norm, mlp = (f"{layers}.{{i}}.{part}" for part in NAMINGS[naming])
    pattern = [
        Sublayer("attn{n}", h=Input(attn_norm), f=Output(attn, 0), params=(attn_norm, attn)),
        Sublayer("mlp{n}", h=Input(mlp_norm), f=Output(mlp), params=(mlp_norm, mlp)),
    ]
    return Adapter(pattern=pattern, repeat=n_layers, labels="labels", shift_labels=True, d_model=d_model, name=name)
