#!/usr/bin/env bash
# The declared floors, tested: a fresh venv holding the lowest version setup.cfg allows of every core
# dependency (install_requires, ">=X" installed as "==X"), the [test] extra resolved under those pins, and
# the fast test lane (pytest -m "not slow") run in it.
#
#   scripts/lowest_deps.sh [VENV]          # default: $TMPDIR/fitnef-lowest (made afresh)
#
# torch is the exception: its floor (torch>=2.3) is not installed, as an old torch means a download of
# several GB (a CUDA build) on machines without it. TORCH_SPEC names the torch to install instead
# (default torch==2.13.0: a CPU build that pip takes from the local wheel folder where there is one); the
# run then checks every other floor against that torch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${TMPDIR:-/tmp}/fitnef-lowest}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

python3 -m venv --clear "$VENV"
PY="$VENV/bin/python"
# setup.cfg's install_requires, each ">=X" as "==X" (torch left out: see above)
python3 - > "$VENV/lowest.txt" <<'PY'
import configparser, re
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
for line in cfg["options"]["install_requires"].split("\n"):
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([^,;\s]+)\s*", line)
    if m and m.group(1).split("[")[0].lower() != "torch":
        print(f"{m.group(1).split('[')[0]}=={m.group(2)}")
    elif line.strip() and not line.strip().startswith("torch"):
        raise SystemExit(f"setup.cfg install_requires: {line.strip()!r} has no '>=' floor")
PY
echo "lowest versions: $(tr '\n' ' ' < "$VENV/lowest.txt") + $TORCH_SPEC"
"$PY" -m pip install -q "$TORCH_SPEC" -c "$VENV/lowest.txt"
# the pins are constraints too: nothing in the [test] extra may lift a core dependency above its floor
"$PY" -m pip install -q -r "$VENV/lowest.txt" -c "$VENV/lowest.txt" -e ".[test]"
"$PY" -m pip check
"$PY" -c "
import importlib.metadata as m, sys
from packaging.version import Version
pins = [l.strip().split('==') for l in open('$VENV/lowest.txt') if l.strip()]
bad = [f'{n} {m.version(n)} != {v}' for n, v in pins if Version(m.version(n)) != Version(v)]
print('installed:', ', '.join(f'{n} {m.version(n)}' for n, _ in pins), '| torch', m.version('torch'))
sys.exit('not the floors: ' + '; '.join(bad) if bad else 0)"
"$PY" -m pytest -q -m "not slow"
