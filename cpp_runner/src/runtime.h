// The runtime interface: one way of loading and calling an artifact from C++ (TorchScript, AOTInductor, NativeRT,
// ExecuTorch), in the style of Polygraphy's runners. Each runtime is one file (runtime_<name>.cpp); adding one is a new
// file implementing this interface plus its line in registered_runtimes() (plan.cpp), which is all the plan, the run,
// the isolation, the benchmarks and the reports need to know of it. Its name is corpus vocabulary (a manifest lists the
// runtimes that run a variant), so it also gets its value in RuntimeKind and kRuntimeNames (manifest.cpp) and in the
// schema's `runtimes` enum (docs/corpus-schema.json), and its file in cpp_runner/CMakeLists.txt.
#pragma once

#include <torchconform/runner.h>

#include <ATen/core/ivalue.h>
#include <torch/csrc/jit/api/module.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace torchconform {

using Clock = std::chrono::steady_clock;
inline double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// One checked call, prepared for an input set: run it as many times as the policy asks.
using Call = std::function<c10::IValue()>;

// An artifact loaded by its runtime, ready to run input sets.
struct Loaded {
  double read_seconds = 0;  // reading and hashing the artifact's file
  double load_seconds = 0;  // deserializing it (TorchScript) or unpacking and loading its package (AOTInductor)
  // Turns an input set (its arguments already copied to the device) into its call: e.g. a fresh TorchScript module
  // with the set's prelude applied. Throws CorpusError (kind call, corpus...) when the set cannot be called.
  std::function<Call(const InputSetSpec&, std::vector<c10::IValue>)> prepare;
};

// How a runtime reads the artifact's file: kVerified (read once, hash- and archive-checked, loaded from those
// bytes: what a verification does) or kRaw (the same regular file inside the corpus, its hash unchecked: what the
// floor benchmarks measure).
enum class LoadMode { kVerified, kRaw };

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual RuntimeKind kind() const = 0;
  virtual RuntimeInfo info() const = 0;  // whether this build has it, and what it is or why not
  // Loads a planned artifact (status kRun, runtime kind()). Throws CorpusError with a kind (load, missing_package,
  // corpus...) naming the file.
  virtual Loaded load(const CaseSpec& c, const PlannedArtifact& a, const RunOptions& o, LoadMode mode) const = 0;
};

// Every runtime, in the order the plan runs them (torchscript, aoti, nativert), available or not.
const std::vector<const Runtime*>& registered_runtimes();
const Runtime& runtime_for(RuntimeKind kind);

// Each runtime file defines one of these.
const Runtime& torchscript_runtime();
const Runtime& aoti_runtime();
const Runtime& nativert_runtime();
const Runtime& executorch_runtime();

// ---- helpers the runtimes and the run share ----------------------------------------------------------------------
// An input set's arguments split into the positional ones and those passed by keyword (the last
// s.keywords.size(), in that order). Throws CorpusError (kind corpus) when the set holds fewer values than keywords.
struct SplitArgs {
  std::vector<c10::IValue> positional;
  std::vector<std::pair<std::string, c10::IValue>> keywords;
};
SplitArgs split_keywords(const InputSetSpec& s, std::vector<c10::IValue> args, const std::string& who);

std::string torch_message(const c10::Error& e);
// `copy`: tensors are copied even when already on the device (with conj/neg bits resolved, as torch.load gives).
c10::IValue to_device(const c10::IValue& v, const c10::Device& device, bool copy = false);
// A case's TorchScript module from its hash-checked, archive-checked bytes, on `device`, in eval mode (the runtime's
// own load, runtime_torchscript.cpp). Throws CorpusError (load, corpus) naming the file.
// An exported program's calling convention (program_spec.cpp), for the runtimes that call one with flat tensors
// (AOTInductor, ExecuTorch). `in_spec`/`out_spec`: the program's treespecs (torch.utils._pytree JSON, the part after
// the protocol number). program_inputs flattens an input set by the input spec and checks its leaves against the
// manifest's `inputs` (constants equal, tensors within the guards; CorpusError otherwise); program_outputs rebuilds
// the output value from all the flat outputs (CorpusError of kind call when they do not fit the spec).
std::vector<at::Tensor> program_inputs(const VariantSpec& v, const nlohmann::json& in_spec, const SplitArgs& args,
                                       const std::string& who);
c10::IValue program_outputs(const nlohmann::json& out_spec, const std::vector<at::Tensor>& flat, const VariantSpec& v,
                            const std::string& who);
// The input and output treespecs (the part after the protocol number) an exported program file declares for its
// root module (models/model.json of the .pt2, hash- and archive-checked): the structure of the calls of what was
// lowered or compiled from it. Throws CorpusError.
std::pair<nlohmann::json, nlohmann::json> program_call_specs(const CaseSpec& c, const VariantSpec& program);
torch::jit::Module load_torchscript(const CaseSpec& c, const FileRef& file, const RunOptions& o);
// Replays the set's recorded submodule calls on the case's TorchScript artifact (localize.cpp).
Localization localize(const CaseSpec& c, const InputSetSpec& s, const TolerancePolicy& tolerance,
                      const RunOptions& o);

// "simple_cnn:export@aoti" (or "simple_cnn" for the case's artifact): how messages name an artifact.
std::string artifact_who(const CaseSpec& c, const PlannedArtifact& a);

}  // namespace torchconform
