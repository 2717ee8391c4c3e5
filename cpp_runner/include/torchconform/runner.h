// Running a corpus: load each artifact with LibTorch, run its input sets, compare against the goldens.
#pragma once

#include <torchconform/compare.h>
#include <torchconform/corpus.h>

#include <c10/core/Device.h>

#include <functional>
#include <optional>
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
};

// $TORCHCONFORM_AOTI_CACHE, else $XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti. The Python side
// (torchconform/aoti.py) resolves the same directory.
std::string default_aoti_cache();
// The package compiled from the exported program with this SHA-256, for this LibTorch version and device type:
// <cache>/<sha256[:32]>-torch<version>-<cpu|cuda>/model.pt2.
std::string aoti_package_path(const std::string& cache, const std::string& program_sha256,
                              const std::string& device_type);

// The runtimes this runner can run artifacts with, and why one is missing ("" when available).
struct RuntimeInfo {
  std::string name;    // torchscript | aoti | nativert
  bool available = false;
  std::string detail;  // what it is, or why it is unavailable
};
std::vector<RuntimeInfo> runtimes();

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

struct SetResult {
  std::string case_name;
  std::string set_name;
  std::string device;
  std::string artifact;              // "" for the case's TorchScript artifact, else the variant ("frozen",
                                     // "export@aoti": variant@runtime for exported programs)
  std::string runtime = "torchscript";  // torchscript | aoti | nativert
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
};

// Every result a full run of a case produces, in run_case's order: the TorchScript artifact on each input set, then
// each variant on its sets (exported programs once per runtime this build has), and one "*" result per capture that
// failed at export. An isolated run reports the ones its child never got to as CRASH / TIMEOUT.
struct PlannedResult {
  std::string label;    // SetResult::artifact
  std::string runtime;  // SetResult::runtime
  std::string set;      // SetResult::set_name ("*" for a failed capture or a broken manifest)
  const InputSetSpec* spec = nullptr;
  std::optional<std::string> mark;  // the variant's xfail mark
};
std::vector<PlannedResult> plan(const CaseSpec& c);

// "simple_cnn/b4_32x32" or "simple_cnn:frozen/b4_32x32".
std::string result_id(const SetResult& r);

// The LibTorch version this runner was built against (TORCH_VERSION).
const char* libtorch_version();

// Applies the numerics policy shared with the Python side: TensorExpr fuser off, thread count.
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
  double seconds = 0;
  // Results that compared an output with its golden. None: nothing was verified, and that is not a pass (a case
  // whose only runtime this runner lacks, a selection of expected failures only, an empty plan).
  int verified() const { return passed + failed + xpassed; }
  // 2: something could not be verified (error, crash, timeout, nothing verified at all); 1: a mismatch or a stale
  // xfail mark; 0: all good.
  int exit_code() const {
    return errors || crashed || timed_out || verified() == 0 ? 2 : failed || xpassed ? 1 : 0;
  }
};
// Whether the result was compared under a loosened tolerance (with the golden or with the TorchScript artifact).
bool loosened(const SetResult& r);
Summary summarize(const std::vector<SetResult>& results);
std::string format_summary(const std::vector<SetResult>& results);

// A bad command line: the callers print their usage and exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Devices for "cpu", "cuda" or "all". "cuda" without CUDA throws UsageError; "all" without CUDA sets `skipped`.
std::vector<c10::Device> resolve_devices(const std::string& spec, std::string* skipped);

// The whole verification run shared by torchconform-run and `torchconform verify`: open the corpus, select cases,
// run them on each device, send the same lines to `out` (results, summary) and `progress` (case n of N, elapsed),
// write the optional reports. Throws CorpusError / UsageError before any case runs.
struct VerifyOptions {
  std::string corpus;
  std::vector<std::string> cases;  // globs; empty: all
  std::string device = "cpu";      // cpu | cuda | all
  int threads = 0;
  int repeat = 2;
  std::string json, junit;  // report paths, empty: none
  bool isolate = true;      // each case in its own child process (run_case_isolated)
  // Seconds per case, enforced by killing the case's process (isolated runs; 600 when unset). Set with
  // isolate = false it is a usage error: an in-process run cannot be stopped, and the limit must not look enforced.
  std::optional<double> timeout;
  std::string aoti_cache;   // empty: default_aoti_cache()
};
struct VerifyOutcome {
  std::vector<SetResult> results;
  int exit_code = 0;
};
using LineSink = std::function<void(const std::string&)>;
VerifyOutcome verify(const VerifyOptions& options, const LineSink& out, const LineSink& progress);

// `policy`: describe_policy() of each device run; `skipped`: devices asked for but absent ("" if none).
void write_json_report(const std::string& path, const Corpus& corpus, const std::string& policy,
                       const std::string& skipped, const std::vector<SetResult>& results);
void write_junit_report(const std::string& path, const std::vector<SetResult>& results);

// ---- benchmarks (`torchconform bench`) ----------------------------------------------------------------------------
struct BenchOptions {
  int warmup_calls = 3;         // calls before timing starts (the profiling executor optimizes after the first runs)
  double warmup_seconds = 0.2;  // ... and at least this long
  int min_calls = 15;           // timed calls: at least this many
  double min_seconds = 0.5;     // ... and at least this long
  int max_calls = 100000;
};
struct BenchTiming {
  double load_seconds = 0;        // loading the artifact (reading, hashing, deserializing / unpacking the package)
  double first_call_seconds = 0;  // the first call after loading
  std::vector<double> samples;    // seconds per timed call, after the warm-up
};
// Times one artifact of a case loaded and called the way the runner does it (same loaders, InferenceMode), without
// comparing: `label` is "" (the case's TorchScript artifact), a TorchScript variant's name, or "<variant>@aoti".
// `args` are the positional arguments of `method` (moved to options.device).
BenchTiming bench_artifact(const CaseSpec& c, const std::string& label, const std::string& method,
                           const std::vector<c10::IValue>& args, const RunOptions& options, const BenchOptions& bench);

// The floor of a verification: what raw LibTorch needs to load every artifact of the corpus and call it on every
// input set `options.repeat` times, in this process, with the inputs decoded beforehand (not timed), no hashing,
// no comparison. Artifacts that fail to load (expected failures) count with the time the failed load took.
struct FloorResult {
  double seconds = 0;       // loads + calls
  double load_seconds = 0;
  double call_seconds = 0;
  int artifacts = 0;
  int calls = 0;
};
FloorResult measure_floor(const Corpus& corpus, const RunOptions& options);

// The runner's cost per call against a raw `Module::forward` loop on the same loaded artifact and input set:
// `rounds` alternating rounds of `calls` calls each; the runner's calls are its whole per-call loop (call, copy to
// the CPU, compare with the golden). Medians over the rounds.
struct CallOverhead {
  double raw_seconds = 0;     // per call, median over rounds
  double runner_seconds = 0;  // per call, median over rounds
  double ratio = 0;           // median over rounds of runner / raw
  int calls = 0, rounds = 0;
};
CallOverhead measure_call_overhead(const CaseSpec& c, const std::string& set, const RunOptions& options, int calls,
                                   int rounds);

}  // namespace torchconform
