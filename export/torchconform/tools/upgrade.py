"""``torchconform upgrade``: may these models move from one PyTorch to another? A decision per model, for a pull
request, from the user's own cases (or a corpus of them) and two or more torch versions.

    torchconform upgrade --cases my_cases.py --from 2.13.0 --to 2.15.0 [--to 2.14.1] [--with torchvision==0.30.0]

Every version gets an environment and a ``torchconform-run`` built against its LibTorch (tools/envs.py, cached).
The cells, each an independent command (``--list-cells``, ``--cell ID``; ``--merge`` joins their JSON):

- ``capture:V``     the cases exported with torch V (a trace, script or export that fails under one version and not
                    the other is a finding with its message);
- ``ops:F->T``      static, runs no model: every operator the models' artifacts and programs call (the manifests'
                    graph node counts), looked up in both versions' registries and judged with PyTorch's own
                    predicates (``is_backward_compatible_with``, ``check_forward_compatible_with``), upgrader
                    coverage, core ATen or custom; and the format windows (the TorchScript file format each artifact
                    needs against what the runtime reads; the torch.export schema version);
- ``ship:F->T``     what we ship, the corpus exported with F, verified by T's runner (C++) and T's Python, and run
                    against run: T's runner's outputs against F's runner's, element by element;
- ``reexport:F->T`` T's re-export against F's goldens: the drift per output (max abs / rel / ULP, the minimum
                    tolerance that would pass) and whether the case's tolerance holds;
- ``rollback:T->F`` T's re-export verified by F's runner and F's Python;
- ``packages:F<->T`` AOTInductor packages compiled by F run by T's runner and the other way round, with the runner as
                    built and with libtorch.so loaded (how a service links LibTorch changes the answer).

The verdict per model, one word and its reasons: PASS; DRIFT (numerics moved within tolerance, by N ULP);
REBUILD-REQUIRED (F's AOTInductor packages do not run under T, T's own do); ROLLBACK-UNSAFE (T's artifacts do not
run under F); BREAK, with its category: capture, load, resolve (unknown or incompatible operator), link (T cannot run
even its own packages), call, or numerics (beyond tolerance). Warnings are findings (a deprecation at capture, a
runtime's "consider rebuilding"). Waivers (``--waivers FILE``) accept a known verdict for a model until an expiry date.
Exit status: 0 every model PASS or DRIFT (or waived), 1 a model breaks or needs a rebuild or cannot roll back, 2
something could not be checked.

A cell whose every input is unchanged is not run again (``--no-reuse`` runs it): its result is kept in the cache under
a digest of the cell, the content of every corpus it reads, each environment's interpreter, torch, probe record and
runner (a wrapper script together with the files it names), torchconform's sources, the timeout and the hardware and
numerics flags of ``hardware()``. (AOTInductor packages are not part of it: they are made from those inputs and kept
under their own key.) The report marks each reused cell with the run that made it.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import _core
from ..errors import SetupError, UsageError
from ..text import json_text, terminal
from . import compat, envs
from .upgrade_report import write_reports
from .upgrade_verdict import load_waivers, merge

WARNING = re.compile(r"warn|deprecat|consider rebuilding|will be removed", re.IGNORECASE)
PROGRESS = re.compile(r"^\[\d+/\d+\] ([a-z][a-z0-9_]*)[: ]")
OPERATOR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_.]*|\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)?)$")


@dataclass
class Plan:
    from_version: str
    to_versions: list[str]
    cases: list[str] = field(default_factory=list)  # --cases (files or modules)
    builtin: bool = False  # the built-in cases (ci/upgrade.sh)
    corpus: Path | None = None  # --corpus: what is shipped (exported with from_version)
    extras: list[str] = field(default_factory=list)  # --with / --requirements
    env_specs: dict[str, str] = field(default_factory=dict)  # --env VERSION=PYTHON[:RUNNER]
    cache: Path | None = None
    aoti_cache: Path | None = None
    out: Path = Path("build/upgrade")
    timeout: float = 1800.0
    jobs: int = 2
    tool: str = "auto"
    reuse: bool = True  # --no-reuse: run every cell even where a result for the same inputs is cached

    @property
    def exports(self) -> bool:
        return bool(self.cases) or self.builtin

    def versions(self) -> list[str]:
        return [self.from_version, *self.to_versions]


def cell_ids(plan: Plan) -> list[str]:
    """Every cell of the plan, in the order a full run makes them."""
    f = plan.from_version
    ids = [f"capture:{v}" for v in plan.versions()] if plan.exports else []
    for t in plan.to_versions:
        ids += [f"ops:{f}->{t}", f"ship:{f}->{t}"]
        if plan.exports:
            ids += [f"reexport:{f}->{t}", f"rollback:{t}->{f}"]
        ids.append(f"packages:{f}<->{t}")
    return ids


# ---- the context: environments, runners, corpora, packages (all cached) -------------------------------------------
class Context:
    def __init__(self, plan: Plan, log: Callable[[str], None]):
        self.plan, self.log = plan, log
        self.root = envs.cache_root(plan.cache)
        self.root.mkdir(parents=True, exist_ok=True)
        self._envs: dict[str, envs.Env] = {}
        self._packages: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._corpora: dict[str, tuple[Path | None, dict[str, Any]]] = {}
        self._digests: dict[tuple[str, str], str] = {}  # (kind, path) -> digest: each file and corpus hashed once a run
        # The user's AOTInductor cache, as `torchconform compile` uses it (its key holds the torch version).
        self.aoti_cache = Path(_core.prepare_aoti_cache(str(plan.aoti_cache or _core.default_aoti_cache())))
        self.work = plan.out / "work"
        self.work.mkdir(parents=True, exist_ok=True)

    def digest(self, kind: str, path: str | Path) -> str:
        """``file_digest`` or ``tree_digest`` of ``path``, once per run: every cell's key names the same interpreters,
        runners and corpora, which do not change while the run lasts."""
        key = (kind, str(path))
        if key not in self._digests:
            self._digests[key] = file_digest(str(path)) if kind == "file" else tree_digest(Path(path))
        return self._digests[key]

    def env(self, version: str) -> envs.Env:
        if version not in self._envs:
            spec = self.plan.env_specs.get(version)
            if spec:
                env = envs.provided_env(version, spec)
            elif self._is_this(version):
                env = envs.Env(version, sys.executable, runner=_this_runner(), torch=_torch_version(),
                               provided=True)
            else:
                env = envs.make_env(version, self.plan.extras, self.root, self.log, self.plan.tool)
            envs.build_runner(env, self.root, self.log, self.plan.jobs)
            if env.python == sys.executable:
                from . import upgrade_probe  # (this interpreter: the same answer without starting another)

                env.info = upgrade_probe.info()
            else:  # its CPU capability, format windows
                env.info = self.probe(env.python, f"torch {version} ({env.python}): the probe", "info")
            if env.info.get("torch") != env.torch:  # (a made environment's torch is its stamp's word: confirmed here)
                raise SetupError(f"torch {version} ({env.python}): the environment has torch {env.info.get('torch')}, "
                                 f"not the {env.torch} it was made with: remove it from the cache to make it again")
            self._envs[version] = env
        return self._envs[version]

    def _is_this(self, version: str) -> bool:
        """This interpreter serves ``version`` when it has that torch and the user asked for nothing extra."""
        return envs.same_release(_torch_version(), version) and not self.plan.extras

    def runtime(self, version: str) -> compat.Runtime:
        env = self.env(version)
        return compat.Runtime(version, env.python, env.runner, env.torch)

    def probe(self, python: str, what: str, *args: str) -> Any:
        """tools/upgrade_probe.py run by ``python``: its last line of JSON."""
        done = subprocess.run([python, "-m", "torchconform.tools.upgrade_probe", *args], capture_output=True,
                              text=True, timeout=self.plan.timeout, env=self.pythonpath())
        if done.returncode != 0:
            raise SetupError(f"{what} failed: {compat._last_line(done.stderr, '?')}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def pythonpath(self, extra: list[Path] | None = None) -> dict[str, str]:
        paths = [str(envs.portable_package(self.root)), *(str(p) for p in extra or [])]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONHASHSEED": "0"}

    def corpus(self, version: str) -> tuple[Path | None, dict[str, Any]]:
        """The cases exported with ``version`` (cached by the cases' content, the torch and torchconform), and the
        export's record: {"ok", "failed": {model: message}, "warnings": {model or "*": [lines]}, "seconds"}."""
        if version == self.plan.from_version and self.plan.corpus is not None:
            return self.plan.corpus, {"ok": True, "failed": {}, "warnings": {}, "given": True}
        if version not in self._corpora:  # once per run, a failed export too (three cells ask for it)
            self._corpora[version] = self._export(version)
        return self._corpora[version]

    def _export(self, version: str) -> tuple[Path | None, dict[str, Any]]:
        env = self.env(version)
        # (the exporter's own sources are part of the key: a changed torchconform exports differently, e.g. the
        # generated input sets, and a corpus it did not make must not stand in for one it would)
        exporter = envs.portable_package(self.root).parent.name
        key = envs.digest(version, env.python, env.torch, _core.__version__, exporter, *self._cases_key(),
                          *sorted(self.plan.extras))
        out = self.root / "exports" / f"torch-{env.torch}-{key}"
        record_file = out.parent / (out.name + ".json")  # (not with_suffix: "2.13.0+cpu" has dots of its own)
        if (out / "corpus.json").is_file() and record_file.is_file():
            return out, json.loads(record_file.read_text())
        self.log(f"[upgrade] exporting the cases with torch {env.torch} ({out})")
        t0 = time.perf_counter()
        cmd = [env.python, "-m", "torchconform", "export", "--out", str(out), "--force", "--keep-going"]
        dirs: list[Path] = []
        for spec in self.plan.cases:  # (as the user gave it: the export runs in this directory, and says it so)
            cmd += ["--cases", spec]
            dirs.append(Path(spec).resolve().parent if Path(spec).exists() else Path.cwd())
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.plan.timeout,
                                  env=self.pythonpath(dirs), cwd=str(Path.cwd()))
        except subprocess.TimeoutExpired:
            done = subprocess.CompletedProcess(cmd, 124, "", f"the export took longer than {self.plan.timeout:.0f} s")
        record = export_record(done)
        record["seconds"] = time.perf_counter() - t0
        ok = (out / "corpus.json").is_file()
        record["ok"] = ok
        if ok:
            record_file.write_text(json.dumps(record, indent=1) + "\n")
        self.log(f"[upgrade]   {'done' if ok else 'FAILED'} in {record['seconds']:.0f} s"
                 + (f": {len(record['failed'])} cases failed" if record["failed"] else ""))
        return (out if ok else None), record

    def _cases_key(self) -> list[str]:
        if self.plan.builtin:
            return ["builtin", envs.digest(*(p.read_text() for p in sorted(
                (envs.PACKAGE / "authoring").rglob("*.py"))))]
        parts = []
        for spec in self.plan.cases:
            path = Path(spec)
            parts.append(path.read_text() if path.is_file() else f"module:{spec}:{time.time()}")  # (modules: fresh)
        return parts

    def packages(self, version: str, corpus: Path) -> list[dict[str, Any]]:
        """AOTInductor packages of ``corpus``'s programs compiled by ``version``'s torch (cached on disk; asked once
        per run: each ask starts that version's interpreter)."""
        key = (version, str(corpus))
        if key not in self._packages:
            self._packages[key] = compat.compile_for(self.runtime(version), corpus, self.aoti_cache, self.log)
        return self._packages[key]


