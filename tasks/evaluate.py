"""Judge a neural dataset by what it is for: ``python -m tasks.evaluate task.nef_dir=<store>``.

Trains a weight-space classifier (``classifier=mlp`` on the standardised flat parameters, or
``classifier=invariant``, DeepSets over hidden neurons) on the store's done rows to predict their
signals' labels, and reports its test accuracy. Splits are by signal (all seeds of an image in one
split; the standard split where the dataset has one, ``evaluate.split_fractions`` otherwise, see
nefs/splits.py); training stops early on validation accuracy (``evaluate.patience``), and the test
split is scored with the weights of the best validation epoch. Writes into the Hydra run dir:

- ``metrics.json``: test accuracy, per-class accuracy, the confusion matrix, best validation
  accuracy, rows and signals per split, the store's mean PSNR;
- ``confusion.png``: the test confusion matrix (rows: true class, columns: predicted);
- with ``compare=[<store>,...]``: every store trained and tested the same way, ``compare.md`` /
  ``compare.json`` (one table) and ``accuracy_vs_<metric>.png`` (the stores' fit metric: psnr, iou) (needs matplotlib, ``fitnef[inspect]``).

Fit-a-nef's finding to check with it: a shared initialisation (``task.train.fixed_init=true``)
makes the weights far easier to classify than a random one, at a similar PSNR.
"""
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf


from .entry import command

log = logging.getLogger(__name__)


def _classifier(cfg_classifier, layout, num_classes):
    from hydra.utils import instantiate

    kwargs = OmegaConf.to_container(cfg_classifier, resolve=True)
    for key in ("name", "normalize"):
        kwargs.pop(key, None)
    return instantiate(kwargs, _partial_=True)(layout=layout, num_classes=num_classes)


def _accuracy(model, x, y, batch_size=1024):
    model.eval()
    if len(y) == 0:  # an empty split (no test split in a tuning trial)
        return float("nan"), y.clone()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    return float((pred == y).float().mean()) if len(y) else float("nan"), pred


