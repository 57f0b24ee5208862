"""The one vocabulary of depthscope: the names every layer uses for sublayers, sources, tokens, statistics and
mixer kinds, made and parsed here only. Importable without torch (plain Python and numpy), so that the analyses
and the dashboard can read a run on a machine without it.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

# ------------------------------------------------------------------------------------------- sublayers and sources
# (labels of sublayers and of the sources a sublayer draws on: made and parsed here)
#
# Sublayers (1-based l; L = 2 * n_layers): attn1, mlp1, attn2, mlp2, ...; "final" is the final mixer L + 1 feeding
# the LM head. Sources, and the unit their distance is counted in:
#   emb          the embedding (sublayer 0, block b_0)                       every kind
#   attn{i}      the output of sublayer 2i - 1                               sublayers
#   mlp{i}       the output of sublayer 2i                                   sublayers
#   sub{i}       the output of sublayer i (probe.Adapter's generic labels)    sublayers
#   layer{j}     DenseFormer: the stream leaving transformer block j         sublayers (after sublayer 2j)
#   block{m}     Block AttnRes: the completed block m                        blocks
#   partial      Block AttnRes: the current block's partial sum              blocks
#   stream{k}    Hyper-Connections: a parallel residual stream (no depth)    none

EMBEDDING = "emb"
FINAL = "final"
PARTIAL = "partial"
ATTN, MLP = "attn", "mlp"
UNITS = ("sublayers", "blocks", "none")


def sublayer_label(index: int) -> str:
    """Label of sublayer `index` (1-based): attn1, mlp1, attn2, ...; 0 is the embedding."""
    if index == 0:
        return EMBEDDING
    return f"{ATTN if index % 2 else MLP}{(index + 1) // 2}"


def axis_label(index: int, n_sublayers: int) -> str:
    """Label of position `index` of a model's sublayer axis: attn1, mlp1, ... for 1..L and 'final' for L + 1."""
    return FINAL if index > n_sublayers else sublayer_label(index)


def sublayer_kind(label: str) -> str:
    """attn / mlp / final of a sublayer label (any other label is its own kind)."""
    if label.startswith(ATTN):
        return ATTN
    if label.startswith(MLP):
        return MLP
    return label


def sublayer_kinds(labels: Sequence[str]) -> list[str]:
    """sublayer_kind of each label."""
    return [sublayer_kind(label) for label in labels]


def full_sources(sublayer: int) -> list[str]:
    """["emb", "attn1", "mlp1", ...]: the embedding and every sublayer output before `sublayer` (Full AttnRes, the
    residual baseline)."""
    return [sublayer_label(i) for i in range(sublayer)]


def generic_sources(sublayer: int) -> list[str]:
    """["emb", "sub1", ..., "sub{l-1}"]: Full AttnRes sources with generic labels (probe.Adapter's default)."""
    return [EMBEDDING] + [f"sub{i}" for i in range(1, sublayer)]


def block_sources(completed: int, with_partial: bool) -> list[str]:
    """Block AttnRes sources: emb, the completed blocks block1 .. block{completed - 1} (the embedding counts as the
    first completed block), and the partial sum when there is one."""
    return [EMBEDDING] + [f"block{n}" for n in range(1, completed)] + ([PARTIAL] if with_partial else [])


def layer_sources(n_sources: int) -> list[str]:
    """DenseFormer sources: emb, layer1 .. layer{n_sources - 1} (the streams leaving each transformer block)."""
    return [EMBEDDING] + [f"layer{j}" for j in range(1, n_sources)]


def stream_sources(n_streams: int) -> list[str]:
    """Hyper-Connection sources: stream1 .. stream{n_streams}."""
    return [f"stream{k}" for k in range(1, n_streams + 1)]


@dataclass(frozen=True)
class Source:
    """A parsed source label: `family` (embedding, sublayer, layer, block, partial, stream) and its number (the
    sublayer for embedding (0) and sublayer, the block for block and layer, the stream for stream; 0 for partial)."""

    family: str
    number: int

    @property
    def sublayer(self) -> int | None:
        """The sublayer whose output it is, for sources counted in sublayers (a layer{j} stream leaves after 2j)."""
        if self.family in ("embedding", "sublayer"):
            return self.number
        if self.family == "layer":
            return 2 * self.number
        return None


