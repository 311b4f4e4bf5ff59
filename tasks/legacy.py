"""Run fit-a-nef command lines unchanged: translate them into native Hydra overrides.

fit-a-nef (JAX, ml_collections + absl flags) was driven by lines such as::

    python tasks/image/fit.py --task=config/image.py:fit --nef=config/nef.py:SIREN \
        --task.seeds='(0,1,2,3,4)' --task.train.end_idx=140000 --task.dataset.name="MNIST" ...

``translate(argv)`` turns such an argument list into the module and Hydra overrides of the native
interface (``python -m tasks.fit task=image nef=siren ...``); it is a pure function of ``argv`` (it
only reads this repository's ``conf/`` to learn the available choices). ``main()`` prints the
native command, then runs it in-process (or stops there with ``--dry-run``).

Legacy defaults are kept: a legacy line that did not name an optimizer trained with ``adamw``, used
20 seeds, ``end_idx=50``, CIFAR10, and stored its NeFs under ``<nef_dir>/<dataset>/<nef>``; the
translation spells these out so the native command computes the same thing.
"""
from __future__ import annotations

import difflib
import importlib.util
import re
import runpy
import shlex
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

MODES = {"fit": "tasks.fit", "tune": "tasks.tune", "inspect": "tasks.inspect", "find_init": "tasks.find_init"}
TASK_FILES = {"image.py": "image", "shape.py": "shape"}
SCHEDULER_ALIASES = {
    "constant_schedule": "constant",
    "constant_scheduler": "constant",
    "warmup_cosine_decay_schedule": "warmup_cosine",
}

# fit-a-nef's defaults (config/image.py, config/shape.py, config/optimizer.py) where they differ
# from the native ones; applied unless the legacy line sets the flag.
LEGACY_DEFAULTS = {
    "image": {"optimizer": "adamw", "dataset": "cifar10", "task.seeds": list(range(20)),
              "task.train.end_idx": 50, "task.train.num_parallel_nefs": 5000},
    "shape": {"optimizer": "adamw", "dataset": "shapenet", "task.seeds": list(range(10)), "task.train.end_idx": 100,
              "task.train.num_parallel_nefs": 10, "task.train.num_steps": 5000,
              "task.train.fixed_init": False, "task.log.progress": False},
}
LEGACY_NEF_DIR_DEFAULT = "${oc.env:NEF_PATH,saved_models}"  # config/utils.py:find_env_path

# optax optimizer parameters of config/optimizer.py, per optimizer.
OPTIMIZER_PARAMS = {
    "adam": ("b1", "b2", "eps", "eps_root"),
    "adamw": ("b1", "b2", "eps", "eps_root", "weight_decay"),
    "sgd": ("momentum", "nesterov"),
    "rmsprop": ("decay", "eps", "initial_scale", "centered", "momentum", "nesterov"),
}
NEF_PARAM_ALIASES = {"hidden_size": "hidden_dim"}


class LegacyError(ValueError):
    """A legacy command line that cannot be translated; the message is one line."""


# -- the available native choices (from conf/) ----------------------------------------------------


@lru_cache(maxsize=None)
def _group(name: str) -> dict:
    """conf/<name>/*.yaml -> {choice: its yaml as a dict}."""
    out = {}
    for f in sorted((CONF / name).glob("*.yaml")):
        try:
            out[f.stem] = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError:
            out[f.stem] = {}
    return out


def _params_of(group: str, choice: str) -> dict:
    return {k: v for k, v in _group(group).get(choice, {}).items()
            if k not in ("_target_", "_partial_", "name", "defaults")}


def _display_names(group: str) -> list:
    return [str(cfg.get("name", stem)) for stem, cfg in _group(group).items()]


