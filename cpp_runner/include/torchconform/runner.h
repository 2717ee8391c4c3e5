// Running a corpus: the plan (which artifact runs which input set with which runtime), running it with LibTorch,
// comparing against the goldens, and the verification run every face shares. Benchmark primitives: bench.h.
#pragma once

#include <torchconform/compare.h>
#include <torchconform/corpus.h>

#include <c10/core/Device.h>

#include <functional>
#include <optional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace torchconform {

struct RunOptions {
  c10::Device device = c10::Device(c10::kCPU);
  int threads = 0;  // at::set_num_threads; 0 keeps LibTorch's default
  // Every input set is called `repeat` times on the same module and every call is compared: the profiling
  // executor may change the graph after the first runs (pytorch#74534), so a first-call-only check is not enough.
  int repeat = 2;
  // Where AOTInductor packages compiled from the corpus's exported programs are looked up (`torchconform compile`
  // builds them); empty: default_aoti_cache().
  std::string aoti_cache;
  // TF32 in cuBLAS matmuls and cuDNN convolutions (CUDA only). Off for conformance runs: the goldens are IEEE
  // float32. On, a run measures what TF32 would cost a service that enables it (docs/device-results.md).
  bool allow_tf32 = false;
  // Replaying the recorded submodule calls of a set on the TorchScript artifact (localize.cpp): on a FAIL of a set
  // that has records (the default), for every set that has them, or never.
  enum class Localize { kOnFail, kAlways, kOff } localize = Localize::kOnFail;
  // Only the results whose id (result_id: case[:artifact]/set) matches one of these globs (empty: all). A selected
  // variant result still compares call by call with the TorchScript artifact: the artifact runs that set too,
  // unreported.
  std::vector<std::string> results;
  // Run TorchScript artifacts that call operators acting outside the process (side_effect_operators: file I/O,
  // printing). Off by default: such an artifact is refused unloaded. For corpora whose authors the user trusts.
  bool allow_side_effects = false;
  // The relative error a tolerance must detect on most elements of a floating golden; past it the golden is weak
  // (LeafReport::weak: a warning on the PASS, never a failure).
  double sensitivity = kDefaultSensitivity;
  // When set, every result that produced an output (PASS, FAIL) also writes it, as torch.save would (zip, loadable
  // with torch.load(weights_only=True)), to <dir>/<case>/<artifact label, or "_">/<set>.pt: a run compared with
  // another run directly (`torchconform upgrade`: one PyTorch's outputs against another's).
  std::string save_outputs;
};

// The operators through which a TorchScript artifact can act outside the process (aten::from_file,
// aten::save...): refused unless RunOptions::allow_side_effects.
const std::vector<std::string>& side_effect_operators();
// Refuses (CorpusError, kind corpus) a TorchScript archive whose code names one of them, before anything of it is
// loaded (a module's __setstate__ runs during torch::jit::load); an archive this LibTorch cannot open at all (a file
// format from a newer PyTorch) is a CorpusError of kind load, with LibTorch's message. The runner checks the loaded
// graphs again after.
void check_torchscript_code(const std::string& bytes, const std::string& what);

// Whether a result id matches one --result glob (fnmatch; `*` also matches `/` and `:`), and whether it is selected
// by RunOptions::results (all, when there are none).
bool result_matches(const std::string& glob, const std::string& id);
bool result_selected(const RunOptions& o, const std::string& id);

// The LibTorch version this runner was built against (TORCH_VERSION).
const char* libtorch_version();
// The CPU kernels ATen dispatches to in this process ("AVX2", "AVX512", "DEFAULT"...; ATEN_CPU_CAPABILITY caps it):
// printed beside the exporter's, since goldens and outputs may differ in the last bits across capabilities.
std::string cpu_capability();
// torchconform's own version (pyproject.toml's, through CMake).
const char* torchconform_version();

