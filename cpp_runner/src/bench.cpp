// Benchmark primitives: timing loops in C++ over the plan and the runtimes' own loaders.
#include <torchconform/bench.h>

#include "run.h"

#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

namespace torchconform {
namespace {

// The planned artifact of a case with this label, runnable here; CorpusError listing the labels otherwise.
const PlannedArtifact& find_artifact(const CaseSpec& c, const std::vector<PlannedArtifact>& artifacts,
                                     const std::string& label) {
  if (!c.error.empty()) throw CorpusError(c.error);
  std::string known;
  for (const auto& a : artifacts) {
    if (a.label == label || (a.variant && a.status != PlannedArtifact::Status::kRun &&
                             label.rfind(a.variant->name + "@", 0) == 0)) {
      if (a.status != PlannedArtifact::Status::kRun) throw CorpusError(a.why);
      return a;
    }
    if (a.status == PlannedArtifact::Status::kRun)
      known += (known.empty() ? "" : ", ") + (a.label.empty() ? std::string("\"\" (the TorchScript artifact)") : a.label);
  }
  throw CorpusError(c.name + ": no artifact '" + label + "' in this runner (artifacts: " + known + ")");
}

const InputSetSpec& find_set(const CaseSpec& c, const std::string& name) {
  for (const auto& s : c.sets)
    if (s.name == name) return s;
  throw CorpusError(c.name + ": no input set named '" + name + "'");
}

}  // namespace

BenchTiming bench_artifact(const CaseSpec& c, const std::string& label, const std::string& method,
                           const std::vector<c10::IValue>& args, const RunOptions& o, const BenchOptions& b) {
  const auto artifacts = plan_artifacts(c);
  const PlannedArtifact& a = find_artifact(c, artifacts, label);
  const Loaded loaded = runtime_for(a.runtime).load(c, a, o, LoadMode::kVerified);
  InputSetSpec s;
  s.name = "bench";
  s.method = method;
  BenchTiming t;
  t.load_seconds = loaded.load_seconds + loaded.read_seconds;
  c10::InferenceMode guard;
  std::vector<c10::IValue> on_device;
  for (const auto& x : args) on_device.push_back(to_device(x, o.device));
  const Call fn = loaded.prepare(s, std::move(on_device));
  auto timed_call = [&] {
    const auto tc = Clock::now();
    fn();
    if (o.device.is_cuda()) torch::cuda::synchronize();
    return since(tc);
  };
  t.first_call_seconds = timed_call();
  const auto tw = Clock::now();
  for (int i = 0; i < b.warmup_calls || since(tw) < b.warmup_seconds; ++i) timed_call();
  const auto ts = Clock::now();
  while (static_cast<int>(t.samples.size()) < std::max(1, b.min_calls) || since(ts) < b.min_seconds) {
    if (static_cast<int>(t.samples.size()) >= b.max_calls) break;
    t.samples.push_back(timed_call());
  }
  return t;
}

FloorResult measure_floor(const Corpus& corpus, const RunOptions& o) {
  FloorResult f;
  c10::InferenceMode guard;
  for (const auto& c : corpus.cases) {
    if (!c.error.empty()) continue;
    std::map<std::string, std::vector<c10::IValue>> inputs;  // decoded before the clock runs
    for (const auto& s : c.sets) {
      const SetData d = read_set(c, s);
      if (d.error.empty()) inputs[s.name] = fresh_args(d, o.device);
    }
    auto timed = [&](double& bucket, const std::function<void()>& fn) {
      const auto t0 = Clock::now();
      try {
        fn();
      } catch (const std::exception&) {  // an artifact that cannot load: its failed attempt is part of the floor
      }
      const double took = since(t0);
      bucket += took;
      f.seconds += took;
    };
    for (const PlannedArtifact& a : plan_artifacts(c)) {
      if (a.status != PlannedArtifact::Status::kRun) continue;
      ++f.artifacts;
      std::optional<Loaded> loaded;
      // Raw: the runtime's loader on the file's path, nothing hashed or checked.
      timed(f.load_seconds, [&] { loaded = runtime_for(a.runtime).load(c, a, o, LoadMode::kRaw); });
      if (!loaded) continue;
      for (const auto* s : a.sets) {
        auto it = inputs.find(s->name);
        if (it == inputs.end()) continue;
        // Preparing the call is part of what any caller does (a module of its own for a state-changing prelude).
        for (int i = 0; i < std::max(1, o.repeat); ++i) {
          if (s->seed) torch::manual_seed(static_cast<uint64_t>(*s->seed));
          timed(f.call_seconds, [&] { loaded->prepare(*s, it->second)(); });
          ++f.calls;
        }
      }
    }
  }
  return f;
}

CallOverhead measure_call_overhead(const CaseSpec& c, const std::string& set, const RunOptions& o, int calls,
                                   int rounds) {
  if (calls < 1 || rounds < 1) throw UsageError("measure_call_overhead: calls and rounds must be >= 1");
  const InputSetSpec& s = find_set(c, set);
  if (!s.prelude.empty()) throw UsageError(c.name + "/" + set + ": pick an input set without a prelude");
  const SetData d = read_set(c, s);
  if (!d.error.empty()) throw CorpusError(d.error);
  const auto artifacts = plan_artifacts(c);
  const PlannedArtifact& a = find_artifact(c, artifacts, "");
  const Loaded loaded = runtime_for(a.runtime).load(c, a, o, LoadMode::kVerified);
  // The raw loop: Module::forward on a module loaded with plain torch::jit::load, nothing else.
  torch::jit::Module raw = torch::jit::load((c.dir / c.artifact.file).string(), o.device);
  raw.eval();
  torch::jit::Method raw_method = raw.get_method(s.method);
  RunOptions ro = o;
  ro.repeat = calls;
  std::vector<double> raw_t, runner_t, ratio;
  {
    c10::InferenceMode guard;
    const auto args = fresh_args(d, o.device);
    for (int i = 0; i < 5; ++i) raw_method(args);  // both warmed up before the first round
  }
  run_set(c, s, d, false, a, loaded, nullptr, ro);
  for (int round = 0; round < rounds; ++round) {
    double raw_per = 0;
    {
      c10::InferenceMode guard;
      const auto args = fresh_args(d, o.device);
      const auto t0 = Clock::now();
      for (int i = 0; i < calls; ++i) {
        if (s.seed) torch::manual_seed(static_cast<uint64_t>(*s.seed));
        raw_method(args);
        if (o.device.is_cuda()) torch::cuda::synchronize();
      }
      raw_per = since(t0) / calls;
    }
    const SetResult r = run_set(c, s, d, false, a, loaded, nullptr, ro);
    if (r.verdict != Verdict::kPass)
      throw CorpusError(c.name + "/" + set + ": the runner did not pass this set: " + format_result(r));
    const double runner_per = r.seconds / calls;
    raw_t.push_back(raw_per);
    runner_t.push_back(runner_per);
    ratio.push_back(runner_per / raw_per);
  }
  return {median(raw_t), median(runner_t), median(ratio), calls, rounds};
}

}  // namespace torchconform
