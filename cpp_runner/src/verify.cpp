// The verification run every face shares (torchconform-run, `torchconform verify`, the report, the pytest plugin's
// child), and its one option table.
#include "reporters.h"
#include "runtime.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/runtime/operator.h>
#include <torch/cuda.h>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

namespace torchconform {
namespace {

struct Option {
  const char* flag;
  const char* metavar;  // nullptr: a switch
  const char* help;
  void (*set)(VerifyOptions&, const std::string& flag, const std::string& value);
};

int to_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || n < 1 || n > 1 << 16) throw UsageError(flag + " expects an integer >= 1, got '" + v + "'");
  return static_cast<int>(n);
}

double to_seconds(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double s = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || !(s > 0) || s > 1e7) throw UsageError(flag + " expects seconds > 0, got '" + v + "'");
  return s;
}

const std::vector<Option>& table() {
  static const std::vector<Option> options = {
      {"--case", "GLOB", "only cases matching GLOB (repeatable)",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.cases.push_back(v); }},
      {"--device", "cpu|cuda|all", "device(s) to verify on (default: cpu; all: the ones that exist)",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.device = v; }},
      {"--threads", "N",
       "intra-op threads, N >= 1 (default: the number the goldens were made with, the corpus's "
       "exported_with.threads; LibTorch's default where the corpus does not say)",
       [](VerifyOptions& o, const std::string& f, const std::string& v) { o.threads = to_int(f, v); }},
      {"--repeat", "N", "calls per input set, each compared (default: 2)",
       [](VerifyOptions& o, const std::string& f, const std::string& v) { o.repeat = to_int(f, v); }},
      {"--json", "FILE", "write a JSON report",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.json = v; }},
      {"--junit", "FILE", "write a JUnit XML report",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.junit = v; }},
      {"--timeout", "SECONDS", "per-case time limit, enforced by killing the case's process (default: 600)",
       [](VerifyOptions& o, const std::string& f, const std::string& v) { o.timeout = to_seconds(f, v); }},
      {"--no-isolate", nullptr, "run every case in this process (a crash ends the run; refuses --timeout)",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.isolate = false; }},
      {"--aoti-cache", "DIR",
       "AOTInductor packages from `torchconform compile` (default: $TORCHCONFORM_AOTI_CACHE, else "
       "$XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti)",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.aoti_cache = v; }},
      {"--load-library", "PATH",
       "load an operator library first (repeatable), e.g. torchvision's for torchvision::nms; a case that needs "
       "operators no loaded library registers is an ERROR naming them",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.libraries.push_back(v); }},
      {"--allow-tf32", nullptr,
       "let cuBLAS and cuDNN use TF32 on CUDA (a measurement of what TF32 costs: the goldens are IEEE float32, so "
       "float32 results may fail; conformance runs leave it off)",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.allow_tf32 = true; }},
      {"--localize", nullptr,
       "replay the recorded submodule calls of every set that has them (export --record-submodules), not only on a "
       "FAIL, and report each submodule's own error",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.localize = RunOptions::Localize::kAlways; }},
      {"--no-localize", nullptr, "never replay submodule records (by default a FAIL of a set that has them does)",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.localize = RunOptions::Localize::kOff; }},
      {"--quiet", nullptr, "no progress lines on stderr",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.quiet = true; }},
  };
  return options;
}

}  // namespace

VerifyOptions parse_verify_args(const std::vector<std::string>& args, const std::string& default_corpus) {
  VerifyOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const auto it = std::find_if(table().begin(), table().end(), [&](const Option& x) { return arg == x.flag; });
    if (it != table().end()) {
      std::string value;
      if (it->metavar) {
        if (i + 1 >= args.size()) throw UsageError(arg + " expects a value");
        value = args[++i];
      }
      it->set(o, arg, value);
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option " + arg);
    } else if (o.corpus.empty()) {
      o.corpus = arg;
    } else {
      throw UsageError("more than one corpus directory given ('" + o.corpus + "', '" + arg + "')");
    }
  }
  if (o.corpus.empty()) o.corpus = default_corpus;
  if (o.corpus.empty()) throw UsageError("no corpus directory given");
  if (o.timeout && !o.isolate)
    throw UsageError("--timeout is enforced by killing a case's process; --no-isolate runs every case in this "
                     "process, where nothing can stop it: use one or the other");
  return o;
}

std::string verify_usage(const std::string& prog) {
  std::ostringstream os;
  os << "usage: " << prog << " <corpus-dir>";
  for (const auto& x : table()) os << " [" << x.flag << (x.metavar ? std::string(" ") + x.metavar : "") << "]";
  os << "\n\nVerifies a torchconform corpus with LibTorch: every artifact of every case on every input set, each in "
        "a child process per case\n(a crash or a hang is CRASH / TIMEOUT for that case).\n\n";
  for (const auto& x : table()) {
    const std::string name = std::string(x.flag) + (x.metavar ? std::string(" ") + x.metavar : "");
    os << "  " << name << std::string(name.size() < 26 ? 26 - name.size() : 1, ' ') << x.help << "\n";
  }
  os << "\nexit status: 0 all input sets pass (or fail as marked xfail) and something was verified, 1 a mismatch or "
        "an\nunexpected pass, 2 a usage, corpus or load error, a crash, a timeout, or nothing verified\n";
  return os.str();
}

