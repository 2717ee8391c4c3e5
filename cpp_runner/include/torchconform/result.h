// Results: the verdict of one artifact on one input set, its comparison and localisation, the line and the
// summary every face prints, and the one JSON mapping. Part of runner.h.
#pragma once

#include <torchconform/compare.h>
#include <torchconform/corpus.h>

#include <c10/core/Device.h>

#include <optional>
#include <string>
#include <vector>

namespace torchconform {

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

}  // namespace torchconform
