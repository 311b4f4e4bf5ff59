"""Hydra callbacks (``hydra.callbacks`` in conf/config.yaml and conf/tune.yaml).

``SweepSummary``: at the end of a multirun, one table of every job (its overrides, NeFs fitted,
PSNR, NeFs/s, store), printed and saved as ``summary.md`` / ``summary.json`` in the sweep dir; it reads
the ``summary.json`` each job wrote into its run dir.
``TuneSummary``: the same for ``tasks.tune``, then the best trial as a ready-to-run ``tasks.fit`` command.
"""
import json
import logging
import shlex
from pathlib import Path
from typing import Any, List

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def _job_dirs(sweep_dir: Path) -> List[Path]:
    """Job run dirs of a sweep (those with a .hydra folder), in job order."""
    dirs = [p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")]

    def order(p: Path):
        rel = p.relative_to(sweep_dir).as_posix()
        return (0, int(rel), rel) if rel.isdigit() else (1, 0, rel)

    return sorted(set(dirs), key=order)


def _fmt(x, spec):
    return "-" if x is None else format(x, spec)


def collect(sweep_dir: Path) -> list:
    """[{job, overrides, summary}] for each job dir of a sweep."""
    jobs = []
    for d in _job_dirs(sweep_dir):
        overrides = OmegaConf.to_container(OmegaConf.load(d / ".hydra" / "overrides.yaml"))
        summary_file = d / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
        jobs.append({"job": d.relative_to(sweep_dir).as_posix(), "overrides": overrides, "summary": summary})
    return jobs


def split_overrides(jobs: list) -> tuple:
    """(overrides common to all jobs, {job: its overrides that vary across jobs})."""
    common = set.intersection(*(set(j["overrides"]) for j in jobs)) if jobs else set()
    first = jobs[0]["overrides"] if jobs else []
    return [o for o in first if o in common], {j["job"]: [o for o in j["overrides"] if o not in common] for j in jobs}


def _metric_heading(jobs: list) -> str:
    """The jobs' metric and unit, e.g. ``psnr (dB)``, from their summaries."""
    names = set()
    for j in jobs:
        s = j["summary"] or {}
        if s.get("metric"):
            names.add(s["metric"] + (f" ({s['unit']})" if s.get("unit") else ""))
    return " / ".join(sorted(names)) or "metric"


def table(jobs: list, extra: str = None) -> str:
    """Markdown table of sweep jobs (the overrides that vary per job, then the ones all share);
    ``extra``: a summary key shown as its own column (tune's objective)."""
    common, varying = split_overrides(jobs)
    head = ["job", "overrides", "NeFs", _metric_heading(jobs), "NeFs/s", "store"] + ([extra] if extra else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for j in jobs:
        s = j["summary"] or {}
        score = (f"{s['metric_mean']:.2f} ± {s['metric_std']:.2f}"
                 if s.get("metric_mean") is not None else "failed / no summary")
        row = [j["job"], " ".join(varying[j["job"]]) or "(defaults)", str(s.get("fitted", "-")), score,
               _fmt(s.get("nefs_per_s"), ".1f"), str(s.get("store", "-"))]
        if extra:
            row.append(_fmt(s.get(extra), ".4g"))
        lines.append("| " + " | ".join(row) + " |")
    if common:
        lines.append(f"\nall jobs: {' '.join(common)}")
    return "\n".join(lines)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        jobs = collect(sweep_dir)
        if not jobs:
            return
        text = table(jobs)
        (sweep_dir / "summary.md").write_text(text + "\n")
        (sweep_dir / "summary.json").write_text(json.dumps(jobs, indent=1))
        print(f"\n{len(jobs)} jobs (table in {sweep_dir / 'summary.md'}):\n{text}")


# -- tune --------------------------------------------------------------------------------------------
TUNE_ONLY = ("tune.", "hparams_search=", "task.nef_dir=", "task.train.start_idx=", "task.train.end_idx=",
             "evaluate.", "classifier=", "classifier.")  # the last three: hparams_search=downstream's classifier


def _value(v) -> str:
    if isinstance(v, float):
        return format(v, ".6g")
    return str(v)


def _changed_choices(config: DictConfig) -> list:
    """``group=choice`` for config groups the study chose differently from tasks.fit's defaults
    (e.g. nef=mlp set by hparams_search=mlp), so the command fits what the trials fitted."""
    fit_defaults = {}
    for item in yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "config.yaml").read_text())["defaults"]:
        if isinstance(item, dict):
            fit_defaults.update({str(k): str(v) for k, v in item.items()})
    choices = OmegaConf.to_container(config.hydra.runtime.choices)
    return [f"{g}={c}" for g, c in choices.items()
            if g in fit_defaults and c is not None and str(c) != fit_defaults[g]]


def best_command(config: DictConfig, best_params: dict) -> str:
    """``python -m tasks.fit`` with the user's own overrides, the fixed search settings and the best values."""
    user = [o for o in config.hydra.overrides.task
            if not o.lstrip("+~").startswith(TUNE_ONLY) and o.split("=", 1)[0].lstrip("+~") not in best_params]
    params = OmegaConf.to_container(config.hydra.sweeper.params or {}, resolve=True)
    chosen = {}
    for key, spec in params.items():   # search-space entries that are plain values are fixed settings
        chosen[key] = best_params[key] if key in best_params else spec
    for key, value in best_params.items():  # sweeps given on the command line
        chosen.setdefault(key, value)
    user_keys = {o.split("=", 1)[0].lstrip("+~") for o in user}
    groups = [g for g in _changed_choices(config) if g.split("=", 1)[0] not in user_keys]
    args = groups + user + [f"{k}={_value(v)}" for k, v in chosen.items() if k not in user_keys]
    return " ".join(["python", "-m", "tasks.fit", *(shlex.quote(a) for a in args)])


class TuneSummary(SweepSummary):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = collect(sweep_dir) if sweep_dir.is_dir() else []
        objective = config.tune.objective
        if jobs:
            text = table(jobs, extra="objective")
            (sweep_dir / "summary.md").write_text(text + "\n")
            (sweep_dir / "summary.json").write_text(json.dumps(jobs, indent=1))
            print(f"\n{len(jobs)} trials, objective {objective} (table in {sweep_dir / 'summary.md'}):\n{text}")
        results = sweep_dir / "optimization_results.yaml"
        if not results.exists():
            return
        res = OmegaConf.to_container(OmegaConf.load(results))
        best = res.get("best_params") or {}
        command = best_command(config, best)
        (sweep_dir / "best_command.sh").write_text(f"#!/bin/sh\n# best {objective}: {res.get('best_value')}\n{command}\n")
        (sweep_dir / "best.json").write_text(json.dumps(
            {"objective": objective, "best_value": res.get("best_value"), "best_params": best, "command": command},
            indent=1))
        print(f"\nbest {objective}: {res.get('best_value'):.4g} with {best}\nrun it on the whole dataset:\n{command}\n"
              f"(saved in {sweep_dir / 'best_command.sh'})")
