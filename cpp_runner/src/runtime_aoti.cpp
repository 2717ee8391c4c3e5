// AOTInductor: an exported program runs as the package `torchconform compile` built from it (cached by the program's
// SHA-256, the torch version and the device type), with flat tensors in and the program's output treespec out.
#include "archive.h"
#include "runtime.h"

#include "schema.h"

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

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace torchconform {
using nlohmann::json;

std::string default_aoti_cache() {
  if (const char* dir = std::getenv("TORCHCONFORM_AOTI_CACHE"); dir && *dir) return dir;
  // XDG: a relative XDG_CACHE_HOME is invalid and ignored. Never a shared temporary directory: anyone could create
  // the cache there first and plant the packages the runner loads (they are native code).
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg == '/')
    return (std::filesystem::path(xdg) / "torchconform" / "aoti").string();
  if (const char* home = std::getenv("HOME"); home && *home == '/')
    return (std::filesystem::path(home) / ".cache" / "torchconform" / "aoti").string();
  throw UsageError("no AOTInductor package cache: set TORCHCONFORM_AOTI_CACHE, XDG_CACHE_HOME or HOME (an absolute "
                   "path; a shared temporary directory is never used), or pass --aoti-cache DIR");
}

namespace {
namespace fs = std::filesystem;

// Why another local user could have written into `dir` ("" when no one but this user and root could): a cache
// holds native code the runner executes, so it must be this user's, not writable by group or others, under parents
// that only this user or root can rename entries in (a world-writable parent is fine with its sticky bit, as /tmp).
std::string foreign_writer(const fs::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return "cannot stat it: " + std::string(std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return "it is not a directory";
  if (st.st_uid != ::geteuid()) return "it is owned by uid " + std::to_string(st.st_uid) + ", not this user";
  if (st.st_mode & (S_IWGRP | S_IWOTH)) return "it is group- or world-writable";
  for (fs::path p = dir.parent_path(); !p.empty(); p = p.parent_path()) {
    if (::stat(p.c_str(), &st) != 0) return "cannot stat " + p.string() + ": " + std::strerror(errno);
    if (st.st_uid != ::geteuid() && st.st_uid != 0)
      return "its parent " + p.string() + " is owned by uid " + std::to_string(st.st_uid);
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))
      return "its parent " + p.string() + " is group- or world-writable without the sticky bit";
    if (p == p.parent_path()) break;
  }
  return "";
}

}  // namespace

void check_aoti_cache(const std::string& cache) {
  std::error_code ec;
  const fs::path real = fs::canonical(cache, ec);
  if (ec) return;  // no cache yet: nothing in it to load (a missing package says so)
  const std::string why = foreign_writer(real);
  if (!why.empty())
    throw UsageError("AOTInductor package cache " + cache + " refused: " + why + " (its packages are native code "
                     "the runner loads; keep the cache private: mode 0700)");
}

std::string prepare_aoti_cache(const std::string& cache) {
  // Created one component at a time with mode 0700 (those that exist are left as they are, then checked).
  fs::path made;
  for (const auto& part : fs::path(cache).lexically_normal()) {
    made /= part;
    if (::mkdir(made.c_str(), 0700) != 0 && errno != EEXIST)
      throw UsageError("cannot create the AOTInductor package cache " + cache + ": " + made.string() + ": " +
                       std::strerror(errno));
  }
  check_aoti_cache(cache);
  return fs::canonical(cache).string();
}

std::string aoti_package_path(const std::string& cache, const std::string& program_key,
                              const std::string& device_type, const std::string& torch_version) {
  // The version without its local part ("2.14.1+cu130" and "2.14.1" build the same key).
  const std::string version = torch_version.substr(0, torch_version.find('+'));
  return (std::filesystem::path(cache) / (program_key.substr(0, 32) + "-torch" + version + "-" + device_type) /
          "model.pt2")
      .string();
}

namespace {
void drop_stack_traces(json& j) {
  if (j.is_object()) {
    j.erase("stack_trace");
    for (auto& [k, v] : j.items()) drop_stack_traces(v);
  } else if (j.is_array()) {
    for (auto& v : j) drop_stack_traces(v);
  }
}
}  // namespace

std::string program_key(const CaseSpec& c, const VariantSpec& program) {
  if (!program.file) throw CorpusError(c.name + ":" + program.name + ": no program file");
  const std::string who = c.name + "/" + program.file->file;
  const std::string bytes = read_verified(c, *program.file);
  auto records = check_zip(bytes, who);
  std::sort(records.begin(), records.end(), [](const ZipRecord& a, const ZipRecord& b) { return a.name < b.name; });
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  std::string manifest;  // name, size and digest of every record the package depends on, one per line
  for (const auto& r : records) {
    if (!r.stored) throw CorpusError(who + ": record " + r.name + " is compressed (torch.export.save stores them)");
    const std::string_view data(bytes.data() + r.data_offset, r.size);
    if (r.name.find("/data/sample_inputs/") != std::string::npos) {
      // Not part of the key (the package does not depend on them), but torch.export.load unpickles them: a record
      // that is not a harmless torch.save archive is refused here, not left for a cached package to hide.
      load_value(std::string(data), who + ": " + r.name);
      continue;
    }
    if (ends_with(r.name, "/.data/serialization_id")) continue;
    std::string digest;  // (of the canonical graph: its size moves with the stack traces too)
    if (r.name.find("/models/") != std::string::npos && ends_with(r.name, ".json")) {
      json graph = parse_json(std::string(data), who + ": " + r.name);
      drop_stack_traces(graph);
      const std::string canonical = graph.dump();
      digest = sha256_hex(canonical.data(), canonical.size());
    } else {
      digest = sha256_hex(data.data(), data.size());
    }
    manifest += r.name + " " + digest + "\n";
  }
  manifest += "aoti_options " + program.aoti_options + "\n";
  return sha256_hex(manifest.data(), manifest.size());
}