def _torch_version() -> str:
    import torch

    return torch.__version__


def _this_runner() -> str:
    from .. import verification

    return verification.runner_executable()


_SITE = re.compile(r"^\S*?(?:site|dist)-packages/")


def warning_line(line: str) -> str | None:
    """A warning as a report shows it: the line that says it, the interpreter's path before site-packages dropped
    (a report names no local paths); None for lines that are not warnings, and for the source line Python prints
    under a warning ("  warnings.warn(")."""
    if line[:1].isspace() or not WARNING.search(line):
        return None
    return terminal(_SITE.sub("", line.strip())[:400])


def export_record(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Failures and warnings per model from an export's progress (``[i/N] case: ...`` after each case; a warning
    printed before a case's line belongs to that case). A warning every model got is the environment's ("*": e.g. a
    deprecation of an API the export uses), said once."""
    failed: dict[str, str] = {}
    warnings: dict[str, list[str]] = {}
    pending: list[str] = []
    for line in done.stderr.splitlines():
        m = PROGRESS.match(line)
        if m:
            if ": FAILED: " in line:
                failed[m.group(1)] = line.split(": FAILED: ", 1)[1]
            warnings.setdefault(m.group(1), []).extend(pending)
            pending = []
        elif (w := warning_line(line)) is not None:
            pending.append(w)
    if pending:
        warnings.setdefault("*", []).extend(pending)
    if done.returncode not in (0, 2) or (done.returncode == 2 and not failed):
        failed["*"] = compat._last_line(done.stderr, f"exit status {done.returncode}")
    models = [k for k in warnings if k != "*"]
    common = set.intersection(*(set(warnings[k]) for k in models)) if len(models) > 1 else set()
    if common:
        warnings["*"] = [*warnings.get("*", []), *sorted(common)]
        for k in models:
            warnings[k] = [w for w in warnings[k] if w not in common]
    return {"failed": failed, "warnings": {k: sorted(set(v))[:20] for k, v in warnings.items() if v},
            "exit": done.returncode}


# ---- per-model helpers ------------------------------------------------------------------------------------------
def model_of(result_id: str) -> str:
    return result_id.split("/")[0].split(":")[0]


def by_model(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        out.setdefault(model_of(r.get("id", "")) or "*", []).append(r)
    return out


def warnings_by_model(stderr: str, models: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        if (w := warning_line(line)) is None:
            continue
        hit = [m for m in models if re.search(rf"\b{re.escape(m)}\b", line)]
        for m in hit or ["*"]:
            out.setdefault(m, []).append(w)
    return {k: sorted(set(v))[:20] for k, v in out.items()}


def verify(ctx: Context, version: str, corpus: Path, outputs: Path | None, env: dict[str, str] | None = None
           ) -> dict[str, Any]:
    """``corpus`` verified by ``version``'s runner (C++; its own AOTInductor packages of the corpus's programs compiled
    first), classified with compat's rules; ``outputs``: where the runner also saves every output."""
    rt = ctx.runtime(version)
    ctx.packages(version, corpus)
    extra = ["--save-outputs", str(outputs)] if outputs else []
    cell = compat.run_cpp_cell(rt, corpus, ctx.aoti_cache, ctx.plan.timeout, extra, env)
    return cell


