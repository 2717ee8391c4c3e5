// torchconform._core: the bindings of bench.h: the timing primitives of torchconform bench.
#include "bind.h"

namespace torchconform::bindings {

void bind_bench(py::module_& m) {
  // ---- benchmarks (torchconform bench): timing loops in C++, no Python inside them -------------------------------
  m.def(
      "bench_artifact",
      [](const Corpus& corpus, const std::string& name, const std::string& label, const std::string& method,
         const py::tuple& args, const std::string& device, int threads, const std::string& aoti_cache,
         int warmup_calls, double warmup_seconds, int min_calls, double min_seconds, int max_calls) {
        const CaseSpec& c = find_case(corpus, name);
        std::vector<c10::IValue> values;
        for (size_t i = 0; i < args.size(); ++i) values.push_back(to_ivalue(args[i], "args[" + std::to_string(i) + "]"));
        BenchOptions b;
        b.warmup_calls = warmup_calls;
        b.warmup_seconds = warmup_seconds;
        b.min_calls = min_calls;
        b.min_seconds = min_seconds;
        b.max_calls = max_calls;
        py::gil_scoped_release release;
        const BenchTiming t = bench_artifact(c, label, method, values, run_options(device, threads, 1, aoti_cache), b);
        return std::make_tuple(t.load_seconds, t.first_call_seconds, t.samples);
      },
      py::arg("corpus"), py::arg("case"), py::arg("artifact"), py::arg("method"), py::arg("args"),
      py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("aoti_cache") = "", py::arg("warmup_calls") = 3,
      py::arg("warmup_seconds") = 0.2, py::arg("min_calls") = 15, py::arg("min_seconds") = 0.5,
      py::arg("max_calls") = 100000,
      "Load one artifact of a case the way the runner does (artifact '' = the TorchScript artifact, a variant "
      "name, or 'export@aoti') and time calls of `method` on `args` in C++; returns (load_seconds, "
      "first_call_seconds, [seconds per timed call]).");
  m.def(
      "measure_floor",
      [](const Corpus& corpus, const std::string& device, int threads, int repeat, const std::string& aoti_cache) {
        py::gil_scoped_release release;
        const FloorResult f = measure_floor(corpus, run_options(device, threads, repeat, aoti_cache));
        return std::map<std::string, double>{{"seconds", f.seconds},       {"load_seconds", f.load_seconds},
                                             {"call_seconds", f.call_seconds}, {"artifacts", f.artifacts},
                                             {"calls", f.calls}};
      },
      py::arg("corpus"), py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("repeat") = 2,
      py::arg("aoti_cache") = "",
      "Raw LibTorch load + `repeat` calls of every artifact and input set of the corpus, in this process, inputs "
      "decoded beforehand, nothing hashed or compared: the floor a verification run is measured against.");
  m.def(
      "measure_call_overhead",
      [](const Corpus& corpus, const std::string& name, const std::string& set, const std::string& device,
         int threads, int calls, int rounds) {
        const CaseSpec& c = find_case(corpus, name);
        py::gil_scoped_release release;
        const CallOverhead r = measure_call_overhead(c, set, run_options(device, threads, 1, ""), calls, rounds);
        return std::map<std::string, double>{{"raw_seconds", r.raw_seconds}, {"runner_seconds", r.runner_seconds},
                                             {"ratio", r.ratio}, {"calls", r.calls}, {"rounds", r.rounds}};
      },
      py::arg("corpus"), py::arg("case"), py::arg("input_set"), py::arg("device") = "cpu", py::arg("threads") = 0,
      py::arg("calls") = 200, py::arg("rounds") = 9,
      "Per-call time of the runner's checked call loop against a raw Module::forward loop on the same artifact "
      "and input set (medians over alternating rounds).");
}

}  // namespace torchconform::bindings
