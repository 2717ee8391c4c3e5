#include <torchconform/runner.h>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
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
    r.error = who + ": " + torch_message(e);
  } catch (const std::exception& e) {
    r.verdict = Verdict::kError;
    r.error = who + ": " + e.what();
  }
  r.seconds = since(t0);
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
  }
  return "?";
}

const char* libtorch_version() { return TORCH_VERSION; }

void apply_policy(const RunOptions& o) {
  // The TensorExpr fuser may rewrite graphs after profiling runs (pytorch#52286); conformance runs keep it off, and
  // the Python side (tests, bindings) does the same.
  torch::jit::setTensorExprFuserEnabled(false);
  if (o.threads > 0) at::set_num_threads(o.threads);
}

std::string describe_policy(const RunOptions& o) {
  std::ostringstream os;
  os << "device " << o.device.str() << ", threads " << at::get_num_threads() << ", calls per input set "
     << std::max(1, o.repeat) << ", InferenceMode, TensorExpr fuser off";
  return os.str();
}

std::vector<SetResult> run_case(const CaseSpec& c, const RunOptions& o, const std::vector<std::string>& only_sets) {
  std::vector<const InputSetSpec*> sets;
  for (const auto& name : only_sets) {
    auto it = std::find_if(c.sets.begin(), c.sets.end(), [&](const InputSetSpec& s) { return s.name == name; });
    if (it == c.sets.end()) throw CorpusError(c.name + ": no input set named '" + name + "'");
    sets.push_back(&*it);
  }
  if (only_sets.empty())
    for (const auto& s : c.sets) sets.push_back(&s);

  std::vector<SetResult> results;
  std::string artifact;
  torch::jit::Module module;
  try {
    artifact = read_verified(c, c.artifact);
    module = load_module(c, artifact, o);
  } catch (const std::exception& e) {
    // Without its artifact no input set of the case can run: each one reports the same error.
    for (const auto* s : sets) {
      SetResult r;
      r.case_name = c.name;
      r.set_name = s->name;
      r.device = o.device.str();
      r.error = e.what();
      results.push_back(std::move(r));
    }
    return results;
  }
  for (const auto* s : sets) results.push_back(run_set(c, *s, module, artifact, o));
  return results;
}

std::string format_result(const SetResult& r) {
  std::ostringstream os;
  const std::string verdict = to_string(r.verdict);
  os << verdict << std::string(6 - verdict.size(), ' ') << r.case_name << "/" << r.set_name << " [" << r.device
     << "] ";
  if (r.verdict == Verdict::kError) {
    os << r.error;
  } else {
    os << r.comparison.summary();
    if (r.failed_call) os << " (call " << r.failed_call << ")";
  }
  os << " (" << fmt(r.seconds * 1000) << " ms)";
  return os.str();
}

Summary summarize(const std::vector<SetResult>& results) {
  Summary s;
  for (const auto& r : results) {
    s.passed += r.verdict == Verdict::kPass;
    s.failed += r.verdict == Verdict::kFail;
    s.errors += r.verdict == Verdict::kError;
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
  out["summary"] = {{"passed", s.passed}, {"failed", s.failed}, {"errors", s.errors}, {"exit_code", s.exit_code()}};
  json rows = json::array();
  for (const auto& r : results) {
    json row = {{"case", r.case_name}, {"input_set", r.set_name}, {"device", r.device},
                {"verdict", to_string(r.verdict)}, {"seconds", r.seconds}, {"line", format_result(r)}};
    if (r.verdict == Verdict::kError) {
      row["error"] = r.error;
    } else {
      row["failed_call"] = r.failed_call;
      // JSON has no inf: unbounded differences are written as null.
      auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
      row["max_abs"] = num(r.comparison.max_abs());
      row["max_rel"] = num(r.comparison.max_rel());
      row["max_ulp"] = num(r.comparison.max_ulp());
      row["mismatched"] = r.comparison.mismatched();
      row["total"] = r.comparison.total();
      json leaves = json::array();
      for (const auto& l : r.comparison.leaves)
        leaves.push_back({{"path", l.path}, {"kind", l.kind}, {"dtype", l.dtype}, {"ok", l.ok},
                          {"message", l.message}, {"mismatched", l.mismatched}, {"total", l.total},
                          {"max_abs", num(l.max_abs)}, {"max_rel", num(l.max_rel)}, {"max_ulp", num(l.max_ulp)},
                          {"worst_index", l.worst_index}, {"worst_expected", l.worst_expected},
                          {"worst_actual", l.worst_actual}, {"tolerance", l.tolerance}});
      row["leaves"] = leaves;
    }
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
  os << "summary: " << s.passed << " passed, " << s.failed << " failed, " << s.errors << " errors ("
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
      for (auto& r : run_case(*cases[i], ro)) {
        out(format_result(r));
        outcome.results.push_back(std::move(r));
      }
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
    << "\" errors=\"" << s.errors << "\" time=\"" << s.seconds << "\">\n";
  for (const auto& r : results) {
    f << "  <testcase classname=\"" << xml_escape(r.case_name) << "\" name=\""
      << xml_escape(r.set_name + "[" + r.device + "]") << "\" time=\"" << r.seconds << "\">";
    if (r.verdict == Verdict::kFail)
      f << "<failure message=\"" << xml_escape(r.comparison.summary()) << "\"/>";
    else if (r.verdict == Verdict::kError)
      f << "<error message=\"" << xml_escape(r.error) << "\"/>";
    f << "</testcase>\n";
  }
  f << "</testsuite>\n";
}

}  // namespace torchconform
