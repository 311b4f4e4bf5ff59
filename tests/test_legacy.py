"""The fit-a-nef shim: tasks/legacy.py translates legacy command lines, flag by flag, and the
HOWTO's commands run verbatim through the legacy entry file (tasks/image/fit.py)."""
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.legacy import LegacyError, Translation, hydra_str, main, translate

ROOT = Path(__file__).resolve().parents[1]


def t(line: str, **kw) -> Translation:
    """Translate a command line as the shell would split it."""
    return translate(shlex.split(line), **kw)


def ov(line: str, **kw) -> dict:
    """The overrides of a translation as {key: value}."""
    return dict(o.split("=", 1) for o in t(line, **kw).overrides)


def error(line: str, **kw) -> str:
    with pytest.raises(LegacyError) as e:
        t(line, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -- config files: task / mode, nef, optimizer, scheduler ----------------------------------------


@pytest.mark.parametrize("spec, module, task", [
    ("config/image.py:fit", "tasks.fit", "image"),
    ("config/image.py", "tasks.fit", "image"),
    ("config/image.py:tune", "tasks.tune", "image"),
    ("config/image.py:inspect", "tasks.inspect", "image"),
    ("config/image.py:find_init", "tasks.find_init", "image"),
    ("config/shape.py:fit", "tasks.fit", "shape"),
    ("config/shape.py:tune", "tasks.tune", "shape"),
    ("config/shape.py:inspect", "tasks.inspect", "shape"),
    ("./config/image.py:fit", "tasks.fit", "image"),
])
def test_task_and_mode(spec, module, task):
    tr = t(f"--task={spec}")
    assert tr.module == module and tr.overrides[0] == f"task={task}"
    assert tr.command.startswith(f"python -m {module} task={task} ")


def test_default_task_comes_from_the_entry_file():
    assert t("", default_task="shape").overrides[0] == "task=shape"
    assert t("--task=config/image.py:fit", default_task="shape").overrides[0] == "task=image"


def test_task_errors():
    assert "config/image.py, config/shape.py" in error("--task=config/video.py:fit")
    assert "fit, tune, inspect, find_init" in error("--task=config/image.py:train")


@pytest.mark.parametrize("name, choice", [
    ("SIREN", "siren"), ("MLP", "mlp"), ("RFFNet", "rffnet"), ("FourierNet", "fouriernet"),
    ("GaborNet", "gabornet"), ("siren", "siren"), ("rffnet", "rffnet"), ("GABORNET", "gabornet"),
])
def test_nef_names(name, choice):
    assert ov(f"--nef=config/nef.py:{name}")["nef"] == choice
    assert ov(f"--nef config/nef.py:{name}")["nef"] == choice


def test_unknown_nef_names_the_value_and_the_allowed_ones():
    msg = error("--nef=config/nef.py:Foo")
    assert "'Foo'" in msg and all(n in msg for n in ("SIREN", "MLP", "RFFNet", "FourierNet", "GaborNet"))
    assert "config/nef.py" in error("--nef=config/optimizer.py:SIREN")


@pytest.mark.parametrize("name, choice", [
    ("Adam", "adam"), ("adam", "adam"), ("AdamW", "adamw"), ("adamw", "adamw"), ("SGD", "sgd"),
    ("sgd", "sgd"), ("RMSprop", "rmsprop"), ("rmsprop", "rmsprop"),
])
def test_optimizer_names(name, choice):
    assert ov(f"--optimizer=config/optimizer.py:{name}")["optimizer"] == choice
    assert ov(f"--optimizer config/optimizer.py:{name}")["optimizer"] == choice


def test_optimizer_defaults_to_fit_a_nefs_adamw():
    assert ov("")["optimizer"] == "adamw"
    assert "lamb" in error("--optimizer=config/optimizer.py:lamb")


@pytest.mark.parametrize("name, choice", [
    ("constant_scheduler", "constant"), ("constant_schedule", "constant"),
    ("warmup_cosine_decay_schedule", "warmup_cosine"), ("Constant_Schedule", "constant"),
])
def test_scheduler_names(name, choice):
    assert ov(f"--scheduler=config/scheduler.py:{name}")["scheduler"] == choice
    assert ov(f"--scheduler config/scheduler.py:{name}")["scheduler"] == choice


def test_unknown_scheduler():
    msg = error("--scheduler=config/scheduler.py:cosine")
    assert "'cosine'" in msg and "warmup_cosine_decay_schedule" in msg


# -- component parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["hidden_size", "hidden_dim"])
def test_hidden_size_and_hidden_dim(flag):
    assert ov(f"--nef.params.{flag}=256")["nef.hidden_dim"] == "256"
    assert ov(f"--nef.params.{flag} 256")["nef.hidden_dim"] == "256"


@pytest.mark.parametrize("nef, flag, value, key, want", [
    ("SIREN", "omega_0", "30", "nef.omega_0", "30.0"),
    ("SIREN", "num_layers", "4", "nef.num_layers", "4"),
    ("RFFNet", "std", "10", "nef.std", "10.0"),
    ("RFFNet", "learnable_coefficients", "False", "nef.learnable_coefficients", "false"),
    ("FourierNet", "num_filters", "4", "nef.num_filters", "4"),
    ("FourierNet", "input_scale", "16", "nef.input_scale", "16.0"),
    ("GaborNet", "alpha", "0.5", "nef.alpha", "0.5"),
    ("MLP", "num_layers", "2", "nef.num_layers", "2"),
])
def test_nef_params(nef, flag, value, key, want):
    assert ov(f"--nef=config/nef.py:{nef} --nef.params.{flag}={value}")[key] == want
    # the params may come before the --nef that they belong to
    assert ov(f"--nef.params.{flag} {value} --nef config/nef.py:{nef}")[key] == want


def test_nef_param_of_another_nef_is_an_error():
    msg = error("--nef=config/nef.py:MLP --nef.params.omega_0=3")
    assert "--nef.params.omega_0" in msg and "MLP" in msg


@pytest.mark.parametrize("line, want", [
    ("--optimizer.params.b1=0.8", "[0.8,0.999]"),
    ("--optimizer.params.b2=0.99", "[0.9,0.99]"),
    ("--optimizer.params.b1=0.5 --optimizer.params.b2 0.9", "[0.5,0.9]"),
    ("--optimizer=config/optimizer.py:Adam --optimizer.params.b2 0.95", "[0.9,0.95]"),
])
def test_b1_b2_become_betas(line, want):
    assert ov(line)["optimizer.betas"] == want


@pytest.mark.parametrize("opt, flag, value, key, want", [
    ("Adam", "eps", "1e-10", "optimizer.eps", "1e-10"),
    ("adamw", "weight_decay", "0.01", "optimizer.weight_decay", "0.01"),
    ("sgd", "momentum", "0.5", "optimizer.momentum", "0.5"),
    ("sgd", "momentum", "None", "optimizer.momentum", "0.0"),
    ("sgd", "nesterov", "True", "optimizer.nesterov", "true"),
    ("rmsprop", "decay", "0.95", "optimizer.alpha", "0.95"),
    ("rmsprop", "centered", "True", "optimizer.centered", "true"),
    ("rmsprop", "momentum", "0.1", "optimizer.momentum", "0.1"),
    ("rmsprop", "eps", "1e-6", "optimizer.eps", "1e-06"),
])
def test_optimizer_params(opt, flag, value, key, want):
    assert ov(f"--optimizer=config/optimizer.py:{opt} --optimizer.params.{flag}={value}")[key] == want
    assert ov(f"--optimizer=config/optimizer.py:{opt} --optimizer.params.{flag} {value}")[key] == want


@pytest.mark.parametrize("opt, flag", [("adam", "eps_root"), ("adamw", "eps_root"), ("rmsprop", "initial_scale")])
def test_optax_only_knobs(opt, flag):
    keys = set(ov(f"--optimizer=config/optimizer.py:{opt}"))
    assert set(ov(f"--optimizer=config/optimizer.py:{opt} --optimizer.params.{flag}=0.0")) == keys
    msg = error(f"--optimizer=config/optimizer.py:{opt} --optimizer.params.{flag}=1e-3")
    assert flag in msg and "torch has no equivalent" in msg


def test_rmsprop_nesterov_only_false():
    assert "optimizer.nesterov" not in ov("--optimizer=config/optimizer.py:rmsprop --optimizer.params.nesterov=False")
    assert "torch has no equivalent" in error("--optimizer=config/optimizer.py:rmsprop --optimizer.params.nesterov=True")


def test_optimizer_param_of_another_optimizer():
    msg = error("--optimizer=config/optimizer.py:adam --optimizer.params.weight_decay=0.1")
    assert "--optimizer.params.weight_decay" in msg and "adam takes b1, b2, eps, eps_root" in msg


@pytest.mark.parametrize("sched, flag, value, want", [
    ("constant_scheduler", "value", "1000", "1000.0"),
    ("constant_schedule", "value", "5e-4", "0.0005"),
    ("warmup_cosine_decay_schedule", "init_value", "1e-7", "1e-07"),
    ("warmup_cosine_decay_schedule", "peak_value", "0.01", "0.01"),
    ("warmup_cosine_decay_schedule", "warmup_steps", "20", "20"),
    ("warmup_cosine_decay_schedule", "decay_steps", "2000", "2000"),
    ("warmup_cosine_decay_schedule", "end_value", "0", "0.0"),
])
def test_scheduler_params(sched, flag, value, want):
    assert ov(f"--scheduler=config/scheduler.py:{sched} --scheduler.params.{flag}={value}")[f"scheduler.{flag}"] == want
    assert ov(f"--scheduler.params.{flag} {value} --scheduler config/scheduler.py:{sched}")[f"scheduler.{flag}"] == want


def test_scheduler_param_of_another_scheduler():
    assert "--scheduler.params.value" in error("--scheduler=config/scheduler.py:warmup_cosine_decay_schedule "
                                               "--scheduler.params.value=1")


# -- task flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, want", [
    ("(0,1,2,3,4)", "[0,1,2,3,4]"), ("'(0,1,2,3,4)'", "[0,1,2,3,4]"), ("(0, 1)", "[0,1]"), ("(3,)", "[3]"),
    ("[5,6]", "[5,6]"), ("7", "[7]"), ("range(3)", "[0,1,2]"), ("tuple(range(2, 4))", "[2,3]"),
])
def test_seeds(value, want):
    assert ov(f"--task.seeds={shlex.quote(value)}")["task.seeds"] == want
    assert ov(f"--task.seeds {shlex.quote(value)}")["task.seeds"] == want


