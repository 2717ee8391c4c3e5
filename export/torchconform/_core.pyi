"""
torchconform's C++ core (corpus reader, runner, comparator) for Python.

Types of the compiled module, made with ``pybind11-stubgen torchconform._core`` from the built module;
tests/python/test_layout.py checks that it names exactly what the module has.
"""
from __future__ import annotations
import collections.abc
import torch
import typing
__all__: list[str] = ['Case', 'Comparison', 'Corpus', 'CorpusError', 'InputSet', 'Leaf', 'OpenedArtifact', 'SetResult', 'UsageError', 'Variant', 'VerifyOptions', 'aoti_package_path', 'applicable_mark', 'bench_artifact', 'case_costs_from_report', 'check_aoti_cache', 'check_torchscript_code', 'compare', 'compare_output', 'corpus_schema', 'default_aoti_cache', 'libtorch_version', 'load_output', 'load_records', 'load_set', 'mark_may_cover', 'measure_call_overhead', 'measure_floor', 'open_artifact', 'parse_verify_args', 'plan', 'plan_artifacts', 'prepare_aoti_cache', 'printable', 'program_call_problem', 'program_key', 'read_case_file', 'run_aoti_package', 'run_case', 'runtimes', 'shard_names', 'side_effect_operators', 'validate', 'validate_with_schema', 'verify', 'verify_usage', 'version_matches']
class CorpusError(ValueError):
    pass
class UsageError(ValueError):
    pass
class Leaf:
    """
    One compared leaf of an output tree (a tensor or a scalar), or a mismatch
    """
    def __repr__(self) -> str:
        ...
    @property
    def accepts_rel_error(self) -> float:
        """
        the relative error the tolerance accepts on every element of this golden
        """
    @property
    def accepts_rel_error_median(self) -> float:
        """
        the relative error the tolerance accepts on most elements (at the median |value| of the nonzero ones)
        """
    @property
    def applied_tolerance(self) -> typing.Any:
        """
        the tolerance the leaf was compared under, as the JSON report's fields: {'mode', 'rtol', 'atol' (allclose, resolved), 'max_ulp' (ulp), 'equal_nan'}
        """
    @property
    def custom_tolerance(self) -> bool:
        ...
    @property
    def dtype(self) -> str:
        ...
    @property
    def kind(self) -> str:
        ...
    @property
    def loosened(self) -> bool:
        ...
    @property
    def max_abs(self) -> float:
        ...
    @property
    def max_rel(self) -> float:
        ...
    @property
    def max_ulp(self) -> float:
        ...
    @property
    def message(self) -> str:
        ...
    @property
    def mismatched(self) -> int:
        ...
    @property
    def needed_atol(self) -> float:
        ...
    @property
    def needed_rtol(self) -> float:
        ...
    @property
    def ok(self) -> bool:
        ...
    @property
    def path(self) -> str:
        ...
    @property
    def tolerance(self) -> str:
        ...
    @property
    def total(self) -> int:
        ...
    @property
    def weak(self) -> str:
        """
        why the golden checks little, judged from its values (empty, constant, within atol, a tolerance that accepts more than 1% of relative error on most elements), or ''
        """
    @property
    def worst_actual(self) -> str:
        ...
    @property
    def worst_expected(self) -> str:
        ...
    @property
    def worst_index(self) -> str:
        ...
class Comparison:
    def __bool__(self) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def summary(self) -> str:
        ...
    def tolerance_note(self) -> str:
        ...
    @property
    def first_failure(self) -> typing.Any:
        ...
    @property
    def leaves(self) -> list[Leaf]:
        ...
    @property
    def loosened(self) -> bool:
        ...
    @property
    def max_abs(self) -> float:
        ...
    @property
    def max_rel(self) -> float:
        ...
    @property
    def max_ulp(self) -> float:
        ...
    @property
    def mismatched(self) -> int:
        ...
    @property
    def needed_atol(self) -> float:
        ...
    @property
    def needed_rtol(self) -> float:
        ...
    @property
    def ok(self) -> bool:
        ...
    @property
    def total(self) -> int:
        ...
