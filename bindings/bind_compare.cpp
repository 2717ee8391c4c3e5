// torchconform._core: the bindings of compare.h: the comparator.
#include "bind.h"

namespace torchconform::bindings {

void bind_compare(py::module_& m) {
  py::class_<LeafReport>(m, "Leaf", "One compared leaf of an output tree (a tensor or a scalar), or a mismatch")
      .def_readonly("path", &LeafReport::path)
      .def_readonly("kind", &LeafReport::kind)
      .def_readonly("ok", &LeafReport::ok)
      .def_readonly("message", &LeafReport::message)
      .def_readonly("dtype", &LeafReport::dtype)
      .def_readonly("mismatched", &LeafReport::mismatched)
      .def_readonly("total", &LeafReport::total)
      .def_readonly("max_abs", &LeafReport::max_abs)
      .def_readonly("max_rel", &LeafReport::max_rel)
      .def_readonly("max_ulp", &LeafReport::max_ulp)
      .def_readonly("worst_index", &LeafReport::worst_index)
      .def_readonly("worst_expected", &LeafReport::worst_expected)
      .def_readonly("worst_actual", &LeafReport::worst_actual)
      .def_readonly("tolerance", &LeafReport::tolerance)
      .def_property_readonly(
          "applied_tolerance",
          [](const LeafReport& l) -> py::object {
            const py::object leaf = py::module_::import("json").attr("loads")(leaf_to_json(l));
            return leaf["applied_tolerance"];
          },
          "the tolerance the leaf was compared under, as the JSON report's fields: {'mode', 'rtol', 'atol' "
          "(allclose, resolved), 'max_ulp' (ulp), 'equal_nan'}")
      .def_readonly("custom_tolerance", &LeafReport::custom_tolerance)
      .def_readonly("loosened", &LeafReport::loosened)
      .def_readonly("needed_rtol", &LeafReport::needed_rtol)
      .def_readonly("needed_atol", &LeafReport::needed_atol)
      .def_readonly("weak", &LeafReport::weak,
                    "why the golden checks little, judged from its values (empty, constant, within atol, a "
                    "tolerance that accepts more than 1% of relative error on most elements), or ''")
      .def_readonly("accepts_rel_error", &LeafReport::accepts_rel_error,
                    "the relative error the tolerance accepts on every element of this golden")
      .def_readonly("accepts_rel_error_median", &LeafReport::accepts_rel_error_median,
                    "the relative error the tolerance accepts on most elements (at the median |value| of the nonzero ones)")
      .def("__repr__", [](const LeafReport& l) {
        return "<Leaf " + l.path + " " + (l.ok ? "ok" : "FAIL: " + l.message) + ">";
      });
  py::class_<Comparison>(m, "Comparison")
      .def_readonly("ok", &Comparison::ok)
      .def_readonly("leaves", &Comparison::leaves)
      .def_property_readonly("mismatched", &Comparison::mismatched)
      .def_property_readonly("total", &Comparison::total)
      .def_property_readonly("max_abs", &Comparison::max_abs)
      .def_property_readonly("max_rel", &Comparison::max_rel)
      .def_property_readonly("max_ulp", &Comparison::max_ulp)
      .def_property_readonly("needed_rtol", &Comparison::needed_rtol)
      .def_property_readonly("needed_atol", &Comparison::needed_atol)
      .def_property_readonly("first_failure", [](const Comparison& c) -> py::object {
        const LeafReport* f = c.first_failure();
        return f ? py::cast(*f) : py::none();
      })
      .def("summary", &Comparison::summary)
      .def_property_readonly("loosened", &Comparison::loosened)
      .def("tolerance_note", &Comparison::tolerance_note)
      .def("__bool__", [](const Comparison& c) { return c.ok; })
      .def("__repr__", [](const Comparison& c) { return "<Comparison " + c.summary() + ">"; });
  m.def(
      "compare",
      [](const py::object& expected, const py::object& actual, const py::object& tolerance, bool per_set,
         double sensitivity) {
        if (!(sensitivity > 0)) throw UsageError("sensitivity must be > 0");
        const TolerancePolicy policy = policy_from(tolerance);
        const c10::IValue e = to_ivalue(expected, "expected"), a = to_ivalue(actual, "actual");
        py::gil_scoped_release release;
        return compare(e, a, policy, per_set ? OverrideCheck::kCollect : OverrideCheck::kEach, sensitivity);
      },
      py::arg("expected"), py::arg("actual"), py::arg("tolerance") = py::none(), py::arg("per_set") = false,
      py::arg("sensitivity") = kDefaultSensitivity,
      "Compare two values (tensors, tuples, lists, str-keyed dicts, scalars) structurally. `tolerance` is a "
      "manifest tolerance object, e.g. {'default': {'mode': 'exact'}, 'outputs': {}}; None: assert_close defaults. "
      "A per-output tolerance that reaches no output fails the comparison, unless `per_set` (one set of a case "
      "whose other sets call other methods, as the runner compares them: overrides_used says which were used). "
      "`sensitivity`: the relative error a tolerance must detect on most elements of a floating golden (LeafReport."
      "weak past it).");
}

}  // namespace torchconform::bindings
