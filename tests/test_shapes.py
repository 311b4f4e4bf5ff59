"""The shape task: keyed sampling, the bundled primitives end to end, prepare_shapes -> shapenet,
non-watertight warnings, and query / extract_mesh in the original mesh frame."""
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("trimesh")
pytest.importorskip("igl")
pytest.importorskip("skimage")

import trimesh  # noqa: E402

from nefs import SIREN, open_store  # noqa: E402
from nefs.engine import ChunkFitter  # noqa: E402
from nefs.errors import FitnefError  # noqa: E402
from nefs.stack import init_stacked, stacked_forward  # noqa: E402
from tasks.fitting import fit  # noqa: E402
from tasks.shape.datasets import MeshFolder, Primitives, ShapeData, ShapeNet  # noqa: E402
from tasks.shape.meshes import MeshWarning  # noqa: E402
from tasks.shape.modality import ShapeModality, parse_num_points  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["dataset.num_uniform=600", "dataset.num_near=600"]
QUICK = ["task=shape", "task.train.num_steps=5", "task.train.compile=false", "task.train.num_points=64"]


@pytest.fixture(scope="module")
def prims():
    return Primitives(per_class=1, num_uniform=600, num_near=600).load()


def test_primitives_are_six_labelled_shapes_with_their_frames(prims):
    assert len(prims) == 6 and prims.labels.tolist() == [0, 1, 2, 3, 4, 5]
    pts, occ = prims.signal(4)
    assert pts.shape == (1200, 3) and np.abs(pts[:600]).max() <= 0.55 and 0.05 < occ.mean() < 0.95
    assert prims.loc.shape == (6, 3) and (prims.scale > 0).all() and np.abs(prims.loc).max() > 0.1


def test_problem_is_keyed_and_balanced(prims):
    m = ShapeModality(prims, [32, 16])
    rows = np.arange(6)
    chunk = m.problem(rows, np.full(6, 3), rows + 100)
    alone = m.problem(rows[4:5], np.full(1, 3), rows[4:5] + 100)
    for step in (0, 7):
        c, t, batched = chunk.train_batch(step)
        c1, t1, _ = alone.train_batch(step)
        assert batched and c.shape == (6, 48, 3) and torch.equal(c[4], c1[0]) and torch.equal(t[4], t1[0])
        assert (t[:, :32] == 1).all() and (t[:, 32:] == 0).all()
    assert not torch.equal(chunk.train_batch(0)[0], chunk.train_batch(1)[0])
    per_nef_steps = chunk.train_batch(torch.tensor([0, 7, 0, 7, 0, 7]))[0]  # continuous batching's form
    assert torch.equal(per_nef_steps[1], chunk.train_batch(7)[0][1])


def test_shape_without_inside_points_samples_only_real_points():
    empty = ShapeData(labels=np.zeros(1, np.int64), loc=np.zeros((1, 3), np.float32), scale=np.ones(1, np.float32),
                      names=["e"], reader=lambda i: (np.random.rand(10, 3).astype(np.float32), np.zeros(10, bool)),
                      max_points=12)
    c, t, _ = ShapeModality(empty, 8).problem([0], [0], [0]).train_batch(0)
    assert c.shape == (1, 16, 3) and (t == 0).all() and (c.abs().sum(-1) > 0).all()


def test_nef_alone_equals_nef_in_chunk(prims):
    m = ShapeModality(prims, 64)
    tmpl = SIREN(3, 1, hidden_dim=8)
    fitter = ChunkFitter(tmpl, torch.optim.Adam, lambda s: 1e-2, num_steps=6, compile=False)
    rows = np.arange(6)
    together = fitter.fit(init_stacked(tmpl, [0] * 6, rows, False), m.problem(rows, [0] * 6, rows))
    alone = ChunkFitter(tmpl, torch.optim.Adam, lambda s: 1e-2, num_steps=6, compile=False).fit(
        init_stacked(tmpl, [0], rows[3:4], False), m.problem(rows[3:4], [0], rows[3:4]))
    for k in together.params:
        assert torch.allclose(together.params[k][3], alone.params[k][0], atol=1e-6)
    assert torch.allclose(together.metric[3], alone.metric[0])