def run_against_run(ctx: Context, corpus: Path, a: Path, b: Path) -> list[dict[str, Any]]:
    """Every output both runs saved (``--save-outputs``), compared directly under the case's tolerance: one
    PyTorch's answers against the other's, with no golden in between."""
    opened = _core.Corpus.open(str(corpus))
    tolerances = {c.name: json.loads(c.manifest_json)["tolerance"] for c in opened.cases if not c.error}
    exact = {"default": {"mode": "exact"}, "outputs": {}}
    out = []
    base = a / "cpu"
    for path in sorted(base.rglob("*.pt")) if base.is_dir() else []:
        rel = path.relative_to(base)
        case, artifact, set_name = rel.parts[0], rel.parts[1], rel.stem
        other = b / "cpu" / rel
        rid = f"{case}{'' if artifact == '_' else ':' + artifact}/{set_name}"
        if not other.is_file():
            out.append({"id": rid, "compared": False, "detail": "the other run produced no output"})
            continue
        x, y = _core.load_output(path.read_bytes()), _core.load_output(other.read_bytes())
        c = _core.compare(x, y, tolerances.get(case, {"default": {"mode": "allclose"}, "outputs": {}}), per_set=True)
        bitwise = c.ok and _core.compare(x, y, exact).ok
        stats = compat.leaf_stats(c)
        out.append({"id": rid, "compared": True, "ok": bool(c.ok), "bitwise": bool(bitwise),
                    "max_abs": max((s["max_abs"] or 0.0 for s in stats), default=0.0),
                    "max_ulp": max((s["max_ulp"] or 0.0 for s in stats), default=0.0),
                    "outputs": stats, "detail": "" if c.ok else c.summary()})
    return out