// $TORCHCONFORM_AOTI_CACHE, else $XDG_CACHE_HOME/torchconform/aoti (an absolute XDG_CACHE_HOME), else
// $HOME/.cache/torchconform/aoti; never a shared temporary directory (UsageError when none of them is set).
std::string default_aoti_cache();
// A package cache holds native code the runner loads: it must be this user's, not group- or world-writable, under
// parents only this user or root can change (sticky world-writable parents excepted). Throws UsageError naming why
// not; a cache that does not exist yet passes (it holds nothing). prepare_aoti_cache creates the missing directories
// with mode 0700 first (what `torchconform compile` writes into) and returns the canonical path.
void check_aoti_cache(const std::string& cache);
std::string prepare_aoti_cache(const std::string& cache);
// What an AOTInductor package of an exported program depends on, as a SHA-256 (lowercase hex), read from the program
// file itself (hash-checked): its graph (models/*.json with every node's stack_trace left out: they hold the line
// numbers of the files the model was declared in), its weights and constants, and the compile options its variant
// records (aoti_options). Not the example inputs a .pt2 stores, nor its serialization id. Programs that differ only in
// where their source lines sit share one package; a changed graph, weight or option gets another. Throws CorpusError.
std::string program_key(const CaseSpec& c, const VariantSpec& program);
// The package compiled from the program with that key, for a torch version and device type:
// <cache>/<key[:32]>-torch<version>-<cpu|cuda>/model.pt2. The one definition of the cache path: Python computes it
// through the bindings, for this LibTorch or (torchconform compat, upgrade) for another PyTorch's version.
std::string aoti_package_path(const std::string& cache, const std::string& program_key,
                              const std::string& device_type, const std::string& torch_version = libtorch_version());
// Loads an AOTInductor package (not one of a corpus: e.g. the debug package `torchconform localize --aoti` builds,
// whose outputs are a program's intermediate values) and calls it once on flat tensors; returns its flat outputs.
// Throws CorpusError when this LibTorch has no AOTInductor loader or the package does not load or run.
std::vector<at::Tensor> run_aoti_package(const std::string& package, const std::vector<at::Tensor>& inputs,
                                         const c10::Device& device);

// The runtimes this runner can run artifacts with, and why one is missing ("" when available).
struct RuntimeInfo {
  std::string name;    // torchscript | aoti | nativert
  bool available = false;
  std::string detail;  // what it is, or why it is unavailable
};
std::vector<RuntimeInfo> runtimes();

// ---- the plan ----------------------------------------------------------------------------------------------------
// One artifact of a case as a run will treat it: the one list that running, isolation, the bindings' plan, the
// benchmarks and the floor all iterate. In run order: the case's TorchScript artifact, then each variant (an
// exported program once per runtime this build has).
struct PlannedArtifact {
  enum class Status {
    kRun,            // load it with `runtime` and run `sets`
    kFailedCapture,  // the capture failed at export: one "*" result (an expected failure, or the run fails)
    kNotRun,         // no runtime of this runner can run it: one "*" ERROR of kind not_run
  };
  Status status = Status::kRun;
  std::string label;  // SetResult::artifact: "" (the case's artifact), "frozen", "export@aoti"
  RuntimeKind runtime = RuntimeKind::kTorchScript;
  std::string runtime_name;  // SetResult::runtime: torchscript | aoti | nativert | export (failed) | none
  const VariantSpec* variant = nullptr;  // null for the case's TorchScript artifact
  const FileRef* file = nullptr;         // kRun: the file that is loaded
  const TolerancePolicy* tolerance = nullptr;
  std::vector<const InputSetSpec*> sets;  // kRun: in the case's order; others: the sets it would have run
  std::string why;                        // kFailedCapture / kNotRun: the message of its "*" result
};
std::vector<PlannedArtifact> plan_artifacts(const CaseSpec& c);

// Every result a full run of a case produces, in run order (plan_artifacts flattened: one per artifact and set, one
// "*" per failed capture or program no runtime can run, one "*" for a broken manifest).
struct PlannedResult {
  std::string label;    // SetResult::artifact
  std::string runtime;  // SetResult::runtime
  std::string set;      // SetResult::set_name ("*" for a failed capture, a program not run, a broken manifest)
  const InputSetSpec* spec = nullptr;
  const VariantSpec* variant = nullptr;
};
std::vector<PlannedResult> plan(const CaseSpec& c);
// The id a planned result will have (result_id of its SetResult).
std::string planned_id(const CaseSpec& c, const PlannedResult& p);

// ---- results ------------------------------------------------------------------------------------------------------
enum class Verdict {
  kPass,
  kFail,     // the output differs from the golden
  kError,    // the corpus, the artifact or the call failed (the message names the file)
  kCrash,    // the case's process died (signal or exit) before reporting this input set
  kTimeout,  // the case's process was killed after the per-case time limit
  kXFail,    // failed as its manifest's `xfail` mark expects
  kXPass,    // passed although marked `xfail`: the mark is stale, and the run fails until it is removed
};
const char* to_string(Verdict v);
Verdict verdict_from(const std::string& name);  // inverse of to_string; throws std::invalid_argument

