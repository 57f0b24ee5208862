"""The view parameters a URL query (or a control of the same name) carries, and the one rule each must obey.

Typed values and URL values go through the same `parse`: a value that breaks its rule is refused with one
message naming the control and the allowed range (shown next to the control, and by the view instead of a
figure), never silently replaced by a default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .data import WINDOW_MAX, FilterError


class ParamError(FilterError):
    """A view parameter that breaks its rule; `key` names it."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


@dataclass(frozen=True)
class Rule:
    label: str  # the control's label, as the message names it
    whole: bool = True  # a whole number (else any finite number)
    lo: float | None = None
    hi: float | None = None

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.lo is not None and self.hi is not None:
            return f"{kind} from {self.lo:g} to {self.hi:g}"
        if self.lo is not None:
            return f"{kind} of at least {self.lo:g}"
        return kind


RULES: dict[str, Rule] = {
    "start": Rule("From token", lo=0),
    "stop": Rule("To token", lo=0),
    "doc": Rule("Document", lo=0),
    "k": Rule("Long-range k", whole=False, lo=0),
    "wstart": Rule("Window start", lo=0),
    "wlen": Rule("Window length", lo=1, hi=WINDOW_MAX),
    "token": Rule("Token", lo=0),
    "step": Rule("Training step", lo=0),
}


def parse(params: dict, key: str, default=None):
    """params[key] as an int / float under RULES[key]; `default` when absent; ParamError when it breaks the rule."""
    rule = RULES[key]
    value = params.get(key)
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    bad = not math.isfinite(number) or (rule.whole and number != int(number)) \
        or (rule.lo is not None and number < rule.lo) or (rule.hi is not None and number > rule.hi)
    if bad:
        raise ParamError(key, f"{rule.label} must be {rule.describe()}, got {value!r}")
    return int(number) if rule.whole else number


def problems(params: dict) -> dict[str, str]:
    """key -> message for every parameter in `params` that breaks its rule."""
    out = {}
    for key in params:
        if key in RULES:
            try:
                parse(params, key)
            except ParamError as err:
                out[key] = str(err)
    return out
