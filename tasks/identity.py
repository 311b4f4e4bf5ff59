"""What a store's NeFs depend on: the resolved config minus the run-only keys.

``RUN_ONLY_KEYS`` is the one list of keys that say how a run executes, not what it computes (a key
covers its whole subtree). Everything else is derived from it: a store's identity (runs that differ only
in these may share a store; any other difference is refused, naming the keys), and the default store
name of a sweep job (tasks/resolvers.py leaves these out, so shards of one fit share one store).
``upgrade_identity``: an identity recorded by an earlier version, in today's keys.
"""
import copy

from omegaconf import DictConfig, OmegaConf

RUN_ONLY_KEYS = (
    "device", "logger", "hydra",
    "export",                         # the default format of scripts.export_nefs (recorded as a store attribute)
    "task.modality",                  # where the modality's code lives, not what it computes
    "task.nef_dir", "task.shard", "task.num_shards", "task.log",
    "task.train.start_idx", "task.train.end_idx", "task.train.num_parallel_nefs", "task.train.compile",
    "task.train.compile_mode",
    "task.train.micro_batch", "task.train.kernel", "task.train.continuous", "task.train.meta_init_path",
    "task.train.checkpoint_every",
    "dataset.path", "dataset.out_channels",
    "dataset.download", "dataset.mirror",   # where the files come from, not what they are (checksums)
)

# How identities recorded by earlier versions read today (``upgrade_identity``): where identities are compared (a
# store's config, tasks/fitting.py; an in-flight state, tasks/preempt.py) a recorded one is first brought to
# today's keys, so a store written before a key was added, renamed or retired resumes under the config that
# computes what it computed, and is refused (naming the key) under any other. The recorded config itself is
# never rewritten. When a change to conf/ changes the identity, say here how an old one reads.
#
# Keys that entered the identity later, with the value every store recorded without them was fitted with (not
# the current default, should that change).
IMPLICIT_KEYS = {
    "task.train.matmul_precision": "highest",   # fp32 matmul inputs: all there was before the option
}
# Keys renamed: old -> new (the one early-stop key of issue 12).
RENAMED_KEYS = {
    "task.train.target_psnr": "task.train.target",
    "task.train.target_iou": "task.train.target",
}
# Keys removed without changing what a fit computes: dropped from a recorded identity, whatever their value.
RETIRED_KEYS = (
    "task.train.multi_gpu",   # fit-a-nef's flag; devices and shards are run-only here
    "task.wandb",             # logging settings, now the run-only logger group
)


def _parent(d: dict, dotted: str, create: bool = False):
    """(the dict holding ``dotted``'s last part, that part), or (None, last) if a parent is missing."""
    *parents, last = dotted.split(".")
    node = d
    for p in parents:
        if create and isinstance(node, dict) and p not in node:
            node[p] = {}
        node = node.get(p) if isinstance(node, dict) else None
    return (node if isinstance(node, dict) else None), last


def upgrade_identity(recorded: dict) -> dict:
    """A recorded identity in today's keys (a copy): renamed keys moved, retired ones dropped, keys added
    since filled with the value they implicitly had (only where their parent exists)."""
    out = copy.deepcopy(recorded)
    if not isinstance(out, dict):
        return out
    for old, new in RENAMED_KEYS.items():
        node, last = _parent(out, old)
        if node is not None and last in node:
            value = node.pop(last)
            target, new_last = _parent(out, new, create=True)
            target.setdefault(new_last, value)
    for dotted in RETIRED_KEYS:
        node, last = _parent(out, dotted)
        if node is not None:
            node.pop(last, None)
    for dotted, value in IMPLICIT_KEYS.items():
        node, last = _parent(out, dotted)
        if node is not None:
            node.setdefault(last, value)
    return out


def is_run_only(key: str) -> bool:
    """``key`` (dotted, e.g. ``task.log.progress``) is or lies under a run-only key."""
    key = key.lstrip("+~")
    return any(key == k or key.startswith(k + ".") for k in RUN_ONLY_KEYS)


def identity(cfg: DictConfig) -> dict:
    """The resolved config minus run-only keys: what a store's NeFs depend on."""
    d = OmegaConf.to_container(cfg, resolve=True)
    for dotted in RUN_ONLY_KEYS:
        node, last = _parent(d, dotted)
        if node is not None:
            node.pop(last, None)
    return d