# ---- the cells ----------------------------------------------------------------------------------------------------
def cell_capture(ctx: Context, version: str) -> dict[str, Any]:
    corpus, record = ctx.corpus(version)
    models = {}
    if corpus is not None:
        opened = _core.Corpus.open(str(corpus))
        for c in opened.cases:
            m = json.loads(c.manifest_json) if not c.error else {}
            failed_variants = {v["name"]: v.get("error", "") for v in m.get("variants", []) if "file" not in v}
            models[c.name] = {"captured": not c.error, "error": c.error, "failed_variants": failed_variants,
                              "warnings": record["warnings"].get(c.name, [])}
    for name, message in record["failed"].items():
        models[name] = {"captured": False, "error": message, "failed_variants": {},
                        "warnings": record["warnings"].get(name, [])}
    return {"cell": f"capture:{version}", "torch": ctx.env(version).torch, "corpus": str(corpus or ""),
            "models": models, "warnings": record["warnings"].get("*", []), "failed": record["failed"],
            "seconds": record.get("seconds", 0.0)}


def operators_of(corpus: Path) -> dict[str, list[str]]:
    """Model -> the operators its artifact and variants call, from the manifests' graph node counts."""
    opened = _core.Corpus.open(str(corpus))
    out: dict[str, list[str]] = {}
    for c in opened.cases:
        if c.error:
            continue
        m = json.loads(c.manifest_json)
        names = set(m.get("graph_node_counts", {}))
        for v in m.get("variants", []):
            names |= set(v.get("graph_node_counts", {}))
        # Operators only: "aten::conv2d" (TorchScript), "aten.conv2d.default" (torch.export); not graph nodes such
        # as prim::Constant or Python callables (<built-in function getitem>).
        out[c.name] = sorted(n for n in names if OPERATOR.match(n) and not n.startswith(("prim::", "prim.")))
    return out


def _probe(ctx: Context, version: str, *args: str) -> Any:
    return ctx.probe(ctx.env(version).python, f"torch {version}: the registry probe", *args)


