// The plan: which artifact of a case runs which input set with which runtime (the one list running, isolation,
// the bindings, the benchmarks and the floor iterate). Part of runner.h.
#pragma once

#include <torchconform/corpus.h>

#include <string>
#include <vector>

namespace torchconform {

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

}  // namespace torchconform