def _choose(group: str, value: str, what: str, flag: str, aliases: Optional[dict] = None,
            shown: Optional[list] = None) -> str:
    """Case-insensitive match of a legacy name to a conf/<group> choice."""
    aliases = {k.lower(): v for k, v in (aliases or {}).items()}
    choices = _group(group)
    key = value.strip().lower()
    key = aliases.get(key, key)
    for stem, cfg in choices.items():
        if key in (stem.lower(), str(cfg.get("name", stem)).lower()):
            return stem
    allowed = shown or _display_names(group)
    raise LegacyError(f"{flag}: unknown {what} {value!r}; available: {', '.join(allowed)}")


# -- values -------------------------------------------------------------------------------------

_SAFE = re.compile(r"^[A-Za-z0-9_./+%@-]+$")
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def _need(flag: str, v: Optional[str]) -> str:
    if v is None:
        raise LegacyError(f"--{flag} needs a value, e.g. --{flag}=<value>")
    return v


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
        return v[1:-1]
    return v


def _is_none(v: str) -> bool:
    return v.strip().lower() in ("none", "null", "~")


def _looks_like_scalar(v: str) -> bool:
    if v.lower() in ("true", "false", "null", "nan", "inf", "+inf", "-inf"):
        return True
    try:
        float(v)
        return True
    except ValueError:
        return False


def hydra_str(v: str, tail: str = "") -> str:
    """A string as a Hydra override value: bare when the grammar keeps it a string, else quoted.

    ``tail`` is appended verbatim (it may hold ${...} interpolations); ``v`` is taken literally.
    """
    if v and _SAFE.match(v) and not _looks_like_scalar(v + tail) and "$" not in tail:
        return v + tail
    body = v.replace("${", "\\${") + tail  # backslashes are literal unless before a quote
    if '"' not in body:  # double quotes: the printed command then needs only '...' around each override
        return f'"{body}"'
    if "'" not in body:
        return f"'{body}'"
    return "'" + body.replace("'", "\\'") + "'"


def _bool(flag: str, v: Optional[str]) -> str:
    if v is None:  # `--flag` alone sets a boolean
        return "true"
    s = _unquote(v).lower()
    if s in _TRUE:
        return "true"
    if s in _FALSE:
        return "false"
    raise LegacyError(f"--{flag}={v}: expected True or False")


def _int(flag: str, v: str, nullable: bool = False) -> str:
    s = _unquote(_need(flag, v))
    if nullable and _is_none(s):
        return "null"
    try:
        return str(int(s))
    except ValueError:
        raise LegacyError(f"--{flag}={v}: expected an integer") from None


def _float(flag: str, v: str, nullable: bool = False) -> str:
    s = _unquote(_need(flag, v))
    if nullable and _is_none(s):
        return "null"
    try:
        return repr(float(s))
    except ValueError:
        raise LegacyError(f"--{flag}={v}: expected a number") from None


def _str(flag: str, v: str, nullable: bool = False) -> str:
    s = _unquote(_need(flag, v))
    if nullable and _is_none(s):
        return "null"
    return hydra_str(s)


def _split_sequence(v: str) -> list:
    s = _unquote(v)
    m = re.fullmatch(r"\s*(?:tuple|list)?\(?\s*range\(\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?\)\s*\)?\s*", s)
    if m:  # range(n) / range(a, b), as Python would evaluate it
        lo, hi = (0, int(m.group(1))) if m.group(2) is None else (int(m.group(1)), int(m.group(2)))
        return [str(i) for i in range(lo, hi)]
    s = s.strip()
    if s[:1] in "([" and s[-1:] in ")]":
        s = s[1:-1]
    return [p.strip() for p in s.split(",") if p.strip()]


def _int_list(flag: str, v: str) -> str:
    _need(flag, v)
    try:
        items = [int(_unquote(p)) for p in _split_sequence(v)]
    except ValueError:
        raise LegacyError(f"--{flag}={v}: expected a tuple of integers such as '(0,1,2)'") from None
    return "[" + ",".join(str(i) for i in items) + "]"


