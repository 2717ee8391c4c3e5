#include <torchconform/runner.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <limits>
#include <numeric>
#include <fstream>
#include <sstream>

namespace torchconform {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string torch_message(const c10::Error& e) { return e.what_without_backtrace(); }

c10::IValue to_device(const c10::IValue& v, const c10::Device& device) {
  if (v.isTensor()) return v.toTensor().to(device);
  if (v.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& x : v.toTupleRef().elements()) items.push_back(to_device(x, device));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (v.isList()) {
    auto list = v.toList();
    c10::impl::GenericList out(list.elementType());
    for (const auto& x : list) out.push_back(to_device(x, device));
    return out;
  }
  if (v.isGenericDict()) {
    auto dict = v.toGenericDict();
    c10::impl::GenericDict out(dict.keyType(), dict.valueType());
    for (const auto& kv : dict) out.insert(kv.key(), to_device(kv.value(), device));
    return out;
  }
  return v;
}

// The artifact is loaded from the verified bytes, never re-read from disk, so what runs is what was hashed.
torch::jit::Module load_module(const CaseSpec& c, const std::string& bytes, const RunOptions& o) {
  std::istringstream in(bytes);
  try {
    auto m = torch::jit::load(in, o.device);
    m.eval();  // the training flag is saved with the module (PyTorch test EvalModeForLoadedModule)
    return m;
  } catch (const c10::Error& e) {
    throw CorpusError(c.name + "/" + c.artifact.file + ": torch::jit::load failed: " + torch_message(e));
  }
}

// "decoder.set_temperature" -> the method set_temperature of submodule decoder.
torch::jit::Method resolve(const torch::jit::Module& root, const std::string& dotted, const std::string& who) {
  torch::jit::Module m = root;
  std::string rest = dotted;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    const std::string part = rest.substr(0, dot);
    if (!m.hasattr(part) || !m.attr(part).isModule())
      throw CorpusError(who + ": '" + dotted + "': the artifact has no submodule '" + part + "'");
    m = m.attr(part).toModule();
  }
  auto method = m.find_method(rest);
  if (!method) throw CorpusError(who + ": '" + dotted + "': the artifact has no method '" + rest + "'");
  return *method;
}

SetResult run_set(const CaseSpec& c, const InputSetSpec& s, torch::jit::Module& shared, const std::string& artifact,
                  const RunOptions& o) {
  SetResult r;
  r.case_name = c.name;
  r.set_name = s.name;
  r.device = o.device.str();
  const auto t0 = Clock::now();
  const std::string who = c.name + "/" + s.name;
  try {
    const c10::IValue inputs = load_value(read_verified(c, s.inputs), c.name + "/" + s.inputs.file);
    const c10::IValue expected = load_value(read_verified(c, s.expected), c.name + "/" + s.expected.file);
    if (!inputs.isTuple())
      throw CorpusError(c.name + "/" + s.inputs.file + ": inputs must be a tuple of positional arguments, got " +
                        inputs.tagKind());
    std::vector<c10::IValue> args;
    for (const auto& a : inputs.toTupleRef().elements()) args.push_back(to_device(a, o.device));

    c10::InferenceMode guard;
    // A prelude changes module state (set_temperature): give it a fresh module so no other set sees the change.
    torch::jit::Module fresh;
    torch::jit::Module* module = &shared;
    if (!s.prelude.empty()) {
      fresh = load_module(c, artifact, o);
      module = &fresh;
    }
    for (const auto& call : s.prelude) {
      try {
        resolve(*module, call.method, who)(call.args);
      } catch (const c10::Error& e) {
        throw CorpusError(who + ": prelude " + call.text + " failed: " + torch_message(e));
      }
    }
    torch::jit::Method method = resolve(*module, s.method, who);
    for (int call = 1; call <= std::max(1, o.repeat); ++call) {
      if (s.seed) torch::manual_seed(static_cast<uint64_t>(*s.seed));
      c10::IValue out;
      try {
        out = method(args);
      } catch (const c10::Error& e) {
        throw CorpusError(who + ": " + s.method + " raised: " + torch_message(e));
      }
      r.output = to_device(out, c10::Device(c10::kCPU));
      r.comparison = compare(expected, r.output, c.tolerance);
      if (!r.comparison.ok) {
        r.failed_call = call;
        break;
      }
    }
    r.verdict = r.comparison.ok ? Verdict::kPass : Verdict::kFail;
  } catch (const CorpusError& e) {
    r.verdict = Verdict::kError;
    r.error = e.what();
  } catch (const c10::Error& e) {
    r.verdict = Verdict::kError;
    r.error = printable(who + ": " + torch_message(e));
  } catch (const std::exception& e) {
    r.verdict = Verdict::kError;
    r.error = printable(who + ": " + e.what());
  }
  r.seconds = since(t0);
  return r;
}