def format_needs(corpus: Path) -> dict[str, dict[str, Any]]:
    """Model -> the file formats its artifacts need: the TorchScript archive's version record, the exported
    programs' torch.export schema versions (read through the core's checked reader)."""
    opened = _core.Corpus.open(str(corpus))
    out: dict[str, dict[str, Any]] = {}
    for c in opened.cases:
        if c.error:
            continue
        m = json.loads(c.manifest_json)
        need: dict[str, Any] = {"torchscript": None, "export_schema": []}
        files = ([m["artifact"]["file"]] if m.get("artifact") else []) + \
                [v["file"] for v in m.get("variants", []) if v.get("file", "").endswith((".pt", ".pt2"))]
        for rel in files:
            try:
                with zipfile.ZipFile(io.BytesIO(_core.read_case_file(opened, c.name, rel))) as z:
                    names = z.namelist()
                    version = next((n for n in names if n.endswith("/version") or n.endswith("/.data/version")), "")
                    if rel.endswith(".pt") and version:
                        v = int(z.read(version).decode().strip() or 0)
                        need["torchscript"] = max(need["torchscript"] or 0, v)
                    model = next((n for n in names if n.endswith("/models/model.json")), "")
                    if model:
                        sv = json.loads(z.read(model)).get("schema_version", {})
                        need["export_schema"].append([sv.get("major"), sv.get("minor")])
            except (zipfile.BadZipFile, ValueError, KeyError):
                continue
        out[c.name] = need
    return out


def cell_ops(ctx: Context, f: str, t: str) -> dict[str, Any]:
    corpus, _ = ctx.corpus(f)
    if corpus is None:
        return {"cell": f"ops:{f}->{t}", "error": f"no corpus exported with torch {f}", "models": {}}
    ops = operators_of(corpus)
    names = sorted({n for v in ops.values() for n in v})
    with tempfile.TemporaryDirectory(prefix="torchconform-ops-") as tmp:
        (Path(tmp) / "ops.json").write_text(json.dumps(names))
        old = _probe(ctx, f, "schemas", str(Path(tmp) / "ops.json"))
        (Path(tmp) / "old.json").write_text(json.dumps(old))
        judged = _probe(ctx, t, "judge", str(Path(tmp) / "old.json"))
    info_to, info_from = ctx.env(t).info, ctx.env(f).info
    needs = format_needs(corpus)
    models = {}
    for model, used in ops.items():
        findings, notes = [], []
        for name in used:
            j = judged.get(name, {})
            if not old.get(name, {}).get("schemas"):
                notes.append(f"{name}: no schema in torch {f}'s registry (not checked)")
                continue
            kind = "core ATen" if j.get("core") else ("custom" if not name.startswith(("aten", "prim")) else "ATen")
            if not j.get("exists"):
                findings.append({"op": name, "status": "removed", "kind": kind,
                                 "detail": f"{name} ({kind}) is not in torch {t}'s registry"})
                continue
            for check in j.get("checks", []):
                overload = check["overload"]
                if "deprecated" in overload:
                    notes.append(f"{name}.{overload}: a deprecated overload ({kind})")
                if check["status"] == "removed":
                    findings.append({"op": f"{name}.{overload}", "status": "removed", "kind": kind,
                                     "detail": f"overload {overload} is gone in torch {t}"})
                elif check["status"] == "changed":
                    compatible = check.get("backward_compatible", False)
                    upgrader = any(u for u in j.get("upgraders", []))
                    findings.append({"op": f"{name}.{overload}", "status": "changed" if compatible else "incompatible",
                                     "kind": kind, "backward_compatible": compatible,
                                     "forward_compatible": check.get("forward_compatible"),
                                     "upgrader": upgrader, "old": check["old"], "new": check["new"],
                                     "detail": check.get("forward_why") or check.get("parse_error", "")})
        need = needs.get(model, {})
        windows = []
        if need.get("torchscript") and info_to.get("torchscript_max") is not None and \
                need["torchscript"] > info_to["torchscript_max"]:
            windows.append(f"its TorchScript artifact needs file format {need['torchscript']}, torch {t} reads up to "
                           f"{info_to['torchscript_max']}")
        for major, minor in need.get("export_schema", []):
            have = info_to.get("export_schema")
            if have and major is not None and (major != have[0] or (minor or 0) > have[1]):
                windows.append(f"its exported program has torch.export schema {major}.{minor}, torch {t} has "
                               f"{have[0]}.{have[1]}")
        models[model] = {"operators": len(used), "findings": findings, "notes": notes, "windows": windows}
    return {"cell": f"ops:{f}->{t}", "models": models, "from": info_from, "to": info_to,
            "deprecations": "torch's operator registry records deprecation only as overloads named 'deprecated' "
                            "(listed); other deprecations surface as warnings at capture and load"}


