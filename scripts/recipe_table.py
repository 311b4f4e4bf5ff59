"""What a fitting recipe does to a downstream model: fit each recipe on one dataset, train the weight-space
classifiers on each store, print one markdown table (docs/evaluation.md, "The parties' recipes").

    python -m scripts.recipe_table --dataset mnist --out outputs/recipes/mnist     # the 5000-digit sample
    python -m scripts.recipe_table --dataset digits --out outputs/recipes/digits
    python -m scripts.recipe_table --recipes defaults dwsnets_mnist --set task.train.end_idx=256   # a quick look

Each recipe is one ``python -m tasks.fit experiment=<recipe> dataset=<dataset>`` (``defaults``: no experiment,
fitnef's own settings) and one ``python -m tasks.evaluate classifier=<c>`` per classifier on its store, all with
the same split (``evaluate.protocol=standard``), so the rows differ only by the recipe. A store already complete
is not fitted again (the fit resumes or does nothing), so a rerun after a crash redoes only what is missing.
Results go to <out>/results.json as well.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

RECIPES = ["defaults", "arena_mnist", "dwsnets_mnist", "nfn_mnist"]
CLASSIFIERS = ["mlp", "invariant"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", help="the dataset config (dataset=...)")
    p.add_argument("--recipes", nargs="+", default=RECIPES, help="experiment names, or 'defaults'")
    p.add_argument("--classifiers", nargs="+", default=CLASSIFIERS)
    p.add_argument("--set", nargs="*", default=["task.seeds=[0]"],
                   help="overrides for every fit (default task.seeds=[0]: one INR per image, so NFN's 10 "
                        "augmentation copies are left out)")
    p.add_argument("--out", default="outputs/recipes", help="folder for the stores, runs and results.json")
    return p.parse_args(argv)


def _run(args: list, log: Path) -> None:
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"error: `python -m {' '.join(args)}` exited {done.returncode}; its log: {log}")


def measure(recipe: str, args, out: Path) -> dict:
    """Fit one recipe's store and score it with each classifier."""
    store, runs = out / "stores" / recipe, out / "runs" / recipe
    runs.mkdir(parents=True, exist_ok=True)
    experiment = [] if recipe == "defaults" else [f"experiment={recipe}"]
    _run(["tasks.fit", *experiment, f"dataset={args.dataset}", f"task.nef_dir={store}", *args.set,
          "task.log.progress=false", f"hydra.run.dir={runs / 'fit'}"], runs / "fit.log")
    fit = json.loads((runs / "fit" / "summary.json").read_text())
    steps = OmegaConf.load(runs / "fit" / ".hydra" / "config.yaml").task.train.num_steps
    row = {"recipe": recipe, "psnr_mean": fit["metric_mean"], "psnr_std": fit["metric_std"], "nefs": fit["fitted"],
           "median_steps": fit["median_steps"], "reached": fit["reached"], "target": fit["target"], "num_steps": steps,
           "nefs_per_s": fit["nefs_per_s"]}
    for c in args.classifiers:
        _run(["tasks.evaluate", f"task.nef_dir={store}", f"classifier={c}", "evaluate.protocol=standard",
              f"hydra.run.dir={runs / c}"], runs / f"{c}.log")
        row[c] = json.loads((runs / c / "metrics.json").read_text())["accuracy"]
    return row


def table(rows: list, classifiers: list) -> str:
    head = ["recipe", "PSNR (dB)", "steps (median)", "NeFs/s", *classifiers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        steps = f"{r['median_steps']:.0f}" if r["median_steps"] is not None else f"{r['num_steps']} (no stop)"
        if r["target"] is not None:
            steps += f" ({r['reached']}/{r['nefs']} reached {r['target']:g} dB)"
        cells = [f"`{r['recipe']}`", f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}", steps, f"{r['nefs_per_s']:.1f}",
                 *(f"{r[c]:.3f}" for c in classifiers)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for recipe in args.recipes:
        rows.append(measure(recipe, args, out))
        print(json.dumps(rows[-1]), flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(table(rows, args.classifiers))


if __name__ == "__main__":
    main()