// An `xfail` mark turns FAIL/ERROR into XFAIL and PASS into XPASS (strict: a stale mark fails the run).
void apply_xfail(const CaseSpec& c, const InputSetSpec* s, SetResult& r) {
  const std::optional<std::string>& mark = s && s->xfail ? s->xfail : c.xfail;
  if (!mark) return;
  r.xfail_reason = *mark;
  if (r.verdict == Verdict::kPass) r.verdict = Verdict::kXPass;
  else if (r.verdict == Verdict::kFail || r.verdict == Verdict::kError) r.verdict = Verdict::kXFail;
}

SetResult error_result(const CaseSpec& c, const std::string& set_name, const RunOptions& o, Verdict v,
                       const std::string& message) {
  SetResult r;
  r.case_name = c.name;
  r.set_name = set_name;
  r.device = o.device.str();
  r.verdict = v;
  r.error = printable(message);
  return r;
}

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(3);
  os << v;
  return os.str();
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

}  // namespace

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::kPass: return "PASS";
    case Verdict::kFail: return "FAIL";
    case Verdict::kError: return "ERROR";
    case Verdict::kCrash: return "CRASH";
    case Verdict::kTimeout: return "TIMEOUT";
    case Verdict::kXFail: return "XFAIL";
    case Verdict::kXPass: return "XPASS";
  }
  return "?";
}

const char* libtorch_version() { return TORCH_VERSION; }

void apply_policy(const RunOptions& o) {
  // The TensorExpr fuser may rewrite graphs after profiling runs (pytorch#52286); conformance runs keep it off, and
  // the Python side (tests, bindings) does the same.
  torch::jit::setTensorExprFuserEnabled(false);
  if (o.threads > 0) at::set_num_threads(o.threads);
  // CUDA conformance runs compare against float32 goldens computed in IEEE float32: no TF32 in matmuls or
  // convolutions, deterministic cuDNN algorithms, no autotuning. (No effect on CPU runs.)
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setDeterministicCuDNN(true);
  at::globalContext().setBenchmarkCuDNN(false);
}

std::string describe_policy(const RunOptions& o) {
  std::ostringstream os;
  os << "device " << o.device.str() << ", threads " << at::get_num_threads() << ", calls per input set "
     << std::max(1, o.repeat) << ", InferenceMode, TensorExpr fuser off";
  if (o.device.is_cuda()) os << ", TF32 off (cuBLAS, cuDNN), cuDNN deterministic, cuDNN benchmark off";
  return os.str();
}

std::vector<SetResult> run_case(const CaseSpec& c, const RunOptions& o, const std::vector<std::string>& only_sets,
                                const std::function<void(const SetResult&)>& on_result) {
  std::vector<SetResult> results;
  auto emit = [&](SetResult r) {
    if (on_result) on_result(r);
    results.push_back(std::move(r));
  };
  if (!c.error.empty()) {  // the manifest itself is broken: there are no input sets to speak of
    emit(error_result(c, "*", o, Verdict::kError, c.error));
    return results;
  }
  std::vector<const InputSetSpec*> sets;
  for (const auto& name : only_sets) {
    auto it = std::find_if(c.sets.begin(), c.sets.end(), [&](const InputSetSpec& s) { return s.name == name; });
    if (it == c.sets.end()) throw CorpusError(c.name + ": no input set named '" + name + "'");
    sets.push_back(&*it);
  }
  if (only_sets.empty())
    for (const auto& s : c.sets) sets.push_back(&s);

  std::string artifact;
  torch::jit::Module module;
  try {
    artifact = read_verified(c, c.artifact);
    module = load_module(c, artifact, o);
  } catch (const std::exception& e) {
    // Without its artifact no input set of the case can run: each one reports the same error.
    for (const auto* s : sets) {
      SetResult r = error_result(c, s->name, o, Verdict::kError, e.what());
      apply_xfail(c, s, r);
      emit(std::move(r));
    }
    return results;
  }
  for (const auto* s : sets) {
    SetResult r = run_set(c, *s, module, artifact, o);
    apply_xfail(c, s, r);
    emit(std::move(r));
  }
  return results;
}

