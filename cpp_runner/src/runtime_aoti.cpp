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
        return program_outputs(out_spec, loader->run(tensors), *variant, who);
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