def cell_ship(ctx: Context, f: str, t: str) -> dict[str, Any]:
    corpus, _ = ctx.corpus(f)
    if corpus is None:
        return {"cell": f"ship:{f}->{t}", "error": f"no corpus exported with torch {f}", "models": {}}
    base, mine = ctx.work / f"outputs-{f}-of-{f}", ctx.work / f"outputs-{t}-of-{f}"
    for d in (base, mine):
        shutil.rmtree(d, ignore_errors=True)
    ctx.log(f"[upgrade] ship {f}->{t}: torch {f}'s corpus verified by torch {t} (C++, then Python)")
    reference = verify(ctx, f, corpus, base)  # the baseline of run against run: F on its own corpus
    cpp = verify(ctx, t, corpus, mine)
    python = compat.run_python_cell(ctx.runtime(t), corpus, ctx.plan.timeout)
    runs = run_against_run(ctx, corpus, base, mine)
    models = sorted({model_of(r["id"]) for r in cpp["results"] + python["results"] if r.get("id")})
    warnings = warnings_by_model(cpp.get("stderr", ""), models)
    out = {}
    for model in models:
        out[model] = {"cpp": [r for r in cpp["results"] if model_of(r["id"]) == model],
                      "python": [r for r in python["results"] if model_of(r["id"]) == model],
                      "reference": [r for r in reference["results"] if model_of(r["id"]) == model],
                      "runs": [r for r in runs if model_of(r["id"]) == model],
                      "warnings": warnings.get(model, []) + warnings.get("*", [])}
    return {"cell": f"ship:{f}->{t}", "models": out, "cpp_class": cpp["class"], "python_class": python["class"]}


def cell_reexport(ctx: Context, f: str, t: str) -> dict[str, Any]:
    ref, _ = ctx.corpus(f)
    other, record = ctx.corpus(t)
    if ref is None or other is None:
        return {"cell": f"reexport:{f}->{t}", "error": "a corpus is missing (see the capture cells)", "models": {}}
    cell = compat.compare_corpora(ref, other)
    return {"cell": f"reexport:{f}->{t}", "models": by_model(cell["results"])}


def cell_rollback(ctx: Context, t: str, f: str) -> dict[str, Any]:
    corpus, _ = ctx.corpus(t)
    if corpus is None:
        return {"cell": f"rollback:{t}->{f}", "error": f"no corpus exported with torch {t}", "models": {}}
    ctx.log(f"[upgrade] rollback {t}->{f}: torch {t}'s re-export verified by torch {f} (C++, then Python)")
    compiled = {(r.get("case"), r.get("variant")): r for r in ctx.packages(f, corpus)}
    cpp = compat.run_cpp_cell(ctx.runtime(f), corpus, ctx.aoti_cache, ctx.plan.timeout)
    results = []
    for r in cpp["results"]:
        # A program the older torch cannot even compile (a .pt2 it cannot read) is a rollback failure, not "not run".
        head = r["id"].split("/")[0]
        rec = compiled.get((head.split(":")[0], head.split(":")[1].split("@")[0])) if ":" in head else None
        if r["class"] == compat.NOT_RUN and rec and rec.get("status") == "error":
            r = {**r, "class": compat.LOAD, "detail": f"torch {f} cannot compile it: {rec.get('message', '')}"}
        results.append(r)
    python = compat.run_python_cell(ctx.runtime(f), corpus, ctx.plan.timeout)
    models = sorted({model_of(r["id"]) for r in results + python["results"] if r.get("id")})
    return {"cell": f"rollback:{t}->{f}",
            "models": {m: {"cpp": [r for r in results if model_of(r["id"]) == m],
                           "python": [r for r in python["results"] if model_of(r["id"]) == m]} for m in models}}


def libtorch_so(env: envs.Env) -> str:
    """The environment's libtorch.so (what a service that links LibTorch whole loads), or ""."""
    done = subprocess.run([env.python, "-c", "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "
                           "'lib', 'libtorch.so'))"], capture_output=True, text=True, timeout=600)
    path = done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else ""
    return path if path and Path(path).is_file() else ""


def cell_packages(ctx: Context, f: str, t: str) -> dict[str, Any]:
    corpus, _ = ctx.corpus(f)
    if corpus is None:
        return {"cell": f"packages:{f}<->{t}", "error": f"no corpus exported with torch {f}", "models": {}}
    rts = [ctx.runtime(f), ctx.runtime(t)]
    row: dict[str, Any] = {"corpus": f, "cells": {}, "aoti_compile": {}}
    for rt in rts:
        row["aoti_compile"][rt.name] = ctx.packages(rt.name, corpus)
        probe = compat.run_cpp_cell(rt, corpus, ctx.aoti_cache, ctx.plan.timeout, ["--result", "*@aoti/*"])
        row["cells"][f"{rt.name}/cpp"] = {"runtimes": probe.get("runtimes", {})}
    ctx.log(f"[upgrade] packages {f}<->{t}: each version's AOTInductor packages run by the other's runner")
    linkings: dict[str, dict[str, Any]] = {"as built": compat.aoti_across(row, rts, corpus, ctx.plan.timeout,
                                                                         ctx.log)}
    preload = {rt.name: libtorch_so(ctx.env(rt.name)) for rt in rts}
    if all(preload.values()):
        linked = {}
        for rt in rts:  # the runner that loads the packages gets its own libtorch.so
            linked.update(compat.aoti_across(row, rts, corpus, ctx.plan.timeout, ctx.log,
                                             {"LD_PRELOAD": preload[rt.name]}, only_into=rt.name))
        linkings["with libtorch.so"] = linked
    models: dict[str, dict[str, Any]] = {}
    for linking, cells in linkings.items():
        for key, cell in cells.items():
            for model, results in by_model(cell["results"]).items():
                models.setdefault(model, {}).setdefault(linking, {})[key] = results
    stderr = "\n".join(c.get("stderr", "") for cells in linkings.values() for c in cells.values())
    warn = warnings_by_model(stderr, sorted(models))
    for model in models:
        models[model]["warnings"] = warn.get(model, []) + warn.get("*", [])
    return {"cell": f"packages:{f}<->{t}", "models": models, "linkings": list(linkings),
            "assumes": "both linkings of a service: the runner as built (a CMake project that links `torch` with "
                       "the linker's --as-needed, Debian's default, does not load libtorch.so) and with libtorch.so "
                       "loaded; a package that fails in either makes the verdict, and its reason names the linking"}


