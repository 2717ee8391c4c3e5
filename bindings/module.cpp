// torchconform._core: the C++ runner library (cpp_runner/) exposed to Python. Nothing here loads or compares on
// its own; every function forwards to torchconform::runner, so Python and ctest get the same verdicts.
#include <torchconform/bench.h>
#include <torchconform/runner.h>

#include <torch/serialize.h>  // pickle_load of saved outputs
#include <torch/python.h>  // at::Tensor <-> torch.Tensor casters (same storage: no copy)

#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;
using namespace torchconform;

namespace {

// Python value -> IValue, keeping tuple vs list and int vs float vs bool, as the corpus does.
c10::IValue to_ivalue(const py::handle& obj, const std::string& where) {
  if (obj.is_none()) return c10::IValue();
  if (THPVariable_Check(obj.ptr())) return THPVariable_Unpack(obj.ptr());
  if (py::isinstance<py::bool_>(obj)) return obj.cast<bool>();
  if (py::isinstance<py::int_>(obj)) return obj.cast<int64_t>();
  if (py::isinstance<py::float_>(obj)) return obj.cast<double>();
  if (py::isinstance<py::str>(obj)) return obj.cast<std::string>();
  if (py::isinstance<py::tuple>(obj)) {
    std::vector<c10::IValue> items;
    size_t i = 0;
    for (const auto& x : obj) items.push_back(to_ivalue(x, where + "[" + std::to_string(i++) + "]"));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (py::isinstance<py::list>(obj)) {
    std::vector<c10::IValue> items;
    size_t i = 0;
    for (const auto& x : obj) items.push_back(to_ivalue(x, where + "[" + std::to_string(i++) + "]"));
    // Typed as torch.load types it (List[Tensor], List[int]...) when the elements agree, so that a TorchScript
    // method taking List[Tensor] accepts it; Any otherwise.
    c10::TypePtr element = c10::AnyType::get();
    if (!items.empty()) {
      const c10::TypePtr first = items[0].type();
      if (std::all_of(items.begin(), items.end(), [&](const c10::IValue& x) { return *x.type() == *first; }) &&
          (items[0].isTensor() || items[0].isInt() || items[0].isDouble() || items[0].isBool() ||
           items[0].isString()))
        element = items[0].isTensor() ? c10::TensorType::get() : first;
    }
    c10::impl::GenericList list(element);
    for (auto& x : items) list.push_back(std::move(x));
    return list;
  }
  if (py::isinstance<py::dict>(obj)) {
    // str, int and bool keys, as the comparator compares them (raw, each kind apart).
    c10::impl::GenericDict dict(c10::AnyType::get(), c10::AnyType::get());
    for (const auto& kv : obj.cast<py::dict>()) {
      if (!py::isinstance<py::str>(kv.first) && !py::isinstance<py::int_>(kv.first))
        throw py::type_error(where + ": dict keys must be str, int or bool, got " +
                             std::string(py::str(py::type::handle_of(kv.first))));
      const c10::IValue key = to_ivalue(kv.first, where + " key");
      dict.insert(key, to_ivalue(kv.second, where + "[" + std::string(py::repr(kv.first)) + "]"));
    }
    return dict;
  }
  throw py::type_error(where + ": cannot compare a value of type " + std::string(py::str(py::type::handle_of(obj))));
}

py::object to_python(const c10::IValue& v) {
  if (v.isNone()) return py::none();
  if (v.isTensor()) return py::reinterpret_steal<py::object>(THPVariable_Wrap(v.toTensor()));
  if (v.isBool()) return py::bool_(v.toBool());
  if (v.isInt()) return py::int_(v.toInt());
  if (v.isDouble()) return py::float_(v.toDouble());
  if (v.isString()) return py::str(v.toStringRef());
  if (v.isTuple()) {
    const auto& items = v.toTupleRef().elements();
    py::tuple t(items.size());
    for (size_t i = 0; i < items.size(); ++i) t[i] = to_python(items[i]);
    return std::move(t);
  }
  if (v.isList()) {
    py::list l;
    for (const auto& x : v.toListRef()) l.append(to_python(x));
    return std::move(l);
  }
  if (v.isGenericDict()) {
    py::dict d;
    for (const auto& kv : v.toGenericDict()) d[to_python(kv.key())] = to_python(kv.value());
    return std::move(d);
  }
  throw py::type_error(std::string("cannot convert a value of kind ") + v.tagKind() + " to Python");
}

TolerancePolicy policy_from(const py::object& tolerance) {
  if (tolerance.is_none()) return TolerancePolicy{};
  // Same parser as the manifests' "tolerance" object: one definition of what a tolerance means.
  const auto text = py::module_::import("json").attr("dumps")(tolerance).cast<std::string>();
  return parse_tolerance_policy(text, "tolerance");
}

// One device (cpu or cuda), with the numerics policy applied; the GIL must be released by the caller first.
RunOptions run_options(const std::string& device, int threads, int repeat, const std::string& aoti_cache) {
  std::string skipped;
  const auto devices = resolve_devices(device, &skipped);
  if (devices.size() != 1) throw UsageError("this runs on one device: cpu or cuda");
  RunOptions o;
  o.device = devices[0];
  o.threads = threads;
  o.repeat = repeat;
  o.aoti_cache = aoti_cache;
  apply_policy(o);
  return o;
}

// A mark as Python sees it: the reason where it applies to this LibTorch on CPU (what this runner would apply there),
// and the mark as written ({"reason", "torch", "device"}) for faces that judge another PyTorch's results or another
// device (applicable_mark with that version and device).
std::optional<std::string> local_reason(const std::optional<Mark>& m) {
  return m && m->applies_to(libtorch_version(), "cpu") ? std::optional<std::string>(m->reason) : std::nullopt;
}
py::object mark_dict(const std::optional<Mark>& m) {
  if (!m) return py::none();
  py::dict d;
  d["reason"] = m->reason;
  d["torch"] = m->torch;
  d["device"] = m->device;
  return std::move(d);
}

const CaseSpec& find_case(const Corpus& corpus, const std::string& name) {
  for (const auto& c : corpus.cases)
    if (c.name == name) return c;
  throw CorpusError(corpus.root.string() + ": no case named '" + name + "'");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "torchconform's C++ core (corpus reader, runner, comparator) for Python";

  static py::exception<CorpusError> corpus_error(m, "CorpusError", PyExc_ValueError);
  static py::exception<UsageError> usage_error(m, "UsageError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CorpusError& e) {
      PyErr_SetString(corpus_error.ptr(), e.what());
    } catch (const UsageError& e) {
      PyErr_SetString(usage_error.ptr(), e.what());
    } catch (const c10::Error& e) {
      // The same message as the C++ CLI prints, without LibTorch's C++ backtrace.
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });

  m.attr("__version__") = torchconform_version();
  m.def("libtorch_version", &libtorch_version);
  m.def("printable", &printable, py::arg("text"),
        "Corpus text made safe to print (control, invisible and bidirectional characters escaped): the one "
        "definition the CLI, the reports and the Python faces share.");
  m.def("corpus_schema", &corpus_schema_text, "docs/corpus-schema.json as compiled into the runner");
  m.def("validate", &validate_against_schema, py::arg("definition"), py::arg("json_text"),
        "Validate JSON text against a corpus-schema definition ('manifest', 'corpus', 'policy'...): '' when "
        "valid, else the first problem as '<json path>: <what>'.");

  m.def("validate_with_schema", &validate_with_schema, py::arg("schema_text"), py::arg("json_text"),
        "The corpus validator on another schema (one that uses only the keywords it implements; others raise).");

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

  py::class_<InputSetSpec>(m, "InputSet")
      .def_readonly("name", &InputSetSpec::name)
      .def_readonly("description", &InputSetSpec::description)
      .def_readonly("method", &InputSetSpec::method)
      .def_readonly("seed", &InputSetSpec::seed)
      .def_readonly("keywords", &InputSetSpec::keywords, "names of the last arguments, passed by keyword")
      .def_property_readonly("xfail", [](const InputSetSpec& s) { return local_reason(s.xfail); })
      .def_property_readonly("mark", [](const InputSetSpec& s) { return mark_dict(s.xfail); })
      .def_property_readonly("prelude", [](const InputSetSpec& s) {
        std::vector<std::string> calls;
        for (const auto& c : s.prelude) calls.push_back(c.text);
        return calls;
      });

  py::class_<VariantSpec>(m, "Variant")
      .def_readonly("name", &VariantSpec::name)
      .def_property_readonly("kind", [](const VariantSpec& v) { return std::string(to_string(v.kind)); })
      .def_readonly("description", &VariantSpec::description)
      .def_readonly("transform", &VariantSpec::transform)
      .def_readonly("error", &VariantSpec::error)
      .def_readonly("input_sets", &VariantSpec::input_sets)
      .def_property_readonly("runtimes", [](const VariantSpec& v) {
        std::vector<std::string> names;
        for (const auto kind : v.runtimes) names.push_back(to_string(kind));
        return names;
      })
      .def_property_readonly("xfail", [](const VariantSpec& v) { return local_reason(v.xfail); })
      .def_property_readonly("mark", [](const VariantSpec& v) { return mark_dict(v.xfail); })
      .def_property_readonly("file", [](const VariantSpec& v) {
        return v.file ? std::optional<std::string>(v.file->file) : std::nullopt;
      })
      .def_property_readonly("sha256", [](const VariantSpec& v) {
        return v.file ? std::optional<std::string>(v.file->sha256) : std::nullopt;
      })
      .def_property_readonly(
          "pytree_types",
          [](const VariantSpec& v) {
            py::list out;
            for (const auto& t : v.pytree_types)
              out.append(py::dict(py::arg("name") = t.name,
                                  py::arg("kind") = t.kind == PytreeType::Kind::kDataclass ? "dataclass"
                                                    : t.kind == PytreeType::Kind::kMapping ? "mapping"
                                                    : t.kind == PytreeType::Kind::kNode    ? "node"
                                                                                           : "namedtuple",
                                  py::arg("fields") = t.fields, py::arg("none_fields") = t.none_fields));
            return out;
          },
          "user containers in the program's specs: [{name, kind: namedtuple|dataclass, fields, none_fields}]")
      .def_property_readonly(
          "aoti_options",
          [](const VariantSpec& v) { return py::module_::import("json").attr("loads")(v.aoti_options); },
          "the AOTInductor options the program is compiled with (manifest aoti_options), {} when none");

  py::class_<CaseSpec>(m, "Case")
      .def_readonly("name", &CaseSpec::name)
      .def_readonly("mode", &CaseSpec::mode)
      .def_readonly("description", &CaseSpec::description)
      .def_readonly("exported_torch", &CaseSpec::exported_torch)
      .def_readonly("operator_namespaces", &CaseSpec::operator_namespaces)
      .def_readonly("operator_libraries", &CaseSpec::operator_libraries)
      .def_readonly("input_sets", &CaseSpec::sets)
      .def_readonly("error", &CaseSpec::error)
      .def_property_readonly("xfail", [](const CaseSpec& c) { return local_reason(c.xfail); })
      .def_property_readonly("mark", [](const CaseSpec& c) { return mark_dict(c.xfail); })
      .def_readonly("variants", &CaseSpec::variants)
      .def_readonly("manifest_json", &CaseSpec::manifest_text,
                    "the manifest text as verified (hash, schema, depth); '' for a broken case")
      .def_property_readonly("dir", [](const CaseSpec& c) { return c.dir.string(); });

  py::class_<Corpus>(m, "Corpus")
      .def_static("open", [](const std::string& path) { return Corpus::open(path); }, py::arg("path"),
                  "Parse and hash-check corpus.json and every manifest; raises CorpusError.")
      .def_property_readonly("root", [](const Corpus& c) { return c.root.string(); })
      .def_readonly("format_version", &Corpus::format_version)
      .def_readonly("exported_torch", &Corpus::exported_torch)
      .def_readonly("exported_python", &Corpus::exported_python)
      .def_readonly("index_sha256", &Corpus::index_sha256)
      .def_readonly("cases", &Corpus::cases)
      .def(
          "select",
          [](const Corpus& c, const std::vector<std::string>& globs) {
            std::vector<std::string> names;
            for (const auto* cs : c.select(globs)) names.push_back(cs->name);
            return names;
          },
          py::arg("globs"));

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
  m.def(
      "load_set",
      [](const Corpus& corpus, const std::string& name, const std::string& set) {
        const CaseSpec& c = find_case(corpus, name);
        const InputSetSpec* spec = nullptr;
        for (const auto& s : c.sets)
          if (s.name == set) spec = &s;
        if (!spec) throw CorpusError(c.name + ": no input set named '" + set + "'");
        std::pair<c10::IValue, c10::IValue> values;
        {
          py::gil_scoped_release release;
          values = read_input_set(c, *spec);
        }
        return py::make_tuple(to_python(values.first), to_python(values.second));
      },
      py::arg("corpus"), py::arg("case"), py::arg("input_set"),
      "(inputs, expected) of a set as the runner reads them (hash-checked, the archive and pickle checked first).");
  m.def(
      "program_call_problem",
      [](const Corpus& corpus, const std::string& name, const std::string& variant, const std::string& set) {
        const CaseSpec& c = find_case(corpus, name);
        const VariantSpec* v = nullptr;
        for (const auto& x : c.variants)
          if (x.name == variant && x.kind == VariantKind::kExportedProgram) v = &x;
        if (!v) throw CorpusError(c.name + ": no exported program named '" + variant + "'");
        const InputSetSpec* spec = nullptr;
        for (const auto& s : c.sets)
          if (s.name == set) spec = &s;
        if (!spec) throw CorpusError(c.name + ": no input set named '" + set + "'");
        py::gil_scoped_release release;
        return program_call_problem(c, *v, *spec);
      },
      py::arg("corpus"), py::arg("case"), py::arg("variant"), py::arg("input_set"),
      "Why the input set cannot be passed to the exported program ('' when it can): its structure and the "
      "program's guards, checked as the runner's AOTInductor runtime does before a call.");
  m.def(
      "load_records",
      [](const Corpus& corpus, const std::string& name, const std::string& set) -> py::object {
        const CaseSpec& c = find_case(corpus, name);
        const InputSetSpec* spec = nullptr;
        for (const auto& s : c.sets)
          if (s.name == set) spec = &s;
        if (!spec) throw CorpusError(c.name + ": no input set named '" + set + "'");
        if (!spec->submodules) return py::none();
        c10::IValue records;
        {
          py::gil_scoped_release release;
          records = load_value(read_verified(c, *spec->submodules), c.name + "/" + spec->submodules->file);
        }
        return to_python(records);
      },
      py::arg("corpus"), py::arg("case"), py::arg("input_set"),
      "The set's recorded submodule calls [(path, call, args, kwargs, output), ...] as the runner reads them "
      "(hash-checked), or None when the set has none.");
  m.def(
      "run_aoti_package",
      [](const std::string& package, const std::vector<at::Tensor>& inputs, const std::string& device) {
        const c10::Device d(device);
        py::gil_scoped_release release;
        return run_aoti_package(package, inputs, d);
      },
      py::arg("package"), py::arg("inputs"), py::arg("device") = "cpu",
      "Load an AOTInductor package with the runner's loader and call it once on flat tensors (C++, no Python "
      "inside); returns its flat outputs on the CPU.");
  m.def(
      "compare_output",
      [](const Corpus& corpus, const std::string& name, const std::string& artifact, const std::string& set,
         const py::object& actual) {
        const CaseSpec& c = find_case(corpus, name);
        const auto artifacts = plan_artifacts(c);
        const PlannedArtifact* a = nullptr;
        for (const auto& x : artifacts)
          if (x.label == artifact || (x.variant && x.variant->name == artifact)) a = &x;
        if (!a) throw CorpusError(c.name + ": no artifact '" + artifact + "' in the plan");
        const InputSetSpec* spec = nullptr;
        for (const auto& s : c.sets)
          if (s.name == set) spec = &s;
        if (!spec) throw CorpusError(c.name + ": no input set named '" + set + "'");
        const c10::IValue value = to_ivalue(actual, "actual");
        py::gil_scoped_release release;
        Comparison cmp = compare(read_input_set(c, *spec).second, value, *a->tolerance, OverrideCheck::kCollect);
        const std::string nothing = compared_nothing(cmp);  // the runner's rule: not a pass
        if (!nothing.empty()) throw CorpusError(c.name + ":" + artifact + "/" + set + ": " + nothing);
        return cmp;
      },
      py::arg("corpus"), py::arg("case"), py::arg("artifact"), py::arg("input_set"), py::arg("actual"),
      "An output produced elsewhere (another PyTorch, another process) compared with the set's golden under the "
      "artifact's tolerance, exactly as the runner compares its own (artifact: a plan label or a variant name); "
      "raises CorpusError when it compared nothing (an empty golden), which is not a pass.");
  py::class_<OpenedArtifact>(m, "OpenedArtifact",
                             "One artifact of a case loaded once by the runner's runtime, called on new inputs")
      .def_property_readonly("runtime", &OpenedArtifact::runtime)
      .def_property_readonly("load_seconds", &OpenedArtifact::load_seconds)
      .def(
          "call",
          [](const OpenedArtifact& o, const py::tuple& args, const std::string& method,
             const std::vector<std::string>& keywords, std::optional<int64_t> seed) {
            std::vector<c10::IValue> values;
            for (size_t i = 0; i < args.size(); ++i) values.push_back(to_ivalue(args[i], "args[" + std::to_string(i) + "]"));
            c10::IValue out;
            {
              py::gil_scoped_release release;
              out = o.call(method, values, keywords, seed);
            }
            return to_python(out);
          },
          py::arg("args"), py::arg("method") = "forward", py::arg("keywords") = std::vector<std::string>{},
          py::arg("seed") = py::none(),
          "Call the artifact as the runner calls an input set: `args` the positional arguments then the values of "
          "`keywords`; the output on the CPU. CorpusError when the call is refused (a program's guards) or raises.");
  m.def(
      "open_artifact",
      [](const Corpus& corpus, const std::string& name, const std::string& artifact, const std::string& device,
         const std::string& aoti_cache, bool allow_side_effects, int threads) {
        RunOptions o;
        o.device = c10::Device(device);
        o.aoti_cache = aoti_cache;
        o.allow_side_effects = allow_side_effects;
        o.threads = threads ? threads : corpus.exported_threads;
        o.repeat = 1;
        const CaseSpec& c = find_case(corpus, name);
        py::gil_scoped_release release;
        return OpenedArtifact(c, artifact, o);
      },
      py::arg("corpus"), py::arg("case"), py::arg("artifact"), py::arg("device") = "cpu", py::arg("aoti_cache") = "",
      py::arg("allow_side_effects") = false, py::arg("threads") = 0,
      "Load one artifact of a case (a plan label: '' for the TorchScript artifact, 'export@aoti'...) with the "
      "runner's runtime, as a verification loads it (threads: 0 for the corpus's exported_with.threads), to call it "
      "on inputs that are not in the corpus (torchconform fuzz).");
  m.def("shard_names", &shard_names, py::arg("names"), py::arg("k"), py::arg("n"),
        py::arg("costs") = std::map<std::string, double>{},
        "The names (cases) of shard k (1-based) of n, as --shard K/N picks them: a stable hash of the name, or "
        "with costs (seconds per name) longest first to the least loaded shard. Keeps the order of `names`.");
  m.def("case_costs_from_report", &case_costs_from_report, py::arg("path"),
        "Seconds per case in a JSON report (the sum over its results and devices): what --durations reads.");
  m.def("default_aoti_cache", &default_aoti_cache,
        "$TORCHCONFORM_AOTI_CACHE, else $XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti; raises "
        "UsageError when none is set (never a shared temporary directory).");
  m.def("check_aoti_cache", &check_aoti_cache, py::arg("cache"),
        "Raises UsageError when another local user could have written into the cache (not this user's, group- or "
        "world-writable, or under a parent others can change).");
  m.def("prepare_aoti_cache", &prepare_aoti_cache, py::arg("cache"),
        "Creates the cache's missing directories with mode 0700, checks it (check_aoti_cache) and returns its "
        "canonical path.");
  m.def(
      "read_case_file",
      [](const Corpus& corpus, const std::string& name, const std::string& rel) {
        const CaseSpec& c = find_case(corpus, name);
        std::string bytes;
        {
          py::gil_scoped_release release;
          bytes = read_case_file(c, rel);
        }
        return py::bytes(bytes);
      },
      py::arg("corpus"), py::arg("case"), py::arg("file"),
      "The one checked door into a corpus for every face: the bytes of a file the case's manifest declares "
      "(relative to the case directory), a regular file inside the corpus, of its declared size and SHA-256, read "
      "once. Raises CorpusError.");
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
  m.def("side_effect_operators", &side_effect_operators,
        "The operators through which an artifact can act outside the process (file I/O, printing): refused unless "
        "--allow-side-effects.");
  m.def(
      "check_torchscript_code",
      [](const py::bytes& data, const std::string& what) -> std::string {
        try {
          check_torchscript_code(std::string(data), what);
        } catch (const CorpusError& e) {
          if (e.kind() == ErrorKind::kLoad) return e.what();  // unreadable here: a load failure, not a refusal
          throw;
        }
        return "";
      },
      py::arg("data"), py::arg("what"),
      "Raises CorpusError when a TorchScript archive's code calls an operator of side_effect_operators(): check it "
      "before torch.jit.load (a module's __setstate__ runs while it loads). Returns '' when it was checked, else why "
      "this LibTorch cannot open the archive (a load failure, e.g. a file format from a newer PyTorch).");
  m.def("aoti_package_path", &aoti_package_path, py::arg("cache"), py::arg("program_key"), py::arg("device_type"),
        py::arg("torch_version") = std::string(libtorch_version()),
        "Where a runner built against `torch_version` (default: this one) looks for the AOTInductor package of an "
        "exported program with this program_key (see torchconform compile): the one definition of the cache path.");
  m.def(
      "program_key",
      [](const Corpus& corpus, const std::string& name, const std::string& variant) {
        const CaseSpec& c = find_case(corpus, name);
        for (const auto& v : c.variants)
          if (v.name == variant && v.kind == VariantKind::kExportedProgram) {
            py::gil_scoped_release release;
            return program_key(c, v);
          }
        throw CorpusError(c.name + ": no exported program named '" + variant + "'");
      },
      py::arg("corpus"), py::arg("case"), py::arg("variant"),
      "What the AOTInductor package of an exported program depends on, as a SHA-256 read from the program file: its "
      "graph without stack traces, its weights and constants, its aoti_options. The package cache's key.");
  m.def(
      "mark_may_cover", [](const std::string& kind) { return mark_may_cover(error_kind_from(kind)); },
      py::arg("error_kind"),
      "Whether an expected-failure mark may cover a result that ended in this error kind ('none', 'corpus', 'load', "
      "'missing_package', 'not_run', 'call', 'crash', 'timeout'): never a refused corpus nor a runtime the build "
      "lacks. The runner's rule, for faces that judge results themselves.");
  m.def("version_matches", &version_matches, py::arg("version"), py::arg("spec"),
        "Whether a torch version satisfies an xfail mark's condition ('<2.14', '>=2.13,<3'): the runner's rule.");
  m.def(
      "applicable_mark",
      [](const Corpus& corpus, const std::string& name, const std::string& artifact, const std::string& set,
         const std::string& torch_version, const std::string& device) {
        const CaseSpec& c = find_case(corpus, name);
        const VariantSpec* variant = nullptr;
        const std::string variant_name = artifact.substr(0, artifact.find('@'));
        for (const auto& v : c.variants)
          if (!artifact.empty() && v.name == variant_name) variant = &v;
        if (!artifact.empty() && !variant) throw CorpusError(c.name + ": no variant '" + variant_name + "'");
        const InputSetSpec* s = nullptr;
        for (const auto& x : c.sets)
          if (x.name == set) s = &x;
        if (!s && set != "*") throw CorpusError(c.name + ": no input set named '" + set + "'");
        return applicable_mark(c, s, variant, torch_version, device);
      },
      py::arg("corpus"), py::arg("case"), py::arg("artifact"), py::arg("input_set"), py::arg("torch_version"),
      py::arg("device") = "cpu",
      "The xfail reason that applies to one result (artifact label, input set or '*') under `torch_version` on "
      "`device` (a device type), or None: the runner's precedence (variant, then set, then case), version and device "
      "conditions.");
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
  m.def("runtimes", [] {
    std::vector<std::tuple<std::string, bool, std::string>> out;
    for (const auto& r : runtimes()) out.emplace_back(r.name, r.available, r.detail);
    return out;
  }, "(name, available, detail) of each runtime this build of the runner has.");
  m.def(
      "run_case",
      [](const Corpus& corpus, const std::string& name, const std::string& device, int threads, int repeat,
         const std::vector<std::string>& sets, const std::string& aoti_cache) {
        const CaseSpec& c = find_case(corpus, name);
        py::gil_scoped_release release;
        return run_case(c, run_options(device, threads, repeat, aoti_cache), sets);
      },
      py::arg("corpus"), py::arg("case"), py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("repeat") = 2,
      py::arg("sets") = std::vector<std::string>{}, py::arg("aoti_cache") = "",
      "Run one case (or the named input sets of it) with the C++ runner, on its TorchScript artifact and every "
      "variant; returns one SetResult per (artifact, input set).");

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
