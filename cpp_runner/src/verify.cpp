// The verification run every face shares (torchconform-run, `torchconform verify`, the report, the pytest plugin's
// child), and its one option table.
#include "reporters.h"
#include "runtime.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/runtime/operator.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <dlfcn.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cmath>
#include <fstream>
#include <cstdlib>
#include <set>
#include <mutex>
#include <sstream>
#include <thread>

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

double to_fraction(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double r = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || !(r > 0) || !(r < 1e6)) throw UsageError(flag + " expects a number > 0, got '" + v + "'");
  return r;
}

const std::vector<Option>& table() {
  static const std::vector<Option> options = {
      {"--case", "GLOB", "only cases matching GLOB (repeatable)",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.cases.push_back(v); }},
      {"--result", "GLOB",
       "only the results whose id (case[:artifact]/set, as the result lines print it) matches GLOB (repeatable); "
       "a selected variant result still compares with the TorchScript artifact's outputs",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.results.push_back(v); }},
      {"--list", nullptr,
       "print the id of every result the run would produce, one per line (followed by ' xfail' where an xfail mark "
       "applies on --device), and run nothing",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.list = true; }},
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
      {"--sensitivity", "R",
       "the relative error (0.01: 1%) a tolerance must detect on most elements of a floating golden; a PASS on a "
       "golden whose tolerance accepts more is marked as checking little (default: 0.01)",
       [](VerifyOptions& o, const std::string& f, const std::string& v) { o.sensitivity = to_fraction(f, v); }},
      {"--no-isolate", nullptr, "run every case in this process (a crash ends the run; refuses --timeout)",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.isolate = false; }},
      {"--aoti-cache", "DIR",
       "AOTInductor packages from `torchconform compile` (default: $TORCHCONFORM_AOTI_CACHE, else "
       "$XDG_CACHE_HOME/torchconform/aoti, else ~/.cache/torchconform/aoti; never a shared temporary directory). "
       "Refused when another user could write into it; a package loads only if it matches the digest recorded "
       "when it was compiled",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.aoti_cache = v; }},
      {"--load-library", "PATH",
       "load an operator library first (repeatable), e.g. torchvision's for torchvision::nms; a case that needs "
       "operators no loaded library registers is an ERROR naming them",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.libraries.push_back(v); }},
      {"--allow-tf32", nullptr,
       "let cuBLAS and cuDNN use TF32 on CUDA (a measurement of what TF32 costs: the goldens are IEEE float32, so "
       "float32 results may fail; conformance runs leave it off)",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.allow_tf32 = true; }},
      {"--allow-side-effects", nullptr,
       "run TorchScript artifacts that call operators acting outside the process (torch.from_file, torch.save, "
       "print): refused by default, since a hostile artifact can rewrite files while it is verified; only for a "
       "corpus whose authors you trust",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.allow_side_effects = true; }},
      {"--save-outputs", "DIR",
       "also write every output a result produced to DIR/<case>/<artifact or _>/<set>.pt (torch.load-able), to "
       "compare one run with another directly",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.save_outputs = v; }},
      {"--localize", nullptr,
       "replay the recorded submodule calls of every set that has them (export --record-submodules), not only on a "
       "FAIL, and report each submodule's own error",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.localize = RunOptions::Localize::kAlways; }},
      {"--no-localize", nullptr, "never replay submodule records (by default a FAIL of a set that has them does)",
       [](VerifyOptions& o, const std::string&, const std::string&) { o.localize = RunOptions::Localize::kOff; }},
      {"--jobs", "N",
       "run N isolated cases at a time (default: 1); output, reports and exit status are a sequential run's, in "
       "case order",
       [](VerifyOptions& o, const std::string& f, const std::string& v) { o.jobs = to_int(f, v); }},
      {"--shard", "K/N",
       "only the cases of shard K of N (1 <= K <= N): a stable hash of the case name, or with --durations the "
       "recorded costs, decide; the N shards' union is the whole run",
       [](VerifyOptions& o, const std::string& f, const std::string& v) {
         const auto slash = v.find('/');
         if (slash == std::string::npos) throw UsageError(f + " expects K/N, got '" + v + "'");
         o.shard_index = to_int(f, v.substr(0, slash));
         o.shard_count = to_int(f, v.substr(slash + 1));
         if (o.shard_index > o.shard_count) throw UsageError(f + " expects K <= N, got '" + v + "'");
       }},
      {"--durations", "REPORT",
       "balance --shard by each case's seconds in this JSON report (from an earlier --json run)",
       [](VerifyOptions& o, const std::string&, const std::string& v) { o.durations = v; }},
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
  if (o.jobs > 1 && !o.isolate)
    throw UsageError("--jobs runs cases in parallel child processes; --no-isolate runs them in this process: use "
                     "one or the other");
  if (!o.durations.empty() && o.shard_count == 1)
    throw UsageError("--durations balances --shard K/N; without --shard it would do nothing");
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
        "an\nunexpected pass, 2 a usage, corpus or load error, a crash, a timeout, or an empty run, 3 nothing verified: every "
        "result\nis an expected failure (XFAIL)\n";
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

