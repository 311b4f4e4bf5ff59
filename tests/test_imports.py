"""The import graph of nefs/, tasks/ and scripts/, read from the source (every ``import``, at module level or
inside a function): it has no circle, and control flows one way, nefs <- tasks <- scripts. A function-local
import is an edge like any other: moving an import into a function hides a circle from Python, not from this."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nefs", "tasks", "scripts")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict:
    return {_module_name(f): f for p in PACKAGES for f in sorted((ROOT / p).rglob("*.py"))}


def _imported_names(module: str, path: Path):
    """Every dotted name an import statement of ``path`` may load (``from a import b`` may load a.b)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def import_graph() -> dict:
    """module -> the first-party modules it imports (the longest known prefix of each imported name)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            parts = name.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != module:
                targets.add(".".join(parts))
        graph[module] = targets
    return graph


def _circles(graph: dict) -> list:
    """One circle per strongly connected component of more than one module (Tarjan), as a list of modules."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_function_local_imports():
    graph = import_graph()
    assert "nefs.fused.kernel" in graph["nefs.fused.step"]      # imported inside a method (triton on first use)
    assert "tasks.image.inspect" in graph["tasks.image.modality"]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    assert _circles(import_graph()) == []


def test_imports_flow_one_way():
    """nefs imports neither tasks nor scripts; tasks does not import scripts."""
    above = {"nefs": ("tasks", "scripts"), "tasks": ("scripts",), "scripts": ()}
    bad = [f"{m} -> {t}" for m, targets in import_graph().items() for t in sorted(targets)
           if t.split(".")[0] in above[m.split(".")[0]]]
    assert not bad, bad


def test_no_test_imports_a_benchmark_script():
    """Benchmarks (scripts/*bench*.py) measure; what a test needs of them lives in the package or in tests/."""
    benches = {_module_name(f) for f in (ROOT / "scripts").glob("*bench*.py")}
    bad = []
    for f in sorted(Path(__file__).parent.glob("*.py")):
        names = set(_imported_names(f"tests.{f.stem}", f))
        bad += [f"{f.name} -> {b}" for b in sorted(benches) if any(n == b or n.startswith(b + ".") for n in names)]
    assert benches and not bad, bad