namespace {

// --- results as JSON: the reports' rows, and the child -> parent stream of isolated runs -------------------------
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double num(const nlohmann::json& j) { return j.is_null() ? std::numeric_limits<double>::infinity() : j.get<double>(); }

nlohmann::json result_json(const SetResult& r) {
  using nlohmann::json;
  json row = {{"case", r.case_name},      {"input_set", r.set_name},   {"device", r.device},
              {"verdict", to_string(r.verdict)}, {"seconds", r.seconds}, {"error", r.error},
              {"failed_call", r.failed_call},    {"xfail_reason", r.xfail_reason}};
  // JSON has no inf: unbounded differences are written as null.
  row["max_abs"] = num(r.comparison.max_abs());
  row["max_rel"] = num(r.comparison.max_rel());
  row["max_ulp"] = num(r.comparison.max_ulp());
  row["mismatched"] = r.comparison.mismatched();
  row["total"] = r.comparison.total();
  row["ok"] = r.comparison.ok;
  json leaves = json::array();
  for (const auto& l : r.comparison.leaves)
    leaves.push_back({{"path", l.path}, {"kind", l.kind}, {"dtype", l.dtype}, {"ok", l.ok}, {"message", l.message},
                      {"mismatched", l.mismatched}, {"total", l.total}, {"max_abs", num(l.max_abs)},
                      {"max_rel", num(l.max_rel)}, {"max_ulp", num(l.max_ulp)}, {"worst_index", l.worst_index},
                      {"worst_expected", l.worst_expected}, {"worst_actual", l.worst_actual},
                      {"tolerance", l.tolerance}});
  row["leaves"] = leaves;
  return row;
}

Verdict verdict_from(const std::string& s) {
  for (Verdict v : {Verdict::kPass, Verdict::kFail, Verdict::kError, Verdict::kCrash, Verdict::kTimeout,
                    Verdict::kXFail, Verdict::kXPass})
    if (s == to_string(v)) return v;
  throw std::runtime_error("unknown verdict '" + s + "'");
}

SetResult result_from_json(const nlohmann::json& j) {
  SetResult r;
  r.case_name = j.at("case").get<std::string>();
  r.set_name = j.at("input_set").get<std::string>();
  r.device = j.at("device").get<std::string>();
  r.verdict = verdict_from(j.at("verdict").get<std::string>());
  r.seconds = j.at("seconds").get<double>();
  r.error = j.at("error").get<std::string>();
  r.failed_call = j.at("failed_call").get<int>();
  r.xfail_reason = j.at("xfail_reason").get<std::string>();
  r.comparison.ok = j.at("ok").get<bool>();
  for (const auto& l : j.at("leaves")) {
    LeafReport leaf;
    leaf.path = l.at("path").get<std::string>();
    leaf.kind = l.at("kind").get<std::string>();
    leaf.dtype = l.at("dtype").get<std::string>();
    leaf.ok = l.at("ok").get<bool>();
    leaf.message = l.at("message").get<std::string>();
    leaf.mismatched = l.at("mismatched").get<int64_t>();
    leaf.total = l.at("total").get<int64_t>();
    leaf.max_abs = num(l.at("max_abs"));
    leaf.max_rel = num(l.at("max_rel"));
    leaf.max_ulp = num(l.at("max_ulp"));
    leaf.worst_index = l.at("worst_index").get<std::string>();
    leaf.worst_expected = l.at("worst_expected").get<std::string>();
    leaf.worst_actual = l.at("worst_actual").get<std::string>();
    leaf.tolerance = l.at("tolerance").get<std::string>();
    r.comparison.leaves.push_back(std::move(leaf));
  }
  return r;
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Test hook (docs/robustness.md): TORCHCONFORM_FAULT_INJECT=<case>:<segv|abort|hang> makes the child process of
// that case die or hang before it runs anything, so that the isolation itself is tested end to end.
void maybe_inject_fault(const std::string& case_name) {
  const char* spec = std::getenv("TORCHCONFORM_FAULT_INJECT");
  if (!spec) return;
  const std::string s(spec);
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || s.substr(0, colon) != case_name) return;
  const std::string what = s.substr(colon + 1);
  if (what == "segv") std::raise(SIGSEGV);
  if (what == "abort") std::abort();
  if (what == "hang")
    for (;;) ::pause();
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended abnormally";
}

}  // namespace