// One recorded submodule call replayed on the artifact's own submodule with the recorded eager inputs: its own error.
struct SubmoduleCheck {
  std::string path;    // "features.2.conv"
  int64_t call = 0;    // the submodule's n-th call in the eager run
  std::string method;  // the artifact's method replayed ("forward", "forward1" for a traced second call)
  bool replayed = false;
  std::string why_not;  // not replayed: why (not a submodule in the artifact, inlined, arity...)
  std::string note;     // replayed with a difference from the eager call, e.g. keyword inputs left out
  Comparison comparison;
};
// The localisation of one result: every check in the eager run's completion order (a child completes before its
// parent), and the first one whose own output diverges.
struct Localization {
  bool ran = false;
  std::string note;              // what was done, or why it could not be (variants: whole-model comparison only)
  std::string first_divergence;  // "features.2.conv (forward, call 0)", or "" when none diverges
  std::vector<SubmoduleCheck> checks;
};

// A result's difference from the golden relative to the golden's noise envelope (export --envelope): ratio is the
// largest over the outputs of max_abs / the envelope's max_abs (0 when both are 0, +inf when only the envelope is 0).
struct EnvelopeCheck {
  bool present = false;
  bool within = true;
  double ratio = 0;
  std::string detail;
};

struct SetResult {
  std::string case_name;
  std::string set_name;
  std::string device;
  std::string artifact;              // "" for the case's TorchScript artifact, else the variant ("frozen",
                                     // "export@aoti": variant@runtime for exported programs)
  std::string runtime = "torchscript";  // PlannedArtifact::runtime_name
  Verdict verdict = Verdict::kError;
  Comparison comparison;  // of the first failing call, else of the last call
  int failed_call = 0;    // 1-based call that failed, 0 when none did
  std::string error;      // kError: what went wrong, naming the file
  ErrorKind error_kind = ErrorKind::kNone;  // what kind of problem `error` is (kError, kCrash, kTimeout, and the
                                            // kXFail that was one)
  double seconds = 0;
  c10::IValue output;     // what the artifact returned (last call made), moved to the CPU; None on kError
                          // and in isolated runs (the value stays in the child process)
  std::string xfail_reason;  // kXFail / kXPass: the mark's reason; for kXFail `error` or `comparison` says why
  // Variants: the same calls compared with the TorchScript artifact's outputs (under the variant's tolerance).
  bool has_reference = false;
  Comparison vs_artifact;
  EnvelopeCheck envelope;  // the golden comparison relative to the set's noise envelope, when the corpus has one
  // Timings of this artifact in this process: loading it (the same for all its sets), the first call of the set,
  // and the median of the calls after it (NaN with --repeat 1).
  double load_seconds = 0;
  double first_call_seconds = 0;
  double steady_seconds = 0;
  // Where this result's time went (`torchconform bench` sums them): reading and hashing the set's files (0 when an
  // earlier artifact of the case already read them: each set is read, hashed and decoded once per case run),
  // unpickling them, preparing the call (a copy of the inputs on the device; a freshly loaded module and the
  // prelude's calls for a set with a prelude), all calls together, and comparing (with the golden and with the
  // artifact).
  double read_seconds = 0;
  double decode_seconds = 0;
  double setup_seconds = 0;
  double call_seconds = 0;
  double compare_seconds = 0;
  int calls = 0;
  Localization localization;  // the replay of the set's recorded submodule calls, when it ran (localize.cpp)
};

// "simple_cnn/b4_32x32" or "simple_cnn:frozen/b4_32x32".
std::string result_id(const SetResult& r);
// Whether the result was compared under a loosened tolerance (with the golden or with the TorchScript artifact).
bool loosened(const SetResult& r);
// The result as JSON text (the mapping the reports, the isolation pipe and the bindings share) and back.
std::string result_to_json(const SetResult& r);
SetResult result_from_json(const std::string& text);
// One compared leaf as the JSON report writes it (the same mapping).
std::string leaf_to_json(const LeafReport& l);

