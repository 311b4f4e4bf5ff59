"""How OpenMP's waiting policy stands oversubscription: a SIREN-sized eager step loop under each policy,
alone, beside a second copy of itself, and beside a process spinning one core (issue 24).

    python -m scripts.omp_wait_bench                     # 2 threads per loop, policies default/PASSIVE/ACTIVE
    python -m scripts.omp_wait_bench --threads 1 --rounds 3

libgomp (torch's OpenMP on Linux) reads ``OMP_WAIT_POLICY`` once, when torch loads it, so every loop is a
fresh process. Its threads meet at a barrier after each parallel kernel; a thread that arrives early spins
(ACTIVE; unset: ~300k spins first) or sleeps at once (PASSIVE). Spinning is fastest while every thread has a
core and burns the cores others need when they do not. Prints one JSON line per (round, policy, scenario):
steps/s of the measured loop; the rounds alternate the policies so that a machine's changing load falls on all.
"""
import argparse
import json
import os
import subprocess
import sys
import time

LOOP = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
n, w, p = 256, 8, 784                       # NeFs, width, pixels: a SIREN-8 chunk on the digits
x = torch.randn(n, 2, p); w1 = torch.randn(n, w, 2); w2 = torch.randn(n, w, w); w3 = torch.randn(n, 1, w)
def step():
    h = torch.sin(30 * torch.bmm(w1, x)); h = torch.sin(torch.bmm(w2, h)); return torch.bmm(w3, h).square().mean()
for _ in range(20): step()
t, k = time.perf_counter(), 0
while time.perf_counter() - t < float(sys.argv[2]):
    step(); k += 1
print(k / (time.perf_counter() - t))
"""


def _loop(threads, seconds, policy):
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    return subprocess.Popen([sys.executable, "-c", LOOP, str(threads), str(seconds)], env=env,
                            stdout=subprocess.PIPE, text=True)


def run(policy, scenario, threads, seconds):
    other = None
    if scenario == "beside_spinner":
        other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    procs = [_loop(threads, seconds, policy) for _ in range(2 if scenario == "two_at_once" else 1)]
    rates = [float(p.communicate()[0]) for p in procs]
    if other is not None:
        other.kill()
        other.wait()
    return rates


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--policies", nargs="+", default=["default", "PASSIVE", "ACTIVE"])
    p.add_argument("--scenarios", nargs="+", default=["alone", "two_at_once", "beside_spinner"])
    args = p.parse_args(argv)
    for r in range(args.rounds):
        for scenario in args.scenarios:
            for policy in args.policies:
                load = os.getloadavg()[0]
                rates = run(policy, scenario, args.threads, args.seconds)
                print(json.dumps({"round": r, "scenario": scenario, "policy": policy, "threads": args.threads,
                                  "steps_per_s": [round(x, 1) for x in rates], "load_before": round(load, 2)}),
                      flush=True)
                time.sleep(0.5)


if __name__ == "__main__":
    main()