def test_bad_seeds():
    assert "--task.seeds" in error("--task.seeds='(a,b)'")


@pytest.mark.parametrize("flag, value, key, want", [
    ("start_idx", "10", "task.train.start_idx", "10"),
    ("end_idx", "140000", "task.train.end_idx", "140000"),
    ("end_idx", "None", "task.train.end_idx", "null"),
    ("num_steps", "100", "task.train.num_steps", "100"),
    ("num_parallel_nefs", "2000", "task.train.num_parallel_nefs", "2000"),
    ("masked_portion", "0.5", "task.train.masked_portion", "0.5"),
    ("fixed_init", "False", "task.train.fixed_init", "false"),
    ("fixed_init", "true", "task.train.fixed_init", "true"),
    ("check_every", "5", "task.train.check_every", "5"),
    ("train_to_target_psnr", "30", "task.train.target", "30.0"),
    ("train_to_target_psnr", "None", "task.train.target", "null"),
    ("verbose", "False", "task.log.progress", "false"),
    ("verbose", "True", "task.log.progress", "true"),
])
def test_train_flags(flag, value, key, want):
    assert ov(f"--task.train.{flag}={value}")[key] == want
    assert ov(f"--task.train.{flag} {value}")[key] == want


def test_boolean_flag_alone_is_true():
    assert ov("--task.train.fixed_init --task.train.end_idx=3")["task.train.fixed_init"] == "true"


