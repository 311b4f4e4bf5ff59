"""Typos on the native command line: one line naming the closest option or key, exit status 2."""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.typos import Typo, check

ROOT = Path(__file__).resolve().parents[1]


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("module, args, expected", [
    ("tasks.fit", ["nef=sirn"], "error: nef=sirn: no such option; did you mean nef=siren? (choices: fouriernet, "
                                "gabornet, mlp, rffnet, siren, siren_audio, siren_dwsnets, siren_nfn, siren_scaled, siren_shape)"),
    ("tasks.fit", ["task.train.num_step=10"], "error: task.train.num_step=10: no such key; did you mean "
                                              "task.train.num_steps?"),
    ("tasks.fit", ["+task.train.num_step=10"], "error: +task.train.num_step=10: no such key, so nothing would read "
                                               "it; did you mean task.train.num_steps?"),
    ("tasks.inspect", ["inspect.num_sample=2"], "error: inspect.num_sample=2: no such key; did you mean "
                                                "inspect.num_samples?"),
    ("tasks.status", ["jsn=true"], "error: jsn=true: no such key; did you mean json?"),
    ("tasks.tune", ["tune.num_nef=3"], "error: tune.num_nef=3: no such key; did you mean tune.num_nefs?"),
    ("tasks.find_init", ["meta.outer_step=3"], "error: meta.outer_step=3: no such key; did you mean "
                                               "meta.outer_steps?"),
    ("tasks.evaluate", ["evaluate.max_epoch=3"], "error: evaluate.max_epoch=3: no such key; did you mean "
                                                 "evaluate.max_epochs?"),
])
def test_typo_is_one_line_with_a_suggestion(module, args, expected, monkeypatch, capsys):
    """Each command's main() as ``python -m`` calls it (the check runs before Hydra composes)."""
    main = importlib.import_module(module).main
    monkeypatch.setattr(sys, "argv", [module, *args])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == expected


@pytest.mark.slow
def test_python_dash_m_refuses_a_typo_in_one_line():
    """The same through the command line: ``python -m tasks.fit`` reaches main() and says one line."""
    r = _run("tasks.fit", "task.train.num_step=10")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: task.train.num_step=10: no such key; did you mean task.train.num_steps?"


@pytest.mark.parametrize("argv, message", [
    (["-m", "nef=siren,mlpp"], "nef=mlpp: no such option; did you mean nef=mlp?"),
    (["nefs=siren"], "nefs=siren: no such key; did you mean nef=siren?"),
    (["task.num_steps=3"], "did you mean task.train.num_steps?"),
    (["task.trian.num_steps=3"], "did you mean task.train.num_steps?"),
    (["+dataset.foo=3"], r"\+dataset.foo=3: no such key, so nothing would read it \(keys under dataset: "),
    (["+dataset.resolution=32"], r"already a key; set it without the \+: dataset.resolution=32"),
    (["task=shape", "task.train.target_iou=30"], "did you mean task.train.target?"),
])
def test_check_refuses(argv, message):
    with pytest.raises(Typo, match=message):
        check(argv, "config")


@pytest.mark.parametrize("argv, checked", [
    (["dataset=folder", "dataset.path=/x", "dataset.resolution=64"],   # a real key of image folders now
     ["dataset=folder", "dataset.path=/x", "dataset.resolution=64"]),
    (["dataset=celeba", "dataset.resolution=32", "dataset.crop=null"],
     ["dataset=celeba", "dataset.resolution=32", "dataset.crop=null"]),
    (["-m", "nef=siren,mlp", "scheduler.value=1e-3,1e-4", "hydra/launcher=joblib", "task.shard=range(2)"],
     ["nef=siren,mlp", "scheduler.value=1e-3,1e-4", "task.shard=range(2)"]),    # Hydra's own groups are Hydra's
    (["task=shape", "task.train.num_points=[64,64]"], ["task=shape", "task.train.num_points=[64,64]"]),
    (["+optimizer.foo=1", "task.nef_dir=/tmp/a@nef:mlp+x:1", "~logger", "--cfg", "job"],
     ["task.nef_dir=/tmp/a@nef:mlp+x:1"]),   # an optimizer argument is added by Hydra, a deletion is Hydra's
])
def test_check_lets_valid_commands_through(argv, checked):
    """Valid commands pass, and the overrides the check is for were checked (not skipped)."""
    assert check(argv, "config") == checked
