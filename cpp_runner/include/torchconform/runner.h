// Running a corpus: load each artifact with LibTorch, run its input sets, compare against the goldens.
#pragma once

#include <torchconform/compare.h>
#include <torchconform/corpus.h>

#include <c10/core/Device.h>

#include <functional>
#include <string>
#include <vector>

namespace torchconform {

struct RunOptions {
  c10::Device device = c10::Device(c10::kCPU);
  int threads = 0;  // at::set_num_threads; 0 keeps LibTorch's default
  // Every input set is called `repeat` times on the same module and every call is compared: the profiling
  // executor may change the graph after the first runs (pytorch#74534), so a first-call-only check is not enough.
  int repeat = 2;
};

enum class Verdict { kPass, kFail, kError };
const char* to_string(Verdict v);

struct SetResult {
  std::string case_name;
  std::string set_name;
  std::string device;
  Verdict verdict = Verdict::kError;
  Comparison comparison;  // of the first failing call, else of the last call
  int failed_call = 0;    // 1-based call that failed, 0 when none did
  std::string error;      // kError: what went wrong, naming the file
  double seconds = 0;
};

// The LibTorch version this runner was built against (TORCH_VERSION).
const char* libtorch_version();

// Applies the numerics policy shared with the Python side: TensorExpr fuser off, thread count.
void apply_policy(const RunOptions& options);
std::string describe_policy(const RunOptions& options);

// Runs one case; never throws for problems of the corpus or the artifact (they become kError results).
std::vector<SetResult> run_case(const CaseSpec& c, const RunOptions& options);

// Same output line for the CLI, the bindings and the tests: "PASS  case/set [cpu] ...".
std::string format_result(const SetResult& r);

struct Summary {
  int passed = 0, failed = 0, errors = 0;
  double seconds = 0;
  int exit_code() const { return errors ? 2 : failed ? 1 : 0; }
};
Summary summarize(const std::vector<SetResult>& results);

void write_json_report(const std::string& path, const Corpus& corpus, const RunOptions& options,
                       const std::vector<SetResult>& results);
void write_junit_report(const std::string& path, const std::vector<SetResult>& results);

}  // namespace torchconform