namespace {
uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ULL;
  return h;
}
}  // namespace

std::vector<std::string> shard_names(const std::vector<std::string>& names, int k, int n,
                                     const std::map<std::string, double>& costs) {
  if (n < 1 || k < 1 || k > n) throw UsageError("shard " + std::to_string(k) + "/" + std::to_string(n) +
                                                ": expects 1 <= K <= N");
  std::set<std::string> mine;
  if (costs.empty()) {
    for (const auto& name : names)
      if (static_cast<int>(fnv1a64(name) % static_cast<uint64_t>(n)) == k - 1) mine.insert(name);
  } else {
    std::vector<double> known;
    for (const auto& name : names)
      if (costs.count(name)) known.push_back(costs.at(name));
    std::sort(known.begin(), known.end());
    const double median = known.empty() ? 1.0 : known[known.size() / 2];
    std::vector<std::pair<double, std::string>> order;
    for (const auto& name : names) order.emplace_back(costs.count(name) ? costs.at(name) : median, name);
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::vector<double> load(static_cast<size_t>(n), 0.0);
    for (const auto& [cost, name] : order) {
      const size_t to = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      load[to] += cost;
      if (static_cast<int>(to) == k - 1) mine.insert(name);
    }
  }
  std::vector<std::string> out;
  for (const auto& name : names)
    if (mine.count(name)) out.push_back(name);
  return out;
}

