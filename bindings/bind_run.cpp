// torchconform._core: the bindings of run.h: running a case, the AOTInductor package cache, the safety checks.
#include "bind.h"

namespace torchconform::bindings {

void bind_run(py::module_& m) {
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
  m.def("default_aoti_cache", &default_aoti_cache,
        "$TORCHCONFORM_AOTI_CACHE, else $XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti; raises "
        "UsageError when none is set (never a shared temporary directory).");
  m.def("check_aoti_cache", &check_aoti_cache, py::arg("cache"),
        "Raises UsageError when another local user could have written into the cache (not this user's, group- or "
        "world-writable, or under a parent others can change).");
  m.def("prepare_aoti_cache", &prepare_aoti_cache, py::arg("cache"),
        "Creates the cache's missing directories with mode 0700, checks it (check_aoti_cache) and returns its "
        "canonical path.");
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
}

}  // namespace torchconform::bindings