def test_dead_flags_are_accepted_and_mapped():
    """fit-a-nef's flags whose native twins were removed still run: mapped, or ignored with a note."""
    o = ov("--task.train.multi_gpu=True --task.train.end_idx=3")
    assert not any(k.startswith("task.train.multi_gpu") for k in o)
    assert "multi_gpu" in " ".join(t("--task.train.multi_gpu=True").notes)
    assert ov("--task.log.use_wandb=True --task.wandb.project=p")["logger.project"] == "p"
    o = ov("--task.log.use_wandb=False --task.wandb.project=p")
    assert o["logger"] == "none" and "logger.project" not in o


@pytest.mark.parametrize("flag, value", [
    ("task.train.end_idx", "abc"), ("task.train.num_steps", "1.5"), ("task.train.fixed_init", "maybe"),
    ("task.train.masked_portion", "half"),
])
def test_bad_values(flag, value):
    msg = error(f"--{flag}={value}")
    assert f"--{flag}={value}" in msg


@pytest.mark.parametrize("name, choice", [
    ("MNIST", "mnist"), ("mnist", "mnist"), ("CIFAR10", "cifar10"), ("cifar10", "cifar10"), ("STL10", "stl10"),
    ("CelebA", "celeba"), ("ImageNet", "imagenet"), ("TinyImageNet", "tinyimagenet"), ("folder", "folder"),
    ("digits", "digits"),
])
def test_dataset_name(name, choice):
    assert ov(f"--task.dataset.name={name}")["dataset"] == choice
    assert ov(f'--task.dataset.name "{name}"')["dataset"] == choice


