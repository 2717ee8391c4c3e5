// torchconform._core: the bindings of plan.h: the plan.
#include "bind.h"

namespace torchconform::bindings {

void bind_plan(py::module_& m) {
  m.def("plan", [](const Corpus& corpus, const std::string& name) {
    std::vector<std::tuple<std::string, std::string, std::string>> out;
    for (const auto& p : plan(find_case(corpus, name))) out.emplace_back(p.label, p.runtime, p.set);
    return out;
  }, py::arg("corpus"), py::arg("case"),
        "(artifact, runtime, input set) of every result a full run of the case produces, in run order.");
  m.def(
      "plan_artifacts",
      [](const Corpus& corpus, const std::string& name) {
        py::list out;
        for (const auto& a : plan_artifacts(find_case(corpus, name))) {
          py::dict d;
          d["status"] = a.status == PlannedArtifact::Status::kRun             ? "run"
                        : a.status == PlannedArtifact::Status::kFailedCapture ? "failed_capture"
                                                                              : "not_run";
          d["label"] = a.label;
          d["runtime"] = a.runtime_name;
          d["variant"] = a.variant ? py::object(py::str(a.variant->name)) : py::none();
          d["kind"] = a.variant ? to_string(a.variant->kind) : "torchscript";
          d["int_outputs_as_tensors"] = a.variant && a.variant->int_outputs_as_tensors;
          if (a.file) {
            py::dict f;
            f["file"] = a.file->file;
            f["sha256"] = a.file->sha256;
            f["bytes"] = a.file->bytes ? py::object(py::int_(*a.file->bytes)) : py::none();
            d["file"] = f;
          } else {
            d["file"] = py::none();
          }
          py::list sets;
          for (const auto* s : a.sets) sets.append(s->name);
          d["sets"] = sets;
          d["why"] = a.why;
          out.append(d);
        }
        return out;
      },
      py::arg("corpus"), py::arg("case"),
      "The case's plan, artifact by artifact (status run | failed_capture | not_run, label, runtime, variant, kind, "
      "file, sets, why): what faces that run artifacts elsewhere (the compat probe) iterate.");
}

}  // namespace torchconform::bindings
