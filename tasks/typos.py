"""Did-you-mean for the native command line, before Hydra composes.

Hydra answers ``nef=sirn`` with 16 lines and no suggestion, and ``task.train.num_step=10`` with advice to
write ``+task.train.num_step=10``, which then adds a key nothing reads: the fit silently trains the default
500 steps. So each entry point first checks its overrides against the conf/ tree and the composed config:
an unknown option of a config group, an unknown key, or a ``+key`` under ``task.``/``nef.``/``dataset.``
(where every key that is read is in the config) is one line on stderr naming the closest known one, exit
status 2. Overrides this does not understand (Hydra's own groups, sweeps over globs, ...) are left to Hydra.
"""
import difflib
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from omegaconf import DictConfig, ListConfig

from .resolvers import register

CONF = Path(__file__).resolve().parents[1] / "conf"
# keys whose every read key is in the config: a `+key` there is a typo or a key nothing reads
CLOSED_PREFIXES = ("task.", "nef.", "dataset.")
# Hydra command-line flags, and those that take a value
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--experimental-rerun"}
_SKIP_ALL = {"--help", "-h", "--hydra-help", "--info", "-i", "--config-path", "-cp", "--config-name", "-cn",
             "--config-dir", "-cd", "--shell-completion", "-sc"}


class Typo(Exception):
    pass


def group_options(group: str, conf: Path = CONF) -> List[str]:
    """Choices of a config group: its YAML files, plus structured configs stored for it (not *_schema)."""
    names = {p.stem for p in (conf / group).glob("*.yaml")}
    try:
        names |= {n[:-5] if n.endswith(".yaml") else n for n in ConfigStore.instance().list(group)}
    except (OSError, KeyError, ValueError, IOError):
        pass
    return sorted(n for n in names if not n.endswith("_schema"))


def groups(conf: Path = CONF) -> List[str]:
    return sorted(p.name for p in conf.iterdir() if p.is_dir() and not p.name.startswith("_"))


def closest(word: str, candidates: Sequence[str], cutoff: float = 0.6) -> Optional[str]:
    best = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return best[0] if best else None


def _overrides(argv: Sequence[str]):
    """(parsed overrides, text) of the Hydra overrides in argv; None if the command is not a plain run."""
    parser = OverridesParser.create()
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _SKIP_ALL or arg.split("=", 1)[0] in _SKIP_ALL:
            return None
        if arg.startswith("-"):
            skip = arg in _FLAGS_WITH_VALUE
            continue
        try:
            out.append((parser.parse_override(arg), arg))
        except Exception:  # noqa: BLE001 - Hydra will report its own syntax errors
            continue
    return out


def _choices(ov) -> Optional[List[str]]:
    """The option names an override of a group asks for; None for sweeps we cannot list (glob, range)."""
    value = ov.value()
    if isinstance(value, ChoiceSweep):
        return [str(v) for v in value.list]
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [str(value)]
    return None


def _first_choice(ov, text: str) -> Optional[str]:
    names = _choices(ov)
    return None if not names else f"{ov.get_key_element()}={names[0]}"


def _all_keys(node, prefix: str = "") -> List[str]:
    out = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            out.append(full)
            try:
                child = node._get_node(k)
            except Exception:  # noqa: BLE001
                continue
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
                out += _all_keys(child, full + ".")
    return out


def _has_key(cfg, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, DictConfig):
            if part not in node.keys():
                return False
            node = node._get_node(part)
        elif isinstance(node, ListConfig):
            return part.isdigit() and int(part) < len(node)
        else:
            return False
    return True