def test_unknown_dataset():
    msg = error("--task.dataset.name=Omniglot")
    assert "'Omniglot'" in msg and "MNIST" in msg and "CIFAR10" in msg


def test_dataset_path_and_channels():
    o = ov('--task.dataset.name="MNIST" --task.dataset.out_channels=1 --task.dataset.path="."')
    assert (o["dataset"], o["dataset.out_channels"], o["dataset.path"]) == ("mnist", "1", ".")
    o = ov("--task.dataset.path mnist --task.dataset.out_channels 3")
    assert (o["dataset.path"], o["dataset.out_channels"]) == ("mnist", "3")
    assert ov("--task.dataset.path='my data'")["dataset.path"] == '"my data"'


def test_nef_dir_keeps_fit_a_nefs_layout():
    o = ov('--task.nef_dir="saved_models/example" --task.dataset.name=MNIST --nef=config/nef.py:MLP')
    assert o["task.nef_dir"] == "saved_models/example/MNIST/MLP"
    assert ov("--task.nef_dir /abs/dir/")["task.nef_dir"] == "/abs/dir/CIFAR10/SIREN"
    # unset: $NEF_PATH, else ./saved_models (config/utils.py:find_env_path)
    assert ov("--task.dataset.name=MNIST")["task.nef_dir"] == "${oc.env:NEF_PATH,saved_models}/MNIST/SIREN"


@pytest.mark.parametrize("flag, value, key, want", [
    ("log.use_wandb", "True", "logger", "wandb"),
    ("log.use_wandb", "False", "logger", "none"),
    ("log.images", "100", "task.log.images", "100"),
    ("log.metrics", "5", "task.log.metrics", "5"),
    ("log.loss", "5", "task.log.loss", "5"),
    ("log.progress", "False", "task.log.progress", "false"),
])
def test_wandb_and_log_flags(flag, value, key, want):
    assert ov(f"--task.{flag}={value}")[key] == want
    assert ov(f"--task.{flag} {value}")[key] == want


def test_legacy_defaults_are_spelled_out():
    o = ov("--task=config/image.py:fit")
    assert o["task.seeds"] == "[" + ",".join(map(str, range(20))) + "]"
    assert (o["task.train.end_idx"], o["task.train.num_parallel_nefs"]) == ("50", "5000")
    assert (o["dataset"], o["optimizer"], o["scheduler"], o["nef"]) == ("cifar10", "adamw", "constant", "siren")
    s = ov("--task=config/shape.py:fit")
    assert s["task.seeds"] == "[" + ",".join(map(str, range(10))) + "]" and s["task.train.fixed_init"] == "false"
    assert s["dataset"] == "shapenet"  # fit-a-nef's config/shape.py default


