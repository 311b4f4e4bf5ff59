"""What the fused Triton step takes of a GPU, per NeF config and width, without a GPU.

    python -m scripts.fused_resources                                # every conf/nef config the kernel takes
    python -m scripts.fused_resources --nefs siren mlp --widths 8 32 64 128 256
    python -m scripts.fused_resources --nefs siren_shape --task shape --precision tf32

Compiles nefs/fused/kernel.py for a CUDA architecture (default sm_90, an H100/H200) with Triton's
ahead-of-time path and ptxas, and prints registers per thread, bytes spilled to local memory, shared memory
per block and whether ``task.train.kernel=auto`` would pick the fused step on a GPU. Spills are what a
fused step exists to avoid; shared memory over the architecture's limit (227 KB on sm_90) would not launch.
"""
import argparse
from pathlib import Path

from omegaconf import OmegaConf

from nefs.errors import FitnefError
from nefs.fused import why_not
from nefs.fused.launch import parse_tile
from nefs.fused.resources import resources
from nefs.fused.spec import describe
from tasks.plan import build_nef

ROOT = Path(__file__).resolve().parents[1]
# coordinates and loss of each task's fused step (its Problem's fused_loss)
TASKS = {"image": (2, "mse"), "shape": (3, "bce_logits"), "audio": (1, "mse")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nefs", nargs="+", default=None, help="conf/nef names (default: all the kernel takes)")
    p.add_argument("--widths", nargs="+", type=int, default=None, help="hidden_dim overrides (default: the config's)")
    p.add_argument("--task", default="image", choices=sorted(TASKS))
    p.add_argument("--channels", type=int, default=1, help="outputs (3: RGB)")
    p.add_argument("--precision", default="ieee", choices=("ieee", "tf32", "bf16"))
    p.add_argument("--tile", default="", metavar="POINTS,WARPS[,STAGES]",
                   help="compile at this tile (default: each kernel's table, nefs/fused/step.py default_tile)")
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability x 10 (90: H100/H200)")
    args = p.parse_args(argv)

    in_features, loss = TASKS[args.task]
    try:
        tile = parse_tile(args.tile)
    except ValueError as e:
        raise SystemExit(f"--tile: {e}")
    names = args.nefs or sorted(f.stem for f in (ROOT / "conf" / "nef").glob("*.yaml"))
    print(f"{'nef':14s} {'width':>5s}  {'registers':>9s} {'spilled B':>9s} {'shared KB':>9s} {'warps':>5s}  auto on a GPU")
    for name in names:
        path = ROOT / "conf" / "nef" / f"{name}.yaml"
        if not path.exists():
            raise SystemExit(f"--nefs {name}: no conf/nef/{name}.yaml")
        cfg = OmegaConf.load(path)
        for width in args.widths or [cfg.hidden_dim]:
            cfg.hidden_dim = width
            try:
                template = build_nef(cfg, in_features, args.channels)
            except FitnefError as e:
                print(f"{name:14s} {width:5d}  {e}")
                continue
            spec, reason = describe(template)
            if spec is None:
                if args.nefs:
                    print(f"{name:14s} {width:5d}  {reason}")
                continue
            r = resources(spec, loss, args.precision, args.arch, tile)
            auto = why_not(template, "cuda", auto=True) or "fused"
            print(f"{name:14s} {width:5d}  {r.registers:9d} {r.spill_bytes:9d} {r.shared_bytes / 1024:9.0f} "
                  f"{r.num_warps:5d}  {auto}", flush=True)


if __name__ == "__main__":
    main()