def check(argv: Sequence[str], config_name: str, conf: Path = CONF) -> List[str]:
    """Raise ``Typo`` (one line) for the first unknown option or key in argv; else return the overrides
    checked and found known (those it leaves to Hydra are not among them)."""
    parsed = _overrides(argv)
    if not parsed:
        return []
    checked = []
    known_groups = groups(conf)
    group_overrides, key_overrides = [], []
    for ov, text in parsed:
        key = ov.get_key_element().lstrip("+~")
        if ov.is_delete() or key.startswith("hydra") or "/" in key or "@" in key:
            continue
        if key in known_groups and not ov.is_add():
            names = _choices(ov)
            options = group_options(key, conf)
            for name in names or ():
                if name not in options and name not in ("null",):
                    guess = closest(name, options, cutoff=0.0)
                    raise Typo(f"{key}={name}: no such option; did you mean {key}={guess}? "
                               f"(choices: {', '.join(options)})")
            group_overrides.append(_first_choice(ov, text))
            if names:
                checked.append(text)
        else:
            key_overrides.append((ov, text, key))
    if not key_overrides:
        return checked
    cfg = _compose(config_name, [g for g in group_overrides if g], conf)
    if cfg is None:
        return checked
    keys = [k for k in _all_keys(cfg) if not k.startswith("hydra")]
    for ov, text, key in key_overrides:
        added = ov.is_add() or ov.is_force_add()
        if _has_key(cfg, key):
            if ov.is_add():  # Hydra's answer is several lines
                raise Typo(f"{text}: {key} is already a key; set it without the +: {text.lstrip('+')}")
            checked.append(text)
            continue
        if added and not key.startswith(CLOSED_PREFIXES):
            continue  # a new key elsewhere (e.g. an optimizer argument): Hydra adds it
        raise Typo(_unknown_key(text, key, added, cfg, keys, known_groups, conf))
    return checked


def _unknown_key(text: str, key: str, added: bool, cfg, keys: List[str], known_groups, conf) -> str:
    """The message for a key the config does not have: the closest key at the level where it went wrong."""
    parts = key.split(".")
    i = next(i for i in range(len(parts)) if not _has_key(cfg, ".".join(parts[:i + 1])))
    base = ".".join(parts[:i])
    children = [k[len(base) + 1:] if base else k for k in keys
                if (k.startswith(base + ".") if base else True) and "." not in (k[len(base) + 1:] if base else k)]
    head = f"{text}: no such key" + (", so nothing would read it" if added else "")
    if len(parts) == 1:  # nefs=siren: a group?
        guess = closest(parts[0], known_groups, 0.5)
        if guess:
            options = group_options(guess, conf)
            value = text.split("=", 1)[1] if "=" in text else "..."
            return f"{head}; did you mean {guess}={value}? (choices: {', '.join(options)})"
    below = [k for k in keys if k.startswith(base + ".") or not base]
    guess = closest(parts[i], children, 0.75)
    if guess:
        return f"{head}; did you mean {'.'.join(parts[:i] + [guess] + parts[i + 1:])}?"
    # the right name at another level (task.num_steps -> task.train.num_steps)
    same = [k for k in below if k.rsplit(".", 1)[-1] == parts[-1]]
    if same:
        return f"{head}; did you mean {same[0]}?"
    guess = closest(parts[i], children, 0.5)
    if guess:
        return f"{head}; did you mean {'.'.join(parts[:i] + [guess] + parts[i + 1:])}?"
    where = f"keys under {base}" if base else "top-level keys"
    return f"{head} ({where}: {', '.join(sorted(children))})"


def _compose(config_name: str, overrides: List[str], conf: Path):
    register()  # ${fitnef.sweep_suffix:} in conf/base/task.yaml

    if GlobalHydra.instance().is_initialized():
        return None  # inside another Hydra app (tests): nothing to check against safely
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except Exception:  # noqa: BLE001 - whatever fails here, Hydra reports in its own words
        return None


def refuse_typos(config_name: str, argv: Optional[Sequence[str]] = None) -> None:
    """For ``if __name__ == "__main__"``: exit 2 with one line on stderr on an unknown option or key."""
    try:
        check(sys.argv[1:] if argv is None else argv, config_name)
    except Typo as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