def test_last_flag_wins_and_each_key_once():
    tr = t("--task.train.end_idx=5 --task.train.end_idx 7 --nef.params.hidden_size=3 --nef.params.hidden_dim=4")
    keys = [o.split("=", 1)[0] for o in tr.overrides]
    assert len(keys) == len(set(keys))
    o = dict(x.split("=", 1) for x in tr.overrides)
    assert (o["task.train.end_idx"], o["nef.hidden_dim"]) == ("7", "4")


def test_meta_init_flags():
    tr = t("--task.train.from_meta_init=False --task.train.meta_init_epoch=3 --task.meta_nef_dir=x")
    assert "task.train.init=default" in tr.overrides and len(tr.notes) == 2
    assert ov("--task.train.from_meta_init=True")["task.train.init"] == "meta"
    fi = t("--task=config/image.py:find_init --task.meta.num_outer_steps=5 --task.meta.num_inner_steps=3 "
           "--task.meta.inner_learning_rate=0.1 --task.meta.inner_optimizer_name=sgd")
    assert fi.module == "tasks.find_init"
    assert {"meta.outer_steps=5", "meta.inner_steps=3", "meta.inner_lr=0.1"} <= set(fi.overrides)
    assert "sgd" in error("--task=config/image.py:find_init --task.meta.inner_optimizer_name=adam")


def test_mode_specific_flags():
    assert ov("--task=config/image.py:tune --task.optuna.num_trials=3")["task.optuna.num_trials"] == "3"
    assert "tune" in error("--task=config/image.py:fit --task.optuna.num_trials=3")


@pytest.mark.parametrize("bad, suggestion", [
    ("task.train.end_ix", "--task.train.end_idx"),
    ("task.train.num_parallel_nef", "--task.train.num_parallel_nefs"),
    ("task.seed", "--task.seeds"),
    ("task.dataset.nam", "--task.dataset.name"),
    ("nef.param.hidden_dim", "--nef.params.hidden_dim"),
    ("optimizer.params.beta1", "--optimizer.params.b1"),
    ("nef.params.hidden_sz", "--nef.params.hidden_dim"),
])
def test_unknown_flag_names_the_closest(bad, suggestion):
    msg = error(f"--{bad}=1")
    assert f"--{bad}" in msg and suggestion in msg


def test_positional_argument_is_an_error():
    assert "'task=image'" in error("task=image")


# -- quoting and the printed command -------------------------------------------------------------


@pytest.mark.parametrize("value, want", [
    ("saved_models/example", "saved_models/example"), (".", "."), ("/abs/p-1+x", "/abs/p-1+x"),
    ("my dir", '"my dir"'), ("a:b", '"a:b"'), ("a,b", '"a,b"'), ("it's", '"it\'s"'), ("1e-3", '"1e-3"'),
    ("true", '"true"'), ("${x}", '"\\${x}"'), ('say "hi"', "'say \"hi\"'"), ("""'"'""", """'\\'"\\''"""),
])
def test_hydra_quoting(value, want):
    assert hydra_str(value) == want


def test_hydra_parses_quoted_values_back():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for value in ("my dir", "a:b", "a,b", "it's", "1e-3", "true", "[x]", "q\"'", "C:\\dir"):
        parsed = parser.parse_overrides([f"k={hydra_str(value)}"])[0].value()
        assert parsed == value


HOWTO_FIT = ("--task=config/image.py:fit --nef=config/nef.py:SIREN --task.seeds='(0,1,2,3,4)' "
             "--task.train.start_idx=0 --task.train.end_idx={end} --task.train.num_parallel_nefs={par} "
             '--task.dataset.name="MNIST" --task.dataset.out_channels=1 --task.dataset.path="." '
             '--task.nef_dir="saved_models/example"')
HOWTO_PARALLEL = ("--task=config/image.py:fit --nef=config/nef.py:SIREN --task.train.multi_gpu=True "
                  "--task.seeds='(0,1,2,3,4)' --task.train.start_idx={start} --task.train.end_idx={end} "
                  '--task.train.num_parallel_nefs={par} --task.dataset.name="MNIST" --task.dataset.out_channels=1 '
                  '--task.dataset.path="." --task.nef_dir="saved_models/example"')