std::vector<SetResult> run_case_isolated(const CaseSpec& c, const RunOptions& o, double timeout_s,
                                         const std::function<void(const SetResult&)>& on_result) {
  std::vector<SetResult> results;
  auto emit = [&](SetResult r) {
    if (on_result) on_result(r);
    results.push_back(std::move(r));
  };
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {  // child: run the case, stream one JSON line per result, leave without running destructors
    ::close(fds[0]);
    maybe_inject_fault(c.name);
    bool ok = true;
    try {
      run_case(c, o, {}, [&](const SetResult& r) { ok = ok && write_all(fds[1], result_json(r).dump() + "\n"); });
    } catch (const std::exception& e) {
      write_all(fds[1], nlohmann::json({{"fatal", e.what()}}).dump() + "\n");
    }
    ::_exit(ok ? 0 : 3);
  }
  ::close(fds[1]);

  const auto t0 = Clock::now();
  std::string buffer, fatal;
  bool timed_out = false;
  for (;;) {
    const double left = timeout_s - since(t0);
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min(left * 1000, 6e4)) + 1);
    if (ready <= 0) continue;  // timeout slice or EINTR: the loop re-checks the deadline
    char chunk[65536];
    const ssize_t n = ::read(fds[0], chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: the child is done (or dead)
    buffer.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buffer.find('\n')) != std::string::npos; buffer.erase(0, nl + 1)) {
      const auto j = nlohmann::json::parse(buffer.substr(0, nl), nullptr, /*allow_exceptions=*/false);
      try {
        if (j.is_object() && j.contains("fatal")) fatal = j["fatal"].get<std::string>();
        else emit(result_from_json(j));
      } catch (const std::exception& e) {
        fatal = c.name + ": unreadable result from the case's process: " + e.what();
      }
    }
  }
  ::close(fds[0]);
  int status = 0;
  if (timed_out) ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }

  // Input sets the child never reported: the one in flight when it died or hung, and those after it.
  std::vector<const InputSetSpec*> pending;
  if (!c.error.empty()) pending.push_back(nullptr);  // a broken manifest reports as set "*"
  for (const auto& s : c.sets) pending.push_back(&s);
  std::string in_flight;
  for (const InputSetSpec* s : pending) {
    const std::string name = s ? s->name : "*";
    if (std::any_of(results.begin(), results.end(), [&](const SetResult& r) { return r.set_name == name; }))
      continue;
    Verdict v = Verdict::kCrash;
    std::string message;
    if (timed_out) {
      v = Verdict::kTimeout;
      message = c.name + ": no result within the case time limit of " + fmt(timeout_s) +
                " s; the case's process was killed";
    } else if (!fatal.empty()) {
      v = Verdict::kError;
      message = fatal;
    } else {
      message = c.name + ": the case's process " + describe_status(status);
    }
    if (in_flight.empty()) {
      in_flight = name;
      message += " while running input set '" + name + "'";
    } else {
      message += "; input set not run (the process ended in '" + in_flight + "')";
    }
    SetResult r = error_result(c, name, o, v, message);
    if (in_flight == name) r.seconds = since(t0) - std::accumulate(results.begin(), results.end(), 0.0,
                                                                  [](double a, const SetResult& x) { return a + x.seconds; });
    if (v == Verdict::kError) apply_xfail(c, s, r);
    emit(std::move(r));
  }
  return results;
}

std::string format_result(const SetResult& r) {
  std::ostringstream os;
  const std::string verdict = to_string(r.verdict);
  os << verdict << std::string(verdict.size() < 6 ? 6 - verdict.size() : 1, ' ') << r.case_name << "/" << r.set_name
     << " [" << r.device << "] ";
  if (!r.error.empty()) {
    os << r.error;
  } else {
    os << r.comparison.summary();
    if (r.failed_call) os << " (call " << r.failed_call << ")";
  }
  if (!r.xfail_reason.empty()) os << " [xfail: " << r.xfail_reason << "]";
  os << " (" << fmt(r.seconds * 1000) << " ms)";
  return os.str();
}

Summary summarize(const std::vector<SetResult>& results) {
  Summary s;
  for (const auto& r : results) {
    switch (r.verdict) {
      case Verdict::kPass: ++s.passed; break;
      case Verdict::kFail: ++s.failed; break;
      case Verdict::kError: ++s.errors; break;
      case Verdict::kCrash: ++s.crashed; break;
      case Verdict::kTimeout: ++s.timed_out; break;
      case Verdict::kXFail: ++s.xfailed; break;
      case Verdict::kXPass: ++s.xpassed; break;
    }
    s.seconds += r.seconds;
  }
  return s;
}