namespace {

#ifdef TORCHCONFORM_HAVE_AOTI
// A file in a directory only this process's user can enter, removed with it.
struct PrivateCopy {
  std::string dir, path;
  PrivateCopy(const std::string& bytes, const std::string& who) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp == '/' ? tmp : "/tmp") + "/torchconform-aoti-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw CorpusError(who + ": cannot make a private directory: " + std::strerror(errno));
    dir = tmpl;
    path = dir + "/model.pt2";
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f.flush()) throw CorpusError(who + ": cannot write " + path, ErrorKind::kLoad);
  }
  PrivateCopy(PrivateCopy&& o) noexcept : dir(std::move(o.dir)), path(std::move(o.path)) { o.dir.clear(); }
  ~PrivateCopy() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};

// The package's bytes, checked against the key.json that `torchconform compile` wrote beside it: it must name this
// program and the package's own size and SHA-256 (a planted, truncated or stale package is refused unloaded).
PrivateCopy verified_package(const std::string& package, const std::string& expected_key, const std::string& who) {
  const fs::path dir = fs::path(package).parent_path();
  auto refuse = [&](const std::string& why) {
    return CorpusError(who + ": AOTInductor package " + package + " refused: " + why + "; compile it again with "
                       "`torchconform compile --force`", ErrorKind::kLoad);
  };
  auto slurp = [&](const fs::path& p, uint64_t cap) {
    std::ifstream f(p, std::ios::binary);
    if (!f) throw refuse("cannot read " + p.filename().string());
    std::string bytes;
    char buf[1 << 16];
    while (f.read(buf, sizeof buf) || f.gcount() > 0) {
      bytes.append(buf, static_cast<size_t>(f.gcount()));
      if (bytes.size() > cap) throw refuse(p.filename().string() + " is larger than " + std::to_string(cap) + " bytes");
    }
    return bytes;
  };
  nlohmann::json key;
  try {
    key = parse_json(slurp(dir / "key.json", 1 << 20), who + ": key.json");
    if (!key.is_object()) throw refuse("key.json is not an object");
    if (!key.contains("program_key")) throw refuse("key.json records no program key (written by an older torchconform)");
    if (key.value("program_key", "") != expected_key) throw refuse("key.json names another program");
    if (!key.contains("package_sha256") || !key.at("package_sha256").is_string())
      throw refuse("key.json records no package digest (written by an older torchconform)");
  } catch (const CorpusError& e) {
    throw CorpusError(e.what(), ErrorKind::kLoad);
  }
  const std::string bytes = slurp(package, uint64_t{16} << 30);
  if (!key.contains("package_bytes") || key.at("package_bytes") != bytes.size())
    throw refuse(std::to_string(bytes.size()) + " bytes, key.json says " + key.value("package_bytes", json()).dump());
  if (sha256_hex(bytes.data(), bytes.size()) != key.at("package_sha256").get<std::string>())
    throw refuse("its SHA-256 differs from the one key.json recorded at compile");
  return PrivateCopy(bytes, who);
}
#endif

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
    // The program file is read, checked against its SHA-256 and keyed (program_key) although the package is what
    // runs: a changed graph, weight or option must not pass on the strength of a stale package.
    auto t0 = Clock::now();
    const std::string key = program_key(c, v);
    out.read_seconds = since(t0);
    std::string cache, package;
    try {
      cache = o.aoti_cache.empty() ? default_aoti_cache() : o.aoti_cache;
      check_aoti_cache(cache);
    } catch (const UsageError& e) {
      throw CorpusError(who + ": " + e.what(), ErrorKind::kLoad);
    }
    package = aoti_package_path(cache, key, o.device.is_cuda() ? "cuda" : "cpu");
    if (!std::filesystem::exists(package))
      throw CorpusError(who + ": no AOTInductor package for " + c.name + "/" + a.file->file + " (key " +
                            key.substr(0, 12) + "..., LibTorch " + libtorch_version() + ", " +
                            o.device.str() + ") at " + package + "; build it with `torchconform compile " +
                            c.dir.parent_path().string() + "`",
                        ErrorKind::kMissingPackage);
    // What loads is what `torchconform compile` wrote: the package's bytes against the digest its key.json recorded
    // at compile (and the program it names), then loaded from a private copy of exactly those bytes.
    std::shared_ptr<PrivateCopy> copy;
    if (mode == LoadMode::kVerified) copy = std::make_shared<PrivateCopy>(verified_package(package, key, who));
    t0 = Clock::now();
    std::shared_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    nlohmann::json in_spec, out_spec;
    try {
      loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(
          copy ? copy->path : package, "model", /*run_single_threaded=*/false, /*num_runners=*/1,
          o.device.is_cuda() ? o.device.index() : static_cast<c10::DeviceIndex>(-1));
      const auto specs = loader->get_call_spec();
      if (specs.size() != 2) throw CorpusError(who + ": the package has no call spec", ErrorKind::kLoad);
      in_spec = parse_json(specs[0], who + ": the package's in_spec").at(1);
      out_spec = parse_json(specs[1], who + ": the package's out_spec").at(1);
    } catch (const c10::Error& e) {
      throw CorpusError(who + ": AOTIModelPackageLoader(" + package + ") failed: " + torch_message(e),
                        ErrorKind::kLoad);
    } catch (const nlohmann::json::exception& e) {
      throw CorpusError(who + ": unreadable output spec in " + package + ": " + e.what(), ErrorKind::kLoad);
    } catch (const CorpusError& e) {
      throw CorpusError(e.what(), ErrorKind::kLoad);
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
