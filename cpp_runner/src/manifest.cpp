// Parsing one case's manifest (docs/corpus-format.md) into a CaseSpec, after the schema check: typed fields,
// marks, tolerances, variants. Reading and hash-checking the files is corpus.cpp's; the schema is schema.cpp's.
#include "manifest.h"

#include "files.h"
#include "schema.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

namespace torchconform {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "torchconform-corpus";
constexpr int kFormatVersion = 2;  // 2: variants

// Typed access to manifest fields with errors that name the file and the key.
struct Fields {
  const json& j;
  std::string who;
  const json& at(const char* key, json::value_t type, const char* type_name) const {
    if (!j.is_object()) throw CorpusError(who + ": expected a JSON object");
    auto it = j.find(key);
    if (it == j.end()) throw CorpusError(who + ": missing key '" + key + "'");
    // (An integer may be written 1.0: JSON Schema's integer is mathematical, and the schema check passed it.)
    const bool integral_float = it->is_number_float() && std::floor(it->get<double>()) == it->get<double>() &&
                                std::fabs(it->get<double>()) < 9.2e18;
    const bool ok = it->type() == type ||
                    (type == json::value_t::number_integer && (it->is_number_unsigned() || integral_float)) ||
                    (type == json::value_t::number_float && it->is_number());
    if (!ok) throw CorpusError(who + ": key '" + key + "' must be " + type_name + ", got " + it->type_name());
    return *it;
  }
  std::string str(const char* key) const { return at(key, json::value_t::string, "a string").get<std::string>(); }
  int64_t integer(const char* key) const {
    return at(key, json::value_t::number_integer, "an integer").get<int64_t>();
  }
  double number(const char* key) const { return at(key, json::value_t::number_float, "a number").get<double>(); }
  const json& array(const char* key) const { return at(key, json::value_t::array, "an array"); }
  const json& object(const char* key) const { return at(key, json::value_t::object, "an object"); }
  bool has(const char* key) const { return j.is_object() && j.contains(key) && !j.at(key).is_null(); }
};

FileRef file_ref(const json& j, const std::string& who) {
  Fields f{j, who};
  FileRef r{f.str("file"), f.str("sha256"), std::nullopt};
  if (r.sha256.size() != 64 || r.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw CorpusError(who + ": sha256 of '" + r.file + "' is not 64 lowercase hex digits");
  check_relative_path(r.file, who);
  if (f.has("bytes")) {
    const int64_t n = f.integer("bytes");
    if (n < 1) throw CorpusError(who + ": 'bytes' of '" + r.file + "' must be >= 1");
    r.bytes = static_cast<uint64_t>(n);
  }
  return r;
}

Tolerance parse_tolerance(const json& j, const std::string& who) {
  Fields f{j, who};
  Tolerance t;
  const std::string mode = f.str("mode");
  if (mode == "allclose") t.mode = ToleranceMode::kAllClose;
  else if (mode == "ulp") t.mode = ToleranceMode::kUlp;
  else if (mode == "exact") t.mode = ToleranceMode::kExact;
  else throw CorpusError(who + ": unknown tolerance mode '" + mode + "' (allclose, ulp or exact)");
  auto nonneg = [&](const char* key) -> std::optional<double> {
    if (!f.has(key)) return std::nullopt;
    const double v = f.at(key, json::value_t::number_float, "a number").get<double>();
    if (!(v >= 0)) throw CorpusError(who + ": tolerance '" + key + "' must be >= 0");
    return v;
  };
  t.rtol = nonneg("rtol");
  t.atol = nonneg("atol");
  if (t.mode == ToleranceMode::kUlp) {
    t.max_ulp = f.integer("max_ulp");
    if (t.max_ulp < 0) throw CorpusError(who + ": tolerance 'max_ulp' must be >= 0");
  }
  if (f.has("equal_nan")) t.equal_nan = f.at("equal_nan", json::value_t::boolean, "a boolean").get<bool>();
  return t;
}

TolerancePolicy parse_policy(const json& j, const std::string& who) {
  const Fields tol{j, who};
  TolerancePolicy p;
  p.base = parse_tolerance(tol.object("default"), who + ".default");
  if (tol.has("outputs"))
    for (const auto& [path, t] : tol.object("outputs").items())
      p.outputs[path] = parse_tolerance(t, who + ".outputs['" + path + "']");
  return p;
}

c10::IValue json_scalar(const json& v, const std::string& who) {
  switch (v.type()) {
    case json::value_t::null: return c10::IValue();
    case json::value_t::boolean: return v.get<bool>();
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return v.get<int64_t>();
    case json::value_t::number_float: return v.get<double>();
    case json::value_t::string: return v.get<std::string>();
    default: throw CorpusError(who + ": arguments must be JSON scalars, got " + std::string(v.type_name()));
  }
}

// An xfail mark as written; its version condition is checked for syntax here and applied per version at use.
Mark parse_xfail(const json& j, const std::string& who) {
  const Fields f{j, who};
  Mark m{f.str("reason"), f.has("torch") ? f.str("torch") : "", f.has("device") ? f.str("device") : ""};
  if (!m.torch.empty()) {
    try {
      version_matches("0", m.torch);
    } catch (const CorpusError& e) {
      throw CorpusError(who + ": " + e.what());
    }
  }
  return m;
}

VariantSpec parse_variant(const json& j, const CaseSpec& c, const std::string& who) {
  VariantSpec v;
  v.name = Fields{j, who + ": variant"}.str("name");
  const std::string vwho = who + ": variant '" + v.name + "'";
  const Fields f{j, vwho};
  for (const auto& other : c.variants)
    if (other.name == v.name) throw CorpusError(vwho + " appears twice");
  const std::string kind = f.str("kind");
  v.kind = kind == "exported_program"     ? VariantKind::kExportedProgram
           : kind == "executorch_program" ? VariantKind::kExecuTorchProgram
                                          : VariantKind::kTorchScript;
  v.description = f.str("description");
  v.transform = f.str("transform");
  if (f.has("xfail")) v.xfail = parse_xfail(f.object("xfail"), vwho + ": xfail");
  if (f.has("python_load_error")) v.python_load_error = f.str("python_load_error");
  if (f.has("aoti_options")) v.aoti_options = f.object("aoti_options").dump();  // (nlohmann: keys sorted)
  v.tolerance = f.has("tolerance") ? parse_policy(f.object("tolerance"), vwho + ": tolerance") : c.tolerance;
  if (f.has("file")) {
    v.file = file_ref(j, vwho);
  } else {
    // No artifact: only a capture that failed at export, recorded as an expected failure, may say so.
    v.error = f.has("error") ? f.str("error") : "";
    if (v.error.empty() || !v.xfail)
      throw CorpusError(vwho + ": no 'file', and not a failed capture ('error' with an 'xfail' mark)");
  }
  if (f.has("input_sets")) {
    for (const json& n : f.array("input_sets")) {
      const std::string name = n.get<std::string>();
      if (std::none_of(c.sets.begin(), c.sets.end(), [&](const InputSetSpec& s) { return s.name == name; }))
        throw CorpusError(vwho + ": names input set '" + name + "', which the case does not have");
      v.input_sets.push_back(name);
    }
  } else {
    for (const auto& s : c.sets) v.input_sets.push_back(s.name);
  }
  if (v.kind != VariantKind::kTorchScript && v.file) {
    const bool et = v.kind == VariantKind::kExecuTorchProgram;
    for (const json& r : f.array("runtimes")) {
      const auto kind = runtime_kind_from(r.get<std::string>());
      if (!kind || *kind == RuntimeKind::kTorchScript || et != (*kind == RuntimeKind::kExecuTorch))
        throw CorpusError(vwho + ": runtime '" + r.get<std::string>() + "' cannot run " + to_string(v.kind) + " (" +
                          (et ? "executorch" : "aoti or nativert") + ")");
      v.runtimes.push_back(*kind);
    }
    if (et) {
      v.in_spec = f.str("in_spec");
      v.out_spec = f.str("out_spec");
      v.lowered_from = f.has("lowered_from") ? f.str("lowered_from") : "";
      if (f.has("bundled") && Fields{f.object("bundled"), vwho + ": bundled"}.has("file"))
        v.bundled = file_ref(f.object("bundled"), vwho + ": bundled");
    }
    for (const json& in : f.array("inputs")) {
      ProgramInput pi;
      pi.tensor = in.at("kind") == "tensor";
      if (!pi.tensor) pi.value = json_scalar(in.contains("value") ? in.at("value") : json(), vwho + ": inputs");
      if (in.contains("dtype")) pi.dtype = in.at("dtype").get<std::string>();
      if (in.contains("shape")) {
        pi.shape.emplace();
        for (const json& d : in.at("shape")) {
          ProgramDim dim;
          if (d.is_number_integer()) {
            dim.size = d.get<int64_t>();
          } else if (d.contains("symbol")) {
            dim.symbol = d.at("symbol").get<std::string>();
            dim.min = d.contains("min") ? d.at("min").get<int64_t>() : 0;
            if (d.contains("max") && !d.at("max").is_null()) dim.max = d.at("max").get<int64_t>();
          } else if (d.contains("expr")) {
            dim.expr = d.at("expr").get<std::string>();
          } else {
            throw CorpusError(vwho + ": inputs: a dimension needs a size, a symbol or an expr");
          }
          pi.shape->push_back(std::move(dim));
        }
      }
      v.inputs.push_back(std::move(pi));
    }
    if (f.has("pytree_types")) {
      for (const json& t : f.array("pytree_types")) {
        PytreeType pt;
        pt.name = t.at("name").get<std::string>();
        const std::string kind = t.at("kind").get<std::string>();
        pt.kind = kind == "dataclass" ? PytreeType::Kind::kDataclass
                  : kind == "mapping" ? PytreeType::Kind::kMapping
                  : kind == "node"    ? PytreeType::Kind::kNode
                                      : PytreeType::Kind::kNamedTuple;
        for (const json& x : t.at("fields")) pt.fields.push_back(x.get<std::string>());
        if (t.contains("none_fields"))
          for (const json& x : t.at("none_fields")) pt.none_fields.push_back(x.get<std::string>());
        v.pytree_types.push_back(std::move(pt));
      }
    }
    if (f.has("int_outputs_as_tensors"))
      v.int_outputs_as_tensors = f.at("int_outputs_as_tensors", json::value_t::boolean, "a boolean").get<bool>();
  }
  return v;
}

}  // namespace

CaseSpec parse_case(const fs::path& dir, const json& m, const std::string& expected_name) {
  const std::string who = expected_name + "/manifest.json";
  require_valid("manifest", m, who);
  check_format(m, who);
  Fields f{m, who};
  CaseSpec c;
  c.name = f.str("case");
  if (c.name != expected_name)
    throw CorpusError(who + ": manifest names case '" + c.name + "' but corpus.json lists it as '" + expected_name + "'");
  c.mode = f.str("mode");
  c.description = f.str("description");
  c.dir = dir;
  // Mode "export" has no TorchScript artifact: its exported program (a variant) is what runs.
  c.has_artifact = f.has("artifact");
  if (c.has_artifact) c.artifact = file_ref(f.object("artifact"), who + ": artifact");
  else if (c.mode != "export") throw CorpusError(who + ": missing key 'artifact' (only mode 'export' has none)");
  c.exported_torch = Fields{f.object("exported_with"), who + ": exported_with"}.str("torch");
  if (f.has("xfail")) c.xfail = parse_xfail(f.object("xfail"), who + ": xfail");
  c.tolerance = parse_policy(f.object("tolerance"), who + ": tolerance");
  if (f.has("operators")) {
    const Fields of{f.object("operators"), who + ": operators"};
    for (const json& n : of.array("namespaces")) c.operator_namespaces.push_back(n.get<std::string>());
    if (of.has("libraries"))
      for (const json& l : of.array("libraries")) c.operator_libraries.push_back(l.get<std::string>());
  }

  std::set<std::string> names;
  for (const json& s : f.array("input_sets")) {
    const Fields sf{s, who + ": input set"};
    InputSetSpec spec;
    spec.name = sf.str("name");
    const std::string swho = who + ": input set '" + spec.name + "'";
    if (!names.insert(spec.name).second) throw CorpusError(swho + " appears twice");
    const Fields sfn{s, swho};
    spec.description = sfn.str("description");
    spec.method = sfn.str("method");
    if (sfn.has("seed")) spec.seed = sfn.integer("seed");
    for (const json& call : sfn.array("prelude")) {
      const Fields cf{call, swho + ": prelude"};
      PreludeCall pc;
      pc.method = cf.str("method");
      std::string text = pc.method + "(";
      for (const json& a : cf.array("args")) {
        pc.args.push_back(json_scalar(a, swho + ": prelude " + pc.method));
        text += (pc.args.size() > 1 ? ", " : "") + a.dump();
      }
      pc.text = text + ")";
      spec.prelude.push_back(std::move(pc));
    }
    if (sfn.has("xfail")) spec.xfail = parse_xfail(sfn.object("xfail"), swho + ": xfail");
    spec.inputs = file_ref(sfn.object("inputs"), swho + ": inputs");
    spec.expected = file_ref(sfn.object("expected"), swho + ": expected");
    if (sfn.has("submodules")) spec.submodules = file_ref(sfn.object("submodules"), swho + ": submodules");
    if (sfn.has("envelope")) {
      const json& env = sfn.object("envelope");
      const Fields ef{env, swho + ": envelope"};
      for (const json& src : ef.array("sources")) spec.envelope_sources.push_back(src.get<std::string>());
      for (const auto& [path, bound] : ef.object("outputs").items()) {
        const Fields bf{bound, swho + ": envelope " + path};
        if (bf.number("max_abs") < 0 || bf.number("max_ulp") < 0 || !std::isfinite(bf.number("max_abs")))
          throw CorpusError(swho + ": envelope " + path + ": bounds must be finite and >= 0");
        spec.envelope[path] = {bf.number("max_abs"), bf.number("max_ulp")};
      }
    }
    if (sfn.has("keywords")) {
      std::set<std::string> seen;
      for (const json& k : sfn.array("keywords")) {
        if (!seen.insert(k.get<std::string>()).second)
          throw CorpusError(swho + ": keyword '" + k.get<std::string>() + "' appears twice");
        spec.keywords.push_back(k.get<std::string>());
      }
    }
    c.sets.push_back(std::move(spec));
  }
  if (c.sets.empty()) throw CorpusError(who + ": no input sets");
  if (f.has("variants"))
    for (const json& v : f.array("variants")) c.variants.push_back(parse_variant(v, c, who));
  if (!c.has_artifact && std::none_of(c.variants.begin(), c.variants.end(),
                                      [](const VariantSpec& v) { return v.kind == VariantKind::kExportedProgram; }))
    throw CorpusError(who + ": mode 'export' without an exported_program variant: nothing to run");
  return c;
}


const char* to_string(VariantKind kind) {
  switch (kind) {
    case VariantKind::kExportedProgram: return "exported_program";
    case VariantKind::kExecuTorchProgram: return "executorch_program";
    case VariantKind::kTorchScript: break;
  }
  return "torchscript";
}

namespace {
// The one table of runtime names (the corpus schema's `runtimes` enum, plus "torchscript" for TorchScript files).
constexpr std::pair<RuntimeKind, const char*> kRuntimeNames[] = {
    {RuntimeKind::kTorchScript, "torchscript"},
    {RuntimeKind::kAoti, "aoti"},
    {RuntimeKind::kNativeRT, "nativert"},
    {RuntimeKind::kExecuTorch, "executorch"}};
}  // namespace

const char* to_string(RuntimeKind kind) {
  for (const auto& [k, name] : kRuntimeNames)
    if (k == kind) return name;
  return "?";
}

std::optional<RuntimeKind> runtime_kind_from(const std::string& name) {
  for (const auto& [k, n] : kRuntimeNames)
    if (name == n) return k;
  return std::nullopt;
}

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone: return "none";
    case ErrorKind::kCorpus: return "corpus";
    case ErrorKind::kLoad: return "load";
    case ErrorKind::kMissingPackage: return "missing_package";
    case ErrorKind::kNotRun: return "not_run";
    case ErrorKind::kCall: return "call";
    case ErrorKind::kCrash: return "crash";
    case ErrorKind::kTimeout: return "timeout";
  }
  return "?";
}

