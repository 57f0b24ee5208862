"""Command-line options derived from dataclass configs: each option's name, type, default and help are stated
once, on the config's field, and the commands read them from there.

A field takes part when its metadata has a help text (`option(default, help, ...)` from depthscope.models.config
makes such a field). Metadata keys: help; flag (default: `--` + the field name with dashes); metavar; choices;
parse (a function from the command-line text to the value, e.g. `token_count`); required; show_default (False:
the help says the default itself). The option's dest is always the field name.

    add_options(parser, TrainConfig, ["steps", "lr"])           # --steps, --lr with TrainConfig's defaults
    add_options(group, ModelConfig, ["n_layers"], defaults=template, overrides={"n_layers": {"help": "..."}})
    cfg = build(TrainConfig, args, base=template)                # the parsed values over the template
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Iterable

from depthscope.models import option

__all__ = ["option", "add_options", "build", "int_list", "name_list", "token_count", "option_fields"]


def int_list(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 0,1") from None


def name_list(text: str) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b')."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def token_count(text: str) -> int:
    """A number of tokens written as an integer or a float: '300000', '3e5'."""
    try:
        return int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of tokens, e.g. 300000 or 3e5") from None


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _base_type(hint: Any) -> Any:
    """int | None -> int; the type itself otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return hint


def _parser_of(hint: Any):
    hint = _base_type(hint)
    if typing.get_origin(hint) is tuple:
        (item, *_rest) = typing.get_args(hint)
        return int_list if item is int else name_list
    return hint if hint in (int, float, str) else None


def option_fields(cls) -> list[dataclasses.Field]:
    """The fields of `cls` that carry an option (a help text in their metadata)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def add_options(parser, cls, names: Iterable[str] | None = None, *, defaults: Any = None,
                overrides: dict[str, dict] | None = None) -> list[str]:
    """Add the options of `cls`'s fields `names` (default: every field with a help text) to `parser` (a parser or
    an argument group). defaults: an instance (or a dict) whose values replace the fields' defaults, e.g. a
    command's template config; overrides: field -> argparse keywords replacing the derived ones (a command-
    specific help or default). Returns the dests (the field names)."""
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    chosen = list(names) if names is not None else [f.name for f in option_fields(cls)]
    overrides = overrides or {}
    for name in chosen:
        f = by_name[name]
        meta = dict(f.metadata)
        if isinstance(defaults, dict):
            default = defaults.get(name, _default_of(f))
        elif defaults is not None:
            default = getattr(defaults, name)
        else:
            default = _default_of(f)
        flag = meta.get("flag", "--" + name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": name, "help": meta.get("help", "")}
        if _base_type(hints[name]) is bool:
            if flag.startswith("--no-"):
                kwargs.update(action="store_false", default=default)
            elif default:
                kwargs.update(action=argparse.BooleanOptionalAction, default=default)
            else:
                kwargs.update(action="store_true", default=default)
        else:
            kwargs.update(type=meta.get("parse") or _parser_of(hints[name]), default=default)
            if "choices" not in meta:  # argparse shows the choices themselves
                kwargs["metavar"] = flag[2:].upper().replace("-", "_")
            for key in ("metavar", "choices", "required"):
                if key in meta:
                    kwargs[key] = meta[key]
        kwargs.update(overrides.get(name, {}))
        show = (meta.get("show_default", True) and kwargs.get("action") is None and kwargs.get("default") is not None
                and not kwargs.get("required") and "(default" not in kwargs["help"])
        if show:
            kwargs["help"] += f" (default: {_shown(kwargs['default'])})"
        kwargs["help"] = kwargs["help"].replace("%", "%%")
        if kwargs.get("type") is None:
            kwargs.pop("type", None)
        parser.add_argument(flag, **kwargs)
    return chosen


def build(cls, args: argparse.Namespace, base: Any = None, **changes):
    """An instance of `cls` from the parsed options: every field of `cls` present in `args` and not None, over
    `base` (an instance; default: cls's own defaults), then `changes`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if getattr(args, f.name, None) is not None}
    values.update(changes)
    return dataclasses.replace(base, **values) if base is not None else cls(**values)