def test_howto_line_translation():
    tr = t(HOWTO_FIT.format(end=140000, par=2000))
    assert tr.command == (
        "python -m tasks.fit task=image nef=siren optimizer=adamw scheduler=constant dataset=mnist "
        "'task.seeds=[0,1,2,3,4]' task.nef_dir=saved_models/example/MNIST/SIREN task.train.start_idx=0 "
        "task.train.end_idx=140000 task.train.num_parallel_nefs=2000 dataset.out_channels=1 dataset.path=.")
    assert shlex.split(tr.command)[3:] == tr.overrides


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("line", [
    HOWTO_FIT.format(end=140000, par=2000),
    HOWTO_PARALLEL.format(start=140000, end=210000, par=2000),
    "--nef=config/nef.py:RFFNet --nef.params.hidden_size=16 --nef.params.learnable_coefficients=False",
    "--nef=config/nef.py:GaborNet --optimizer=config/optimizer.py:rmsprop --optimizer.params.decay=0.8 "
    "--optimizer.params.centered=True --optimizer.params.momentum=None",
    "--nef=config/nef.py:FourierNet --optimizer=config/optimizer.py:sgd --optimizer.params.nesterov=True "
    "--scheduler=config/scheduler.py:warmup_cosine_decay_schedule --scheduler.params.warmup_steps=3",
    "--nef=config/nef.py:MLP --optimizer=config/optimizer.py:Adam --optimizer.params.b2=0.9 "
    "--optimizer.params.eps=1e-10 --scheduler.params.value=1000 --task.train.train_to_target_psnr=30 "
    "--task.train.masked_portion=0.5 --task.train.fixed_init=False --task.train.check_every=5 "
    "--task.train.verbose=False --task.log.use_wandb=True --task.log.images=7 --task.wandb.entity=me "
    "--task.wandb.project=p --task.wandb.name=2024 --task.nef_dir='/tmp/a dir' --task.dataset.path='x y'",
])
def test_translations_compose_with_the_native_config(line):
    """Every translated key exists in conf/ and takes the value the legacy flag gave."""
    tr = t(line)
    cfg = _compose(tr.overrides)
    from omegaconf import OmegaConf

    for o in tr.overrides:
        key, _, _ = o.partition("=")
        if "." in key:
            assert OmegaConf.select(cfg, key, throw_on_missing=False) is not None or "null" in o, o
    if "--task.nef_dir='/tmp/a dir'" in line:
        assert cfg.task.nef_dir == "/tmp/a dir/CIFAR10/MLP" and cfg.logger.run_name == "2024"
        assert list(cfg.optimizer.betas) == [0.9, 0.9] and cfg.dataset.path == "x y"


# -- main(): printing, --dry-run, one-line errors ------------------------------------------------


def test_main_dry_run_prints_the_native_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--dry-run", *shlex.split(HOWTO_FIT.format(end=16, par=8))])
    assert e.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0] == "native command: " + t(HOWTO_FIT.format(end=16, par=8)).command


