// AOTInductor: an exported program runs as the package `torchconform compile` built from it (cached by the program's
// SHA-256, the torch version and the device type), with flat tensors in and the program's output treespec out.
#include "runtime.h"

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

void flatten_inputs(const c10::IValue& v, std::vector<c10::IValue>& out) {
  if (v.isTuple()) {
    for (const auto& x : v.toTupleRef().elements()) flatten_inputs(x, out);
  } else if (v.isList()) {
    for (const auto& x : v.toListRef()) flatten_inputs(x, out);
  } else {
    out.push_back(v);
  }
}

// The tensors an exported program takes for `args`; the other leaves must equal the constants it was specialized on.
std::vector<at::Tensor> program_inputs(const VariantSpec& v, const std::vector<c10::IValue>& args,
                                       const std::string& who) {
  std::vector<c10::IValue> leaves;
  for (const auto& a : args) flatten_inputs(a, leaves);
  if (leaves.size() != v.inputs.size())
    throw CorpusError(who + ": the input set has " + std::to_string(leaves.size()) +
                      " input leaves, the exported program was captured with " + std::to_string(v.inputs.size()));
  std::vector<at::Tensor> tensors;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const auto& spec = v.inputs[i];
    if (spec.tensor) {
      if (!leaves[i].isTensor())
        throw CorpusError(who + ": input leaf " + std::to_string(i) + " must be a tensor, got " + leaves[i].tagKind());
      tensors.push_back(leaves[i].toTensor());
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
c10::IValue unflatten(const nlohmann::json& spec, const std::vector<at::Tensor>& flat, size_t& next, bool ints,
                      const std::string& who) {
  const auto& type = spec.at("type");
  if (type.is_null()) {
    if (next >= flat.size()) throw CorpusError(who + ": the program returned fewer tensors than its output spec");
    const at::Tensor& t = flat[next++];
    // AOTInductor returns a Python int (e.g. from .item()) as a 0-dim int64 tensor; the manifest declares it.
    if (ints && t.dim() == 0 && c10::isIntegralType(t.scalar_type(), /*includeBool=*/false)) return t.item<int64_t>();
    return t;
  }
  const std::string name = type.get<std::string>();
  std::vector<c10::IValue> children;
  for (const auto& child : spec.at("children_spec")) children.push_back(unflatten(child, flat, next, ints, who));
  if (name == "builtins.tuple") return c10::ivalue::Tuple::create(std::move(children));
  if (name == "builtins.list") {
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
  if (name == "builtins.dict") {
    const auto keys = nlohmann::json::parse(spec.at("context").get<std::string>());
    c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
    for (size_t i = 0; i < children.size(); ++i) {
      if (!keys.at(i).is_string()) throw CorpusError(who + ": only str dict keys are supported in program outputs");
      d.insert(keys.at(i).get<std::string>(), children[i]);
    }
    return d;
  }
  throw CorpusError(who + ": unsupported container '" + name + "' in the program's output spec");
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
    nlohmann::json out_spec;
    try {
      loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(
          package, "model", /*run_single_threaded=*/false, /*num_runners=*/1,
          o.device.is_cuda() ? o.device.index() : static_cast<c10::DeviceIndex>(-1));
      const auto specs = loader->get_call_spec();
      if (specs.size() != 2) throw CorpusError(who + ": the package has no call spec", ErrorKind::kLoad);
      out_spec = nlohmann::json::parse(specs[1]).at(1);
    } catch (const c10::Error& e) {
      throw CorpusError(who + ": AOTIModelPackageLoader(" + package + ") failed: " + torch_message(e),
                        ErrorKind::kLoad);
    } catch (const nlohmann::json::exception& e) {
      throw CorpusError(who + ": unreadable output spec in " + package + ": " + e.what(), ErrorKind::kLoad);
    }
    out.load_seconds = since(t0);
    const VariantSpec* variant = &v;
    out.prepare = [variant, who, loader, out_spec](const InputSetSpec& s, std::vector<c10::IValue> args) {
      if (!s.prelude.empty())
        throw CorpusError(who + "/" + s.name + ": an exported program has no methods for the set's prelude");
      auto tensors = program_inputs(*variant, args, who + "/" + s.name);
      return Call([variant, who, loader, out_spec, tensors]() {
        const auto flat = loader->run(tensors);
        size_t next = 0;
        auto value = unflatten(out_spec, flat, next, variant->int_outputs_as_tensors, who);
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

const Runtime& aoti_runtime() {
  static const Aoti runtime;
  return runtime;
}

}  // namespace torchconform