// A set's (inputs, expected) as the runner reads them: hash-checked, the archive and the pickle checked before they
// are decoded (for faces that judge outputs produced elsewhere). Throws CorpusError.
std::pair<c10::IValue, c10::IValue> read_input_set(const CaseSpec& c, const InputSetSpec& s);

// Why an input set cannot be passed to an exported program variant ("" when it can): the structure of its leaves
// and the program's guards (dtypes, ranks, static sizes, symbol ranges), as the AOTInductor and ExecuTorch runtimes
// check them before a call, against the input spec of the program's own file. For faces that run a program
// themselves (`torchconform localize`).
std::string program_call_problem(const CaseSpec& c, const VariantSpec& program, const InputSetSpec& s);

// Applies the numerics policy shared with the Python side: TensorExpr fuser off, thread count, no TF32.
void apply_policy(const RunOptions& options);
std::string describe_policy(const RunOptions& options);

// Runs one case (all its input sets, or those named in `only_sets`); never throws for problems of the corpus or the
// artifact: they become kError results. An unknown name in `only_sets` throws CorpusError.
// `on_result`, when given, sees each result as soon as it is known.
std::vector<SetResult> run_case(const CaseSpec& c, const RunOptions& options,
                                const std::vector<std::string>& only_sets = {},
                                const std::function<void(const SetResult&)>& on_result = {});

// Runs one case in a child process (fork) so that an abort, a segfault or a hang inside LibTorch becomes a CRASH or
// TIMEOUT result of this case instead of ending the run. Results stream back over a pipe as JSON. The calling
// process should not have run LibTorch computations before (OpenMP thread pools do not survive fork).
std::vector<SetResult> run_case_isolated(const CaseSpec& c, const RunOptions& options, double timeout_s,
                                         const std::function<void(const SetResult&)>& on_result = {});

// Same output line for the CLI, the bindings and the tests: "PASS  case/set [cpu] ...".
std::string format_result(const SetResult& r);

struct Summary {
  int passed = 0, failed = 0, errors = 0, crashed = 0, timed_out = 0, xfailed = 0, xpassed = 0;
  int loosened = 0;  // passes (and xpasses) checked under a loosened tolerance (counted among them, not beside)
  int weak = 0;      // passes (and xpasses) on a golden that checks little (LeafReport::weak; counted among them)
  int64_t elements = 0;  // elements compared with their goldens by the results that compared (pass, fail, xpass)
  double seconds = 0;
  // Results that compared an output with its golden. None: nothing was verified, and that is not a pass (a case
  // whose only runtime this runner lacks, a selection of expected failures only, an empty plan).
  int verified() const { return passed + failed + xpassed; }
  // 2: something could not be verified (error, crash, timeout, an empty run); 3: nothing verified, every result an
  // expected failure that failed as marked (not a pass either; ctest maps it to "Skipped" for a per-result test);
  // 1: a mismatch or a stale xfail mark; 0: all good.
  int exit_code() const {
    if (errors || crashed || timed_out) return 2;
    if (verified() == 0) return xfailed ? 3 : 2;
    return failed || xpassed ? 1 : 0;
  }
};
Summary summarize(const std::vector<SetResult>& results);
std::string format_summary(const std::vector<SetResult>& results);

// ---- the verification run every face shares ----------------------------------------------------------------------
// A bad command line: the callers print their usage and exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Devices for "cpu", "cuda" or "all". "cuda" without CUDA throws UsageError; "all" without CUDA sets `skipped`.
std::vector<c10::Device> resolve_devices(const std::string& spec, std::string* skipped);