def test_iou_metric_matches_a_direct_computation(prims):
    m = ShapeModality(prims, 16)
    tmpl = SIREN(3, 1, hidden_dim=8)
    params = init_stacked(tmpl, [0] * 3, [0, 1, 2], False)
    prob = m.problem([0, 1, 2], [0] * 3, [0, 1, 2])
    got = prob.metric(stacked_forward(tmpl), params)
    for r in range(3):
        pts, occ = prims.signal(r)
        one = {k: v[r] for k, v in params.items()}
        with torch.no_grad():
            pred = torch.func.functional_call(tmpl, one, (torch.from_numpy(pts),))[:, 0].numpy() >= 0
        assert got[r].item() == pytest.approx((pred & occ).sum() / (pred | occ).sum(), abs=1e-6)


def test_num_points_forms():
    assert parse_num_points(2048) == (2048, 2048) and parse_num_points([10, 20]) == (10, 20)
    for bad in (0, [1, 2, 3], "x", True):
        with pytest.raises(FitnefError, match="task.train.num_points"):
            parse_num_points(bad)


@pytest.mark.slow
def test_task_shape_defaults_to_primitives_and_fits_end_to_end(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tasks.fit", *QUICK, *SMALL, "dataset.per_class=1", "device=cpu",
         f"task.nef_dir={tmp_path / 'store'}", f"hydra.run.dir={tmp_path / 'hydra'}", "task.log.progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fitted 6 NeFs (6/6 done in store): iou" in out.stdout
    s = open_store(tmp_path / "store")
    assert s.config["dataset"]["name"] == "primitives" and s.metric_name == "iou" and s.done.all()
    assert s.config["task"]["train"]["fixed_init"] is False
    assert s.group["loc"].shape == (6, 3) and s.group["scale"].shape == (6,)
    assert s.reconstruct([0, 1]).shape == (2, 64, 64, 64)


@pytest.mark.slow
def test_early_stop_with_slot_refill_does_not_depend_on_the_chunk(compose, tmp_path):
    common = ["task=shape", *SMALL, "dataset.per_class=1", "task.train.compile=false", "task.train.num_points=64",
              "task.train.num_steps=40", "task.train.target=0.6", "task.train.check_every=5",
              "scheduler.value=3e-3", "nef.hidden_dim=16"]
    got = []
    for n in (2, 6):  # 2 slots: finished NeFs' slots are refilled (continuous batching)
        fit(compose(*common, f"task.train.num_parallel_nefs={n}", nef_dir=tmp_path / str(n)))
        s = open_store(tmp_path / str(n))
        got.append((np.asarray(s.params[:]), s.steps, s.metric))
    assert np.array_equal(got[0][0], got[1][0]) and np.array_equal(got[0][1], got[1][1])
    assert (got[0][1] < 40).any() and (got[0][2][got[0][1] < 40] >= 0.6).all()


def test_image_dataset_with_shape_task_is_a_clear_error(compose):
    with pytest.raises(FitnefError, match="task=shape needs a shape dataset"):
        fit(compose(*QUICK, "dataset=digits"))


def _mesh_dir(root: Path) -> Path:
    (root / "cubes").mkdir(parents=True)
    (root / "balls").mkdir()
    box = trimesh.creation.box(extents=[1, 2, 3])
    box.apply_translation([0, 0, 10])
    box.export(root / "cubes" / "box.obj")
    ball = trimesh.creation.icosphere(2, radius=2.0)
    ball.apply_translation([5, 0, 0])
    ball.export(root / "balls" / "ball.ply")
    leaky = trimesh.creation.box()
    leaky.update_faces(np.arange(len(leaky.faces)) != 0)  # one triangle missing
    leaky.export(root / "cubes" / "leaky.stl")
    return root


def test_prepare_shapes_output_loads_through_shapenet(compose, tmp_path):
    from scripts.prepare_shapes import main

    meshes = _mesh_dir(tmp_path / "meshes")
    (meshes / "cubes" / "broken.off").write_text("not a mesh")
    out = tmp_path / "prepared"
    with pytest.warns(MeshWarning) as caught:
        assert main([str(meshes), str(out), "--num-uniform", "500", "--num-near", "500", "--no-progress"]) == 0
    notes = [str(w.message) for w in caught]
    assert any("leaky.stl" in n and "not watertight" in n for n in notes)
    assert any("broken.off" in n and "skipped" in n for n in notes)
    assert not any("box.obj" in n or "ball.ply" in n for n in notes)
    z = np.load(out / "ShapeNet" / "balls" / "ball.npz")
    assert z["random_points"].shape == (500, 3) and z["near_surf_points_occupancy"].dtype == bool
    assert np.allclose(z["loc"], [5, 0, 0], atol=1e-5) and z["scale"] == pytest.approx(4.0, rel=1e-3)

    summary = fit(compose(*QUICK, "dataset=shapenet", f"dataset.path={out}", "dataset.shuffle_seed=null"))
    assert summary.fitted == 3 and summary.metric == "iou"
    s = open_store(tmp_path / "store")
    assert s.labels.tolist() == [0, 1, 1]                               # balls, cubes, cubes
    assert np.allclose(s.group["loc"][:], [[5, 0, 0], [0, 0, 10], [0, 0, 0]], atol=1e-5)
    assert np.allclose(s.group["scale"][:], [4, 3, 1], atol=1e-4)
    names = ShapeNet(name="ShapeNet", path=str(out)).load().names     # fit-a-nef's shuffled order
    assert sorted(names) == ["balls/ball", "cubes/box", "cubes/leaky"]


def test_mesh_folder_warns_about_a_leaky_mesh_by_name(tmp_path):
    meshes = _mesh_dir(tmp_path / "meshes")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = MeshFolder(name="meshes", path=str(meshes), num_uniform=200, num_near=200).load()
        [data.signal(i) for i in range(len(data))]    # meshes are sampled when a row first needs them
    assert [str(w.message) for w in caught if "not watertight" in str(w.message)] == [
        f"{meshes / 'cubes' / 'leaky.stl'}: mesh is not watertight; inside/outside comes from the generalised "
        f"winding number and may be wrong near holes"]
    assert data.names == ["balls/ball.ply", "cubes/box.obj", "cubes/leaky.stl"] and data.labels.tolist() == [0, 1, 1]


@pytest.mark.slow
def test_query_and_extract_mesh_answer_in_the_original_frame(compose, tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    ball = trimesh.creation.icosphere(3, radius=2.0)
    ball.apply_translation([5, 0, 0])
    ball.export(folder / "ball.obj")
    fit(compose("task=shape", "dataset=meshes", f"dataset.path={folder}", "dataset.num_uniform=4000",
                "dataset.num_near=4000", "task.train.num_steps=150", "task.train.compile=false",
                "task.train.num_points=1024", "scheduler.value=2e-3"))
    s = open_store(tmp_path / "store")
    assert s.metric[0] > 0.85
    inside = [[5.0, 0, 0], [5.0, 1.0, 0.5], [3.5, 0, 0]]
    outside = [[6.6, 1.6, 0], [5.0, 0, -2.6], [8.0, 0, 0], [20.0, 20.0, 20.0]]  # the last two: beyond the cube
    p = s.query(0, np.array(inside + outside))
    assert p.shape == (7,) and (p[:3] > 0.5).all() and (p[3:] < 0.5).all() and (p[-2:] == 0).all()
    mesh = s.extract_mesh(0, resolution=48)
    assert isinstance(mesh, trimesh.Trimesh) and mesh.volume == pytest.approx(ball.volume, rel=0.05)
    body = max(mesh.split(only_watertight=False), key=lambda c: len(c.faces))  # short training leaves specks
    assert np.allclose(body.bounds, [[3, -2, -2], [7, 2, 2]], atol=0.1)


@pytest.mark.slow
def test_image_path_does_not_import_the_shape_dependencies():
    code = ("import sys, tasks.fitting, nefs.store, nefs.modality; nefs.modality.load('tasks.shape.modality:ShapeModality'); "
            "bad = [m for m in ('trimesh', 'igl', 'skimage') if m in sys.modules]; assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-1000:]


def test_image_stores_have_no_query(compose, tmp_path):
    fit(compose("task.train.num_steps=2", "task.train.compile=false", "task.train.end_idx=2", "dataset.resolution=8"))
    with pytest.raises(AttributeError, match="image NeFs has no attribute .query"):
        open_store(tmp_path / "store").query(0, np.zeros((1, 3)))


@pytest.mark.slow
def test_inspect_a_shape_store_writes_iou_chamfer_meshes_and_renders(tmp_path):
    import json

    from PIL import Image

    pytest.importorskip("matplotlib")
    fit_args = [*QUICK, *SMALL, "dataset.per_class=1", "dataset.classes=[box,ellipsoid]", "device=cpu",
                f"task.nef_dir={tmp_path / 'store'}", f"hydra.run.dir={tmp_path / 'fit'}", "task.log.progress=false"]
    out = subprocess.run([sys.executable, "-m", "tasks.fit", *fit_args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    ins = tmp_path / "inspect"
    out = subprocess.run([sys.executable, "-m", "tasks.inspect", f"task.nef_dir={tmp_path / 'store'}",
                          f"hydra.run.dir={ins}", "inspect.resolution=32", "inspect.chamfer_points=2000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "inspected 2 done rows" in out.stdout and "chamfer" in out.stdout
    metrics = json.loads((ins / "metrics.json").read_text())
    store = open_store(tmp_path / "store")
    assert metrics["modality"] == "shape" and metrics["num_rows"] == 2
    for k in ("iou", "store_iou", "chamfer", "chamfer_normalised"):
        assert set(metrics[k]) == {"mean", "std", "min", "max"} and all(np.isfinite(v) for v in metrics[k].values())
    assert metrics["iou"]["mean"] == pytest.approx(float(store.metric[store.done].mean()), abs=1e-3)
    assert metrics["store_iou"]["mean"] == pytest.approx(float(store.metric[store.done].mean()), abs=1e-6)
    assert metrics["chamfer"]["min"] > 0 and metrics["chamfer_reference"] == ["mesh surface"]
    for r in (0, 1):
        mesh = trimesh.load(ins / f"mesh_{r}.ply")
        assert len(mesh.faces) > 0
        assert np.allclose(mesh.vertices, store.extract_mesh(r, resolution=32).vertices, atol=1e-4)
        with Image.open(ins / f"shape_{r}.png") as im:
            assert im.size[0] > 300 and im.size[1] > 200


def test_mesh_folder_frames_are_cached_and_meshes_read_only_for_the_rows_asked(tmp_path, monkeypatch):
    """Issue 20, point 4: every row's frame comes from a cache beside the data after the first load; a mesh is
    read and sampled only when a row needs it, so a shard opens only its own meshes."""
    import tasks.shape.datasets as SD

    meshes = _mesh_dir(tmp_path / "meshes")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = MeshFolder(name="meshes", path=str(meshes), num_uniform=100, num_near=100).load()
    assert list((meshes / ".fitnef").glob("*.json"))
    first_points = first.signal(1)[0]
    read = []
    real = SD.load_mesh
    monkeypatch.setattr(SD, "load_mesh", lambda path: read.append(str(path)) or real(path))
    data = MeshFolder(name="meshes", path=str(meshes), num_uniform=100, num_near=100).load()
    assert read == []                                                   # frames from the cache, nothing read
    np.testing.assert_array_equal(data.loc, first.loc) and np.testing.assert_array_equal(data.scale, first.scale)
    assert np.allclose(data.loc, [[5, 0, 0], [0, 0, 10], [0, 0, 0]], atol=1e-5)
    points, occ = data.signal(1)
    assert read == [str(meshes / "cubes" / "box.obj")] and points.shape == (200, 3) and occ.shape == (200,)
    np.testing.assert_array_equal(points, first_points)                 # sampling is seeded by the path
    data.signal(1)
    assert len(read) == 1                                               # kept once sampled
