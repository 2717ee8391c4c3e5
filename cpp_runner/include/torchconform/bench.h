// Benchmark primitives (`torchconform bench`): timing loops in C++ over the runner's own loaders and plan.
#pragma once

#include <torchconform/runner.h>

#include <string>
#include <vector>

namespace torchconform {

struct BenchOptions {  // (designated fields, never positional: the bindings set them by name)
  int warmup_calls = 3;         // calls before timing starts (the profiling executor optimizes after the first runs)
  double warmup_seconds = 0.2;  // ... and at least this long
  int min_calls = 15;           // timed calls: at least this many
  double min_seconds = 0.5;     // ... and at least this long
  int max_calls = 100000;
};
struct BenchTiming {
  double load_seconds = 0;        // loading the artifact (reading, hashing, deserializing / unpacking the package)
  double first_call_seconds = 0;  // the first call after loading
  std::vector<double> samples;    // seconds per timed call, after the warm-up
};
// Times one artifact of a case loaded and called the way the runner does it (same loaders, InferenceMode), without
// comparing: `label` is "" (the case's TorchScript artifact), a TorchScript variant's name, or "<variant>@aoti".
// `args` are the positional arguments of `method` (moved to options.device).
BenchTiming bench_artifact(const CaseSpec& c, const std::string& label, const std::string& method,
                           const std::vector<c10::IValue>& args, const RunOptions& options, const BenchOptions& bench);

// The floor of a verification: what raw LibTorch needs to load every artifact of the corpus's plan (its runtimes'
// loaders, reading the files from disk without hashing) and call it on every input set `options.repeat` times, in
// this process, with the inputs decoded beforehand (not timed), no comparison. Artifacts that fail to load
// (expected failures) count with the time the failed load took.
struct FloorResult {
  double seconds = 0;       // loads + calls
  double load_seconds = 0;
  double call_seconds = 0;
  int artifacts = 0;
  int calls = 0;
};
FloorResult measure_floor(const Corpus& corpus, const RunOptions& options);

// The runner's cost per call against a raw `Module::forward` loop on the same loaded artifact and input set:
// `rounds` alternating rounds of `calls` calls each; the runner's calls are its whole per-call loop (call, copy to
// the CPU, compare with the golden). Medians over the rounds.
struct CallOverhead {
  double raw_seconds = 0;     // per call, median over rounds
  double runner_seconds = 0;  // per call, median over rounds
  double ratio = 0;           // median over rounds of runner / raw
  int calls = 0, rounds = 0;
};
CallOverhead measure_call_overhead(const CaseSpec& c, const std::string& set, const RunOptions& options, int calls,
                                   int rounds);

}  // namespace torchconform
