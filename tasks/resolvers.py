"""OmegaConf resolvers used by the configs (each entry point registers them before Hydra composes).

``${fitnef.sweep_suffix:}``: "@" + the run's own command-line overrides as ``key:value`` joined by "+"
(e.g. ``SIREN@nef:siren+scheduler.value:1e-3``), in a single run as in each job of a multirun, leaving
out run-only keys (tasks/identity.py ``RUN_ONLY_KEYS``, e.g. task.shard, and everything under them) and the keys of the other entry points (inspect.*, compare, ...);
"" when nothing is left (plain ``python -m tasks.fit``: ``outputs/nefs/digits/SIREN``). So two commands
that fit different NeFs never share a default store, while the shards of one fit, and the inspect or
status of that fit with the same overrides, name the same one. The name is a valid unquoted Hydra
value: ``task.nef_dir=<that path>`` can be typed as is.
"""
import re

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from .identity import is_run_only

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-%@]")
# keys of tasks.inspect / status / tune / find_init that do not change what a fit computes
OTHER_ENTRY_POINT_KEYS = ("inspect", "compare", "json", "tune", "hparams_search", "meta")


def _clean(text: str) -> str:
    text = re.sub(r"[\[\]()'\" ]", "", text)
    return _UNSAFE.sub("_", text)


def sweep_suffix() -> str:
    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    items = []
    for ov in OverridesParser.create().parse_overrides(list(hc.overrides.task)):
        key = ov.get_key_element()
        if is_run_only(key) or _other_entry_point(key.lstrip("+~")) or ov.is_delete():
            continue
        items.append(f"{_clean(key.lstrip('+~'))}:{_clean(ov.get_value_element_as_str())}")
    return "@" + "+".join(sorted(items)) if items else ""


def _other_entry_point(key: str) -> bool:
    """``key`` belongs to tasks.inspect / status / tune / find_init, not to what a fit computes."""
    return any(key == k or key.startswith(k + ".") for k in OTHER_ENTRY_POINT_KEYS)


def register() -> None:
    if not OmegaConf.has_resolver("fitnef.sweep_suffix"):
        OmegaConf.register_new_resolver("fitnef.sweep_suffix", sweep_suffix)