@pytest.mark.parametrize("argv, words", [
    (["--task.train.end_ix=3"], ["--task.train.end_ix", "--task.train.end_idx"]),
    (["--nef=config/nef.py:Foo"], ["'Foo'", "SIREN", "GaborNet"]),
    (["--optimizer.params.eps_root=1"], ["eps_root", "torch has no equivalent"]),
])
def test_main_errors_are_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert all(w in err for w in words)


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["tasks/image/fit.py", "tasks/shape/fit.py"])
def test_entry_files_run_as_scripts_without_pythonpath(tmp_path, entry):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for cwd, script in ((ROOT, entry), (tmp_path, str(ROOT / entry))):
        r = subprocess.run([sys.executable, script, "--task=config/image.py:fit", "--task.train.end_idx", "3",
                            "--dry-run"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("native command: python -m tasks.fit task=image ")
    r = subprocess.run([sys.executable, entry, "--task.train.end_ix=3"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--task.train.end_idx" in r.stderr


# -- end to end: the HOWTO's commands, verbatim, on a tiny MNIST ---------------------------------


def _idx(a: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, a.ndim]) + np.asarray(a.shape, ">i4").tobytes() + a.astype(np.uint8).tobytes()


def _workdir(path: Path) -> Path:
    """A folder laid out like a fit-a-nef checkout for the HOWTO: ./data/MNIST/raw (12 train + 4
    test IDX images) and ./tasks (the legacy entry files; a link to this repository's)."""
    rng = np.random.default_rng(0)
    raw = path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
             "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4)}
    for name, arr in files.items():
        (raw / name).write_bytes(_idx(arr))
    (path / "tasks").symlink_to(ROOT / "tasks", target_is_directory=True)
    return path


def _shell(line: str, cwd: Path, **env) -> subprocess.Popen:
    """Start ``ENV=... python <args>`` as the shell would (args split by shlex, as bash does)."""
    args = shlex.split(line)
    assert args[0] == "python"
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NEF_PATH", "DATA_PATH")}
    full_env.update(env)
    return subprocess.Popen([sys.executable, *args[1:]], cwd=cwd, env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(p: subprocess.Popen, timeout: float = 300) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"exit {p.returncode}\n{out[-2000:]}\n{err[-3000:]}"
    return out


def _native_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("native command: ")]
    assert len(lines) == 1, out
    return lines[0][len("native command: "):]


@pytest.mark.slow
def test_howto_commands_verbatim(tmp_path):
    import nefs

    small = dict(end=16, par=8)
    steps = " --task.train.num_steps=5"
    fit_dir, par_dir, native_dir = (_workdir(tmp_path / d) for d in ("fit", "par", "native"))
    (native_dir / "tasks").unlink()  # the native run imports the package from the repository
    fit_line = "python tasks/image/fit.py " + HOWTO_FIT.format(**small) + steps

    # --dry-run prints the native command only, and fast (no torch import)
    dry = _finish(_shell(fit_line + " --dry-run", fit_dir, DATA_PATH="./data/"), timeout=60)
    native = _native_line(dry)
    assert dry.strip() == "native command: " + native

    # "Fitting" (no PYTHONPATH) and its native command, side by side
    p_fit = _shell(fit_line, fit_dir, DATA_PATH="./data/")
    p_native = _shell(native, native_dir, DATA_PATH="./data/", PYTHONPATH=str(ROOT))
    assert _native_line(_finish(p_fit)) == native
    _finish(p_native)

    # "Simple parallelization": two processes at once, disjoint ranges, one nef_dir
    par = [_shell("python tasks/image/fit.py " + HOWTO_PARALLEL.format(start=s, end=e, par=8) + steps, par_dir,
                  CUDA_VISIBLE_DEVICES=str(gpu), PYTHONPATH=".", DATA_PATH="./data/")
           for gpu, (s, e) in enumerate([(0, 16), (16, 24)])]
    for p in par:
        _finish(p)

    sub = Path("saved_models/example/MNIST/SIREN")  # fit-a-nef's <nef_dir>/<dataset>/<nef>
    fit_store = nefs.open_store(fit_dir / sub)
    par_store = nefs.open_store(par_dir / sub)
    native_store = nefs.open_store(native_dir / sub)
    total = 5 * 16  # seeds x images
    for store, end in ((fit_store, 16), (native_store, 16), (par_store, 24)):
        assert len(store) == total
        done = store.done
        assert done[:end].all() and not done[end:].any()
        params = np.asarray(store.params[:end])
        assert np.isfinite(params).all()
        assert np.isfinite(store.metric[:end]).all()
    np.testing.assert_array_equal(par_store.seed[:24], np.repeat([0, 1], [16, 8]))
    a, b, c = (np.asarray(s.params[:16]) for s in (fit_store, native_store, par_store))
    assert np.abs(a - b).max() <= 1e-4  # --dry-run's command gives the same store
    assert np.abs(a - c).max() <= 1e-4  # and so does the parallel run, for the same rows


def test_inspect_experiment_dir_is_the_run_dir():
    tr = t("--task=config/image.py:inspect --task.experiment_dir=exp/1")
    assert tr.module == "tasks.inspect" and "hydra.run.dir=exp/1" in tr.overrides
