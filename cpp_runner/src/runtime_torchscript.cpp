// TorchScript: torch::jit::load, module.eval(), the set's method (a dotted path through submodules) after its prelude.
#include "runtime.h"

#include "archive.h"

#include <torch/script.h>

#include <sstream>

namespace torchconform {
namespace {

// "decoder.set_temperature" -> the method set_temperature of submodule decoder.
torch::jit::Method resolve(const torch::jit::Module& root, const std::string& dotted, const std::string& who) {
  torch::jit::Module m = root;
  std::string rest = dotted;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    const std::string part = rest.substr(0, dot);
    if (!m.hasattr(part) || !m.attr(part).isModule())
      throw CorpusError(who + ": '" + dotted + "': the artifact has no submodule '" + part + "'", ErrorKind::kCall);
    m = m.attr(part).toModule();
  }
  auto method = m.find_method(rest);
  if (!method) throw CorpusError(who + ": '" + dotted + "': the artifact has no method '" + rest + "'", ErrorKind::kCall);
  return *method;
}

// A value as the method's schema types it. Corpus data files hold untyped containers (a pickled Python list is a
// List[Any], a dict a Dict[Any, Any]); TorchScript checks argument types before a call, so a `List[Tensor]` or
// `Dict[str, Tensor]` argument would be refused. Containers are rebuilt with the schema's element types, recursively
// (List, Dict, Tuple, NamedTuple, Optional); a value that does not fit is left as it is, and the call's own type check
// names the argument.
c10::IValue as_schema_type(const c10::IValue& v, const c10::TypePtr& type) {
  if (const auto opt = type->cast<c10::OptionalType>())
    return v.isNone() ? v : as_schema_type(v, opt->getElementType());
  if (const auto list = type->cast<c10::ListType>(); list && v.isList()) {
    c10::impl::GenericList out(list->getElementType());
    out.reserve(v.toList().size());
    for (const c10::IValue& x : v.toList()) out.push_back(as_schema_type(x, list->getElementType()));
    return out;
  }
  if (const auto dict = type->cast<c10::DictType>(); dict && v.isGenericDict()) {
    c10::impl::GenericDict out(dict->getKeyType(), dict->getValueType());
    for (const auto& kv : v.toGenericDict())
      out.insert(as_schema_type(kv.key(), dict->getKeyType()), as_schema_type(kv.value(), dict->getValueType()));
    return out;
  }
  if (const auto tuple = type->cast<c10::TupleType>(); tuple && v.isTuple()) {
    const auto& items = v.toTupleRef().elements();
    if (items.size() != tuple->elements().size()) return v;
    std::vector<c10::IValue> out;
    for (size_t i = 0; i < items.size(); ++i) out.push_back(as_schema_type(items[i], tuple->elements()[i]));
    return tuple->schema() ? c10::ivalue::Tuple::createNamed(std::move(out), tuple)
                           : c10::ivalue::Tuple::create(std::move(out));
  }
  return v;
}

// The call's arguments typed by the method's schema: positional ones by position, keyword ones by name.
SplitArgs as_schema_types(SplitArgs args, const torch::jit::Method& method) {
  const auto& params = method.function().getSchema().arguments();  // params[0] is self
  for (size_t i = 0; i < args.positional.size() && i + 1 < params.size(); ++i)
    args.positional[i] = as_schema_type(args.positional[i], params[i + 1].type());
  for (auto& [name, value] : args.keywords)
    for (const auto& p : params)
      if (p.name() == name) value = as_schema_type(value, p.type());
  return args;
}

// From the checked bytes (or, when empty, from the path: the floor benchmark's raw load), in eval mode.
torch::jit::Module load_bytes(const std::string& bytes, const std::string& path, const std::string& what,
                              const c10::Device& device) {
  try {
    torch::jit::Module m;
    if (bytes.empty()) {
      m = torch::jit::load(path, device);
    } else {
      std::istringstream in(bytes);
      m = torch::jit::load(in, device);
    }
    m.eval();  // the training flag is saved with the module (PyTorch test EvalModeForLoadedModule)
    return m;
  } catch (const c10::Error& e) {
    throw CorpusError(what + ": torch::jit::load failed: " + torch_message(e), ErrorKind::kLoad);
  } catch (const std::exception& e) {  // some load failures are not c10::Errors (a missing node attribute)
    throw CorpusError(what + ": torch::jit::load failed: " + e.what(), ErrorKind::kLoad);
  }
}

class TorchScript final : public Runtime {
 public:
  RuntimeKind kind() const override { return RuntimeKind::kTorchScript; }
  RuntimeInfo info() const override { return {"torchscript", true, "torch::jit::load"}; }

  Loaded load(const CaseSpec& c, const PlannedArtifact& a, const RunOptions& o, LoadMode mode) const override {
    Loaded out;
    const FileRef& file = *a.file;
    const std::string what = c.name + "/" + file.file;
    auto t0 = Clock::now();
    // Verified: the module is loaded from the hashed bytes, never re-read from disk, so what runs is what was
    // hashed; the archive is checked before LibTorch's reader sees it. Raw: from the path (the floor benchmark).
    auto bytes = std::make_shared<std::string>();
    if (mode == LoadMode::kVerified) {
      *bytes = read_verified(c, file);
      check_zip(*bytes, what);
    }
    out.read_seconds = since(t0);
    const std::string path = (c.dir / file.file).string();
    auto load_module = [what, bytes, path, device = o.device]() {
      return std::make_shared<torch::jit::Module>(load_bytes(*bytes, path, what, device));
    };
    t0 = Clock::now();
    auto shared = load_module();
    out.load_seconds = since(t0);
    const std::string case_name = c.name;
    out.prepare = [case_name, shared, load_module](const InputSetSpec& s, std::vector<c10::IValue> args) {
      const std::string who = case_name + "/" + s.name;
      // A prelude changes module state (set_temperature): give it a fresh module so no other set sees the change.
      auto module = s.prelude.empty() ? shared : load_module();
      for (const auto& call : s.prelude) {
        try {
          resolve(*module, call.method, who)(call.args);
        } catch (const c10::Error& e) {
          throw CorpusError(who + ": prelude " + call.text + " failed: " + torch_message(e), ErrorKind::kCall);
        }
      }
      torch::jit::Method method = resolve(*module, s.method, who);
      SplitArgs split = as_schema_types(split_keywords(s, std::move(args), who), method);
      torch::jit::Kwargs kwargs(split.keywords.begin(), split.keywords.end());
      return Call([module, method, positional = std::move(split.positional), kwargs]() mutable {
        return method(positional, kwargs);
      });
    };
    return out;
  }
};

}  // namespace

torch::jit::Module load_torchscript(const CaseSpec& c, const FileRef& file, const c10::Device& device) {
  const std::string what = c.name + "/" + file.file;
  const std::string bytes = read_verified(c, file);
  check_zip(bytes, what);
  return load_bytes(bytes, "", what, device);
}

const Runtime& torchscript_runtime() {
  static const TorchScript runtime;
  return runtime;
}

}  // namespace torchconform