void write_json_report(const std::string& path, const Corpus& corpus, const std::string& policy,
                       const std::string& skipped, const std::vector<SetResult>& results) {
  using nlohmann::json;
  json out;
  out["corpus"] = corpus.root.string();
  out["exported_with"] = {{"torch", corpus.exported_torch}, {"python", corpus.exported_python}};
  out["runtime"] = {{"libtorch", libtorch_version()}, {"policy", policy}, {"skipped", skipped}};
  const Summary s = summarize(results);
  out["summary"] = {{"passed", s.passed},   {"failed", s.failed},       {"errors", s.errors},
                    {"crashed", s.crashed}, {"timed_out", s.timed_out}, {"xfailed", s.xfailed},
                    {"xpassed", s.xpassed}, {"exit_code", s.exit_code()}};
  json rows = json::array();
  for (const auto& r : results) {
    json row = result_json(r);
    row["line"] = format_result(r);
    rows.push_back(row);
  }
  out["results"] = rows;
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write JSON report " + path);
  f << out.dump(2) << "\n";
}

std::string format_summary(const std::vector<SetResult>& results) {
  const Summary s = summarize(results);
  std::ostringstream os;
  os << "summary: " << s.passed << " passed, " << s.failed << " failed, " << s.errors << " errors, " << s.crashed
     << " crashed, " << s.timed_out << " timed out, " << s.xfailed << " xfailed, " << s.xpassed << " xpassed ("
     << results.size() << " input-set runs, " << fmt(s.seconds) << " s)";
  return os.str();
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
  if (options.threads < 0) throw UsageError("--threads must be >= 1");
  if (options.repeat < 1) throw UsageError("--repeat must be >= 1");
  if (!(options.timeout > 0)) throw UsageError("--timeout must be > 0 seconds");
  std::string skipped;
  const auto devices = resolve_devices(options.device, &skipped);
  const Corpus corpus = Corpus::open(options.corpus);
  const auto cases = corpus.select(options.cases);

  size_t n_sets = 0;
  for (const auto* c : cases) n_sets += c->sets.size();
  std::ostringstream banner;
  banner << "corpus " << options.corpus << ": " << cases.size() << " cases, " << n_sets
         << " input sets, exported with torch " << corpus.exported_torch << " / python " << corpus.exported_python
         << "; runtime LibTorch " << libtorch_version();
  out(banner.str());
  if (!skipped.empty()) out(skipped);

  VerifyOutcome outcome;
  std::string policies;
  const auto t0 = Clock::now();
  for (const auto& device : devices) {
    RunOptions ro;
    ro.device = device;
    ro.threads = options.threads;
    ro.repeat = options.repeat;
    apply_policy(ro);
    const std::string policy = describe_policy(ro);
    policies += (policies.empty() ? "" : "; ") + policy;
    out("policy: " + policy);
    for (size_t i = 0; i < cases.size(); ++i) {
      if (progress) {
        std::ostringstream p;
        p << "[" << i + 1 << "/" << cases.size() << "] " << cases[i]->name << " on " << device.str() << " (elapsed "
          << fmt(since(t0)) << " s)";
        progress(p.str());
      }
      auto sink = [&](const SetResult& r) { out(format_result(r)); };
      auto results = options.isolate ? run_case_isolated(*cases[i], ro, options.timeout, sink)
                                     : run_case(*cases[i], ro, {}, sink);
      for (auto& r : results) outcome.results.push_back(std::move(r));
    }
  }
  out(format_summary(outcome.results));
  if (!options.json.empty()) write_json_report(options.json, corpus, policies, skipped, outcome.results);
  if (!options.junit.empty()) write_junit_report(options.junit, outcome.results);
  outcome.exit_code = summarize(outcome.results).exit_code();
  return outcome;
}

void write_junit_report(const std::string& path, const std::vector<SetResult>& results) {
  const Summary s = summarize(results);
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write JUnit report " + path);
  f << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<testsuite name=\"torchconform\" tests=\"" << results.size() << "\" failures=\"" << s.failed
    << "\" errors=\"" << s.errors + s.crashed + s.timed_out << "\" skipped=\"" << s.xfailed << "\" time=\""
    << s.seconds << "\">\n";
  for (const auto& r : results) {
    f << "  <testcase classname=\"" << xml_escape(r.case_name) << "\" name=\""
      << xml_escape(r.set_name + "[" + r.device + "]") << "\" time=\"" << r.seconds << "\">";
    const std::string line = xml_escape(format_result(r));
    switch (r.verdict) {
      case Verdict::kFail:
      case Verdict::kXPass: f << "<failure message=\"" << line << "\"/>"; break;
      case Verdict::kError:
      case Verdict::kCrash:
      case Verdict::kTimeout: f << "<error message=\"" << line << "\"/>"; break;
      case Verdict::kXFail: f << "<skipped message=\"" << line << "\"/>"; break;
      case Verdict::kPass: break;
    }
    f << "</testcase>\n";
  }
  f << "</testsuite>\n";
}

}  // namespace torchconform
