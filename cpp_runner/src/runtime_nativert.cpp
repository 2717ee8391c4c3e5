// NativeRT: the .pt2 run directly by torch::nativert::ModelRunnerHandle, where the LibTorch exports it (the configure
// step links one to find out; the outcome is compiled in as TORCHCONFORM_NATIVERT_STATUS and printed by every run).
// Untested on the machines this was written on: no LibTorch there exported NativeRT.
#include "runtime.h"

#ifdef TORCHCONFORM_HAVE_NATIVERT
#include <torch/nativert/ModelRunnerHandle.h>
#endif

namespace torchconform {
namespace {

class NativeRT final : public Runtime {
 public:
  RuntimeKind kind() const override { return RuntimeKind::kNativeRT; }
  RuntimeInfo info() const override {
#ifdef TORCHCONFORM_HAVE_NATIVERT
    return {"nativert", true, "torch::nativert::ModelRunnerHandle"};
#else
    return {"nativert", false, TORCHCONFORM_NATIVERT_STATUS};
#endif
  }

  Loaded load(const CaseSpec& c, const PlannedArtifact& a, const RunOptions& o, LoadMode mode) const override {
    (void)o;
#ifdef TORCHCONFORM_HAVE_NATIVERT
    Loaded out;
    const std::string who = artifact_who(c, a);
    auto t0 = Clock::now();
    if (mode == LoadMode::kVerified) read_verified(c, *a.file);
    out.read_seconds = since(t0);
    t0 = Clock::now();
    std::shared_ptr<torch::nativert::ModelRunnerHandle> runner;
    try {
      runner = std::make_shared<torch::nativert::ModelRunnerHandle>((c.dir / a.file->file).string(), "model");
    } catch (const c10::Error& e) {
      throw CorpusError(who + ": NativeRT ModelRunnerHandle failed: " + torch_message(e), ErrorKind::kLoad);
    }
    out.load_seconds = since(t0);
    out.prepare = [who, runner](const InputSetSpec& s, std::vector<c10::IValue> args) {
      if (!s.prelude.empty())
        throw CorpusError(who + "/" + s.name + ": an exported program has no methods for the set's prelude");
      if (!s.keywords.empty())  // (untested here: no LibTorch on these machines exports NativeRT)
        throw CorpusError(who + "/" + s.name + ": keyword arguments are not passed to NativeRT yet", ErrorKind::kCall);
      return Call([runner, args]() { return runner->run(args, {}); });
    };
    return out;
#else
    (void)mode;
    throw CorpusError(artifact_who(c, a) + ": " + info().detail, ErrorKind::kNotRun);
#endif
  }
};

}  // namespace

const Runtime& nativert_runtime() {
  static const NativeRT runtime;
  return runtime;
}

}  // namespace torchconform