BLOCK_LABEL = re.compile(r"^block(\d+)$")
_SOURCE_PATTERNS = (
    (re.compile(r"^attn(\d+)$"), "sublayer", lambda n: 2 * n - 1),
    (re.compile(r"^mlp(\d+)$"), "sublayer", lambda n: 2 * n),
    (re.compile(r"^sub(\d+)$"), "sublayer", lambda n: n),
    (re.compile(r"^layer(\d+)$"), "layer", lambda n: n),
    (BLOCK_LABEL, "block", lambda n: n),
    (re.compile(r"^stream(\d+)$"), "stream", lambda n: n),
)


def parse_source(label: str) -> Source | None:
    """The Source a label names, or None for a label outside the vocabulary."""
    if label == EMBEDDING:
        return Source("embedding", 0)
    if label == PARTIAL:
        return Source("partial", 0)
    for pattern, family, number in _SOURCE_PATTERNS:
        m = pattern.match(label)
        if m:
            return Source(family, number(int(m.group(1))))
    return None


def source_sublayer(label: str) -> int | None:
    """The sublayer whose output a sublayer-unit label names (emb -> 0, layer{j} -> 2j), else None."""
    source = parse_source(label)
    return None if source is None else source.sublayer


def block_number(label: str) -> int | None:
    """m of a completed-block label block{m}, else None."""
    source = parse_source(label)
    return source.number if source is not None and source.family == "block" else None


def unit_of_labels(source_labels: Sequence[Sequence[str]]) -> str:
    """The unit of distance the labels imply: 'blocks' when any is block{m} / partial, 'none' for stream{k},
    else 'sublayers' (for runs whose mixer kind is not known)."""
    families = {s.family for labels in source_labels for s in map(parse_source, labels) if s is not None}
    if families & {"block", "partial"}:
        return "blocks"
    if "stream" in families:
        return "none"
    return "sublayers"


# ------------------------------------------------------------------------------------------------------- mixer kinds
# (what a mixer kind allows: non-negative weights, the unit of distance, the causal check; declared once per kind)

BASELINE, ATTNRES, PEER, FOREIGN = "baseline", "attnres", "peer", "foreign"


