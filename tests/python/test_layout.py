"""The Python package shows the flow: shared helpers, then authoring, writing, tools and faces, each importing only
from its own layer or those below; no import cycle; no module reaching into another's private names. Read from the
source with ``ast`` (imports inside functions count too), each rule with a negative control on a made-up package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "export" / "torchconform"

# A module may import from its own layer and those before it. The package's __init__ and __main__ stand above all
# (they re-export the public API and start the CLI).
LAYERS = ["shared", "authoring", "writing", "tools", "faces"]
SHARED = {"_core", "dtypes", "errors", "safeload", "schema", "text", "verification"}
TOP = {"", "__main__"}


def modules(root: Path) -> dict[str, Path]:
    """Dotted name (relative to the package) -> file, for every module of the package under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(root: Path) -> dict[str, list[tuple[str, list[str], int]]]:
    """Module -> [(imported module, names imported from it, line)], intra-package only; ``from . import x`` names
    the submodule x where one exists (else the package itself)."""
    mods = modules(root)
    known = set(mods) | {"_core"}
    graph: dict[str, list[tuple[str, list[str], int]]] = {m: [] for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = [p for p in package if p]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                    target = [*base, *(node.module.split(".") if node.module else [])]
                elif node.module and node.module.split(".")[0] == "torchconform":
                    target = node.module.split(".")[1:]
                else:
                    continue
                dotted = ".".join(target)
                for alias in node.names:
                    sub = f"{dotted}.{alias.name}" if dotted else alias.name
                    if sub in known:
                        graph[name].append((sub, [], node.lineno))
                    else:
                        graph[name].append((dotted, [alias.name], node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "torchconform":
                        graph[name].append((".".join(alias.name.split(".")[1:]), [], node.lineno))
    return graph


def layer(module: str) -> str | None:
    if module in TOP:
        return None
    head = module.split(".")[0]
    return "shared" if head in SHARED else head


def cycles(graph: dict[str, list[tuple[str, list[str], int]]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search (each reported once, from where it was entered)."""
    found, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for target, _, _ in graph.get(m, []):
            if target == m or target in TOP:  # the package itself: importing it from inside is its __init__'s job
                continue
            if state.get(target) == "open":
                found.append([*path[path.index(target):], target] if target in path else [m, target])
            elif target not in state:
                visit(target, [*path, target])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    return found


def layer_violations(graph: dict[str, list[tuple[str, list[str], int]]]) -> list[str]:
    out = []
    for m, edges in graph.items():
        here = layer(m)
        for target, _, line in edges:
            there = layer(target)
            if here is None or there is None:
                continue
            if there not in LAYERS or here not in LAYERS:
                out.append(f"{m}:{line}: {target} is in no known layer")
            elif LAYERS.index(there) > LAYERS.index(here):
                out.append(f"{m}:{line}: the {here} layer imports {target} ({there}, a later layer)")
    return out


def private_imports(graph: dict[str, list[tuple[str, list[str], int]]]) -> list[str]:
    return [f"{m}:{line}: imports {n} from {target}" for m, edges in graph.items() for target, names, line in edges
            for n in names if n.startswith("_") and not n.endswith("__") and n != "_core" and target != m]


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(imports(PACKAGE)) == []


def test_each_layer_imports_only_from_itself_and_those_before_it() -> None:
    graph = imports(PACKAGE)
    assert {layer(m) for m in graph} - {None} == set(LAYERS), "every module belongs to a layer"
    assert layer_violations(graph) == []


def test_no_module_imports_another_modules_private_names() -> None:
    assert private_imports(imports(PACKAGE)) == []


def test_the_old_registry_cases_cycle_is_gone() -> None:
    graph = imports(PACKAGE)
    registry = {t for t, _, _ in graph["authoring.registry"]}
    assert "authoring.builtin" in registry  # the registry lists the built-in cases...
    builtin = {t for m, edges in graph.items() if m.startswith("authoring.builtin") for t, _, _ in edges}
    assert "authoring.registry" not in builtin  # ...which never import the registry back


@pytest.fixture
def bad_package(tmp_path: Path) -> Path:
    """A made-up package with each fault once: a cycle, a layer inversion, a private import."""
    root = tmp_path / "pkg"
    for d in ("authoring", "writing", "faces"):
        (root / d).mkdir(parents=True)
        (root / d / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "authoring" / "a.py").write_text("from . import b\n")
    (root / "authoring" / "b.py").write_text("def f():\n    from .a import thing\n")  # a cycle, inside a function
    (root / "writing" / "w.py").write_text("from ..faces.cli import main\n")  # writing -> faces: inverted
    (root / "writing" / "x.py").write_text("def _helper():\n    pass\n")
    (root / "faces" / "cli.py").write_text("from ..writing.x import _helper\n")  # private
    (root / "writing" / "y.py").write_text("def f(x):\n    if x:\n        raise ValueError(f'bad {x}')\n")  # bare
    return root


def test_negative_controls_each_rule_finds_its_fault(bad_package: Path) -> None:
    graph = imports(bad_package)
    assert [sorted(c) for c in cycles(graph)] == [["authoring.a", "authoring.a", "authoring.b"]]
    assert [v.split(":")[0] for v in layer_violations(graph)] == ["writing.w"]
    assert private_imports(graph) == ["faces.cli:1: imports _helper from writing.x"]
    assert bare_raises(bad_package) == ["writing/y.py:3: raise ValueError"]


def bare_raises(root: Path) -> list[str]:
    """``raise ValueError(...)`` / ``raise RuntimeError(...)`` in the package: each error torchconform raises says
    whose problem it is (errors.py: UsageError, CorpusInputError, CaseError, SetupError), and the CLI's exit status
    follows from it."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    isinstance(node.exc.func, ast.Name) and node.exc.func.id in ("ValueError", "RuntimeError"):
                out.append(f"{path.relative_to(root)}:{node.lineno}: raise {node.exc.func.id}")
    return out


def test_every_error_the_package_raises_says_whose_problem_it_is() -> None:
    assert bare_raises(PACKAGE) == []
    from torchconform import errors

    kinds = [errors.UsageError, errors.CorpusInputError, errors.CaseError, errors.SetupError]
    assert all(issubclass(k, errors.TorchconformError) and issubclass(k, ValueError) for k in kinds)
    assert {errors.exit_status(k("x")) for k in kinds} == {errors.COULD_NOT_CHECK}
    from torchconform import CaseError
    from torchconform.safeload import UnsafeFile

    assert CaseError is errors.CaseError and issubclass(UnsafeFile, errors.CorpusInputError)


def test_one_version_string(runner: Path) -> None:
    """pyproject.toml's version is the package's, the compiled core's and the runner's (through CMake)."""
    import re
    import subprocess

    import torchconform
    from conftest import TC
    from torchconform import _core

    pyproject = (PACKAGE.parents[1] / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1)
    assert torchconform.__version__ == _core.__version__ == version
    done = subprocess.run([str(runner), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith(f"torchconform-run {version} (LibTorch "), done.stdout
    done = subprocess.run([*TC, "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == f"torchconform {version}", done.stdout + done.stderr


def stub_names(text: str) -> dict[str, set[str]]:
    """Top-level names of a stub ("" key) and each class's members."""
    tree = ast.parse(text)
    out: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[""].add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[""].add(node.target.id)
        if isinstance(node, ast.ClassDef):
            out[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    out[""].discard("__all__")
    return out


def module_names(module) -> dict[str, set[str]]:
    def public(names):
        return {n for n in names if not n.startswith("_") or n in ("__version__", "__bool__", "__repr__")}

    out = {"": public(dir(module))}
    for name in out[""]:
        obj = getattr(module, name)
        if isinstance(obj, type):  # a class: its own members (an exception class adds none)
            out[name] = set() if issubclass(obj, Exception) else public(vars(obj))
    return out


def test_the_core_stub_names_exactly_what_the_module_has() -> None:
    from torchconform import _core

    stub = (PACKAGE / "_core.pyi").read_text()
    assert stub_names(stub) == module_names(_core)
    # Negative control: a binding the stub lacks, and a stub entry the module lacks, are both found.
    less = stub.replace("def version_matches(", "def version_matches_gone(")
    assert stub_names(less) != module_names(_core)


def unlisted(readme: str, folder: Path) -> list[str]:
    """The files of ``folder`` (images aside) the README's layout table does not name."""
    table = "\n".join(ln for ln in readme.splitlines() if ln.startswith(f"| `{folder.name}/` |"))
    return [p.name for p in sorted(folder.iterdir()) if p.is_file() and p.suffix != ".png"
            and f"`{p.name}`" not in table]


def test_the_readme_names_every_script_and_doc(tmp_path: Path) -> None:
    """The README's layout rows for ci/, dev/ and docs/ left out executorch.sh, the Python programs and four pages.
    The control: a file added to a copy of docs/ is reported."""
    root = PACKAGE.parents[1]
    readme = (root / "README.md").read_text()
    for folder in (root / "ci", root / "dev", root / "docs"):
        assert unlisted(readme, folder) == [], f"README.md's `{folder.name}/` row does not name them"
    import shutil

    copy = tmp_path / "docs"
    shutil.copytree(root / "docs", copy)
    (copy / "new-page.md").write_text("")
    assert unlisted(readme, copy) == ["new-page.md"]


def test_the_runtimes_the_core_registers_are_the_ones_a_manifest_may_name() -> None:
    """Runtime names live in the core's table (registered_runtimes, kRuntimeNames) and in the schema's enum of the
    runtimes a variant names (TorchScript is every case's artifact, not a variant's runtime): the two must agree."""
    import json

    from torchconform import _core

    schema = json.loads((PACKAGE.parents[1] / "docs" / "corpus-schema.json").read_text())

    def enums(node: object) -> list[list[str]]:
        if isinstance(node, dict):
            found = []
            for k, v in node.items():
                if k == "runtimes" and isinstance(v, dict) and "enum" in v.get("items", {}):
                    found.append(v["items"]["enum"])
                found += enums(v)
            return found
        if isinstance(node, list):
            return [e for v in node for e in enums(v)]
        return []

    def mismatch(schema: dict) -> str:
        (declared,) = enums(schema)
        registered = [name for name, _, _ in _core.runtimes()]
        ok = registered[0] == "torchscript" and sorted(registered[1:]) == sorted(declared)
        return "" if ok else f"the core registers {registered}, the schema names {declared}"

    assert mismatch(schema) == ""
    # control: a runtime the schema names and the core does not register is found
    extra = json.loads(json.dumps(schema).replace('"enum": ["aoti", "nativert", "executorch"]',
                                                  '"enum": ["aoti", "nativert", "executorch", "tensorrt"]'))
    assert "tensorrt" in mismatch(extra)


@pytest.mark.xdist_group("layout_probe")
def test_xdist_groups_hold(request: pytest.FixtureRequest) -> None:
    """ci/test.sh runs the default tier with pytest-xdist's ``--dist loadgroup``: a module marked ``xdist_group`` runs
    on one worker, so its module fixture (an upgrade run, an exported corpus) is made once. xdist keeps a group together
    by suffixing node ids with ``@group``; a pytest that ignores the suffix (9.2 under xdist 3.8) spreads the group over
    the workers and each of them makes the fixture again, silently. ci/setup.sh pins a pair that works."""
    config = request.config
    if not hasattr(config, "workerinput") or not config.getvalue("loadgroup"):
        pytest.skip("runs under pytest-xdist --dist loadgroup (ci/test.sh)")
    assert request.node.nodeid.endswith("@layout_probe"), request.node.nodeid


def outside_problems(files: list[Path], package: Path = PACKAGE) -> list[str]:
    """Programs outside the package (dev/, the tests) use it as a user would: no private name of it (``_x``; the
    compiled core, ``_core``, is its public C++ face), and no module of it that does not exist (a stale import after a
    move is found here, not when a script that runs once a release fails)."""
    mods = set(modules(package)) | {"_core"}
    out = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torchconform":
                target = node.module.split(".")[1:]
                dotted = ".".join(target)
                if dotted and dotted not in mods:
                    out.append(f"{path.name}:{node.lineno}: no module torchconform.{dotted}")
                out += [f"{path.name}:{node.lineno}: imports {a.name} from torchconform.{dotted}".rstrip(".")
                        for a in node.names if a.name.startswith("_") and a.name != "_core"
                        and f"{dotted}.{a.name}".lstrip(".") not in mods]
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "torchconform" and ".".join(a.name.split(".")[1:]) not in mods | {""}:
                        out.append(f"{path.name}:{node.lineno}: no module {a.name}")
    return out


def test_dev_programs_and_tests_use_the_package_as_users_do(tmp_path: Path) -> None:
    root = PACKAGE.parents[1]
    files = sorted((root / "dev").glob("*.py")) + sorted((root / "tests" / "python").glob("*.py"))
    assert len(files) > 30 and outside_problems(files) == []
    bad = tmp_path / "bad.py"  # the control: each rule finds its fault
    bad.write_text("from torchconform.tools.gone import x\nfrom torchconform.tools.bench import _private\n"
                   "import torchconform.nowhere\nfrom torchconform import _core\n")
    assert outside_problems([bad]) == ["bad.py:1: no module torchconform.tools.gone",
                                       "bad.py:2: imports _private from torchconform.tools.bench",
                                       "bad.py:3: no module torchconform.nowhere"]


def test_the_tests_spell_the_command_once() -> None:
    """conftest.TC is the tests' one spelling of the ``torchconform`` command (``tc()`` runs it); no other test file
    spells it again."""
    tests = PACKAGE.parents[1] / "tests" / "python"
    spelling = '"-m", ' + '"torchconform"'  # (in two pieces: this file must not hold it whole)
    spelled = [p.name for p in sorted(tests.glob("*.py")) if p.name != "conftest.py" and spelling in p.read_text()]
    assert spelled == [] and spelling in (tests / "conftest.py").read_text()


# Concepts with one home (docs/architecture.md, "Where each concept lives"): a pattern that defines or re-derives the
# concept, and the one file of the package allowed to hold it (None: no file; the concept lives in the core).
ONE_HOME = {
    r"^DTYPE_NAMES\s*=": "dtypes.py",
    r"^DEFAULT_RTOL_ATOL\s*=": "dtypes.py",
    r"""replace\(["']torch\.["'],""": None,  # a dtype's name made from its repr: dtypes.dtype_name
    r"rtol=\(\[": None,  # the tolerance parsed back from its display text: the report's applied_tolerance fields
    r"^class TorchconformError": "errors.py",
    r"""["']corpus_error["']\)?\s*(==|!=|in)\s""": None,  # a rule of its own on when a mark covers a result
}


def second_homes(root: Path) -> list[str]:
    import re

    out = []
    for pattern, home in ONE_HOME.items():
        for path in sorted(root.rglob("*.py")):
            if re.search(pattern, path.read_text(), re.M) and path.relative_to(root).as_posix() != home:
                out.append(f"{path.relative_to(root).as_posix()}: {pattern}")
    return out


def test_each_concept_has_one_home(tmp_path: Path) -> None:
    assert second_homes(PACKAGE) == []
    # The control: a second table of dtype names, and a tolerance parsed back from text, are found.
    (tmp_path / "dtypes.py").write_text("DTYPE_NAMES = {}\n")
    (tmp_path / "tools.py").write_text("DTYPE_NAMES = {}\nm = re.compile(r'rtol=([0-9.]+)')\n")
    assert second_homes(tmp_path) == ["tools.py: ^DTYPE_NAMES\\s*=", "tools.py: rtol=\\(\\["]
