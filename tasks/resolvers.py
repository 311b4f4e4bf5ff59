"""OmegaConf resolvers used by the configs (each entry point registers them before Hydra composes).

``${fitnef.sweep_suffix:}``: "" in a single run; in a multirun, "@" + the job's own overrides as
``key:value`` joined by "+" (e.g. ``SIREN@nef:siren+scheduler.value:1e-3``), leaving out run-only
keys (tasks/identity.py ``RUN_ONLY_KEYS``, e.g. task.shard). So
the default ``task.nef_dir`` of every sweep job is its own store, while the shards of one fit share
one. The name is a valid unquoted Hydra value: ``task.nef_dir=<that path>`` can be typed as is.
"""
import re

from omegaconf import OmegaConf

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-%@]")


def _clean(text: str) -> str:
    text = re.sub(r"[\[\]()'\" ]", "", text)
    return _UNSAFE.sub("_", text)


def sweep_suffix() -> str:
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return ""
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return ""
    from .identity import is_run_only

    items = []
    for ov in OverridesParser.create().parse_overrides(list(hc.overrides.task)):
        key = ov.get_key_element()
        if is_run_only(key) or ov.is_delete():
            continue
        items.append(f"{_clean(key.lstrip('+~'))}:{_clean(ov.get_value_element_as_str())}")
    return "@" + "+".join(sorted(items)) if items else ""


def register() -> None:
    if not OmegaConf.has_resolver("fitnef.sweep_suffix"):
        OmegaConf.register_new_resolver("fitnef.sweep_suffix", sweep_suffix)
