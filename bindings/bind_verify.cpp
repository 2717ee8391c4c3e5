// torchconform._core: the bindings of verify.h: the verification run and its option table.
#include "bind.h"

namespace torchconform::bindings {

void bind_verify(py::module_& m) {
  m.def("shard_names", &shard_names, py::arg("names"), py::arg("k"), py::arg("n"),
        py::arg("costs") = std::map<std::string, double>{},
        "The names (cases) of shard k (1-based) of n, as --shard K/N picks them: a stable hash of the name, or "
        "with costs (seconds per name) longest first to the least loaded shard. Keeps the order of `names`.");
  m.def("case_costs_from_report", &case_costs_from_report, py::arg("path"),
        "Seconds per case in a JSON report (the sum over its results and devices): what --durations reads.");
  // Registered before the functions that return it, so their signatures name it.
  py::class_<VerifyOptions>(m, "VerifyOptions", "What parse_verify_args made of a command line")
      .def_readonly("corpus", &VerifyOptions::corpus)
      .def_readonly("cases", &VerifyOptions::cases)
      .def_readonly("device", &VerifyOptions::device)
      .def_readonly("threads", &VerifyOptions::threads)
      .def_readonly("repeat", &VerifyOptions::repeat)
      .def_readonly("json", &VerifyOptions::json)
      .def_readonly("junit", &VerifyOptions::junit)
      .def_readonly("isolate", &VerifyOptions::isolate)
      .def_readonly("timeout", &VerifyOptions::timeout)
      .def_readonly("aoti_cache", &VerifyOptions::aoti_cache)
      .def_readonly("allow_tf32", &VerifyOptions::allow_tf32)
      .def_readonly("allow_side_effects", &VerifyOptions::allow_side_effects)
      .def_readonly("sensitivity", &VerifyOptions::sensitivity)
      .def_property_readonly("localize",
                             [](const VerifyOptions& o) {
                               using L = RunOptions::Localize;
                               return o.localize == L::kAlways ? "always" : o.localize == L::kOff ? "off" : "on_fail";
                             })
      .def_readonly("quiet", &VerifyOptions::quiet);
  m.def("parse_verify_args", &parse_verify_args, py::arg("args"), py::arg("default_corpus") = "",
        "The verification's one option table (torchconform-run's): a VerifyOptions, or UsageError.");
  m.def("verify_usage", &verify_usage, py::arg("prog"));
  m.def(
      "verify",
      [](const VerifyOptions& o, const LineSink& out, const LineSink& progress) {
        // The sinks are Python callables: pybind11's std::function wrapper takes the GIL for each call.
        py::gil_scoped_release release;
        auto outcome = verify(o, out, progress);
        return std::make_tuple(outcome.exit_code, std::move(outcome.results), std::move(outcome.report));
      },
      py::arg("options"), py::arg("out"), py::arg("progress") = LineSink{},
      "The run torchconform-run does (options from parse_verify_args), with the same lines sent to `out` and "
      "`progress`; returns (exit_code, results, the JSON report document). Raises CorpusError / UsageError before "
      "any case runs.");
}

}  // namespace torchconform::bindings
