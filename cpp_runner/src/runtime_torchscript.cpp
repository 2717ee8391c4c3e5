// TorchScript: torch::jit::load, module.eval(), the set's method (a dotted path through submodules) after its prelude.
#include "runtime.h"

#include "archive.h"
#include "files.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/script.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <memory>
#include <sstream>

namespace torchconform {
namespace {

const char* const kSideEffectWhy =
    "acts outside the process (reads or writes files, or prints into the runner's output); a hostile artifact can "
    "use it to change files while it is verified. Trusted artifacts run with --allow-side-effects";

// TorchScript source with its string literals blanked: a word inside a message is not a call.
std::string without_string_literals(std::string code) {
  for (size_t i = 0; i < code.size(); ++i) {
    const char q = code[i];
    if (q != '"' && q != '\'') continue;
    const bool triple = code.compare(i, 3, std::string(3, q)) == 0;
    const size_t open = triple ? 3 : 1;
    size_t j = i + open;
    for (; j < code.size(); ++j) {
      if (code[j] == '\\') { ++j; continue; }
      if (triple ? code.compare(j, 3, std::string(3, q)) == 0 : code[j] == q) break;
    }
    const size_t end = std::min(code.size(), j + open);
    for (size_t k = i + open; k < std::min(j, code.size()); ++k) code[k] = ' ';
    i = end ? end - 1 : i;
  }
  return code;
}

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

// Every node of a graph, inside blocks and subgraphs too.
void each_node(const torch::jit::Block* block, const std::function<void(const torch::jit::Node*)>& fn) {
  for (const torch::jit::Node* n : block->nodes()) {
    fn(n);
    for (const torch::jit::Block* b : n->blocks()) each_node(b, fn);
    if (n->hasAttribute(torch::jit::attr::Subgraph)) each_node(n->g(torch::jit::attr::Subgraph)->block(), fn);
  }
}

// The second look, after loading: every function the artifact's compilation unit holds (every method of every
// submodule and class, free functions), inlined, node by node.
std::string side_effect_in_graphs(const torch::jit::Module& m) {
  const auto& ops = side_effect_operators();
  std::string found;
  for (torch::jit::Function* fn : m._ivalue()->compilation_unit()->get_functions()) {
    if (!found.empty()) break;
    if (!fn->isGraphFunction()) continue;
    auto graph = torch::jit::toGraphFunction(*fn).graph()->copy();
    torch::jit::Inline(*graph);
    each_node(graph->block(), [&](const torch::jit::Node* n) {
      const std::string kind = n->kind().toQualString();
      if (found.empty() && std::find(ops.begin(), ops.end(), kind) != ops.end())
        found = kind + " in " + fn->qualname().qualifiedName();
    });
  }
  return found;
}

// From the file's bytes, in eval mode. Unless `allow_side_effects`, the archive's code is checked for operators that
// act outside the process before it is loaded (a module's __setstate__ runs during the load), and its graphs after.
torch::jit::Module load_bytes(const std::string& bytes, const std::string& what, const c10::Device& device,
                              bool allow_side_effects) {
  try {
    if (!allow_side_effects) check_torchscript_code(bytes, what);
    std::istringstream in(bytes);
    torch::jit::Module m = torch::jit::load(in, device);
    if (!allow_side_effects) {
      const std::string found = side_effect_in_graphs(m);
      if (!found.empty())
        throw CorpusError(what + ": refused: the artifact calls " + found + ", which " + kSideEffectWhy,
                          ErrorKind::kCorpus);
    }
    m.eval();  // the training flag is saved with the module (PyTorch test EvalModeForLoadedModule)
    return m;
  } catch (const CorpusError&) {
    throw;
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
    // hashed; the archive is checked before LibTorch's reader sees it. Raw (the floor benchmark): the same regular
    // file inside the corpus, unhashed.
    auto bytes = std::make_shared<std::string>();
    if (mode == LoadMode::kVerified) {
      *bytes = read_verified(c, file);
      check_zip(*bytes, what);
    } else {
      *bytes = read_inside(c.root, c.name + "/" + file.file, file.bytes, kMaxUndeclaredBytes, c.name);
    }
    out.read_seconds = since(t0);
    auto load_module = [what, bytes, device = o.device, allow = o.allow_side_effects]() {
      return std::make_shared<torch::jit::Module>(load_bytes(*bytes, what, device, allow));
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

torch::jit::Module load_torchscript(const CaseSpec& c, const FileRef& file, const RunOptions& o) {
  const std::string what = c.name + "/" + file.file;
  const std::string bytes = read_verified(c, file);
  check_zip(bytes, what);
  return load_bytes(bytes, what, o.device, o.allow_side_effects);
}

const std::vector<std::string>& side_effect_operators() {
  static const std::vector<std::string> ops = {"aten::from_file", "aten::save", "prim::Print", "aten::_print",
                                               "debugprims::load_tensor"};
  return ops;
}

void check_torchscript_code(const std::string& bytes, const std::string& what) {
  // The names under which TorchScript's serialized code calls those operators (torch.from_file, torch.save,
  // print, torch._print, ops.debugprims.load_tensor): no other spelling reaches them, since the code's names
  // resolve only through torch., ops. and the builtins.
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"from_file", "aten::from_file"}, {"save", "aten::save"}, {"print", "prim::Print"},
      {"_print", "aten::_print"}, {"load_tensor", "debugprims::load_tensor"}};
  check_zip(bytes, what);
  std::istringstream in(bytes);
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(&in);
  } catch (const c10::Error& e) {
    // The same reader torch::jit::load uses: what it cannot open (e.g. a file format from a newer PyTorch), this
    // LibTorch cannot load either. A load error, not a refusal.
    throw CorpusError(what + ": torch::jit::load failed: " + torch_message(e), ErrorKind::kLoad);
  }
  auto& archive = *reader;
  for (const auto& record : archive.getAllRecords()) {
    if (record.rfind("code/", 0) != 0 || record.size() < 3 || record.compare(record.size() - 3, 3, ".py") != 0)
      continue;
    auto [data, size] = archive.getRecord(record);
    const std::string code = without_string_literals(std::string(static_cast<const char*>(data.get()), size));
    for (const auto& [name, op] : names) {
      for (size_t at = code.find(name); at != std::string::npos; at = code.find(name, at + 1)) {
        auto word = [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; };
        if ((at > 0 && word(code[at - 1])) || (at + name.size() < code.size() && word(code[at + name.size()])))
          continue;
        throw CorpusError(what + ": refused: its code (" + printable(record) + ") names '" + name + "', a call of " +
                              op + ", which " + kSideEffectWhy,
                          ErrorKind::kCorpus);
      }
    }
  }
}

const Runtime& torchscript_runtime() {
  static const TorchScript runtime;
  return runtime;
}

}  // namespace torchconform