class InputSet:
    @property
    def description(self) -> str:
        ...
    @property
    def keywords(self) -> list[str]:
        """
        names of the last arguments, passed by keyword
        """
    @property
    def mark(self) -> typing.Any:
        ...
    @property
    def method(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def prelude(self) -> list[str]:
        ...
    @property
    def seed(self) -> int | None:
        ...
    @property
    def xfail(self) -> str | None:
        ...
class Variant:
    @property
    def aoti_options(self) -> typing.Any:
        """
        the AOTInductor options the program is compiled with (manifest aoti_options), {} when none
        """
    @property
    def description(self) -> str:
        ...
    @property
    def error(self) -> str:
        ...
    @property
    def file(self) -> str | None:
        ...
    @property
    def input_sets(self) -> list[str]:
        ...
    @property
    def kind(self) -> str:
        ...
    @property
    def mark(self) -> typing.Any:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def pytree_types(self) -> list:
        """
        user containers in the program's specs: [{name, kind: namedtuple|dataclass, fields, none_fields}]
        """
    @property
    def runtimes(self) -> list[str]:
        ...
    @property
    def sha256(self) -> str | None:
        ...
    @property
    def transform(self) -> str:
        ...
    @property
    def xfail(self) -> str | None:
        ...
class Case:
    @property
    def description(self) -> str:
        ...
    @property
    def dir(self) -> str:
        ...
    @property
    def error(self) -> str:
        ...
    @property
    def exported_torch(self) -> str:
        ...
    @property
    def input_sets(self) -> list[InputSet]:
        ...
    @property
    def manifest_json(self) -> str:
        """
        the manifest text as verified (hash, schema, depth); '' for a broken case
        """
    @property
    def mark(self) -> typing.Any:
        ...
    @property
    def mode(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def operator_libraries(self) -> list[str]:
        ...
    @property
    def operator_namespaces(self) -> list[str]:
        ...
    @property
    def variants(self) -> list[Variant]:
        ...
    @property
    def xfail(self) -> str | None:
        ...
class Corpus:
    @staticmethod
    def open(path: str) -> Corpus:
        """
        Parse and hash-check corpus.json and every manifest; raises CorpusError.
        """
    def select(self, globs: collections.abc.Sequence[str]) -> list[str]:
        ...
    @property
    def cases(self) -> list[Case]:
        ...
    @property
    def exported_python(self) -> str:
        ...
    @property
    def exported_torch(self) -> str:
        ...
    @property
    def format_version(self) -> int:
        ...
    @property
    def index_sha256(self) -> str:
        ...
    @property
    def root(self) -> str:
        ...
class SetResult:
    def __repr__(self) -> str:
        ...
    def to_json(self) -> str:
        """
        the result as the JSON report writes it (the one mapping)
        """
    @property
    def artifact(self) -> str:
        ...
    @property
    def call_seconds(self) -> float:
        ...
    @property
    def calls(self) -> int:
        ...
    @property
    def case(self) -> str:
        ...
    @property
    def compare_seconds(self) -> float:
        ...
    @property
    def comparison(self) -> Comparison:
        ...
    @property
    def decode_seconds(self) -> float:
        ...
    @property
    def device(self) -> str:
        ...
    @property
    def error(self) -> str:
        ...
    @property
    def error_kind(self) -> str:
        ...
    @property
    def failed_call(self) -> int:
        ...
    @property
    def first_call_seconds(self) -> float:
        ...
    @property
    def id(self) -> str:
        ...
    @property
    def input_set(self) -> str:
        ...
    @property
    def line(self) -> str:
        ...
    @property
    def load_seconds(self) -> float:
        ...
    @property
    def loosened(self) -> bool:
        ...
    @property
    def output(self) -> typing.Any:
        """
        what the artifact returned, as torch objects sharing the C++ tensors' storage
        """
    @property
    def read_seconds(self) -> float:
        ...
    @property
    def runtime(self) -> str:
        ...
    @property
    def seconds(self) -> float:
        ...
    @property
    def setup_seconds(self) -> float:
        ...
    @property
    def steady_seconds(self) -> float:
        ...
    @property
    def verdict(self) -> str:
        ...
    @property
    def vs_artifact(self) -> Comparison | None:
        ...
    @property
    def xfail_reason(self) -> str:
        ...
class OpenedArtifact:
    """
    One artifact of a case loaded once by the runner's runtime, called on new inputs
    """
    def call(self, args: tuple, method: str = 'forward', keywords: collections.abc.Sequence[str] = [], seed: typing.SupportsInt | typing.SupportsIndex | None = None) -> typing.Any:
        """
        Call the artifact as the runner calls an input set: `args` the positional arguments then the values of `keywords`; the output on the CPU. CorpusError when the call is refused (a program's guards) or raises.
        """
    @property
    def load_seconds(self) -> float:
        ...
    @property
    def runtime(self) -> str:
        ...
class VerifyOptions:
    """
    What parse_verify_args made of a command line
    """
    @property
    def allow_side_effects(self) -> bool:
        ...
    @property
    def allow_tf32(self) -> bool:
        ...
    @property
    def aoti_cache(self) -> str:
        ...
    @property
    def cases(self) -> list[str]:
        ...
    @property
    def corpus(self) -> str:
        ...
    @property
    def device(self) -> str:
        ...
    @property
    def isolate(self) -> bool:
        ...
    @property
    def json(self) -> str:
        ...
    @property
    def junit(self) -> str:
        ...
    @property
    def localize(self) -> str:
        ...
    @property
    def quiet(self) -> bool:
        ...
    @property
    def repeat(self) -> int:
        ...
    @property
    def sensitivity(self) -> float:
        ...
    @property
    def threads(self) -> int:
        ...
    @property
    def timeout(self) -> float | None:
        ...
def aoti_package_path(cache: str, program_key: str, device_type: str, torch_version: str = '2.13.0') -> str:
    """
    Where a runner built against `torch_version` (default: this one) looks for the AOTInductor package of an exported program with this program_key (see torchconform compile): the one definition of the cache path.
    """
def applicable_mark(corpus: Corpus, case: str, artifact: str, input_set: str, torch_version: str, device: str = 'cpu') -> str | None:
    """
    The xfail reason that applies to one result (artifact label, input set or '*') under `torch_version` on `device` (a device type), or None: the runner's precedence (variant, then set, then case), version and device conditions.
    """
def bench_artifact(corpus: Corpus, case: str, artifact: str, method: str, args: tuple, device: str = 'cpu', threads: typing.SupportsInt | typing.SupportsIndex = 0, aoti_cache: str = '', warmup_calls: typing.SupportsInt | typing.SupportsIndex = 3, warmup_seconds: typing.SupportsFloat | typing.SupportsIndex = 0.2, min_calls: typing.SupportsInt | typing.SupportsIndex = 15, min_seconds: typing.SupportsFloat | typing.SupportsIndex = 0.5, max_calls: typing.SupportsInt | typing.SupportsIndex = 100000) -> tuple[float, float, list[float]]:
    """
    Load one artifact of a case the way the runner does (artifact '' = the TorchScript artifact, a variant name, or 'export@aoti') and time calls of `method` on `args` in C++; returns (load_seconds, first_call_seconds, [seconds per timed call]).
    """
def case_costs_from_report(path: str) -> dict[str, float]:
    """
    Seconds per case in a JSON report (the sum over its results and devices): what --durations reads.
    """
def check_aoti_cache(cache: str) -> None:
    """
    Raises UsageError when another local user could have written into the cache (not this user's, group- or world-writable, or under a parent others can change).
    """
def check_torchscript_code(data: bytes, what: str) -> str:
    """
    Raises CorpusError when a TorchScript archive's code calls an operator of side_effect_operators(): check it before torch.jit.load (a module's __setstate__ runs while it loads). Returns '' when it was checked, else why this LibTorch cannot open the archive (a load failure, e.g. a file format from a newer PyTorch).
    """
def compare(expected: typing.Any, actual: typing.Any, tolerance: typing.Any = None, per_set: bool = False, sensitivity: typing.SupportsFloat | typing.SupportsIndex = 0.01) -> Comparison:
    """
    Compare two values (tensors, tuples, lists, str-keyed dicts, scalars) structurally. `tolerance` is a manifest tolerance object, e.g. {'default': {'mode': 'exact'}, 'outputs': {}}; None: assert_close defaults. A per-output tolerance that reaches no output fails the comparison, unless `per_set` (one set of a case whose other sets call other methods, as the runner compares them: overrides_used says which were used). `sensitivity`: the relative error a tolerance must detect on most elements of a floating golden (LeafReport.weak past it).
    """
def compare_output(corpus: Corpus, case: str, artifact: str, input_set: str, actual: typing.Any) -> Comparison:
    """
    An output produced elsewhere (another PyTorch, another process) compared with the set's golden under the artifact's tolerance, exactly as the runner compares its own (artifact: a plan label or a variant name); raises CorpusError when it compared nothing (an empty golden), which is not a pass.
    """
def corpus_schema() -> str:
    """
    docs/corpus-schema.json as compiled into the runner
    """
def default_aoti_cache() -> str:
    """
    $TORCHCONFORM_AOTI_CACHE, else $XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti; raises UsageError when none is set (never a shared temporary directory).
    """
def libtorch_version() -> str:
    ...
def load_output(data: bytes) -> typing.Any:
    """
    An output a runner saved with --save-outputs (torch::pickle_save, typed containers included), as torch objects: a run compared with another run. Only for files this process's own runs wrote.
    """
def load_records(corpus: Corpus, case: str, input_set: str) -> typing.Any:
    """
    The set's recorded submodule calls [(path, call, args, kwargs, output), ...] as the runner reads them (hash-checked), or None when the set has none.
    """
def load_set(corpus: Corpus, case: str, input_set: str) -> tuple[typing.Any, typing.Any]:
    """
    (inputs, expected) of a set as the runner reads them (hash-checked, the archive and pickle checked first).
    """
def mark_may_cover(error_kind: str) -> bool:
    """
    Whether an expected-failure mark may cover a result that ended in this error kind ('none', 'corpus', 'load', 'missing_package', 'not_run', 'call', 'crash', 'timeout'): never a refused corpus nor a runtime the build lacks. The runner's rule, for faces that judge results themselves.
    """
def measure_call_overhead(corpus: Corpus, case: str, input_set: str, device: str = 'cpu', threads: typing.SupportsInt | typing.SupportsIndex = 0, calls: typing.SupportsInt | typing.SupportsIndex = 200, rounds: typing.SupportsInt | typing.SupportsIndex = 9) -> dict[str, float]:
    """
    Per-call time of the runner's checked call loop against a raw Module::forward loop on the same artifact and input set (medians over alternating rounds).
    """
def measure_floor(corpus: Corpus, device: str = 'cpu', threads: typing.SupportsInt | typing.SupportsIndex = 0, repeat: typing.SupportsInt | typing.SupportsIndex = 2, aoti_cache: str = '') -> dict[str, float]:
    """
    Raw LibTorch load + `repeat` calls of every artifact and input set of the corpus, in this process, inputs decoded beforehand, nothing hashed or compared: the floor a verification run is measured against.
    """
def open_artifact(corpus: Corpus, case: str, artifact: str, device: str = 'cpu', aoti_cache: str = '', allow_side_effects: bool = False, threads: typing.SupportsInt | typing.SupportsIndex = 0) -> OpenedArtifact:
    """
    Load one artifact of a case (a plan label: '' for the TorchScript artifact, 'export@aoti'...) with the runner's runtime, as a verification loads it (threads: 0 for the corpus's exported_with.threads), to call it on inputs that are not in the corpus (torchconform fuzz).
    """
def parse_verify_args(args: collections.abc.Sequence[str], default_corpus: str = '') -> VerifyOptions:
    """
    The verification's one option table (torchconform-run's): a VerifyOptions, or UsageError.
    """
def plan(corpus: Corpus, case: str) -> list[tuple[str, str, str]]:
    """
    (artifact, runtime, input set) of every result a full run of the case produces, in run order.
    """
def plan_artifacts(corpus: Corpus, case: str) -> list:
    """
    The case's plan, artifact by artifact (status run | failed_capture | not_run, label, runtime, variant, kind, file, sets, why): what faces that run artifacts elsewhere (the compat probe) iterate.
    """
def prepare_aoti_cache(cache: str) -> str:
    """
    Creates the cache's missing directories with mode 0700, checks it (check_aoti_cache) and returns its canonical path.
    """
def printable(text: str) -> str:
    """
    Corpus text made safe to print (control, invisible and bidirectional characters escaped): the one definition the CLI, the reports and the Python faces share.
    """
def program_call_problem(corpus: Corpus, case: str, variant: str, input_set: str) -> str:
    """
    Why the input set cannot be passed to the exported program ('' when it can): its structure and the program's guards, checked as the runner's AOTInductor runtime does before a call.
    """
def program_key(corpus: Corpus, case: str, variant: str) -> str:
    """
    What the AOTInductor package of an exported program depends on, as a SHA-256 read from the program file: its graph without stack traces, its weights and constants, its aoti_options. The package cache's key.
    """
def read_case_file(corpus: Corpus, case: str, file: str) -> bytes:
    """
    The one checked door into a corpus for every face: the bytes of a file the case's manifest declares (relative to the case directory), a regular file inside the corpus, of its declared size and SHA-256, read once. Raises CorpusError.
    """
def run_aoti_package(package: str, inputs: collections.abc.Sequence[torch.Tensor], device: str = 'cpu') -> list[torch.Tensor]:
    """
    Load an AOTInductor package with the runner's loader and call it once on flat tensors (C++, no Python inside); returns its flat outputs on the CPU.
    """
def run_case(corpus: Corpus, case: str, device: str = 'cpu', threads: typing.SupportsInt | typing.SupportsIndex = 0, repeat: typing.SupportsInt | typing.SupportsIndex = 2, sets: collections.abc.Sequence[str] = [], aoti_cache: str = '') -> list[SetResult]:
    """
    Run one case (or the named input sets of it) with the C++ runner, on its TorchScript artifact and every variant; returns one SetResult per (artifact, input set).
    """
def runtimes() -> list[tuple[str, bool, str]]:
    """
    (name, available, detail) of each runtime this build of the runner has.
    """
def shard_names(names: collections.abc.Sequence[str], k: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, costs: collections.abc.Mapping[str, typing.SupportsFloat | typing.SupportsIndex] = {}) -> list[str]:
    """
    The names (cases) of shard k (1-based) of n, as --shard K/N picks them: a stable hash of the name, or with costs (seconds per name) longest first to the least loaded shard. Keeps the order of `names`.
    """
def side_effect_operators() -> list[str]:
    """
    The operators through which an artifact can act outside the process (file I/O, printing): refused unless --allow-side-effects.
    """
def validate(definition: str, json_text: str) -> str:
    """
    Validate JSON text against a corpus-schema definition ('manifest', 'corpus', 'policy'...): '' when valid, else the first problem as '<json path>: <what>'.
    """
def validate_with_schema(schema_text: str, json_text: str) -> str:
    """
    The corpus validator on another schema (one that uses only the keywords it implements; others raise).
    """
def verify(options: VerifyOptions, out: collections.abc.Callable[[str], None], progress: collections.abc.Callable[[str], None] = None) -> tuple[int, list[SetResult], str]:
    """
    The run torchconform-run does (options from parse_verify_args), with the same lines sent to `out` and `progress`; returns (exit_code, results, the JSON report document). Raises CorpusError / UsageError before any case runs.
    """
def verify_usage(prog: str) -> str:
    ...
def version_matches(version: str, spec: str) -> bool:
    """
    Whether a torch version satisfies an xfail mark's condition ('<2.14', '>=2.13,<3'): the runner's rule.
    """
__version__: str = '0.1.0'
