// Running a case with LibTorch: the options and numerics policy of a run, the safety checks before anything loads, the
// runtimes this build has, the AOTInductor package cache, and running a case (in process or isolated). Part of runner.h.
#pragma once

#include <torchconform/compare.h>
#include <torchconform/corpus.h>
#include <torchconform/plan.h>
#include <torchconform/result.h>

#include <c10/core/Device.h>

#include <functional>
#include <memory>
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

}  // namespace torchconform
