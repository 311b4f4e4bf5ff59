"""What a store's NeFs depend on: the resolved config minus the run-only keys.

``RUN_ONLY_KEYS`` is the one list of keys that say how a run executes, not what it computes (a key
covers its whole subtree). Everything else is derived from it: a store's identity (runs that differ only
in these may share a store; any other difference is refused, naming the keys), and the default store
name of a sweep job (tasks/resolvers.py leaves these out, so shards of one fit share one store).
``IMPLICIT_KEYS``: keys added to the identity later, and what stores recorded before them implicitly had.
"""
from omegaconf import DictConfig, OmegaConf

RUN_ONLY_KEYS = (
    "device", "logger", "hydra",
    "task.modality",                  # where the modality's code lives, not what it computes
    "task.nef_dir", "task.shard", "task.num_shards", "task.log",
    "task.train.start_idx", "task.train.end_idx", "task.train.num_parallel_nefs", "task.train.compile",
    "task.train.micro_batch", "task.train.kernel", "task.train.continuous", "task.train.meta_init_path",
    "task.train.checkpoint_every",
    "dataset.path", "dataset.out_channels",
)

# Keys that entered the identity after stores were first written, with the value every store recorded without
# them was fitted with (not the current default, should that change): where identities are compared (a store's
# config, tasks/fitting.py; an in-flight state, tasks/preempt.py) a recorded identity lacking one is read as
# having that value, so older stores resume under it and are refused under any other. Add a key here when a
# new key changes what is computed.
IMPLICIT_KEYS = {
    "task.train.matmul_precision": "highest",   # fp32 matmul inputs: all there was before the option
}


def is_run_only(key: str) -> bool:
    """``key`` (dotted, e.g. ``task.log.progress``) is or lies under a run-only key."""
    key = key.lstrip("+~")
    return any(key == k or key.startswith(k + ".") for k in RUN_ONLY_KEYS)


def identity(cfg: DictConfig) -> dict:
    """The resolved config minus run-only keys: what a store's NeFs depend on."""
    d = OmegaConf.to_container(cfg, resolve=True)
    for dotted in RUN_ONLY_KEYS:
        *parents, last = dotted.split(".")
        node = d
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return d
