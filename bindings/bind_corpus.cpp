// torchconform._core: the bindings of corpus.h: the checked reader (the corpus, its cases, sets, variants, marks)
// and the schema.
#include "bind.h"

namespace torchconform::bindings {

void bind_corpus(py::module_& m) {
  m.def("corpus_schema", &corpus_schema_text, "docs/corpus-schema.json as compiled into the runner");
  m.def("validate", &validate_against_schema, py::arg("definition"), py::arg("json_text"),
        "Validate JSON text against a corpus-schema definition ('manifest', 'corpus', 'policy'...): '' when "
        "valid, else the first problem as '<json path>: <what>'.");
  m.def("validate_with_schema", &validate_with_schema, py::arg("schema_text"), py::arg("json_text"),
        "The corpus validator on another schema (one that uses only the keywords it implements; others raise).");
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
}

}  // namespace torchconform::bindings