def evaluate_store(path, cfg: DictConfig, progress: bool = True) -> dict:
    """Train ``cfg.classifier`` on one store and score it; the report that metrics.json holds."""
    from tqdm.auto import tqdm

    from nefs.splits import check_classes, dataset_name
    from nefs.store import open_store
    from nefs.weight_space import GaussianNoise, RandomPermutation, normalization_stats, normalize_mode

    from .plan import resolve_device

    ev = cfg.evaluate
    device = resolve_device(cfg.get("device", "cpu"))
    store = open_store(path)
    done = np.flatnonzero(store.done)
    if ev.get("max_rows"):
        done = done[:int(ev.max_rows)]
    from .protocols import protocol_splits

    splits, protocol = protocol_splits(store, done, str(ev.get("protocol", "standard")), list(ev.split_fractions),
                                       int(ev.split_seed))
    classes = check_classes(store, splits, need=[k for k in splits if k != "test" or len(splits[k])])
    num_classes = int(classes.max()) + 1
    labels = store.labels
    mode = normalize_mode(cfg.classifier.get("normalize", "param"))
    raw = {k: torch.from_numpy(np.asarray(store.params.get_orthogonal_selection((r, slice(None))))).to(device)
           for k, r in splits.items()}
    if ev.get("canonical_signs"):
        from nefs.weight_space import CanonicalSigns

        raw = {k: CanonicalSigns(store.layout)(v.cpu()).to(device) for k, v in raw.items()}
    y = {k: torch.from_numpy(labels[r]).to(device) for k, r in splits.items()}
    mean, std = (torch.from_numpy(a).to(device) for a in normalization_stats(raw["train"].cpu().numpy(),
                                                                             store.layout, mode))
    x = {k: (v - mean) / std for k, v in raw.items()}

    seed = int(ev.seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    augment = []
    if ev.augment_permute:
        augment.append(RandomPermutation(store.layout, gen))
    if float(ev.noise_std) > 0:
        augment.append(GaussianNoise(float(ev.noise_std), gen))
    model = _classifier(cfg.classifier, store.layout, num_classes).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=float(ev.lr), weight_decay=float(ev.weight_decay))
    n_train, bs = len(y["train"]), int(ev.batch_size)
    best = (-1.0, 0, None)
    start = time.perf_counter()
    bar = tqdm(range(int(ev.max_epochs)), desc=f"{cfg.classifier.name} on {Path(path).name}", unit="epoch",
               disable=not progress, dynamic_ncols=True)
    epoch = 0
    for epoch in bar:
        model.train()
        order = torch.randperm(n_train, generator=gen).to(device)
        total = 0.0
        for i in range(0, n_train, bs):
            idx = order[i:i + bs]
            if augment:
                xb = raw["train"][idx].cpu()
                for t in augment:
                    xb = t(xb)
                xb = (xb.to(device) - mean) / std
            else:
                xb = x["train"][idx]
            loss = torch.nn.functional.cross_entropy(model(xb), y["train"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        val_acc, _ = _accuracy(model, x["val"], y["val"])
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        bar.set_postfix(loss=f"{total / n_train:.3f}", val=f"{val_acc:.3f}", best=f"{best[0]:.3f}")
        if epoch - best[1] >= int(ev.patience):
            break
    bar.close()
    model.load_state_dict(best[2])
    test_acc, pred = _accuracy(model, x["test"], y["test"])
    train_acc, _ = _accuracy(model, x["train"], y["train"])
    truth = y["test"].cpu().numpy()
    pred = pred.cpu().numpy()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (truth, pred), 1)
    per_class = {int(c): float(confusion[c, c] / confusion[c].sum()) for c in classes}
    fit_metric = store.metric[done]   # the store's own metric: psnr for images and audio, iou for shapes
    return {
        "store": str(store.path), "classifier": str(cfg.classifier.name), "accuracy": test_acc,
        "val_accuracy": best[0], "train_accuracy": train_acc, "per_class_accuracy": per_class,
        "confusion": confusion.tolist(), "classes": [int(c) for c in classes],
        "best_epoch": best[1], "epochs": epoch + 1, "normalize": mode,
        "augment": {"permute": bool(ev.augment_permute), "noise_std": float(ev.noise_std)},
        "canonical_signs": bool(ev.get("canonical_signs", False)),
        "rows": {k: int(len(v)) for k, v in splits.items()}, "protocol": protocol,
        "signals": {k: int(len(np.unique(store.signal_idx[v]))) for k, v in splits.items()},
        "dataset": dataset_name(store), "metric": store.metric_name, "metric_unit": store.metric_info.unit,
        f"store_{store.metric_name}": float(np.nanmean(fit_metric)) if len(fit_metric) else None,
        "fixed_init": (store.config.get("task", {}).get("train", {}) or {}).get("fixed_init"),
        "wall_s": time.perf_counter() - start,
    }


# -- pictures -------------------------------------------------------------------------------------
def confusion_png(confusion: np.ndarray, classes, path: Path, cell: int = 40) -> None:
    """A heatmap of the confusion matrix, each row shaded by its share of that true class (pillow only)."""
    from PIL import Image, ImageDraw

    confusion = np.asarray(confusion)[np.ix_(classes, classes)]
    k = len(classes)
    margin = 30
    img = Image.new("RGB", (margin + k * cell + 4, margin + k * cell + 4), "white")
    draw = ImageDraw.Draw(img)
    share = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    for i in range(k):
        draw.text((4, margin + i * cell + cell // 3), str(classes[i]), fill="black")
        draw.text((margin + i * cell + cell // 3, 8), str(classes[i]), fill="black")
        for j in range(k):
            shade = int(255 * (1 - share[i, j]))
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1)
            draw.rectangle(box, fill=(shade, shade, 255))
            draw.text((box[0] + 4, box[1] + cell // 3), str(confusion[i, j]),
                      fill="white" if shade < 128 else "black")
    img.save(path)


def compare_table(reports) -> str:
    """One row per store; the fit's metric column named by the stores' own metric (psnr (dB), iou), or by
    each row when stores of different metrics are compared."""
    names = {(r["metric"], r.get("metric_unit", "")) for r in reports}
    one = len(names) == 1
    metric, unit = next(iter(names))
    head = (f"{metric} ({unit})" if unit else metric) if one else "fit metric"
    lines = [f"| store | classifier | fixed_init | {head} | val acc | test acc | rows (train/val/test) |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        p = r.get(f"store_{r['metric']}")
        value = "-" if p is None else f"{p:.2f}" if r.get("metric_unit") == "dB" else f"{p:.4f}"
        if not one:
            value = f"{r['metric']} {value}"
        lines.append(f"| {r['store']} | {r['classifier']} | {r['fixed_init']} | "
                     f"{value} | {r['val_accuracy']:.4f} | {r['accuracy']:.4f} | "
                     f"{r['rows']['train']}/{r['rows']['val']}/{r['rows']['test']} |")
    return "\n".join(lines)


def accuracy_vs_metric_png(reports, path: Path) -> bool:
    """Test accuracy against each store's mean fit metric (psnr, iou: the stores' own)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning(f"{path.name} needs matplotlib: pip install 'fitnef[inspect]'")
        return False
    fig, ax = plt.subplots(figsize=(5, 4))
    for r in reports:
        p = r.get(f"store_{r['metric']}")
        ax.scatter([p], [r["accuracy"]])
        ax.annotate(Path(r["store"]).name, (p, r["accuracy"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"store mean {reports[0]['metric']}")
    ax.set_ylabel(f"test accuracy ({reports[0]['classifier']})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def compare_stores(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [s for s in value.split(",") if s]
    return [str(s) for s in value]


def run(cfg: DictConfig, out: Path) -> list:
    progress = bool(cfg.task.log.get("progress", True))
    report = evaluate_store(cfg.task.nef_dir, cfg, progress)
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    confusion_png(report["confusion"], report["classes"], out / "confusion.png")
    reports = [report]
    others = compare_stores(cfg.get("compare"))
    if others:
        for other in others:
            r = evaluate_store(other, cfg, progress)
            (out / f"metrics_{Path(other).name}.json").write_text(json.dumps(r, indent=1))
            reports.append(r)
        table = compare_table(reports)
        (out / "compare.md").write_text(table + "\n")
        (out / "compare.json").write_text(json.dumps(reports, indent=1))
        accuracy_vs_metric_png(reports, out / f"accuracy_vs_{reports[0]['metric']}.png")
        print(table)
    return reports


@command("evaluate")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    out = Path(HydraConfig.get().runtime.output_dir)
    reports = run(cfg, out)
    r = reports[0]
    print(f"{r['classifier']} on {r['store']}: test accuracy {r['accuracy']:.4f} (val {r['val_accuracy']:.4f}, "
          f"best epoch {r['best_epoch'] + 1}/{r['epochs']}; {r['rows']['train']}/{r['rows']['val']}/"
          f"{r['rows']['test']} train/val/test rows); wrote metrics.json, confusion.png to {out}")


if __name__ == "__main__":
    main()