void load_library(const std::string& path) {
  if (!dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
    const char* why = dlerror();
    throw UsageError("--load-library " + printable(path) + ": cannot load it: " + printable(why ? why : "unknown"));
  }
}

std::vector<std::string> missing_operator_namespaces(const CaseSpec& c) {
  if (c.operator_namespaces.empty()) return {};
  std::set<std::string> registered;
  for (const auto& op : torch::jit::getAllOperators()) {
    const std::string& name = op->schema().name();
    const auto sep = name.find("::");
    if (sep != std::string::npos) registered.insert(name.substr(0, sep));
  }
  for (const auto& name : c10::Dispatcher::singleton().getAllOpNames()) {
    const auto sep = name.name.find("::");
    if (sep != std::string::npos) registered.insert(name.name.substr(0, sep));
  }
  std::vector<std::string> missing;
  for (const auto& ns : c.operator_namespaces)
    if (!registered.count(ns)) missing.push_back(ns);
  return missing;
}

std::vector<c10::Device> resolve_devices(const std::string& spec, std::string* skipped) {
  if (spec != "cpu" && spec != "cuda" && spec != "all")
    throw UsageError("--device must be cpu, cuda or all, got '" + spec + "'");
  const bool cuda = torch::cuda::is_available();
  if (spec == "cuda" && !cuda)
    throw UsageError(std::string("--device cuda: CUDA is not available to this LibTorch (") + libtorch_version() +
                     (torch::cuda::device_count() ? ")" : ", no CUDA device)"));
  std::vector<c10::Device> devices;
  if (spec != "cuda") devices.emplace_back(c10::kCPU);
  if (spec != "cpu" && cuda) devices.emplace_back(c10::kCUDA);
  if (skipped) *skipped = spec == "all" && !cuda ? "skipped device cuda: CUDA is not available to this LibTorch" : "";
  return devices;
}

VerifyOutcome verify(const VerifyOptions& options, const LineSink& out, const LineSink& progress) {
  // (Checked here too: VerifyOptions may come from code, not only from parse_verify_args.)
  if (options.threads < 0) throw UsageError("--threads expects an integer >= 1");
  if (options.repeat < 1) throw UsageError("--repeat expects an integer >= 1");
  if (options.timeout && !(*options.timeout > 0)) throw UsageError("--timeout expects seconds > 0");
  if (options.timeout && !options.isolate)
    throw UsageError("--timeout is enforced by killing a case's process; --no-isolate runs every case in this "
                     "process, where nothing can stop it: use one or the other");
  const double timeout = options.timeout.value_or(600);
  for (const auto& path : options.libraries) load_library(path);  // before any case: children inherit them
  std::string skipped;
  const auto devices = resolve_devices(options.device, &skipped);
  const Corpus corpus = Corpus::open(options.corpus);
  const auto cases = corpus.select(options.cases);

  VerifyOutcome outcome;
  std::vector<std::unique_ptr<Reporter>> reporters;
  reporters.push_back(console_reporter(out));
  reporters.push_back(json_reporter(options.json, &outcome.report));
  if (!options.junit.empty()) reporters.push_back(junit_reporter(options.junit));
  for (auto& r : reporters) r->begin(corpus, cases, options.corpus, skipped);

  const auto t0 = Clock::now();
  for (const auto& device : devices) {
    RunOptions ro;
    ro.device = device;
    // One setting: unless told otherwise, verify with the thread count the goldens were computed with (a different
    // count may change reduction order, hence the last bits).
    ro.threads = options.threads ? options.threads : corpus.exported_threads;
    ro.repeat = options.repeat;
    ro.aoti_cache = options.aoti_cache;
    ro.allow_tf32 = options.allow_tf32;
    ro.localize = options.localize;
    apply_policy(ro);
    const std::string policy =
        describe_policy(ro) + (!options.threads && corpus.exported_threads
                                   ? " (threads: as the goldens were made, exported_with.threads; --threads N to change)"
                                   : "");
    for (auto& r : reporters) r->device(policy);
    for (size_t i = 0; i < cases.size(); ++i) {
      if (progress && !options.quiet) {
        std::ostringstream p;
        p.precision(3);
        p << "[" << i + 1 << "/" << cases.size() << "] " << cases[i]->name << " on " << device.str() << " (elapsed "
          << since(t0) << " s)";
        progress(p.str());
      }
      auto sink = [&](const SetResult& res) {
        for (auto& r : reporters) r->result(res);
      };
      auto results = options.isolate ? run_case_isolated(*cases[i], ro, timeout, sink)
                                     : run_case(*cases[i], ro, {}, sink);
      for (auto& res : results) outcome.results.push_back(std::move(res));
    }
  }
  for (auto& r : reporters) r->end(outcome.results);
  outcome.exit_code = summarize(outcome.results).exit_code();
  return outcome;
}

}  // namespace torchconform
