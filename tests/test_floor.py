"""The floor plan: nefs/ is a library that knows no modality and imports nothing above it; a store
decodes its rows through the registry, loading only its own modality."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.fitting import fit

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.fixture(scope="module")
def image_store(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    path = tmp_path_factory.mktemp("floor") / "store"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            f"task.nef_dir={path}", "task.log.progress=false", "task.train.end_idx=4", "task.train.num_steps=2",
            "task.train.compile=false", "dataset.resolution=8"])
    fit(cfg)
    return path


LOADED = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tasks', 'scripts')))"


@pytest.mark.slow
def test_reading_a_store_loads_no_task_or_script_module(image_store):
    loaded = _run(f"""
import nefs
s = nefs.open_store({str(image_store)!r})
s.params[:]; s.labels; s.signal_idx; s.done; s["psnr"]
m = s.build_model(); m.load_state_dict(s.unflatten(0)); len(s.dataset())
{LOADED}""")
    assert loaded == "[]", loaded


@pytest.mark.slow
def test_decoding_a_row_loads_only_its_modality(image_store):
    loaded = eval(_run(f"""
import nefs
s = nefs.open_store({str(image_store)!r})
assert tuple(s.reconstruct([0, 1]).shape) == (2, 1, 8, 8)
{LOADED}"""))
    assert "tasks.image.modality" in loaded
    others = [m for m in loaded if m.startswith(("tasks.shape", "tasks.audio", "tasks.fitting", "tasks.plan", "scripts"))]
    assert not others, others


def test_a_store_names_the_class_that_decodes_it(image_store):
    import nefs

    info = nefs.open_store(image_store).modality_info
    assert (info["name"], info["class"]) == ("image", "tasks.image.modality:ImageModality")


def test_nefs_imports_nothing_above_it():
    bad = []
    for f in sorted((ROOT / "nefs").rglob("*.py")):
        text = f.read_text()
        for pat in (r"^\s*(from|import)\s+(tasks|scripts)\b", r"hydra\.main", r"ConfigStore", r"HydraConfig"):
            if re.search(pat, text, re.M):
                bad.append(f"{f.relative_to(ROOT)}: {pat}")
    assert not bad, bad


def test_generic_tasks_code_never_names_a_modality():
    """fit, inspect, status, loggers, tune, ... reach modalities through nefs.modality only."""
    bad = []
    for f in sorted((ROOT / "tasks").glob("*.py")):
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"""==\s*["'](image|shape|audio)["']|["'](image|shape|audio)["']\s*==|tasks\.(image|shape|audio)""", line):
                bad.append(f"{f.name}:{n}: {line.strip()}")
    assert not bad, bad


@pytest.mark.slow
def test_importing_the_packages_registers_nothing():
    """No import side effects: Hydra's ConfigStore and OmegaConf's resolvers are untouched by imports."""
    out = _run("""
import nefs, nefs.engine, nefs.store, tasks, tasks.fitting, tasks.plan
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
print(sorted(ConfigStore.instance().repo.get('task', {}) if hasattr(ConfigStore.instance(), 'repo') else []),
      OmegaConf.has_resolver('fitnef.sweep_suffix'))""")
    assert out == "[] False", out