def _auto(flag: str, v: Optional[str]) -> str:
    """A value of unknown type: bool, None, number, tuple or string, as ml_collections would take it."""
    if v is None:
        return "true"
    s = _unquote(v)
    if s.lower() in ("true", "false"):
        return s.lower()
    if _is_none(s):
        return "null"
    if s[:1] in "([" and s[-1:] in ")]":
        return "[" + ",".join(_auto(flag, p) for p in _split_sequence(s)) + "]"
    try:
        int(s)
        return s
    except ValueError:
        pass
    try:
        return repr(float(s))
    except ValueError:
        return hydra_str(s)


def _typed_like(default) -> Callable[[str, Optional[str]], str]:
    """The converter for a parameter whose native default is ``default``."""
    if isinstance(default, bool):
        return _bool
    if isinstance(default, int):
        return _int
    if isinstance(default, float):
        return _float
    if isinstance(default, list):
        return _auto
    return lambda f, v: _str(f, v, nullable=True)


# -- the flag table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    native: Optional[str]  # the native key, or None: accepted but has no native effect
    convert: Callable  # (flag, value) -> override value text
    tasks: tuple = ("image", "shape")
    modes: tuple = tuple(MODES)
    note: str = ""


def _ignored(note: str, **kw) -> Flag:
    return Flag(None, _auto, note=note, **kw)


def _meta_init(flag, v):
    return "meta" if _bool(flag, v) == "true" else "default"


def _logger_choice(flag, v):
    return "wandb" if _bool(flag, v) == "true" else "none"


def _sgd_only(flag, v):
    if str(v).strip("'\"").lower() != "sgd":
        raise LegacyError(f"--{flag}={v}: fitnef's inner loop is SGD; allowed: sgd")
    return "sgd"


