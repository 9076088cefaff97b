"""Typed task options: each task declares a frozen dataclass of options; `--option KEY=VALUE` is parsed into it.

A field is declared with `option(default, help, ...)`. Its type annotation is the contract: `int`, `float`,
`bool`, `str`, `Literal[...]` (choices), `tuple[int, ...]` / `tuple[float, ...]` / `list[str]`, each
optionally `| None`. Command-line text is parsed by that type (JSON lists and comma lists both work);
anything else is a one-line error naming the key and the expected type. A key no registered task knows is
an error that lists the valid keys of the tasks being run and suggests the closest, so a misspelt option can
never be silently ignored (a key that only tasks not being run know is ignored, and the run says so). `TASK.KEY=VALUE` scopes a value to one task (e.g. two detection tasks with different
iteration budgets in one run).

Every option marked `numbers=True` (the default) changes what a task measures, so the task's protocol
params must reflect it and its protocol hash moves when it changes (tests/test_task_options.py checks this
for every registered task); `numbers=False` marks pure execution settings (worker counts, launch details).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Union

from vicreg_bench.errors import UserError


class OptionError(UserError):
    """A bad `--option` (or option flag): unknown key, wrong type, value out of range."""


@dataclass(frozen=True)
class TaskOptions:
    """Base of every task's options; subclasses add fields made with `option()`."""

    def validate(self) -> None:
        """Cross-field checks of a subclass; raise OptionError naming the key."""

    def non_default(self, numbers_only: bool = True) -> dict[str, Any]:
        """{key: value} of the options whose value differs from the declared default."""
        out = {}
        for f in dataclasses.fields(self):
            if numbers_only and not f.metadata.get("numbers", True):
                continue
            value = getattr(self, f.name)
            if value != default_of(f):
                out[key_of(f)] = value
        return out