struct VerifyOptions {
  std::string corpus;
  std::vector<std::string> cases;  // globs; empty: all
  std::string device = "cpu";      // cpu | cuda | all
  int threads = 0;  // 0: the corpus's exported_with.threads (what the goldens were made with), else LibTorch's
  int repeat = 2;
  std::string json, junit;  // report paths, empty: none
  bool isolate = true;      // each case in its own child process (run_case_isolated)
  // Seconds per case, enforced by killing the case's process (isolated runs; 600 when unset). Set with
  // isolate = false it is a usage error: an in-process run cannot be stopped, and the limit must not look enforced.
  std::optional<double> timeout;
  std::string aoti_cache;   // empty: default_aoti_cache()
  bool quiet = false;       // no progress lines (the faces' progress sink)
  // Operator libraries to load before anything runs (e.g. torchvision's libtorchvision.so): given by the user,
  // never taken from a corpus (loading a library runs its code).
  std::vector<std::string> libraries;
  bool allow_tf32 = false;  // RunOptions::allow_tf32
  bool allow_side_effects = false;  // RunOptions::allow_side_effects
  double sensitivity = kDefaultSensitivity;  // RunOptions::sensitivity
  std::string save_outputs;         // RunOptions::save_outputs
  RunOptions::Localize localize = RunOptions::Localize::kOnFail;
  // --shard K/N: only the cases of shard K (1-based) of N; --durations: a previous JSON report whose per-case
  // seconds balance the shards (else a stable hash of the case name decides).
  int shard_index = 1, shard_count = 1;
  std::string durations;
  // --jobs N: isolated cases run N at a time (their results reported in case order, as a sequential run's);
  // threads per case then default to max(1, cores / N) where the corpus does not say.
  int jobs = 1;
  // --result GLOB (repeatable): only the results whose id matches (RunOptions::results); a glob that matches no
  // result of the selected cases is a usage error. A case none of whose results is selected is not run.
  std::vector<std::string> results;
  // --list: print the id of every result the run would produce (after --case, --shard and --result), one per line,
  // and run nothing. Device-independent: the same plan runs on every device.
  bool list = false;
};

// The names of shard k (1-based) of n among `names`: the whole case is the unit (one process, its artifacts loaded
// once). Without costs, a case belongs to shard (FNV-1a 64 of its name) mod n + 1: stable across runs, machines and
// corpus changes elsewhere. With costs (seconds per case from an earlier report; a case without one costs the
// median), longest first to the least loaded shard (ties: the name, then the lower shard): the N shards' union is
// `names`, with no overlap, for any n >= 1. Keeps the order of `names`.
std::vector<std::string> shard_names(const std::vector<std::string>& names, int k, int n,
                                     const std::map<std::string, double>& costs = {});
// Seconds per case from a JSON report (verify --json): the sum of its results' seconds over devices.
std::map<std::string, double> case_costs_from_report(const std::string& path);

// Loads an operator library into this process (dlopen, global symbols, as torch.ops.load_library does). Throws
// UsageError naming the path and the loader's reason.
void load_library(const std::string& path);

// The namespaces among `c.operator_namespaces` that no operator registered in this process belongs to.
std::vector<std::string> missing_operator_namespaces(const CaseSpec& c);

// One artifact of a case (a plan label: "" for the TorchScript artifact, "frozen", "export@aoti"...) loaded once by
// its runtime and called on inputs that are not in the corpus: `torchconform fuzz` runs eager Python against the C++
// runtimes live through it. The load is a verification's (hash- and archive-checked, the side-effect scan, the
// AOTInductor cache rules, operator namespaces present) and so is the call (a program's guards checked first, the
// policy of RunOptions applied, InferenceMode). Throws CorpusError (kinds as a result's: load, not_run, call...).
class OpenedArtifact {
 public:
  OpenedArtifact(const CaseSpec& c, const std::string& label, const RunOptions& o);
  // `args`: the positional arguments, then the values of `keywords` (as an input set stores them); `seed`:
  // torch::manual_seed before the call. Returns the output on the CPU.
  c10::IValue call(const std::string& method, const std::vector<c10::IValue>& args,
                   const std::vector<std::string>& keywords, std::optional<int64_t> seed) const;
  const std::string& runtime() const;
  double load_seconds() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// The one option table of a verification: `torchconform-run` parses its command line with it and `torchconform
// verify` hands its arguments to it through the bindings, so both accept exactly the same values. `default_corpus`:
// the corpus when none is given ("" : one is required). Throws UsageError.
VerifyOptions parse_verify_args(const std::vector<std::string>& args, const std::string& default_corpus = "");
// The usage text of that table, for `prog`.
std::string verify_usage(const std::string& prog);

// The whole verification run shared by torchconform-run and `torchconform verify`: open the corpus, select cases,
// run them on each device, send the same lines to `out` (results, summary) and `progress` (case n of N, elapsed),
// write the optional reports. Throws CorpusError / UsageError before any case runs.
struct VerifyOutcome {
  std::vector<SetResult> results;
  int exit_code = 0;
  std::string report;  // the JSON report document (what --json writes), for faces that render it (report.py)
};
using LineSink = std::function<void(const std::string&)>;
VerifyOutcome verify(const VerifyOptions& options, const LineSink& out, const LineSink& progress);

}  // namespace torchconform
