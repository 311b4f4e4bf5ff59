"""The README's single-run examples on the bundled digits run in the order written, each into its own store."""
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # fits through fresh processes (a pip install, for packaging)

ROOT = Path(__file__).resolve().parents[1]

# In README order; each must appear there verbatim (so the test follows the README). Small versions: fits
# fit 8 NeFs (task.train.end_idx is a run-only key: the store name stays the README's).
EXAMPLES = [
    "python -m tasks.fit",
    "python -m tasks.fit nef=mlp nef.hidden_dim=32 optimizer=adamw scheduler=warmup_cosine",
    "python -m tasks.fit nef=siren nef.omega_0=30 scheduler.value=1e-3 task.train.num_steps=1000",
    "python -m tasks.inspect task.nef_dir=outputs/nefs/digits/SIREN",
    "python -m tasks.inspect nef=mlp nef.hidden_dim=32 optimizer=adamw scheduler=warmup_cosine",
    "python -m tasks.inspect task.nef_dir=outputs/nefs/digits/SIREN \\\n"
    "    compare=outputs/nefs/digits/MLP@nef.hidden_dim:32+nef:mlp+optimizer:adamw+scheduler:warmup_cosine",
    "python -m tasks.status task.nef_dir=outputs/nefs/digits/SIREN",
]


def test_readme_single_run_examples_in_order(tmp_path):
    readme = (ROOT / "README.md").read_text()
    nefs = tmp_path / "nefs"
    for i, example in enumerate(EXAMPLES):
        assert example in readme, f"README no longer has: {example}"
        args = shlex.split(example.replace("\\\n", " ").replace("outputs/nefs", str(nefs)))[1:]
        extra = {"tasks.fit": ["task.train.end_idx=8"], "tasks.inspect": ["inspect.num_samples=1"]}.get(args[1], [])
        if args[1] != "tasks.status":  # status writes no run dir
            extra.append(f"hydra.run.dir={tmp_path / f'run{i}'}")
        r = subprocess.run([sys.executable, *args, *extra, "task.log.progress=false"], cwd=ROOT,
                           capture_output=True, text=True, timeout=600, env={**os.environ, "NEF_PATH": str(nefs)})
        assert r.returncode == 0, f"{example}\n{r.stderr[-2000:]}"
    stores = sorted(p.name for p in (nefs / "digits").iterdir() if (p / "zarr.json").exists())
    assert stores == ["MLP@nef.hidden_dim:32+nef:mlp+optimizer:adamw+scheduler:warmup_cosine", "SIREN",
                      "SIREN@nef.omega_0:30+nef:siren+scheduler.value:0.001+task.train.num_steps:1000"]
