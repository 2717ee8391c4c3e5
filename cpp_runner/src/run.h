// Running a case's plan: the pieces the run, the isolation and the benchmarks share (internal).
#pragma once

#include "runtime.h"

#include <string>
#include <vector>

namespace torchconform {

// An input set's files, read, hashed and decoded once per case run and shared by all the case's artifacts.
struct SetData {
  c10::IValue inputs, expected;  // on the CPU; every artifact gets its own copy of the inputs
  double read_seconds = 0, decode_seconds = 0;
  std::string error;  // why the set cannot run (every artifact reports it)
};
SetData read_set(const CaseSpec& c, const InputSetSpec& s);

// A fresh copy of the set's arguments on the device: an artifact that writes into its inputs cannot change what
// the next artifact of the case sees.
std::vector<c10::IValue> fresh_args(const SetData& d, const c10::Device& device);

// One input set on one loaded artifact: every call of the policy made and compared (with the golden, and with
// `reference`, the case's TorchScript artifact's output, for variants). `first_use`: this artifact is the first of
// the case to use the set (its read and decode times are its own). Never throws.
SetResult run_set(const CaseSpec& c, const InputSetSpec& s, const SetData& d, bool first_use, const PlannedArtifact& a,
                  const Loaded& loaded, const c10::IValue* reference, const RunOptions& o);

SetResult error_result(const CaseSpec& c, const std::string& set_name, const RunOptions& o, Verdict v,
                       const std::string& message, ErrorKind kind);

// An `xfail` mark (applicable_mark: the variant's, else the set's, else the case's) turns FAIL/ERROR into XFAIL and
// PASS into XPASS (strict: a stale mark fails the run). Never for kind not_run: what was not checked is not a pass.
void apply_xfail(const CaseSpec& c, const InputSetSpec* s, const VariantSpec* variant, SetResult& r);

double median(std::vector<double> v);  // NaN for no values

}  // namespace torchconform