# ---- reuse: a cell is a function of its inputs ----------------------------------------------------------------
def file_digest(path: str) -> str:
    """A file's content; for a script (a wrapper that sets flags and execs the real program), also the content of
    every existing file it names by absolute path, so that rebuilding what a wrapper runs is a change."""
    found = Path(path) if Path(path).exists() else Path(shutil.which(path) or path)
    h = hashlib.sha256()
    try:
        data = found.read_bytes()
    except OSError:
        return f"missing:{path}"
    h.update(data)
    if data.startswith(b"#!") and len(data) < 1 << 16:
        for token in re.findall(rb"/[^\s\"';|&]+", data):
            named = Path(token.decode(errors="replace"))
            if named.is_file():
                h.update(token + b"\0" + named.read_bytes())
    return h.hexdigest()


def tree_digest(root: Path) -> str:
    """Every file under ``root``: its path relative to ``root`` and its content."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def cell_versions(cell_id: str) -> list[str]:
    kind, _, rest = cell_id.partition(":")
    return [rest] if kind == "capture" else re.split(r"<->|->", rest)


def cell_key(ctx: Context, cell_id: str) -> str:
    """The digest of everything a cell's result depends on (module docstring): equal keys, equal results."""
    parts: list[str] = [cell_id, _core.__version__, envs.portable_package(ctx.root).parent.name,
                        json.dumps(hardware(), sort_keys=True), str(ctx.plan.timeout)]
    versions = cell_versions(cell_id)
    for version in versions:
        env = ctx.env(version)
        parts += [version, env.python, ctx.digest("file", env.python), env.torch, json.dumps(env.info, sort_keys=True),
                  ctx.digest("file", env.runner)]
    # The corpora the cell reads: its first version's (what is shipped, or the re-export rolled back), and for
    # reexport:F->T both.
    for version in versions if cell_id.startswith("reexport:") else versions[:1]:
        corpus, record = ctx.corpus(version)
        parts += [ctx.digest("tree", corpus) if corpus is not None else "no corpus",
                  json.dumps({k: v for k, v in record.items() if k != "seconds"}, sort_keys=True)]
    return envs.digest(*parts)


def reused(ctx: Context, cell_id: str) -> tuple[str, dict[str, Any] | None]:
    """The cell's key and, unless ``--no-reuse``, the result a run with the same key left in the cache."""
    key = cell_key(ctx, cell_id)
    path = ctx.root / "cells" / f"{key}.json"
    if not ctx.plan.reuse or not path.is_file():
        return key, None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return key, None
    return key, data if isinstance(data, dict) and data.get("cell") == cell_id else None


