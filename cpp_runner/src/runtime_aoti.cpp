// AOTInductor: an exported program runs as the package `torchconform compile` built from it (cached by the program's
// SHA-256, the torch version and the device type), with flat tensors in and the program's output treespec out.
#include "runtime.h"

#include <torchconform/compare.h>

#include <torch/version.h>
// AOTInductor's package loader arrived in LibTorch 2.6; older ones (e.g. Debian's 1.13, used by `torchconform compat`)
// build a runner without this runtime, and every run says so (runtimes()).
#if __has_include(<torch/csrc/inductor/aoti_package/model_package_loader.h>)
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#define TORCHCONFORM_HAVE_AOTI 1
#endif
#include <torch/cuda.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <sstream>

namespace torchconform {

std::string default_aoti_cache() {
  if (const char* dir = std::getenv("TORCHCONFORM_AOTI_CACHE"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return (std::filesystem::path(xdg) / "torchconform" / "aoti").string();
  const char* home = std::getenv("HOME");
  return (std::filesystem::path(home && *home ? home : "/tmp") / ".cache" / "torchconform" / "aoti").string();
}

std::string aoti_package_path(const std::string& cache, const std::string& program_sha256,
                              const std::string& device_type, const std::string& torch_version) {
  // The version without its local part ("2.14.1+cu130" and "2.14.1" build the same key).
  const std::string version = torch_version.substr(0, torch_version.find('+'));
  return (std::filesystem::path(cache) / (program_sha256.substr(0, 32) + "-torch" + version + "-" + device_type) /
          "model.pt2")
      .string();
}

#ifdef TORCHCONFORM_HAVE_AOTI
namespace {

// The kinds of container the pytree JSON names: builtins and collections ones by their own names, user ones by the
// names the manifest's pytree_types gives them.
enum class SpecNode { kLeaf, kSequence, kDict, kNamedTuple, kDataclass, kUnknown };

SpecNode node_of(const nlohmann::json& spec, const VariantSpec& v, const PytreeType** user) {
  const auto& type = spec.at("type");
  if (type.is_null()) return SpecNode::kLeaf;
  const std::string name = type.get<std::string>();
  if (name == "builtins.tuple" || name == "builtins.list" || name == "collections.deque") return SpecNode::kSequence;
  if (name == "builtins.dict" || name == "collections.OrderedDict") return SpecNode::kDict;
  if (name == "collections.namedtuple") return SpecNode::kNamedTuple;
  for (const auto& t : v.pytree_types) {
    if (t.name != name) continue;
    if (t.kind == PytreeType::Kind::kMapping) return SpecNode::kDict;  // its context is its keys, as a dict's
    if (t.kind == PytreeType::Kind::kDataclass) {
      *user = &t;
      return SpecNode::kDataclass;
    }
  }
  return SpecNode::kUnknown;
}

// A dict node's keys, from its context (a JSON list in a JSON string).
std::vector<std::string> dict_keys(const nlohmann::json& spec, const std::string& who) {
  const auto keys = nlohmann::json::parse(spec.at("context").get<std::string>());
  std::vector<std::string> out;
  for (const auto& k : keys) {
    if (!k.is_string()) throw CorpusError(who + ": only str dict keys are supported in a program's spec");
    out.push_back(k.get<std::string>());
  }
  return out;
}

// An input set's leaves in the order the program takes them, following the program's input spec: sequences by
// position, dicts by the keys the program was captured with (in that order). A set of another structure is refused
// naming where it differs, before anything runs.
void flatten_by_spec(const nlohmann::json& spec, const c10::IValue& value, const VariantSpec& v,
                     std::vector<c10::IValue>& out, const std::string& where, const std::string& who) {
  const PytreeType* user = nullptr;
  const auto& children = spec.at("children_spec");
  switch (node_of(spec, v, &user)) {
    case SpecNode::kLeaf:
      out.push_back(value);
      return;
    case SpecNode::kSequence:
    case SpecNode::kNamedTuple: {
      std::vector<c10::IValue> items;
      if (value.isTuple()) items = value.toTupleRef().elements().vec();
      else if (value.isList()) items = value.toListRef().vec();
      else throw CorpusError(who + ": input " + where + " is " + value.tagKind() + ", the program takes a sequence");
      if (items.size() != children.size())
        throw CorpusError(who + ": input " + where + " has " + std::to_string(items.size()) + " items, the program "
                          "takes " + std::to_string(children.size()));
      for (size_t i = 0; i < items.size(); ++i)
        flatten_by_spec(children[i], items[i], v, out, where + "[" + std::to_string(i) + "]", who);
      return;
    }
    case SpecNode::kDict: {
      if (!value.isGenericDict())
        throw CorpusError(who + ": input " + where + " is " + value.tagKind() + ", the program takes a dict");
      const auto d = value.toGenericDict();
      const auto keys = dict_keys(spec, who);
      if (d.size() != keys.size())
        throw CorpusError(who + ": input " + where + " has " + std::to_string(d.size()) + " keys, the program "
                          "takes " + std::to_string(keys.size()));
      for (size_t i = 0; i < keys.size(); ++i) {
        const auto it = d.find(c10::IValue(keys[i]));
        if (it == d.end())
          throw CorpusError(who + ": input " + where + " has no key '" + printable(keys[i]) + "' (the program "
                            "was captured with it)");
        flatten_by_spec(children.at(i), it->value(), v, out, where + "['" + printable(keys[i]) + "']", who);
      }
      return;
    }
    case SpecNode::kDataclass:
    case SpecNode::kUnknown:
      break;
  }
  throw CorpusError(who + ": the program takes a " + spec.at("type").get<std::string>() + " at input " + where +
                    ", which an input set cannot hold");
}

// Whether a tensor meets the program's guards on it (dtype, rank, static sizes, symbol ranges, equal symbols):
// AOTInductor's generated code does not check (unless built with AOTI_RUNTIME_CHECK_INPUTS) and would read out of
// bounds or run on a shape it was never specialized for. "" when it does.
std::string guard_violation(const ProgramInput& spec, const at::Tensor& t, std::map<std::string, int64_t>& symbols) {
  if (!spec.dtype.empty() && dtype_name(t.scalar_type()) != spec.dtype)
    return "is " + dtype_name(t.scalar_type()) + ", the program was captured for " + spec.dtype;
  if (!spec.shape) return "";
  const auto& dims = *spec.shape;
  if (static_cast<size_t>(t.dim()) != dims.size())
    return "has " + std::to_string(t.dim()) + " dimensions, the program was captured for " +
           std::to_string(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) {
    const int64_t n = t.size(static_cast<int64_t>(d));
    const std::string at = "dimension " + std::to_string(d) + " is " + std::to_string(n) + ", ";
    if (dims[d].size && n != *dims[d].size)
      return at + "the program was captured for " + std::to_string(*dims[d].size) + " only (static)";
    if (dims[d].symbol.empty()) continue;
    const auto& sym = dims[d];
    if (n < sym.min || (sym.max && n > *sym.max))
      return at + "outside the range of " + sym.symbol + " [" + std::to_string(sym.min) + ", " +
             (sym.max ? std::to_string(*sym.max) : std::string("inf")) + "] the program was captured for";
    const auto [it, first] = symbols.emplace(sym.symbol, n);
    if (!first && it->second != n)
      return at + "but " + sym.symbol + " is " + std::to_string(it->second) + " in an earlier input (the program "
             "requires them equal)";
  }
  return "";
}

// The tensors an exported program takes for `args`; the other leaves must equal the constants it was specialized on,
// and the tensors must meet its guards.
std::vector<at::Tensor> program_inputs(const VariantSpec& v, const nlohmann::json& in_spec, const SplitArgs& args,
                                       const std::string& who) {
  std::vector<c10::IValue> leaves;
  // in_spec is (args, kwargs): the positional arguments, then the keyword arguments as a dict
  const auto& parts = in_spec.at("children_spec");
  if (parts.size() != 2) throw CorpusError(who + ": the program's input spec is not (args, kwargs)", ErrorKind::kLoad);
  flatten_by_spec(parts.at(0), c10::ivalue::Tuple::create(args.positional), v, leaves, "args", who);
  c10::impl::GenericDict kwargs(c10::StringType::get(), c10::AnyType::get());
  for (const auto& [name, value] : args.keywords) kwargs.insert(name, value);
  flatten_by_spec(parts.at(1), kwargs, v, leaves, "kwargs", who);
  if (leaves.size() != v.inputs.size())
    throw CorpusError(who + ": the input set has " + std::to_string(leaves.size()) +
                      " input leaves, the exported program was captured with " + std::to_string(v.inputs.size()));
  std::vector<at::Tensor> tensors;
  std::map<std::string, int64_t> symbols;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const auto& spec = v.inputs[i];
    if (spec.tensor) {
      if (!leaves[i].isTensor())
        throw CorpusError(who + ": input leaf " + std::to_string(i) + " must be a tensor, got " + leaves[i].tagKind());
      tensors.push_back(leaves[i].toTensor());
      const std::string why = guard_violation(spec, tensors.back(), symbols);
      if (!why.empty())
        throw CorpusError(who + ": input leaf " + std::to_string(i) + " " + why + ": the call would break the "
                          "exported program's guards (not run)", ErrorKind::kCall);
    } else {
      const bool same = leaves[i].tagKind() == spec.value.tagKind() &&
                        (spec.value.isNone() || (spec.value.isInt() && leaves[i].toInt() == spec.value.toInt()) ||
                         (spec.value.isBool() && leaves[i].toBool() == spec.value.toBool()) ||
                         (spec.value.isDouble() && leaves[i].toDouble() == spec.value.toDouble()) ||
                         (spec.value.isString() && leaves[i].toStringRef() == spec.value.toStringRef()));
      if (!same) {
        std::ostringstream os;
        os << who << ": input leaf " << i << " is " << leaves[i] << ", but the exported program was specialized on "
           << spec.value << " (a guard would fail)";
        throw CorpusError(os.str());
      }
    }
  }
  return tensors;
}

// Rebuilds the program's output value from its flat tensors with the output treespec AOTInductor stores
// (torch.utils._pytree JSON: {"type": "builtins.tuple", "children_spec": [...]}, leaves have type null). Kept by hand:
// LibTorch has no C++ pytree for it, and the runner must not need Python.
c10::IValue unflatten(const nlohmann::json& spec, const std::vector<at::Tensor>& flat, size_t& next,
                      const VariantSpec& v, const std::string& who) {
  const PytreeType* user = nullptr;
  const SpecNode node = node_of(spec, v, &user);
  if (node == SpecNode::kLeaf) {
    if (next >= flat.size()) throw CorpusError(who + ": the program returned fewer tensors than its output spec");
    const at::Tensor& t = flat[next++];
    // AOTInductor returns a Python int (e.g. from .item()) as a 0-dim int64 tensor; the manifest declares it.
    if (v.int_outputs_as_tensors && t.dim() == 0 && c10::isIntegralType(t.scalar_type(), /*includeBool=*/false))
      return t.item<int64_t>();
    return t;
  }
  const std::string name = spec.at("type").get<std::string>();
  if (node == SpecNode::kUnknown)
    throw CorpusError(who + ": unsupported container '" + name + "' in the program's output spec (a pytree type "
                      "registered by the model's code; only namedtuples and dataclasses are rebuilt)");
  std::vector<c10::IValue> children;
  for (const auto& child : spec.at("children_spec")) children.push_back(unflatten(child, flat, next, v, who));
  // A namedtuple is compared as the tuple of its fields (the goldens store it so), a deque as a list.
  if (name == "builtins.tuple" || node == SpecNode::kNamedTuple) return c10::ivalue::Tuple::create(std::move(children));
  if (node == SpecNode::kSequence) {
    bool all_int = !children.empty();
    for (const auto& x : children) all_int = all_int && x.isInt();
    if (all_int) {
      c10::List<int64_t> l;
      for (const auto& x : children) l.push_back(x.toInt());
      return l;
    }
    c10::impl::GenericList l(c10::AnyType::get());
    for (auto& x : children) l.push_back(std::move(x));
    return l;
  }
  // dicts, OrderedDicts (every torchvision segmentation model) and dataclasses (their fields; those that were None
  // when captured are None) are str-keyed dicts, as the goldens store them
  const std::vector<std::string> keys = node == SpecNode::kDict ? dict_keys(spec, who) : user->fields;
  if (keys.size() != children.size())
    throw CorpusError(who + ": '" + name + "' has " + std::to_string(keys.size()) + " keys for " +
                      std::to_string(children.size()) + " values in the program's output spec");
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  for (size_t i = 0; i < children.size(); ++i) d.insert(keys[i], children[i]);
  if (node == SpecNode::kDataclass)
    for (const auto& k : user->none_fields) d.insert(k, c10::IValue());
  return d;
}

}  // namespace
#endif  // TORCHCONFORM_HAVE_AOTI

namespace {

class Aoti final : public Runtime {
 public:
  RuntimeKind kind() const override { return RuntimeKind::kAoti; }
  RuntimeInfo info() const override {
#ifdef TORCHCONFORM_HAVE_AOTI
    return {"aoti", true, "torch::inductor::AOTIModelPackageLoader (packages from `torchconform compile`)"};
#else
    return {"aoti", false,
            std::string("LibTorch ") + TORCH_VERSION + " has no torch/csrc/inductor/aoti_package/model_package_loader.h"};
#endif
  }

  Loaded load(const CaseSpec& c, const PlannedArtifact& a, const RunOptions& o, LoadMode mode) const override {
#ifdef TORCHCONFORM_HAVE_AOTI
    Loaded out;
    const VariantSpec& v = *a.variant;
    const std::string who = artifact_who(c, a);
    // The program file is read and checked against its SHA-256 although the package is what runs: a changed .pt2
    // must not pass on the strength of a stale package (the package's key is the program's hash).
    auto t0 = Clock::now();
    if (mode == LoadMode::kVerified) read_verified(c, *a.file);
    out.read_seconds = since(t0);
    const std::string cache = o.aoti_cache.empty() ? default_aoti_cache() : o.aoti_cache;
    const std::string package = aoti_package_path(cache, a.file->sha256, o.device.is_cuda() ? "cuda" : "cpu");
    if (!std::filesystem::exists(package))
      throw CorpusError(who + ": no AOTInductor package for " + c.name + "/" + a.file->file + " (sha256 " +
                            a.file->sha256.substr(0, 12) + "..., LibTorch " + libtorch_version() + ", " +
                            o.device.str() + ") at " + package + "; build it with `torchconform compile " +
                            c.dir.parent_path().string() + "`",
                        ErrorKind::kMissingPackage);
    t0 = Clock::now();
    std::shared_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    nlohmann::json in_spec, out_spec;
    try {
      loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(
          package, "model", /*run_single_threaded=*/false, /*num_runners=*/1,
          o.device.is_cuda() ? o.device.index() : static_cast<c10::DeviceIndex>(-1));
      const auto specs = loader->get_call_spec();
      if (specs.size() != 2) throw CorpusError(who + ": the package has no call spec", ErrorKind::kLoad);
      in_spec = nlohmann::json::parse(specs[0]).at(1);
      out_spec = nlohmann::json::parse(specs[1]).at(1);
    } catch (const c10::Error& e) {
      throw CorpusError(who + ": AOTIModelPackageLoader(" + package + ") failed: " + torch_message(e),
                        ErrorKind::kLoad);
    } catch (const nlohmann::json::exception& e) {
      throw CorpusError(who + ": unreadable output spec in " + package + ": " + e.what(), ErrorKind::kLoad);
    }
    out.load_seconds = since(t0);
    const VariantSpec* variant = &v;
    out.prepare = [variant, who, loader, in_spec, out_spec](const InputSetSpec& s, std::vector<c10::IValue> args) {
      if (!s.prelude.empty())
        throw CorpusError(who + "/" + s.name + ": an exported program has no methods for the set's prelude");
      auto tensors = program_inputs(*variant, in_spec, split_keywords(s, std::move(args), who + "/" + s.name),
                                    who + "/" + s.name);
      return Call([variant, who, loader, out_spec, tensors]() {
        const auto flat = loader->run(tensors);
        size_t next = 0;
        auto value = unflatten(out_spec, flat, next, *variant, who);
        if (next != flat.size())
          throw CorpusError(who + ": the program returned " + std::to_string(flat.size()) +
                                " tensors, its output spec has " + std::to_string(next),
                            ErrorKind::kCall);
        return value;
      });
    };
    return out;
#else
    (void)o;
    (void)mode;
    throw CorpusError(artifact_who(c, a) + ": " + info().detail, ErrorKind::kNotRun);
#endif
  }
};

}  // namespace

std::vector<at::Tensor> run_aoti_package(const std::string& package, const std::vector<at::Tensor>& inputs,
                                         const c10::Device& device) {
#ifdef TORCHCONFORM_HAVE_AOTI
  try {
    torch::inductor::AOTIModelPackageLoader loader(package, "model", /*run_single_threaded=*/false,
                                                   /*num_runners=*/1,
                                                   device.is_cuda() ? device.index() : static_cast<c10::DeviceIndex>(-1));
    std::vector<at::Tensor> on_device;
    for (const auto& t : inputs) on_device.push_back(t.to(device));
    c10::InferenceMode guard;
    auto out = loader.run(on_device);
    for (auto& t : out) t = t.to(c10::Device(c10::kCPU));
    return out;
  } catch (const c10::Error& e) {
    throw CorpusError(package + ": " + torch_message(e), ErrorKind::kLoad);
  }
#else
  (void)inputs;
  (void)device;
  throw CorpusError(package + ": " + aoti_runtime().info().detail, ErrorKind::kNotRun);
#endif
}

const Runtime& aoti_runtime() {
  static const Aoti runtime;
  return runtime;
}

}  // namespace torchconform