TASK_FLAGS = {
    "seeds": Flag("task.seeds", _int_list),
    "nef_dir": Flag("task.nef_dir", _str),  # rewritten to <nef_dir>/<dataset>/<nef> in translate()
    "meta_nef_dir": _ignored("--task.meta_nef_dir is ignored: meta inits live in <nef_dir>/meta_init/init.pt "
                             "(task.train.meta_init_path / meta.output to move them)"),
    "train.start_idx": Flag("task.train.start_idx", _int),
    "train.end_idx": Flag("task.train.end_idx", lambda f, v: _int(f, v, nullable=True)),
    "train.num_steps": Flag("task.train.num_steps", _int),
    "train.num_parallel_nefs": Flag("task.train.num_parallel_nefs", _int),
    "train.masked_portion": Flag("task.train.masked_portion", _float),
    "train.multi_gpu": _ignored("--task.train.multi_gpu is not needed: processes fitting disjoint ranges may "
                                "always share one store"),
    "train.fixed_init": Flag("task.train.fixed_init", _bool),
    "train.check_every": Flag("task.train.check_every", _int),
    "train.train_to_target_psnr": Flag("task.train.target", lambda f, v: _float(f, v, nullable=True)),
    "train.verbose": Flag("task.log.progress", _bool),
    "train.from_meta_init": Flag("task.train.init", _meta_init),
    "train.meta_init_epoch": _ignored("--task.train.meta_init_epoch is ignored (fitnef keeps one meta init file)"),
    "log.images": Flag("task.log.images", _int),
    "log.metrics": Flag("task.log.metrics", _int),
    "log.loss": Flag("task.log.loss", _int),
    "log.use_wandb": Flag("logger", _logger_choice),
    "log.progress": Flag("task.log.progress", _bool),
    "wandb.entity": Flag("logger.entity", lambda f, v: _str(f, v, nullable=True)),
    "wandb.project": Flag("logger.project", lambda f, v: _str(f, v, nullable=True)),
    "wandb.name": Flag("logger.run_name", lambda f, v: _str(f, v, nullable=True)),
    "wandb.use": Flag("logger", _logger_choice),
    "dataset.name": Flag("dataset", None),  # a group choice, handled in translate()
    "dataset.path": Flag("dataset.path", _str),
    "dataset.out_channels": Flag("dataset.out_channels", lambda f, v: _int(f, v, nullable=True)),
    # shape task (config/shape.py)
    "train.num_points": Flag("task.train.num_points", _int_list, tasks=("shape",)),
    "train.train_to_target_iou": Flag("task.train.target", _auto, tasks=("shape",)),
    "log.meshes": _ignored("--task.log.meshes is ignored: fitnef logs no meshes during a fit "
                           "(python -m tasks.inspect extracts them)", tasks=("shape",)),
    # tune mode
    "job_id": Flag("task.job_id", _int, modes=("tune",)),
    "store_models": Flag("task.store_models", _bool, modes=("tune",)),
    "store_meshes": Flag("task.store_meshes", _bool, tasks=("shape",), modes=("tune",)),
    "temporary_dir": Flag("task.temporary_dir", _str, modes=("tune",)),
    "study_objective": Flag("task.study_objective", _str, modes=("tune",)),
    "log.shapes_temp_dir": Flag("task.log.shapes_temp_dir", _str, tasks=("shape",), modes=("tune",)),
    "optuna.num_trials": Flag("task.optuna.num_trials", _int, modes=("tune",)),
    "optuna.seed": Flag("task.optuna.seed", _int, modes=("tune",)),
    "optuna.n_jobs": Flag("task.optuna.n_jobs", _int, modes=("tune",)),
    "optuna.direction": Flag("task.optuna.direction", _auto, modes=("tune",)),
    "optuna.study_name": Flag("task.optuna.study_name", _str, modes=("tune",)),
    # inspect mode
    "experiment_dir": Flag("hydra.run.dir", _str, modes=("inspect",)),  # where inspect writes
    # find_init mode
    "meta.num_outer_steps": Flag("meta.outer_steps", _int, modes=("find_init",)),
    "meta.num_inner_steps": Flag("meta.inner_steps", _int, modes=("find_init",)),
    "meta.inner_learning_rate": Flag("meta.inner_lr", _float, modes=("find_init",)),
    "meta.inner_optimizer_name": Flag(None, _sgd_only, modes=("find_init",)),
    "store_model": Flag("task.store_model", _bool, modes=("find_init",)),
}


def known_flags() -> list:
    """Every legacy flag name (without the leading --) that the shim accepts."""
    names = ["task", "nef", "optimizer", "scheduler", "dry-run", "help"]
    names += [f"task.{k}" for k in TASK_FLAGS]
    nef_params = {p for stem in _group("nef") for p in _params_of("nef", stem)} | set(NEF_PARAM_ALIASES)
    names += [f"nef.params.{p}" for p in sorted(nef_params)]
    names += [f"optimizer.params.{p}" for p in sorted({p for ps in OPTIMIZER_PARAMS.values() for p in ps})]
    sched = {p for stem in _group("scheduler") for p in _params_of("scheduler", stem)}
    names += [f"scheduler.params.{p}" for p in sorted(sched)]
    return names


def _closest(name: str, candidates) -> str:
    candidates = list(candidates)
    best = difflib.get_close_matches(name, candidates, n=1, cutoff=0.0)
    return best[0] if best else ""


def _unknown_flag(name: str) -> LegacyError:
    return LegacyError(f"unknown flag --{name}; did you mean --{_closest(name, known_flags())}?")


# -- translation ---------------------------------------------------------------------------------


@dataclass
class Translation:
    """A legacy command line as a native one: ``python -m <module> <overrides>``."""

    module: str
    overrides: list
    task: str = "image"
    mode: str = "fit"
    notes: list = field(default_factory=list)
    dry_run: bool = False
    show_help: bool = False

    @property
    def argv(self) -> list:
        return ["python", "-m", self.module, *self.overrides]

    @property
    def command(self) -> str:
        """The native command, quoted for a POSIX shell."""
        return shlex.join(self.argv)

    def __str__(self) -> str:
        return self.command