def run_cell(ctx: Context, cell_id: str) -> dict[str, Any]:
    t0 = time.perf_counter()  # (the key needs the cell's corpora: a capture cell's export is made while it is computed)
    key, kept = "", None
    try:
        key, kept = reused(ctx, cell_id)
    except (ValueError, OSError, subprocess.TimeoutExpired):
        pass  # (the cell itself meets the same problem and reports it)
    if kept is not None:
        out = {**kept, "reused": {"key": key, "seconds": kept.get("seconds", 0.0), "at": kept.get("at", "")}}
        out["seconds"] = 0.0
        ctx.log(f"[upgrade]   reused: its inputs are those of the run at {kept.get('at', '?')} (--no-reuse runs it)")
        return _written(ctx, cell_id, out)
    kind, _, rest = cell_id.partition(":")
    try:
        if kind == "capture":
            out = cell_capture(ctx, rest)
        elif kind in ("ops", "ship", "reexport", "rollback"):
            a, _, b = rest.partition("->")
            out = {"ops": cell_ops, "ship": cell_ship, "reexport": cell_reexport, "rollback": cell_rollback}[kind](
                ctx, a, b)
        elif kind == "packages":
            a, _, b = rest.partition("<->")
            out = cell_packages(ctx, a, b)
        else:
            raise UsageError(f"unknown cell {cell_id!r} (--list-cells lists them)")
    except (ValueError, OSError, subprocess.TimeoutExpired) as e:
        out = {"cell": cell_id, "error": terminal(e), "models": {}}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["hardware"] = hardware()
    out["at"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if key and not out.get("error"):  # (an error, a timeout say, is tried again next time)
        (ctx.root / "cells").mkdir(parents=True, exist_ok=True)
        tmp = ctx.root / "cells" / f"{key}.json.partial-{os.getpid()}"
        tmp.write_text(json_text(out, indent=1) + "\n")
        tmp.replace(ctx.root / "cells" / f"{key}.json")
    return _written(ctx, cell_id, out)


def _written(ctx: Context, cell_id: str, out: dict[str, Any]) -> dict[str, Any]:
    (ctx.plan.out / "cells").mkdir(parents=True, exist_ok=True)
    (ctx.plan.out / "cells" / f"{_file_name(cell_id)}.json").write_text(json_text(out, indent=1) + "\n")
    return out


def _file_name(cell_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", cell_id.replace("<->", "_and_").replace("->", "_to_"))


def hardware() -> dict[str, Any]:
    """What a verdict was measured on: drift from another CPU must not be blamed on torch."""
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "machine": platform.machine(), "cores": os.cpu_count(),
            "cpu_capability": _capability(), "flags": {k: os.environ[k] for k in
                                                       ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS",
                                                        "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
                                                       if k in os.environ}}


def _capability() -> str:
    import torch

    getter = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return getter() if getter else ""


# ---- the command --------------------------------------------------------------------------------------------------
def run(plan: Plan, *, cells: list[str] | None = None, list_only: bool = False, merge_from: list[Path] | None = None,
        waivers: Path | None = None, log: Callable[[str], None] = lambda m: None,
        out: Callable[[str], None] = print) -> int:
    planned = cell_ids(plan)
    if list_only:
        for cid in planned:
            out(cid)
        return 0
    waiver_list = load_waivers(waivers)
    today = datetime.date.today()
    for version, spec in plan.env_specs.items():  # a wrong --env is a usage error, before anything runs
        if version not in plan.versions():
            raise UsageError(f"--env {version}=...: {version} is neither --from nor a --to version")
        if not merge_from:
            envs.provided_env(version, spec)
    if merge_from:
        found = []
        for p in merge_from:
            files = sorted(p.rglob("*.json")) if p.is_dir() else [p]
            for fpath in files:
                data = json.loads(fpath.read_text())
                if isinstance(data, dict) and "cell" in data:
                    found.append(data)
        if not found:
            raise UsageError(f"--merge: no cell results in {', '.join(map(str, merge_from))}")
        chosen = {c["cell"]: c for c in found}
        result = merge(list(chosen.values()), {"from": plan.from_version, "to": plan.to_versions,
                                               "cells": planned}, waiver_list, today)
    else:
        wanted = cells or planned
        unknown = [c for c in wanted if c not in planned]
        if unknown:
            raise UsageError(f"--cell {unknown[0]!r} is not a cell of this plan (--list-cells lists them)")
        t0 = time.perf_counter()
        ctx = Context(plan, log)
        results = []
        for i, cid in enumerate(wanted, 1):
            log(f"[upgrade] cell {i}/{len(wanted)}: {cid}")
            results.append(run_cell(ctx, cid))
        if cells:  # one cell of a matrix: its JSON is the output (--merge joins them)
            for r in results:
                out(f"{r['cell']}: {'ERROR: ' + r['error'] if r.get('error') else 'done'} ({r['seconds']:.0f} s) -> "
                    f"{plan.out / 'cells' / (_file_name(r['cell']) + '.json')}")
            return 2 if any(r.get("error") for r in results) else 0
        environments = {v: {"torch": e.torch, "python": e.python, "runner": e.runner, "provided": e.provided,
                            "seconds": e.seconds, "cpu_capability": e.info.get("cpu_capability", "")}
                        for v, e in ctx._envs.items()}
        result = merge(results, {"from": plan.from_version, "to": plan.to_versions, "cells": planned,
                                 "environments": environments, "seconds": round(time.perf_counter() - t0, 1)},
                       waiver_list, today)
    written = write_reports(result, plan.out)
    for v in result["verdicts"]:
        word = v["verdict"] + (f" ({v['category']})" if v["category"] else "") + (" [waived]" if v["waived"] else "")
        out(terminal(f"{word:28s} {v['model']} -> torch {v['to']}: {'; '.join(v['reasons'][:2])}"))
    for u in result["unchecked"]:
        out(terminal(f"NOT CHECKED  {u}"))
    out(terminal(f"upgrade: {result['summary']}"))
    out("written: " + ", ".join(written))
    return result["exit_code"]
