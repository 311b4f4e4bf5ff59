"""Progress of a store: ``python -m tasks.status task.nef_dir=<store>``.

Done / total, PSNR (the store's metric) so far, and per shard: the shards the store's last sharded
fit recorded, or an equal split of [0, T) given ``task.num_shards=<n>`` (both cut at the store's chunk
boundaries, as tasks.fit cuts them). Reads only; safe while
fits are writing. Takes every key of tasks.fit, so ``python -m tasks.status nef=mlp`` shows the
default MLP store. Also writes nothing to outputs/ (no Hydra run dir).
"""
import json

import numpy as np
from omegaconf import DictConfig

from nefs.errors import FitnefError
from nefs.store import open_store

from .entry import command
from .runs import shard_bounds


def _stat(values: np.ndarray) -> str:
    return f"{values.mean():.2f} ± {values.std():.2f}" if len(values) else "-"


def status(path, num_shards=None) -> dict:
    store = open_store(path)
    done = store.done
    metric = store.metric
    name = store.metric_name
    total = len(done)
    rec = dict(store.attrs.get("shards") or {})
    if num_shards is not None:
        n = int(num_shards)
        if n < 1:
            raise FitnefError(f"task.num_shards={n}: must be >= 1")
        start, end = (rec["start"], rec["end"]) if rec.get("num_shards") == n else (0, total)
        rec = {"num_shards": n, "start": start, "end": end}
    shards = []
    if rec.get("num_shards"):
        for k, (lo, hi) in enumerate(shard_bounds(int(rec["start"]), int(rec["end"]), int(rec["num_shards"]),
                                                     store.chunk_rows)):
            d = done[lo:hi]
            shards.append({"shard": k, "start": lo, "end": hi, "done": int(d.sum()), "total": hi - lo,
                           f"{name}_mean": float(metric[lo:hi][d].mean()) if d.any() else None})
    m = metric[done]
    return {"store": str(store.path), "done": int(done.sum()), "total": total, "metric": name,
            "unit": store.metric_info.unit,
            f"{name}_mean": float(m.mean()) if len(m) else None, f"{name}_std": float(m.std()) if len(m) else None,
            "shards": shards, "_values": m, "_done": done, "_metric": metric}


def report(st: dict) -> str:
    name = st["metric"]
    pct = 100.0 * st["done"] / st["total"] if st["total"] else 0.0
    unit = f" {st['unit']}" if st.get("unit") else ""
    lines = [f"store {st['store']}: {st['done']}/{st['total']} done ({pct:.1f}%), "
             f"{name} {_stat(st['_values'])}{unit}"]
    if st["shards"]:
        lines.append(f"{'shard':>5}  {'range':>17}  {'done':>15}  {'%':>6}  {name:>8}")
        for s in st["shards"]:
            d = st["_done"][s["start"]:s["end"]]
            p = 100.0 * s["done"] / s["total"] if s["total"] else 100.0
            lines.append(f"{s['shard']:>5}  {'[' + str(s['start']) + ', ' + str(s['end']) + ')':>17}  "
                         f"{str(s['done']) + '/' + str(s['total']):>15}  {p:>6.1f}  "
                         f"{_stat(st['_metric'][s['start']:s['end']][d]):>8}")
    return "\n".join(lines)


@command("status", share_cpus=False)   # reads a store, computes nothing: no thread pools to size
def main(cfg: DictConfig) -> None:
    num_shards = cfg.task.get("num_shards")
    explicit = num_shards if num_shards not in (None, 1) else None
    st = status(cfg.task.nef_dir, explicit)
    print(report(st))
    if cfg.get("json"):
        print(json.dumps({k: v for k, v in st.items() if not k.startswith("_")}))


if __name__ == "__main__":
    main()