ErrorKind error_kind_from(const std::string& name) {
  for (ErrorKind k : {ErrorKind::kNone, ErrorKind::kCorpus, ErrorKind::kLoad, ErrorKind::kMissingPackage,
                      ErrorKind::kNotRun, ErrorKind::kCall, ErrorKind::kCrash, ErrorKind::kTimeout})
    if (name == to_string(k)) return k;
  throw std::invalid_argument("unknown error kind '" + name + "'");
}

bool mark_may_cover(ErrorKind kind) { return kind != ErrorKind::kNotRun && kind != ErrorKind::kCorpus; }

std::optional<std::string> applicable_mark(const CaseSpec& c, const InputSetSpec* set, const VariantSpec* variant,
                                           const std::string& torch_version, const std::string& device_type) {
  for (const std::optional<Mark>* m : {variant ? &variant->xfail : nullptr, set ? &set->xfail : nullptr, &c.xfail})
    if (m && *m && (*m)->applies_to(torch_version, device_type)) return (*m)->reason;
  return std::nullopt;
}

void check_format(const json& j, const std::string& who) {
  const Fields f{j, who};
  if (f.str("format") != kFormat) throw CorpusError(who + ": 'format' is not " + std::string(kFormat));
  if (f.integer("format_version") != kFormatVersion)
    throw CorpusError(who + ": unsupported format_version " + std::to_string(f.integer("format_version")));
}

TolerancePolicy parse_tolerance_policy(const std::string& json_text, const std::string& who) {
  const json j = parse_json(json_text, who);
  require_valid("policy", j, who);
  return parse_policy(j, who);
}

}  // namespace torchconform