def option(default: Any, help: str, *, key: str | None = None, minimum: float | None = None,
           numbers: bool = True) -> Any:
    """A dataclass field for a task option: default, one-line help, optional `--option` key (default: the
    field name), minimum value, and whether it can change the task's numbers (then it is protocol)."""
    meta = {"help": help, "key": key, "minimum": minimum, "numbers": numbers}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda d=default: list(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def key_of(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"option {f.name} has no default")


def option_fields(cls: type[TaskOptions]) -> dict[str, tuple[dataclasses.Field, Any]]:
    """key -> (field, resolved type) of an options class."""
    hints = typing.get_type_hints(cls)
    return {key_of(f): (f, hints[f.name]) for f in dataclasses.fields(cls)}


# ------------------------------------------------------------------------------------------- types


def _args(tp: Any) -> tuple[Any, ...]:
    return typing.get_args(tp)


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _without_none(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if _is_union(tp):
        rest = [a for a in _args(tp) if a is not type(None)]
        allow = len(rest) < len(_args(tp))
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), allow
    return tp, False


def type_name(tp: Any) -> str:
    """The type in words, for --list-options and error messages."""
    inner, nullable = _without_none(tp)
    origin = typing.get_origin(inner)
    if origin is Literal:
        text = "one of " + "|".join(str(a) for a in _args(inner))
    elif origin in (tuple, list):
        item = _args(inner)[0]
        text = f"list of {type_name(item)}s"
    else:
        text = {int: "integer", float: "number", bool: "true/false", str: "text"}.get(inner, str(inner))
    return f"{text} or none" if nullable else text


def _parse_scalar(value: Any, tp: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value) if not isinstance(value, str) else int(value.strip())
    if tp is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError
        return str(value)
    if typing.get_origin(tp) is Literal:
        for choice in _args(tp):
            if value == choice or str(value) == str(choice):
                return choice
        raise ValueError
    raise TypeError(f"unsupported option type {tp!r}")


def parse_value(value: Any, tp: Any) -> Any:
    """`value` (command-line text, or an already typed value) as type `tp`; ValueError when it is not one."""
    inner, nullable = _without_none(tp)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if nullable:
            return None
        raise ValueError
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        item = _args(inner)[0]
        if isinstance(value, str):
            text = value.strip()
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                loaded = [p for p in text.replace(",", " ").split() if p] if item is str or "," in text or " " in text else text
            value = loaded
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        parsed = [_parse_scalar(v, item) for v in items]
        return tuple(parsed) if origin is tuple else parsed
    if isinstance(value, str) and inner in (int, float):
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            loaded = value
        if isinstance(loaded, (int, float)) and not isinstance(loaded, bool):
            value = loaded
    return _parse_scalar(value, inner)


def parse_field(f: dataclasses.Field, tp: Any, value: Any, source: str) -> Any:
    """One option value, typed and range-checked; OptionError naming `source` and the expected type."""
    try:
        parsed = parse_value(value, tp)
    except (ValueError, TypeError):
        raise OptionError(f"{source}: option {key_of(f)} expects {type_name(tp)}, got {value!r}") from None
    minimum = f.metadata.get("minimum")
    if minimum is not None:
        items = parsed if isinstance(parsed, (list, tuple)) else [parsed]
        low = [v for v in items if v is not None and v < minimum]
        if low:
            raise OptionError(f"{source}: option {key_of(f)} expects values >= {minimum:g}, got {low[0]!r}")
    return parsed


# -------------------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class RawOption:
    """One option as the user gave it: `key` may be `TASK.KEY`; `source` is what to name in an error."""

    key: str
    value: Any
    source: str


def parse_option_text(text: str, flag: str = "--option") -> RawOption:
    """`KEY=VALUE` or `TASK.KEY=VALUE` of --option."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not key.replace("_", "").replace(".", "").isalnum():
        raise OptionError(f"{flag} {text!r}: expected KEY=VALUE (or TASK.KEY=VALUE), e.g. knn_temperature=0.1")
    return RawOption(key, value.strip(), f"{flag} {text}")


def _unknown(key: str, source: str, running: list[Any], every: list[Any]) -> OptionError:
    valid = sorted({k for s in running for k in option_fields(s.options)})
    anywhere = sorted({k for s in every for k in option_fields(s.options)})
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) or difflib.get_close_matches(key, anywhere, n=1,
                                                                                             cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    names = ", ".join(s.name for s in running)
    listing = ", ".join(valid) if valid else "none"
    return OptionError(f"{source}: unknown option {key!r} for the tasks being run ({names}){hint} "
                       f"Valid options: {listing} (run --list-options shows them)")


def resolve_options(specs: Iterable[Any], raw: Iterable[RawOption], every: Iterable[Any] | None = None,
                    ignored: list[str] | None = None) -> dict[str, TaskOptions]:
    """Each task's typed options from the user's raw ones (later values win; `TASK.KEY` beats `KEY`).

    `specs` are the registry entries of the tasks being run (each with `.name` and `.options`), `every`
    those of all registered tasks (default: `specs`). A key that no registered task knows, or a value of the
    wrong type, is an OptionError. A key (or `TASK.`) that only tasks not being run know is ignored, with a
    line saying so appended to `ignored` (a script may pass the same options to runs of different tasks).
    """
    specs = list(specs)
    every = list(every) if every is not None else specs
    by_name = {s.name: s for s in specs}
    known = {s.name: s for s in every}
    values: dict[str, dict[str, Any]] = {s.name: {} for s in specs}
    raw = list(raw)
    notes = ignored if ignored is not None else []
    for scoped_pass in (False, True):  # unscoped values first, then the task-scoped ones override them
        for r in raw:
            task, dot, key = r.key.rpartition(".")
            if bool(dot) != scoped_pass:
                continue
            if dot and task not in known:
                raise OptionError(f"{r.source}: unknown task {task!r} (tasks: {', '.join(known)})")
            if dot and task not in by_name:
                if key not in option_fields(known[task].options):
                    raise _unknown(key, r.source, [known[task]], [known[task]])
                notes.append(f"{r.source}: task {task} is not being run; ignored")
                continue
            targets = [by_name[task]] if dot else specs
            used = False
            for spec in targets:
                fields = option_fields(spec.options)
                if key in fields:
                    f, tp = fields[key]
                    values[spec.name][f.name] = parse_field(f, tp, r.value, r.source)
                    used = True
            if used:
                continue
            users = [s.name for s in every if key in option_fields(s.options)]
            if dot or not users:
                raise _unknown(key, r.source, targets, every)
            notes.append(f"{r.source}: option {key} is used by {', '.join(users)}, none of which is being run; "
                         f"ignored")
    out = {}
    for spec in specs:
        try:
            opts = spec.options(**values[spec.name])
        except TypeError as e:  # a field without default in a task's options class: a programming error
            raise TypeError(f"{spec.name}: options class {spec.options.__name__}: {e}") from None
        opts.validate()
        out[spec.name] = opts
    return out


def describe_options(specs: Iterable[Any]) -> str:
    """The `run --list-options` text: per task, every option with its type, default and help."""
    lines = []
    for spec in specs:
        fields = option_fields(spec.options)
        lines.append(f"{spec.name} ({spec.options.__name__}):" if fields else f"{spec.name}: no options")
        width = max((len(k) for k in fields), default=0)
        for key, (f, tp) in fields.items():
            default = default_of(f)
            shown = json.dumps(list(default) if isinstance(default, tuple) else default)
            tag = "" if f.metadata.get("numbers", True) else " [does not change the numbers]"
            lines.append(f"  {key:<{width}}  {type_name(tp)}, default {shown}: {f.metadata.get('help', '')}{tag}")
        lines.append("")
    lines.append("Set with --option KEY=VALUE (every task that has KEY) or --option TASK.KEY=VALUE (one task).")
    return "\n".join(lines)