def _config_spec(flag: str, value: str, expected_file: str) -> Optional[str]:
    """``config/nef.py:SIREN`` -> ``SIREN`` (None when no name follows the file)."""
    spec = _unquote(value)
    path, sep, arg = spec.partition(":")
    if not path.endswith(".py"):  # a bare name: --nef=SIREN
        return spec or None
    if Path(path).name != expected_file:
        raise LegacyError(f"--{flag}={value}: expected config/{expected_file}[:<name>]")
    return arg or None


def _parse(argv: list) -> tuple:
    """argv -> ([(flag name, value or None)], dry_run, show_help)."""
    items, dry_run, show_help = [], False, False
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok in ("--dry-run", "--dry_run"):
            dry_run = True
            continue
        if tok in ("-h", "--help", "--helpshort", "--helpfull"):
            show_help = True
            continue
        if not tok.startswith("--") or len(tok) == 2:
            raise LegacyError(f"unexpected argument {tok!r}; legacy flags look like --task.train.end_idx=100 "
                              "(native overrides go to `python -m tasks.fit`)")
        name, eq, value = tok[2:].partition("=")
        if not eq:
            if i < len(argv) and not argv[i].startswith("--"):  # --flag value
                value = argv[i]
                i += 1
            else:
                value = None  # --flag alone (booleans)
        items.append((name, value))
    return items, dry_run, show_help