std::map<std::string, double> case_costs_from_report(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("--durations " + printable(path) + ": cannot read it");
  nlohmann::json j;
  try {
    in >> j;
    std::map<std::string, double> out;
    for (const auto& r : j.at("results")) {
      const double s = r.at("seconds").get<double>();
      if (std::isfinite(s) && s >= 0) out[r.at("case").get<std::string>()] += s;
    }
    return out;
  } catch (const std::exception& e) {
    throw UsageError("--durations " + printable(path) + ": not a torchconform JSON report (" + e.what() + ")");
  }
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

namespace {
// What a fresh process pays on its first model call (MKL/oneDNN kernel set-up, the TorchScript graph executor's
// first optimisation), paid once here so that each forked case starts warm. Only on one thread: every op below then
// runs inline, no OpenMP team or ATen pool is started in this process, so none is copied into a child half-used.
void prewarm_for_fork() {
  c10::InferenceMode guard;
  // A module method, as the artifacts are (a free function takes another, cheaper path through the executor).
  torch::jit::Module m("__torchconform_prewarm__");
  m.register_parameter("w", torch::ones({3, 8}), false);
  m.register_parameter("k", torch::ones({3, 2, 3, 3}), false);
  m.define(R"(
def forward(self, x, img):
    y = torch.relu(torch.linear(x, self.w)) + 1.0
    z = torch.conv2d(img, self.k)
    return torch.softmax(y, -1), torch.max_pool2d(z, 2).flatten(1)
)");
  for (int i = 0; i < 3; ++i) (void)m.forward({torch::ones({4, 8}), torch::ones({1, 2, 6, 6})});
}
}  // namespace

namespace {

// The checks parse_verify_args makes, made again: VerifyOptions may come from code, not only from a command line.
void check_options(const VerifyOptions& options) {
  if (options.threads < 0) throw UsageError("--threads expects an integer >= 1");
  if (options.repeat < 1) throw UsageError("--repeat expects an integer >= 1");
  if (options.timeout && !(*options.timeout > 0)) throw UsageError("--timeout expects seconds > 0");
  if (options.timeout && !options.isolate)
    throw UsageError("--timeout is enforced by killing a case's process; --no-isolate runs every case in this "
                     "process, where nothing can stop it: use one or the other");
  if (options.list && options.device != "cpu" && options.device != "cuda")
    throw UsageError("--list marks expected failures for one device type: --device cpu or --device cuda");
}

// --result: keeps the cases with a selected result; every glob must select something.
void keep_selected_results(const VerifyOptions& options, std::vector<const CaseSpec*>& cases) {
  if (options.results.empty()) return;
  std::vector<char> hit(options.results.size(), 0);
  std::vector<const CaseSpec*> kept;
  for (const auto* c : cases) {
    bool any = false;
    for (const auto& p : plan(*c)) {
      const std::string id = planned_id(*c, p);
      for (size_t g = 0; g < options.results.size(); ++g)
        if (result_matches(options.results[g], id)) hit[g] = any = true;
    }
    if (any) kept.push_back(c);
  }
  for (size_t g = 0; g < options.results.size(); ++g)
    if (!hit[g])
      throw UsageError("--result '" + printable(options.results[g]) + "' matches no result of " +
                       (options.cases.empty() ? std::string("the corpus") : std::string("the selected cases")) +
                       " (--list prints their ids)");
  cases = std::move(kept);
}

// --shard K/N: keeps this shard's cases; returns the line that says which (empty without sharding).
std::string keep_shard(const VerifyOptions& options, std::vector<const CaseSpec*>& cases) {
  if (options.shard_count <= 1) return "";
  std::vector<std::string> names;
  for (const auto* c : cases) names.push_back(c->name);
  const auto costs = options.durations.empty() ? std::map<std::string, double>{}
                                               : case_costs_from_report(options.durations);
  const auto mine = shard_names(names, options.shard_index, options.shard_count, costs);
  const std::set<std::string> keep(mine.begin(), mine.end());
  cases.erase(std::remove_if(cases.begin(), cases.end(), [&](const CaseSpec* c) { return !keep.count(c->name); }),
              cases.end());
  std::ostringstream line;
  line << "shard " << options.shard_index << "/" << options.shard_count << ": " << cases.size() << " of "
       << names.size() << " cases " << (cases.empty() ? "(nothing to run in this shard; " : "(")
       << (costs.empty() ? std::string("by a stable hash of the case name")
                         : "balanced by the seconds in " + printable(options.durations))
       << ")";
  return line.str();
}

// --list: the plan's ids, nothing run (a ctest discovery step reads this).
void list_plan(const VerifyOptions& options, const std::vector<const CaseSpec*>& cases, const LineSink& out) {
  RunOptions selection;  // (only its --result globs)
  selection.results = options.results;
  for (const auto* c : cases)
    for (const auto& p : plan(*c)) {
      const std::string id = planned_id(*c, p);
      if (!result_selected(selection, id) || !out) continue;
      // Marked expected to fail here (this LibTorch, the listed device): its run exits 3 when it fails as marked.
      const bool xfail = c->error.empty() && applicable_mark(*c, p.spec, p.variant, libtorch_version(),
                                                             options.device).has_value();
      out(id + (xfail ? " xfail" : ""));
    }
}

// How a case runs on `device`.
RunOptions run_options(const VerifyOptions& options, const Corpus& corpus, const c10::Device& device) {
  RunOptions ro;
  ro.device = device;
  // One setting: unless told otherwise, verify with the thread count the goldens were computed with (a different
  // count may change reduction order, hence the last bits).
  ro.threads = options.threads ? options.threads : corpus.exported_threads;
  if (!ro.threads && options.jobs > 1)  // N jobs x threads <= cores, unless --threads says otherwise
    ro.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / options.jobs);
  ro.repeat = options.repeat;
  ro.aoti_cache = options.aoti_cache;
  ro.allow_tf32 = options.allow_tf32;
  ro.allow_side_effects = options.allow_side_effects;
  ro.sensitivity = options.sensitivity;
  ro.save_outputs = options.save_outputs.empty() ? "" : options.save_outputs + "/" + device.str();
  ro.localize = options.localize;
  ro.results = options.results;
  return ro;
}

// --jobs N: N cases at a time, each in its own child (run_case_isolated forks from these threads; the parent runs no
// LibTorch op, so no thread pool is copied into a child half-used). Results are reported in case order: a case's
// lines appear once every case before it is done, so the output is a sequential run's.
void run_in_parallel(const std::vector<const CaseSpec*>& cases, const RunOptions& ro, double timeout, int jobs,
                     bool prewarm, const std::function<void(size_t)>& announce,
                     const std::function<void(const SetResult&)>& sink, std::vector<SetResult>& results_out) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<SetResult>> done(cases.size());
  std::vector<std::string> failure(cases.size());
  std::vector<char> finished(cases.size(), 0);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    // Part of what a first call sets up is per thread (ATen's thread-count initialisation, InferenceMode's state): a
    // child forked from this thread inherits this thread's, so warm it too.
    if (prewarm) prewarm_for_fork();
    for (size_t i; (i = next++) < cases.size();) {
      {
        std::lock_guard<std::mutex> lock(mu);
        announce(i);
      }
      std::vector<SetResult> got;
      std::string why;
      try {
        got = run_case_isolated(*cases[i], ro, timeout, nullptr);
      } catch (const std::exception& e) {
        why = e.what();
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        done[i] = std::move(got);
        failure[i] = std::move(why);
        finished[i] = 1;
      }
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int j = 0; j < jobs && static_cast<size_t>(j) < cases.size(); ++j) pool.emplace_back(worker);
  std::string first_failure;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return finished[i] != 0; });
    auto results = std::move(done[i]);
    if (!failure[i].empty() && first_failure.empty()) first_failure = cases[i]->name + ": " + failure[i];
    lock.unlock();
    for (auto& res : results) {
      sink(res);
      results_out.push_back(std::move(res));
    }
  }
  for (auto& t : pool) t.join();
  if (!first_failure.empty()) throw std::runtime_error(first_failure);
}

}  // namespace

