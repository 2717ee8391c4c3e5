// The plan: which artifact of a case runs which input sets with which runtime. The one list the run, the isolation,
// the bindings, the benchmarks and the floor iterate; and the registry of runtimes it draws from.
#include "runtime.h"

#include <ATen/Version.h>
#include <ATen/native/DispatchStub.h>
#include <torch/version.h>

#include <algorithm>

#include <fnmatch.h>

namespace torchconform {

const std::vector<const Runtime*>& registered_runtimes() {
  // A new runtime: its file, and its line here.
  static const std::vector<const Runtime*> all = {&torchscript_runtime(), &aoti_runtime(), &nativert_runtime(),
                                                     &executorch_runtime()};
  return all;
}

const Runtime& runtime_for(RuntimeKind kind) {
  for (const Runtime* r : registered_runtimes())
    if (r->kind() == kind) return *r;
  TORCH_INTERNAL_ASSERT(false, "no runtime registered for ", to_string(kind));
}

std::vector<RuntimeInfo> runtimes() {
  std::vector<RuntimeInfo> out;
  for (const Runtime* r : registered_runtimes()) out.push_back(r->info());
  return out;
}

const char* libtorch_version() { return TORCH_VERSION; }

std::string cpu_capability() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  return at::get_cpu_capability();
#else  // (older LibTorch, e.g. Debian's 1.13 under torchconform compat, declares it but does not export it)
  return "unknown (LibTorch before 2.1 does not export it)";
#endif
}
const char* torchconform_version() { return TORCHCONFORM_VERSION; }

namespace {

// Why an exported program cannot run here at all: it gets one ERROR result of kind not_run (a run that verified
// nothing of it must not look green), never an expected failure.
std::string not_runnable(const CaseSpec& c, const VariantSpec& v) {
  std::string why;
  for (const auto kind : v.runtimes) {
    const RuntimeInfo info = runtime_for(kind).info();
    why += (why.empty() ? "" : "; ") + info.name + ": " + info.detail;
  }
  return c.name + ":" + v.name + ": not run: " +
         (v.runtimes.empty() ? "the manifest lists no runtime for this program"
                             : "no runtime of this runner can run it (" + why + ")");
}

}  // namespace

std::vector<PlannedArtifact> plan_artifacts(const CaseSpec& c) {
  std::vector<PlannedArtifact> out;
  if (!c.error.empty()) return out;  // a broken manifest plans nothing (plan() gives it its "*" result)
  auto sets_named = [&](const std::vector<std::string>& names) {
    std::vector<const InputSetSpec*> sets;
    for (const auto& s : c.sets)
      if (std::find(names.begin(), names.end(), s.name) != names.end()) sets.push_back(&s);
    return sets;
  };
  if (c.has_artifact) {
    PlannedArtifact a;
    a.runtime_name = "torchscript";
    a.file = &c.artifact;
    a.tolerance = &c.tolerance;
    for (const auto& s : c.sets) a.sets.push_back(&s);
    out.push_back(std::move(a));
  }
  for (const auto& v : c.variants) {
    PlannedArtifact base;
    base.variant = &v;
    base.tolerance = &v.tolerance;
    base.sets = sets_named(v.input_sets);
    base.label = v.name;
    if (base.sets.empty()) continue;
    if (!v.file) {
      base.status = PlannedArtifact::Status::kFailedCapture;
      base.runtime_name = "export";
      base.why = c.name + ":" + v.name + ": " + v.transform + " failed at export: " + v.error;
      out.push_back(std::move(base));
      continue;
    }
    base.file = &*v.file;
    if (v.kind == VariantKind::kTorchScript) {
      base.runtime_name = "torchscript";
      out.push_back(std::move(base));
      continue;
    }
    bool any = false;
    for (const auto kind : v.runtimes) {
      // A runtime this build lacks, beside one it has, produces no rows: runtimes() says which and why, in every
      // report's header.
      if (!runtime_for(kind).info().available) continue;
      any = true;
      PlannedArtifact a = base;
      a.runtime = kind;
      a.runtime_name = to_string(kind);
      a.label = v.name + "@" + a.runtime_name;
      out.push_back(std::move(a));
    }
    if (!any) {
      base.status = PlannedArtifact::Status::kNotRun;
      base.runtime_name = "none";
      base.why = not_runnable(c, v);
      out.push_back(std::move(base));
    }
  }
  return out;
}

std::vector<PlannedResult> plan(const CaseSpec& c) {
  if (!c.error.empty()) return {{"", "torchscript", "*", nullptr, nullptr}};
  std::vector<PlannedResult> out;
  for (const auto& a : plan_artifacts(c)) {
    if (a.status != PlannedArtifact::Status::kRun) {
      out.push_back({a.label, a.runtime_name, "*", nullptr, a.variant});
      continue;
    }
    for (const auto* s : a.sets) out.push_back({a.label, a.runtime_name, s->name, s, a.variant});
  }
  return out;
}

std::string planned_id(const CaseSpec& c, const PlannedResult& p) {
  return c.name + (p.label.empty() ? "" : ":" + p.label) + "/" + p.set;
}

bool result_matches(const std::string& glob, const std::string& id) {
  return fnmatch(glob.c_str(), id.c_str(), 0) == 0;
}

bool result_selected(const RunOptions& o, const std::string& id) {
  return o.results.empty() || std::any_of(o.results.begin(), o.results.end(),
                                          [&](const std::string& g) { return result_matches(g, id); });
}

std::string artifact_who(const CaseSpec& c, const PlannedArtifact& a) {
  return c.name + (a.label.empty() ? "" : ":" + a.label);
}

}  // namespace torchconform