def translate(argv: list, default_task: str = "image") -> Translation:
    """Translate a legacy fit-a-nef argument list (without the program name) into a native command.

    Raises ``LegacyError`` (one-line message) for unknown flags and invalid values.
    """
    items, dry_run, show_help = _parse(list(argv))
    notes = []

    # 1. the config files: task (and mode), nef, optimizer, scheduler; later flags win, as in absl
    task, mode = default_task, "fit"
    nef = optimizer = scheduler = dataset = None
    rest = []
    for name, value in items:
        if name in ("task", "nef", "optimizer", "scheduler") and value is None:
            raise LegacyError(f"--{name} needs a value, e.g. --{name}=config/"
                              f"{'image' if name == 'task' else name}.py:<name>")
        if name == "task":
            path = _unquote(value).partition(":")[0]
            if Path(path).name not in TASK_FILES:
                raise LegacyError(f"--task={value}: unknown task config {path!r}; available: "
                                  f"{', '.join('config/' + f for f in TASK_FILES)}")
            task = TASK_FILES[Path(path).name]
            mode = _config_spec(name, value, Path(path).name) or "fit"
            if mode not in MODES:
                raise LegacyError(f"--task={value}: unknown mode {mode!r}; available: {', '.join(MODES)}")
        elif name == "nef":
            nef = _config_spec(name, value, "nef.py") or "SIREN"
        elif name == "optimizer":
            optimizer = _config_spec(name, value, "optimizer.py") or "adamw"
        elif name == "scheduler":
            scheduler = _config_spec(name, value, "scheduler.py") or "constant_schedule"
        elif name == "task.dataset.name":
            if value is None:
                raise LegacyError("--task.dataset.name needs a value, e.g. --task.dataset.name=MNIST")
            dataset = _unquote(value)
        else:
            rest.append((name, value))

    defaults = LEGACY_DEFAULTS[task]
    nef_choice = _choose("nef", nef or "SIREN", "NeF", "--nef")
    opt_choice = _choose("optimizer", optimizer or defaults["optimizer"], "optimizer", "--optimizer",
                         shown=sorted(_group("optimizer")))
    sched_choice = _choose("scheduler", scheduler or "constant_schedule", "scheduler", "--scheduler",
                           aliases=SCHEDULER_ALIASES,
                           shown=sorted(SCHEDULER_ALIASES) + sorted(_group("scheduler")))
    data_choice = None
    if dataset is not None:
        data_choice = _choose("dataset", dataset, "dataset", "--task.dataset.name")
    elif "dataset" in defaults:
        data_choice = defaults["dataset"]

    # 2. every other flag, into native key -> value (last one wins)
    values: dict = {}
    nef_params: dict = {}
    betas: dict = {}
    nef_dir = None
    nef_native = _params_of("nef", nef_choice)
    opt_native = _params_of("optimizer", opt_choice)
    sched_native = _params_of("scheduler", sched_choice)
    nef_shown = str(_group("nef")[nef_choice].get("name", nef_choice))
    for name, value in rest:
        flag = f"--{name}"
        if name.startswith("nef.params."):
            p = name[len("nef.params."):]
            key = NEF_PARAM_ALIASES.get(p, p)
            if key not in nef_native:
                allowed = sorted(nef_native)
                raise LegacyError(f"unknown flag {flag} for NeF {nef_shown}; did you mean --nef.params."
                                  f"{_closest(p, allowed)}? ({nef_shown} takes {', '.join(allowed)})")
            nef_params[f"nef.{key}"] = _typed_like(nef_native[key])(name, value)
        elif name.startswith("optimizer.params."):
            p = name[len("optimizer.params."):]
            allowed = OPTIMIZER_PARAMS[opt_choice]
            if p not in allowed:
                raise LegacyError(f"unknown flag {flag} for optimizer {opt_choice}; did you mean "
                                  f"--optimizer.params.{_closest(p, allowed)}? "
                                  f"({opt_choice} takes {', '.join(allowed)})")
            _optimizer_param(opt_choice, p, name, value, values, betas)
        elif name.startswith("scheduler.params."):
            p = name[len("scheduler.params."):]
            if p not in sched_native:
                allowed = sorted(sched_native)
                raise LegacyError(f"unknown flag {flag} for scheduler {sched_choice}; did you mean "
                                  f"--scheduler.params.{_closest(p, allowed)}? "
                                  f"({sched_choice} takes {', '.join(allowed)})")
            values[f"scheduler.{p}"] = _typed_like(sched_native[p])(name, value)
        elif name.startswith("task.") and name[len("task."):] in TASK_FLAGS:
            spec = TASK_FLAGS[name[len("task."):]]
            if task not in spec.tasks or mode not in spec.modes:
                where = ", ".join(f"--task=config/{t}.py:{m}" for t in spec.tasks for m in spec.modes)
                raise LegacyError(f"{flag} is a flag of {where}; this line runs --task=config/{task}.py:{mode}")
            converted = spec.convert(name, value)
            if name == "task.nef_dir":
                nef_dir = _unquote(value)
            elif spec.native is None:
                if spec.note:
                    notes.append(spec.note)
            else:
                values[spec.native] = converted
        else:
            raise _unknown_flag(name)

    if betas:
        default = list(opt_native.get("betas", [0.9, 0.999]))
        b = [betas.get("b1", repr(float(default[0]))), betas.get("b2", repr(float(default[1])))]
        values["optimizer.betas"] = f"[{b[0]},{b[1]}]"

    # 3. fit-a-nef's layout: NeFs live in <nef_dir>/<dataset name>/<nef name>
    if data_choice is not None:
        sub = f"{_group('dataset')[data_choice].get('name', data_choice)}/{nef_shown}"
    else:  # no dataset config chosen: let Hydra fill in the dataset's name
        sub = "${dataset.name}/" + nef_shown
    if nef_dir is None:
        values["task.nef_dir"] = f"{LEGACY_NEF_DIR_DEFAULT}/{sub}"
    else:
        values["task.nef_dir"] = hydra_str(nef_dir.rstrip("/") + "/", tail=sub)

    for key, default in defaults.items():
        if "." in key and key not in values:
            values[key] = _auto(key, "[" + ",".join(map(str, default)) + "]" if isinstance(default, list)
                                else str(default))

    overrides = [f"task={task}", f"nef={nef_choice}", f"optimizer={opt_choice}", f"scheduler={sched_choice}"]
    if data_choice is not None:
        overrides.append(f"dataset={data_choice}")
    merged = {**values, **nef_params}
    if merged.get("logger") != "wandb":   # wandb's settings mean nothing without wandb
        dropped = sorted(k for k in merged if k.startswith("logger."))
        for k in dropped:
            del merged[k]
        if dropped:
            notes.append(f"{', '.join(dropped)}: ignored without --task.log.use_wandb=True")
    order = ("logger", "task.seeds", "task.nef_dir", "task.train.", "task.log.", "task.",
             "dataset.", "nef.", "optimizer.", "scheduler.", "meta.", "hydra.")
    rank = {k: next(i for i, p in enumerate(order) if k.startswith(p)) for k in merged}
    overrides += [f"{k}={merged[k]}" for k in sorted(merged, key=rank.__getitem__)]  # stable
    return Translation(module=MODES[mode], overrides=overrides, task=task, mode=mode, notes=notes,
                       dry_run=dry_run, show_help=show_help)