VerifyOutcome verify(const VerifyOptions& options, const LineSink& out, const LineSink& progress) {
  check_options(options);
  const double timeout = options.timeout.value_or(600);
  for (const auto& path : options.libraries) load_library(path);  // before any case: children inherit them
  std::string skipped;
  const auto devices = options.list ? std::vector<c10::Device>{} : resolve_devices(options.device, &skipped);
  const Corpus corpus = Corpus::open(options.corpus);
  auto cases = corpus.select(options.cases);
  keep_selected_results(options, cases);
  const std::string shard_line = keep_shard(options, cases);

  VerifyOutcome outcome;
  if (options.list) {
    list_plan(options, cases, out);
    outcome.exit_code = 0;
    return outcome;
  }
  std::vector<std::unique_ptr<Reporter>> reporters;
  reporters.push_back(console_reporter(out));
  reporters.push_back(json_reporter(options.json, &outcome.report));
  if (!options.junit.empty()) reporters.push_back(junit_reporter(options.junit));
  for (auto& r : reporters) r->begin(corpus, cases, options.corpus, skipped);
  if (!shard_line.empty() && out) out(shard_line);

  // Fork once-initialised children: what LibTorch builds lazily on first use and every isolated case would otherwise
  // build again (the JIT's operator table: ~100 ms per case on small models) is built here, once, before any fork.
  // Nothing here starts a thread pool (no tensor op runs in this process), so the children's pools start clean.
  const bool prewarm_allowed = options.isolate && getenv("TORCHCONFORM_NO_PREWARM") == nullptr;
  if (prewarm_allowed) (void)torch::jit::getAllOperators();
  const auto t0 = Clock::now();
  for (const auto& device : devices) {
    const RunOptions ro = run_options(options, corpus, device);
    apply_policy(ro);
    const bool prewarm = prewarm_allowed && ro.threads == 1 && device.is_cpu();
    if (prewarm) prewarm_for_fork();
    const std::string policy =
        describe_policy(ro) + (!options.threads && corpus.exported_threads
                                   ? " (threads: as the goldens were made, exported_with.threads; --threads N to change)"
                                   : "");
    for (auto& r : reporters) r->device(policy);
    auto sink = [&](const SetResult& res) {
      for (auto& r : reporters) r->result(res);
    };
    auto announce = [&](size_t i) {
      if (!progress || options.quiet) return;
      std::ostringstream p;
      p.precision(3);
      p << "[" << i + 1 << "/" << cases.size() << "] " << cases[i]->name << " on " << device.str() << " (elapsed "
        << since(t0) << " s)";
      progress(p.str());
    };
    if (options.isolate && options.jobs > 1 && cases.size() > 1) {
      run_in_parallel(cases, ro, timeout, options.jobs, prewarm, announce, sink, outcome.results);
      continue;
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      announce(i);
      auto results = options.isolate ? run_case_isolated(*cases[i], ro, timeout, sink)
                                     : run_case(*cases[i], ro, {}, sink);
      for (auto& res : results) outcome.results.push_back(std::move(res));
    }
  }
  for (auto& r : reporters) r->end(outcome.results);
  outcome.exit_code = summarize(outcome.results).exit_code();
  // A shard that holds no case verified nothing by construction, not by accident: the union of the shards is the
  // run that must verify something.
  if (options.shard_count > 1 && cases.empty()) outcome.exit_code = 0;
  return outcome;
}

}  // namespace torchconform
