// The verification run every face shares (torchconform-run, `torchconform verify`, the pytest plugin): its one option
// table, device selection, sharding, and the run itself. Part of runner.h.
#pragma once

#include <torchconform/result.h>
#include <torchconform/run.h>

#include <c10/core/Device.h>

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace torchconform {

// A bad command line: the callers print their usage and exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Devices for "cpu", "cuda" or "all". "cuda" without CUDA throws UsageError; "all" without CUDA sets `skipped`.
std::vector<c10::Device> resolve_devices(const std::string& spec, std::string* skipped);

struct VerifyOptions {
  std::string corpus;
  std::vector<std::string> cases;  // globs; empty: all
  std::string device = "cpu";      // cpu | cuda | all
  int threads = 0;  // 0: the corpus's exported_with.threads (what the goldens were made with), else LibTorch's
  int repeat = 2;
  std::string json, junit;  // report paths, empty: none
  bool isolate = true;      // each case in its own child process (run_case_isolated)
  // Seconds per case, enforced by killing the case's process (isolated runs; 600 when unset). Set with
  // isolate = false it is a usage error: an in-process run cannot be stopped, and the limit must not look enforced.
  std::optional<double> timeout;
  std::string aoti_cache;   // empty: default_aoti_cache()
  bool quiet = false;       // no progress lines (the faces' progress sink)
  // Operator libraries to load before anything runs (e.g. torchvision's libtorchvision.so): given by the user,
  // never taken from a corpus (loading a library runs its code).
  std::vector<std::string> libraries;
  bool allow_tf32 = false;  // RunOptions::allow_tf32
  bool allow_side_effects = false;  // RunOptions::allow_side_effects
  double sensitivity = kDefaultSensitivity;  // RunOptions::sensitivity
  std::string save_outputs;         // RunOptions::save_outputs
  RunOptions::Localize localize = RunOptions::Localize::kOnFail;
  // --shard K/N: only the cases of shard K (1-based) of N; --durations: a previous JSON report whose per-case
  // seconds balance the shards (else a stable hash of the case name decides).
  int shard_index = 1, shard_count = 1;
  std::string durations;
  // --jobs N: isolated cases run N at a time (their results reported in case order, as a sequential run's);
  // threads per case then default to max(1, cores / N) where the corpus does not say.
  int jobs = 1;
  // --result GLOB (repeatable): only the results whose id matches (RunOptions::results); a glob that matches no
  // result of the selected cases is a usage error. A case none of whose results is selected is not run.
  std::vector<std::string> results;
  // --list: print the id of every result the run would produce (after --case, --shard and --result), one per line,
  // and run nothing. Device-independent: the same plan runs on every device.
  bool list = false;
};

// The names of shard k (1-based) of n among `names`: the whole case is the unit (one process, its artifacts loaded
// once). Without costs, a case belongs to shard (FNV-1a 64 of its name) mod n + 1: stable across runs, machines and
// corpus changes elsewhere. With costs (seconds per case from an earlier report; a case without one costs the
// median), longest first to the least loaded shard (ties: the name, then the lower shard): the N shards' union is
// `names`, with no overlap, for any n >= 1. Keeps the order of `names`.
std::vector<std::string> shard_names(const std::vector<std::string>& names, int k, int n,
                                     const std::map<std::string, double>& costs = {});
// Seconds per case from a JSON report (verify --json): the sum of its results' seconds over devices.
std::map<std::string, double> case_costs_from_report(const std::string& path);

// The one option table of a verification: `torchconform-run` parses its command line with it and `torchconform
// verify` hands its arguments to it through the bindings, so both accept exactly the same values. `default_corpus`:
// the corpus when none is given ("" : one is required). Throws UsageError.
VerifyOptions parse_verify_args(const std::vector<std::string>& args, const std::string& default_corpus = "");
// The usage text of that table, for `prog`.
std::string verify_usage(const std::string& prog);

// The whole verification run shared by torchconform-run and `torchconform verify`: open the corpus, select cases,
// run them on each device, send the same lines to `out` (results, summary) and `progress` (case n of N, elapsed),
// write the optional reports. Throws CorpusError / UsageError before any case runs.
struct VerifyOutcome {
  std::vector<SetResult> results;
  int exit_code = 0;
  std::string report;  // the JSON report document (what --json writes), for faces that render it (report.py)
};
using LineSink = std::function<void(const std::string&)>;
VerifyOutcome verify(const VerifyOptions& options, const LineSink& out, const LineSink& progress);

}  // namespace torchconform