def _optimizer_param(opt: str, p: str, flag: str, value, values: dict, betas: dict) -> None:
    """One optax optimizer parameter -> its torch.optim equivalent."""
    if p in ("b1", "b2"):
        betas[p] = _float(flag, value)
    elif p in ("eps", "weight_decay"):
        values[f"optimizer.{p}"] = _float(flag, value)
    elif p == "decay":
        values["optimizer.alpha"] = _float(flag, value)
    elif p == "momentum":
        values["optimizer.momentum"] = "0.0" if _is_none(value or "") else _float(flag, value)
    elif p == "centered":
        values["optimizer.centered"] = _bool(flag, value)
    elif p == "nesterov":
        b = _bool(flag, value)
        if opt == "rmsprop":
            if b == "true":
                raise LegacyError(f"--{flag}=True: torch has no equivalent (torch.optim.RMSprop has no "
                                  "nesterov option)")
        else:
            values["optimizer.nesterov"] = b
    elif p in ("eps_root", "initial_scale"):
        if float(_float(flag, value)) != 0.0:
            raise LegacyError(f"--{flag}={value}: torch has no equivalent of optax's {p}; only 0 is supported")
    else:  # pragma: no cover - OPTIMIZER_PARAMS and this function list the same names
        raise LegacyError(f"unknown flag --{flag}")


# -- running -------------------------------------------------------------------------------------

USAGE = """usage: python tasks/image/fit.py [--task=config/image.py:fit|tune|inspect|find_init]
       [--nef=config/nef.py:SIREN|MLP|RFFNet|FourierNet|GaborNet] [--optimizer=config/optimizer.py:adam|...]
       [--scheduler=config/scheduler.py:constant_schedule|warmup_cosine_decay_schedule]
       [--nef.params.X=v] [--optimizer.params.X=v] [--scheduler.params.X=v] [--task.X=v ...] [--dry-run]

fit-a-nef command lines, translated to the native `python -m tasks.fit <overrides>` (printed first).
--dry-run prints the native command and exits. Known flags:
"""


def _fail(msg: str, code: int = 2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def main(argv: Optional[list] = None, default_task: str = "image") -> None:
    """Translate ``argv`` (default: sys.argv[1:]), print the native command, and run it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        t = translate(argv, default_task=default_task)
    except LegacyError as e:
        _fail(str(e))
    if t.show_help:
        print(USAGE + "\n".join(f"  --{f}" for f in known_flags()))
        sys.exit(0)
    print(f"native command: {t.command}", flush=True)
    for note in t.notes:
        print(f"note: {note}", file=sys.stderr)
    if t.dry_run:
        sys.exit(0)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.find_spec(t.module)
    # exactly `python -m <module> <overrides>`: run as __main__, so Hydra finds conf/ next to it
    sys.argv = [spec.origin or t.module, *t.overrides]
    runpy.run_module(t.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
