// torchconform._core: the bindings of result.h: results.
#include "bind.h"

namespace torchconform::bindings {

void bind_result(py::module_& m) {
  py::class_<SetResult>(m, "SetResult")
      .def_readonly("case", &SetResult::case_name)
      .def_readonly("input_set", &SetResult::set_name)
      .def_readonly("device", &SetResult::device)
      .def_readonly("artifact", &SetResult::artifact)
      .def_readonly("runtime", &SetResult::runtime)
      .def_property_readonly("id", &result_id)
      .def_property_readonly("vs_artifact", [](const SetResult& r) {
        return r.has_reference ? std::optional<Comparison>(r.vs_artifact) : std::nullopt;
      })
      .def_readonly("load_seconds", &SetResult::load_seconds)
      .def_readonly("first_call_seconds", &SetResult::first_call_seconds)
      .def_readonly("steady_seconds", &SetResult::steady_seconds)
      .def_readonly("read_seconds", &SetResult::read_seconds)
      .def_readonly("decode_seconds", &SetResult::decode_seconds)
      .def_readonly("call_seconds", &SetResult::call_seconds)
      .def_readonly("compare_seconds", &SetResult::compare_seconds)
      .def_readonly("setup_seconds", &SetResult::setup_seconds)
      .def_readonly("calls", &SetResult::calls)
      .def_property_readonly("verdict", [](const SetResult& r) { return std::string(to_string(r.verdict)); })
      .def_readonly("comparison", &SetResult::comparison)
      .def_readonly("failed_call", &SetResult::failed_call)
      .def_readonly("error", &SetResult::error)
      .def_property_readonly("error_kind", [](const SetResult& r) { return std::string(to_string(r.error_kind)); })
      .def_property_readonly("loosened", [](const SetResult& r) { return loosened(r); })
      .def_readonly("seconds", &SetResult::seconds)
      .def_property_readonly("output", [](const SetResult& r) { return to_python(r.output); },
                             "what the artifact returned, as torch objects sharing the C++ tensors' storage")
      .def_readonly("xfail_reason", &SetResult::xfail_reason)
      .def("to_json", &result_to_json, "the result as the JSON report writes it (the one mapping)")
      .def_property_readonly("line", &format_result)
      .def("__repr__", [](const SetResult& r) { return "<SetResult " + format_result(r) + ">"; });
  m.def(
      "load_output",
      [](const py::bytes& data) {
        const std::string bytes(data);
        c10::IValue value;
        {
          py::gil_scoped_release release;
          value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
        }
        return to_python(value);
      },
      py::arg("data"),
      "An output a runner saved with --save-outputs (torch::pickle_save, typed containers included), as torch "
      "objects: a run compared with another run. Only for files this process's own runs wrote.");
}

}  // namespace torchconform::bindings
