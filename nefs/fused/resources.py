"""What the fused kernel takes of a GPU, read off its compile for a CUDA architecture, no GPU needed.

Registers, register spills (local-memory traffic that a fused step exists to avoid) and shared memory
are fixed when ptxas compiles the kernel, so they can be checked where no GPU is: tests hold the widths
that ``task.train.kernel=auto`` picks to zero spills, and ``python -m scripts.fused_resources`` prints
them for every NeF config.
"""
import contextlib
import io
import re
from dataclasses import dataclass

from .spec import FusedSpec
from .step import compile_for


@dataclass(frozen=True)
class Resources:
    registers: int        # per thread
    spill_bytes: int      # stores to local memory per thread (ptxas "spill stores")
    shared_bytes: int     # per block; sm_90 allows 227 KB
    num_warps: int

    def line(self) -> str:
        return (f"{self.registers} registers, {self.spill_bytes} B spilled, "
                f"{self.shared_bytes / 1024:.0f} KB shared, {self.num_warps} warps")


def resources(spec: FusedSpec, loss: str = "mse", precision: str = "ieee", arch: int = 90, tile=None) -> Resources:
    """Compiles afresh (Triton's cache would skip ptxas and its report) and parses ptxas' report."""
    from triton import knobs   # triton loads on first use: importing nefs.fused works without it

    saved = knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile
    knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = True, True
    report = io.StringIO()
    try:
        with contextlib.redirect_stdout(report):   # Triton prints the ptxas log
            compiled = compile_for(spec, loss, precision, arch, tile)
    finally:
        knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = saved
    log = report.getvalue()
    regs, spills = re.search(r"Used (\d+) registers", log), re.search(r"(\d+) bytes spill stores", log)
    if not regs or not spills:
        raise RuntimeError(f"no ptxas report in the compile log: {log[-500:]!r}")
    return Resources(int(regs.group(1)), int(spills.group(1)), int(compiled.metadata.shared),
                     int(compiled.metadata.num_warps))
