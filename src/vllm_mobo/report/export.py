"""The chosen configurations as something to deploy: ``vllm serve`` commands and ``--config`` YAML files.

The flags come from :mod:`vllm_mobo.engine_args`, the same translation the online benchmark launches its server
with, so the exported command is the configuration that was measured.
"""

from __future__ import annotations

import pandas as pd
import yaml

from ..engine_args import serve_command
from ..records import VLLM_DEFAULT, Record, metric_label, record_index
from .analysis import fmt
from .baseline import role_label, roles


def engine_args_yaml(engine_args: dict, header: str = "") -> str:
    """The engine arguments as a ``vllm serve --config`` YAML file (dashed keys, as vLLM's CLI names them)."""
    body = yaml.safe_dump({k.replace("_", "-"): v for k, v in engine_args.items() if v is not None},
                          sort_keys=False, default_flow_style=False)
    head = "".join(f"# {line}\n" for line in header.splitlines())
    return head + body


def serve_model(record: Record, model_dir: str | None) -> str:
    """The model argument of ``vllm serve`` for a record: the model path, or the run's model directory for
    architecture models run with dummy weights."""
    model = record.model or ""
    if model.startswith("architecture"):
        return str(model_dir)
    return model


def pareto_commands(pareto: pd.DataFrame, records: list[Record], model_dir: str | None) -> pd.DataFrame:
    """For every Pareto configuration: its ``vllm serve`` command line."""
    index = record_index(records)
    rows = []
    for _, r in pareto.iterrows():
        rec = index[(int(r["iteration"]), r["candidate"])]
        rows.append({"candidate": r["candidate"], "command": serve_command(serve_model(rec, model_dir), rec.engine_args)})
    return pd.DataFrame(rows, columns=["candidate", "command"])


def confirmed_knee(front: pd.DataFrame | None, objectives: list[dict]) -> str | None:
    """The knee of the confirmed front (the confirmation stage's ``front.csv``: the configurations no other beats
    on the means of their repeats), or None when the confirmation did not run."""
    if front is None or front.empty:
        return None
    return roles(front, objectives).get("knee")


def _fixed_args_run(records: list[Record]) -> tuple[Record, dict] | None:
    """vLLM's default where the search never ran it: a successful record (for the model and the software) and its
    engine arguments less the searched knobs, i.e. the run's fixed arguments alone."""
    ok = [r for r in records if r.ok]
    return (ok[-1], {k: v for k, v in ok[-1].engine_args.items() if k not in ok[-1].config}) if ok else None


def export_choice(pareto: pd.DataFrame, records: list[Record], objectives: list[dict],
                  confirmed: pd.DataFrame | None = None, candidate: str | None = None) -> tuple | None:
    """What to export: ``(name, record, engine args, confirmed)``. ``candidate`` where given; else the knee of the
    confirmed front (``confirmed``, vLLM's default included even where the search left it out); else the knee of
    the search's front. ``record`` gives the model and the software; None when nothing suitable ran."""
    name = candidate or confirmed_knee(confirmed, objectives)
    if name is not None:
        ok = [r for r in records if r.ok and r.candidate == name]
        if ok:
            return name, ok[-1], ok[-1].engine_args, candidate is None
        if name == VLLM_DEFAULT and _fixed_args_run(records):
            return (name, *_fixed_args_run(records), candidate is None)
        if candidate is not None:
            return None
    found = roles(pareto, objectives)
    if "knee" not in found:
        return None
    row = pareto[pareto["candidate"] == found["knee"]].iloc[0]
    rec = record_index(records)[(int(row["iteration"]), row["candidate"])]
    return found["knee"], rec, rec.engine_args, False


def _confirmed_values(row: pd.Series, objectives: list[dict]) -> str:
    return ", ".join(f"{fmt(row[o['metric']])} {metric_label(o['metric'])} "
                     f"(95% CI {fmt(row[o['metric'] + '_ci_low'])}-{fmt(row[o['metric'] + '_ci_high'])})"
                     for o in objectives)


def knee_export(pareto: pd.DataFrame, records: list[Record], objectives: list[dict], model_dir: str,
                run: str, energy_qualifier: str, confirmed: pd.DataFrame | None = None) -> tuple[str, str]:
    """(``vllm serve`` command file, engine-args YAML) of the knee: of the confirmed front (``confirmed``, the
    confirmation stage's ``front.csv``) where the confirmation ran, else of the search's front; comments say
    what it is and what was measured."""
    choice = export_choice(pareto, records, objectives, confirmed)
    if choice is None:
        msg = f"run {run}: no configuration ran successfully, so there is no knee configuration to export"
        return f"# {msg}\n", f"# {msg}\n{{}}\n"
    knee, rec, args, is_confirmed = choice
    search_rows = pareto[pareto["candidate"] == knee]
    if is_confirmed:
        row = confirmed[confirmed["candidate"] == knee].iloc[0]
        head = (f"knee of the confirmed front of run {run}: {knee}"
                f"\nconfirmed: mean of {int(row['usable'])} fresh-engine runs, {_confirmed_values(row, objectives)} "
                f"(energy {energy_qualifier})"
                + ("" if search_rows.empty else "\nthe search measured it once: " + ", ".join(
                    f"{fmt(search_rows.iloc[0][o['metric']])} {metric_label(o['metric'])}" for o in objectives)))
    else:
        row = search_rows.iloc[0]
        values = ", ".join(f"{fmt(row[o['metric']])} {metric_label(o['metric'])}" for o in objectives)
        also = [role_label(r) for r, n in roles(pareto, objectives).items() if n == knee and r != "knee"]
        head = (f"knee of the Pareto front of run {run}: {knee}" + (f" (also {', '.join(also)})" if also else "")
                + f"\nbenchmark result in the run (one measurement): {values} (energy {energy_qualifier})")
    head += f"\nvLLM {rec.software.get('vllm', '?')} on {rec.device or '?'}"
    model = serve_model(rec, model_dir)
    command = "".join(f"# {line}\n" for line in head.splitlines()) + serve_command(model, args, multiline=True) + "\n"
    yml = engine_args_yaml(args, head + f"\nuse: vllm serve {model} --config <this file>")
    return command, yml