@dataclass(frozen=True)
class MixerKind:
    """What a mixer kind allows, declared once here and written into each run's manifest (model.properties).

    name: the mixer (ModelConfig.mixer), or the class name of a model probed through an adapter.
    nonnegative: its recorded weights are >= 0 (softmax, or the residual's ones), so shares need no |alpha|.
    unit: how far back a source lies: "sublayers", "blocks" or "none" (parallel streams have no depth).
    causal_check: source ablation (analyses.causal) applies to its checkpoints.
    additive: a sublayer's input is the plain sum of its sources (the residual stream): ablating a source
        subtracts it instead of zeroing its weight.
    weights_give_mixing: the recorded weights determine the effective mixing matrix M (Hyper-Connections' stream
        mixing is not recorded: M comes from the checkpoint).
    family: "baseline" (the standard residual), "attnres", "peer" (other depth routing) or "foreign" (a model
        probed through an adapter).
    options: ModelConfig fields only this kind reads.
    rank: the order a first look prefers (AttnRes first, the baseline last, foreign models after all).
    """

    name: str
    nonnegative: bool = False
    unit: str = "sublayers"
    causal_check: bool = False
    additive: bool = False
    weights_give_mixing: bool = True
    family: str = FOREIGN
    options: tuple[str, ...] = ()
    rank: int = 5

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"mixer kind {self.name!r}: unit {self.unit!r} is not one of {UNITS}")

    def to_dict(self) -> dict:
        return {**asdict(self), "options": list(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MixerKind":
        """The kind a manifest wrote (keys this version does not know are ignored; missing ones take the
        defaults of a foreign model)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "options" in values:
            values["options"] = tuple(values["options"])
        return cls(**values)


MIXER_KINDS: dict[str, MixerKind] = {
    kind.name: kind
    for kind in (
        MixerKind("residual", nonnegative=True, unit="sublayers", causal_check=True, additive=True,
                  family=BASELINE, rank=4),
        MixerKind("full_attnres", nonnegative=True, unit="sublayers", causal_check=True, family=ATTNRES, rank=1),
        MixerKind("block_attnres", nonnegative=True, unit="blocks", causal_check=True, family=ATTNRES,
                  options=("n_blocks", "two_phase"), rank=0),
        MixerKind("denseformer", nonnegative=False, unit="sublayers", family=PEER, rank=2),
        MixerKind("hyper", nonnegative=False, unit="none", weights_give_mixing=False, family=PEER,
                  options=("hyper_streams", "mhc", "sinkhorn_iters"), rank=3),
    )
}
MIXERS = tuple(MIXER_KINDS)  # the mixers of depthscope's model family (ModelConfig.mixer)


def kind_named(name: str) -> MixerKind:
    """The declared kind of one of depthscope's mixers; ValueError for any other name."""
    try:
        return MIXER_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown mixer {name!r}; expected one of {MIXERS}") from None


def foreign_kind(name: str | None, source_labels: Sequence[Sequence[str]]) -> MixerKind:
    """The kind of a model that is not one of depthscope's mixers (probed through an adapter, or not named): signed
    weights as far as anyone knows, no causal check, the unit its source labels imply."""
    return MixerKind(str(name or "unknown"), unit=unit_of_labels(source_labels))


def kind_of_model(model: Mapping[str, Any] | None, source_labels: Sequence[Sequence[str]] = ()) -> MixerKind:
    """The kind of a run from its manifest's `model` entry: the properties written when it was recorded; for runs
    recorded before they were written (schema 2), the table above by mixer name; else foreign_kind."""
    model = model or {}
    written = model.get("properties")
    if isinstance(written, Mapping):
        return MixerKind.from_dict(written)
    name = model.get("kind")
    if name in MIXER_KINDS:
        return MIXER_KINDS[name]
    return foreign_kind(name, source_labels)


# ------------------------------------------------------------------------------------------------------- token labels
# How a token id is shown wherever depthscope shows a token (Routing, Tokens, tables, export) and what the
# dashboard's text filter matches.

BYTE_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def byte_token_label(token: int) -> str:
    """A byte token's label: printable ASCII as itself, newline, tab and carriage return as \\n, \\t, \\r, any other
    byte as <xx> (hex)."""
    token = int(token)
    char = chr(token)
    if token < 128 and char.isprintable():
        return char
    return BYTE_ESCAPES.get(char, f"<{token:02x}>")


def token_label(token: int, vocabulary: Sequence[str] | None = None, byte_level: bool = True) -> str:
    """The label of token id `token`: THE definition used by the reader, the analyses and the dashboard.

    Byte-level runs (no vocabulary): byte_token_label. With a vocabulary (any other tokenizer): the token's text
    with the same escapes and <xx> for any other unprintable character, so a subword keeps its leading space
    (" the"); an empty text or an id outside the vocabulary is <id>. Ids of an unknown tokenizer (neither bytes
    nor a vocabulary: byte_level=False) are <id>. -1 (no token recorded) is "".
    """
    if token < 0:
        return ""
    if vocabulary is None:
        return byte_token_label(token) if byte_level and token < 256 else f"<{token}>"
    if token >= len(vocabulary) or not vocabulary[token]:
        return f"<{token}>"
    return "".join(c if c.isprintable() else BYTE_ESCAPES.get(c, f"<{ord(c):02x}>") for c in vocabulary[token])


def token_labels(ids: Sequence[int], vocabulary: Sequence[str] | None = None, byte_level: bool = True) -> list[str]:
    """token_label of each id."""
    return [token_label(int(t), vocabulary, byte_level) for t in ids]


# ------------------------------------------------------------------------------------------------------- statistics
# (the names of the routing statistics, per (token, sublayer) and aggregated)
# Per (token, sublayer) routing statistics (definitions: depthscope.analyses.routing), in the order tables list
# them; the aggregate tables report their means over tokens under the same names.
TOKEN_STATISTICS = ("locality", "long_range", "embedding", "entropy", "norm_entropy", "eff_sources")
# The ones the dashboard's token views offer, in the order offered (its default: the first that varies);
# entropy is offered as its normalised form.
SHOWN_TOKEN_STATISTICS = ("long_range", "embedding", "norm_entropy", "locality", "eff_sources")

# How a statistic or recorded quantity is named in figures, controls and captions (the code name when none is set).
STATISTIC_LABELS = {
    "long_range": "long-range mass",
    "embedding": "embedding weight",
    "norm_entropy": "normalised entropy",
    "locality": "locality (nearest-source weight)",
    "eff_sources": "effective number of sources",
    "input_rms": "RMS of sublayer input",
    "output_rms": "RMS of sublayer output",
    "residual_rms": "RMS of residual stream",
    "grad_rms": "RMS of dLoss/dh",
    "mean": "mean weight",
}


def statistic_label(name: str) -> str:
    """The words for statistic `name` ("long_range" -> "long-range mass")."""
    return STATISTIC_LABELS.get(name, name)
