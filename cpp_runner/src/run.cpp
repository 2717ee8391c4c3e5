// Running one case: its plan, artifact by artifact, each input set read once, called and compared.
#include "run.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <torch/serialize.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

namespace torchconform {

std::string torch_message(const c10::Error& e) { return e.what_without_backtrace(); }

c10::IValue to_device(const c10::IValue& v, const c10::Device& device, bool copy) {
  if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    return !copy && t.device() == device ? v
                                         : t.to(device, /*non_blocking=*/false, copy).resolve_conj().resolve_neg();
  }
  if (v.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& x : v.toTupleRef().elements()) items.push_back(to_device(x, device, copy));
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (v.isList()) {
    auto list = v.toList();
    c10::impl::GenericList out(list.elementType());
    for (const auto& x : list) out.push_back(to_device(x, device, copy));
    return out;
  }
  if (v.isGenericDict()) {
    auto dict = v.toGenericDict();
    c10::impl::GenericDict out(dict.keyType(), dict.valueType());
    for (const auto& kv : dict) out.insert(kv.key(), to_device(kv.value(), device, copy));
    return out;
  }
  return v;
}

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

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

Verdict verdict_from(const std::string& name) {
  for (Verdict v : {Verdict::kPass, Verdict::kFail, Verdict::kError, Verdict::kCrash, Verdict::kTimeout,
                    Verdict::kXFail, Verdict::kXPass})
    if (name == to_string(v)) return v;
  throw std::invalid_argument("unknown verdict '" + name + "'");
}

std::string result_id(const SetResult& r) {
  return r.case_name + (r.artifact.empty() ? "" : ":" + r.artifact) + "/" + r.set_name;
}

bool loosened(const SetResult& r) {
  return r.comparison.loosened() || (r.has_reference && r.vs_artifact.loosened());
}

void apply_policy(const RunOptions& o) {
  // The TensorExpr fuser may rewrite graphs after profiling runs (pytorch#52286); conformance runs keep it off, and
  // the Python side (tests, bindings) does the same.
  torch::jit::setTensorExprFuserEnabled(false);
  if (o.threads > 0) at::set_num_threads(o.threads);
  // CUDA conformance runs compare against float32 goldens computed in IEEE float32: no TF32 in matmuls or
  // convolutions (unless a measurement run asks for it), deterministic cuDNN algorithms, no autotuning. (No effect
  // on CPU runs.)
  at::globalContext().setAllowTF32CuBLAS(o.allow_tf32);
  at::globalContext().setAllowTF32CuDNN(o.allow_tf32);
  at::globalContext().setDeterministicCuDNN(true);
  at::globalContext().setBenchmarkCuDNN(false);
}

std::string describe_policy(const RunOptions& o) {
  std::ostringstream os;
  os << "device " << o.device.str() << ", threads " << at::get_num_threads() << ", calls per input set "
     << std::max(1, o.repeat) << ", InferenceMode, TensorExpr fuser off";
  if (o.allow_side_effects) os << ", side-effect operators ALLOWED (--allow-side-effects)";
  if (o.sensitivity != kDefaultSensitivity) os << ", goldens weak past " << o.sensitivity * 100 << "% (--sensitivity)";
  if (o.device.is_cuda())
    os << (o.allow_tf32 ? ", TF32 ON (cuBLAS, cuDNN; --allow-tf32, a measurement: the goldens are IEEE float32)"
                        : ", TF32 off (cuBLAS, cuDNN)")
       << ", cuDNN deterministic, cuDNN benchmark off";
  return os.str();
}

SetData read_set(const CaseSpec& c, const InputSetSpec& s) {
  SetData d;
  try {
    auto t = Clock::now();
    const std::string inputs = read_verified(c, s.inputs);
    const std::string expected = read_verified(c, s.expected);
    d.read_seconds = since(t);
    t = Clock::now();
    d.inputs = load_value(inputs, c.name + "/" + s.inputs.file);
    d.expected = load_value(expected, c.name + "/" + s.expected.file);
    d.decode_seconds = since(t);
    if (!d.inputs.isTuple())
      throw CorpusError(c.name + "/" + s.inputs.file + ": inputs must be a tuple of positional arguments, got " +
                        d.inputs.tagKind());
  } catch (const CorpusError& e) {
    d.error = e.what();
  } catch (const std::exception& e) {
    d.error = printable(c.name + "/" + s.name + ": " + e.what());
  }
  return d;
}

std::pair<c10::IValue, c10::IValue> read_input_set(const CaseSpec& c, const InputSetSpec& s) {
  SetData d = read_set(c, s);
  if (!d.error.empty()) throw CorpusError(d.error);
  return {std::move(d.inputs), std::move(d.expected)};
}

std::vector<c10::IValue> fresh_args(const SetData& d, const c10::Device& device) {
  std::vector<c10::IValue> args;
  for (const auto& x : d.inputs.toTupleRef().elements()) args.push_back(to_device(x, device, /*copy=*/true));
  return args;
}

// The golden comparison relative to the set's noise envelope: how many envelopes away from the golden the result is,
// for the output that is furthest out. Informational: the verdict is the tolerance's.
EnvelopeCheck relative_to_envelope(const Comparison& cmp, const InputSetSpec& s) {
  EnvelopeCheck e;
  if (s.envelope.empty()) return e;
  e.present = true;
  std::string worst_path;
  double worst_abs = 0, worst_env = 0;
  for (const auto& leaf : cmp.leaves) {
    const auto it = s.envelope.find(leaf.path);
    if (it == s.envelope.end() || !leaf.floating) continue;
    const double env = it->second.max_abs;
    const double ratio = leaf.max_abs == 0 ? 0 : env > 0 ? leaf.max_abs / env : INFINITY;
    if (worst_path.empty() || ratio > e.ratio) {
      e.ratio = ratio;
      worst_path = leaf.path;
      worst_abs = leaf.max_abs;
      worst_env = env;
    }
  }
  std::string sources;
  for (const auto& src : s.envelope_sources) sources += (sources.empty() ? "" : ", ") + src;
  if (worst_path.empty()) {
    e.detail = "no floating output has an envelope";
    return e;
  }
  e.within = e.ratio <= 1;
  std::ostringstream d;
  d.precision(3);
  d << (e.within ? "within" : "outside") << " the noise envelope: " << worst_path << " max_abs " << worst_abs
    << " vs envelope " << worst_env << " (";
  if (std::isinf(e.ratio)) d << "inf"; else d << e.ratio;
  d << "x; envelope over " << sources << ")";
  e.detail = d.str();
  return e;
}

SetResult run_set(const CaseSpec& c, const InputSetSpec& s, const SetData& d, bool first_use, const PlannedArtifact& a,
                  const Loaded& loaded, const c10::IValue* reference, const RunOptions& o) {
  SetResult r;
  r.case_name = c.name;
  r.set_name = s.name;
  r.device = o.device.str();
  r.artifact = a.label;
  r.runtime = a.runtime_name;
  r.load_seconds = loaded.load_seconds;
  if (first_use) r.read_seconds = d.read_seconds, r.decode_seconds = d.decode_seconds;
  const auto t0 = Clock::now();
  const std::string who = artifact_who(c, a) + "/" + s.name;
  try {
    if (!d.error.empty()) throw CorpusError(d.error);
    c10::InferenceMode guard;
    const auto tp = Clock::now();
    const Call call_fn = loaded.prepare(s, fresh_args(d, o.device));
    r.setup_seconds = since(tp);
    std::vector<double> steady;
    for (int call = 1; call <= std::max(1, o.repeat); ++call) {
      if (s.seed) torch::manual_seed(static_cast<uint64_t>(*s.seed));
      const auto tc = Clock::now();
      c10::IValue out;
      try {
        out = call_fn();
        if (o.device.is_cuda()) torch::cuda::synchronize();
      } catch (const c10::Error& e) {
        throw CorpusError(who + ": " + s.method + " raised: " + torch_message(e), ErrorKind::kCall);
      }
      const double took = since(tc);
      (call == 1 ? r.first_call_seconds : steady.emplace_back()) = took;
      r.call_seconds += took;
      ++r.calls;
      const auto tk = Clock::now();
      r.output = to_device(out, c10::Device(c10::kCPU));
      // Overrides are checked per artifact over all its sets (run_case), not per call: a set calling another
      // method may return another structure.
      r.comparison = compare(d.expected, r.output, *a.tolerance, OverrideCheck::kCollect, o.sensitivity);
      if (reference) {
        r.has_reference = true;
        r.vs_artifact = compare(*reference, r.output, *a.tolerance, OverrideCheck::kCollect, o.sensitivity);
      }
      r.compare_seconds += since(tk);
      if (!r.comparison.ok || (reference && !r.vs_artifact.ok)) {
        r.failed_call = call;
        break;
      }
    }
    r.steady_seconds = median(steady);
    r.verdict = r.comparison.ok && (!r.has_reference || r.vs_artifact.ok) ? Verdict::kPass : Verdict::kFail;
    if (r.verdict == Verdict::kPass && !compared_nothing(r.comparison).empty())
      throw CorpusError(who + ": " + compared_nothing(r.comparison), ErrorKind::kCorpus);
    r.envelope = relative_to_envelope(r.comparison, s);
    // An envelope describes noise around a passing result: a result beyond its tolerance is never "within" it.
    if (r.verdict != Verdict::kPass && r.envelope.present && r.envelope.within) {
      r.envelope.within = false;
      r.envelope.detail = "beyond the tolerance (" + r.envelope.detail + ")";
    }
  } catch (const CorpusError& e) {
    r.verdict = Verdict::kError;
    r.error = e.what();
    r.error_kind = e.kind();
  } catch (const c10::Error& e) {
    r.verdict = Verdict::kError;
    r.error = printable(who + ": " + torch_message(e));
    r.error_kind = ErrorKind::kCall;
  } catch (const std::exception& e) {
    r.verdict = Verdict::kError;
    r.error = printable(who + ": " + e.what());
    r.error_kind = ErrorKind::kCall;
  }
  r.seconds = since(t0) + r.read_seconds + r.decode_seconds;
  return r;
}

// RunOptions::save_outputs: the result's output as torch.save writes it (a torch::pickle_save zip).
void save_output(const std::string& dir, const SetResult& r) {
  namespace fs = std::filesystem;
  const fs::path where = fs::path(dir) / r.case_name / (r.artifact.empty() ? "_" : r.artifact);
  std::error_code ec;
  fs::create_directories(where, ec);
  const std::vector<char> bytes = torch::pickle_save(r.output);
  std::ofstream f(where / (r.set_name + ".pt"), std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("--save-outputs: cannot write " + (where / (r.set_name + ".pt")).string());
}

void apply_xfail(const CaseSpec& c, const InputSetSpec* s, const VariantSpec* variant, SetResult& r) {
  const auto mark = applicable_mark(c, s, variant, TORCH_VERSION, r.device.substr(0, r.device.find(':')));
  if (!mark || !mark_may_cover(r.error_kind)) return;
  r.xfail_reason = *mark;
  if (r.verdict == Verdict::kPass) r.verdict = Verdict::kXPass;
  else if (r.verdict == Verdict::kFail || r.verdict == Verdict::kError) r.verdict = Verdict::kXFail;
}

SetResult error_result(const CaseSpec& c, const std::string& set_name, const RunOptions& o, Verdict v,
                       const std::string& message, ErrorKind kind) {
  SetResult r;
  r.case_name = c.name;
  r.set_name = set_name;
  r.device = o.device.str();
  r.verdict = v;
  r.error = printable(message);
  r.error_kind = kind;
  return r;
}

SplitArgs split_keywords(const InputSetSpec& s, std::vector<c10::IValue> args, const std::string& who) {
  if (s.keywords.size() > args.size())
    throw CorpusError(who + ": the set names " + std::to_string(s.keywords.size()) + " keyword arguments but holds " +
                          std::to_string(args.size()) + " values",
                      ErrorKind::kCorpus);
  SplitArgs out;
  const size_t n = args.size() - s.keywords.size();
  for (size_t i = 0; i < args.size(); ++i) {
    if (i < n) out.positional.push_back(std::move(args[i]));
    else out.keywords.emplace_back(s.keywords[i - n], std::move(args[i]));
  }
  return out;
}

namespace {

// Loads an artifact for a verification, after checking that the operators it calls are registered here.
Loaded load_for_run(const CaseSpec& c, const PlannedArtifact& a, const RunOptions& o) {
  const auto missing = missing_operator_namespaces(c);
  if (!missing.empty()) {
    std::string names, libs;
    for (const auto& n : missing) names += (names.empty() ? "'" : ", '") + n + "'";
    for (const auto& l : c.operator_libraries) libs += (libs.empty() ? "" : ", ") + l;
    throw CorpusError(artifact_who(c, a) + ": not run: it calls operators of namespace " + names + ", which no "
                          "library loaded into this runner registers; load the library that defines them with "
                          "--load-library PATH" +
                          (libs.empty() ? std::string() : " (loaded when the case was exported: " + libs + ")"),
                      ErrorKind::kNotRun);
  }
  return runtime_for(a.runtime).load(c, a, o, LoadMode::kVerified);
}

// The error every input set of an artifact that did not load reports: the runtime's message, and where the export
// saw Python fail to reload the variant too, that PyTorch cannot reload what it saved and how to mark it.
std::string load_failure(const PlannedArtifact& a, const std::string& what) {
  std::string message = what;
  if (a.variant && !a.variant->python_load_error.empty() && !a.variant->xfail)  // the export saw it too
    message += "; Python's torch.jit.load fails on this variant too (at export: " + a.variant->python_load_error +
               "): PyTorch cannot reload what it saved. Mark it as an expected failure where the case is declared, "
               "e.g. optimizations=tc.Optimizations(xfail={'" + a.variant->name + "': '<why>'})";
  return message;
}

// Where a mismatch starts: the set's recorded submodule calls replayed on the artifact's own submodules. A variant's
// hierarchy is inlined (frozen, optimized) or gone (a program): its FAIL points to the artifact's.
void localize_result(const CaseSpec& c, const InputSetSpec& s, const PlannedArtifact& a, const RunOptions& o,
                     SetResult& r) {
  using L = RunOptions::Localize;
  if (!s.submodules || o.localize == L::kOff) return;
  const bool primary = a.variant == nullptr;
  if (primary && (o.localize == L::kAlways || r.verdict == Verdict::kFail)) {
    try {  // a diagnosis: whatever goes wrong in it is said there and never changes the verdict
      r.localization = localize(c, s, *a.tolerance, o);
    } catch (const std::exception& e) {
      r.localization = Localization{};
      r.localization.note = printable(std::string("localisation failed: ") + e.what());
    }
  } else if (!primary && r.verdict == Verdict::kFail && a.variant &&
             a.variant->kind == VariantKind::kExportedProgram) {
    r.localization.note = "whole-model comparison only in the runner: node by node with `torchconform localize " +
                          c.dir.parent_path().string() + " --case " + c.name + " --program " + a.variant->name +
                          " --set " + s.name + (a.runtime_name == "aoti" ? " --aoti" : "") +
                          "` (the program's graph and AOTInductor debug packages against these records)";
  } else if (!primary && r.verdict == Verdict::kFail) {
    r.localization.note = "whole-model comparison only: this variant has no submodule hierarchy to replay (inlined "
                          "by freezing or the passes); the TorchScript artifact's result on this set localises";
  }
}

}  // namespace

std::vector<SetResult> run_case(const CaseSpec& c, const RunOptions& o, const std::vector<std::string>& only_sets,
                                const std::function<void(const SetResult&)>& on_result) {
  std::vector<SetResult> results;
  auto emit = [&](SetResult r) {
    if (on_result) on_result(r);
    results.push_back(std::move(r));
  };
  if (!c.error.empty()) {  // the manifest itself is broken: there are no input sets to speak of
    emit(error_result(c, "*", o, Verdict::kError, c.error, ErrorKind::kCorpus));
    return results;
  }
  for (const auto& name : only_sets)
    if (std::none_of(c.sets.begin(), c.sets.end(), [&](const InputSetSpec& s) { return s.name == name; }))
      throw CorpusError(c.name + ": no input set named '" + name + "'");
  auto wanted = [&](const InputSetSpec* s) {
    return only_sets.empty() || std::find(only_sets.begin(), only_sets.end(), s->name) != only_sets.end();
  };

  // --result: a result runs when its id is selected; the TorchScript artifact also runs (unreported) the sets of
  // selected variant results, which compare with its outputs call by call as in a full run.
  const auto artifacts = plan_artifacts(c);
  auto chosen = [&](const PlannedArtifact& a, const std::string& set) {
    return result_selected(o, artifact_who(c, a) + "/" + set);
  };
  std::set<std::string> reference_sets;
  for (const PlannedArtifact& a : artifacts)
    if (a.variant && a.status == PlannedArtifact::Status::kRun)
      for (const auto* s : a.sets)
        if (wanted(s) && chosen(a, s->name)) reference_sets.insert(s->name);

  std::map<std::string, c10::IValue> artifact_outputs;  // the TorchScript artifact's, for the variants' comparison
  std::map<std::string, SetData> set_data;               // each set read, hashed and decoded once
  for (const PlannedArtifact& a : artifacts) {
    if (a.status != PlannedArtifact::Status::kRun) {  // one result says so (marks apply to a failed capture)
      if (std::none_of(a.sets.begin(), a.sets.end(), wanted) || !chosen(a, "*")) continue;
      SetResult r = error_result(c, "*", o, Verdict::kError, a.why,
                                 a.status == PlannedArtifact::Status::kNotRun ? ErrorKind::kNotRun : ErrorKind::kLoad);
      r.artifact = a.label;
      r.runtime = a.runtime_name;
      apply_xfail(c, nullptr, a.variant, r);
      emit(std::move(r));
      continue;
    }
    const bool primary = a.variant == nullptr;
    std::vector<const InputSetSpec*> sets;
    std::copy_if(a.sets.begin(), a.sets.end(), std::back_inserter(sets), [&](const InputSetSpec* s) {
      return wanted(s) && (chosen(a, s->name) || (primary && reference_sets.count(s->name)));
    });
    if (sets.empty()) continue;
    // A set the artifact runs only as the reference of a selected variant result: computed, never reported.
    auto report = [&](const InputSetSpec* s, SetResult r) {
      if (chosen(a, s->name)) emit(std::move(r));
    };
    Loaded loaded;
    try {
      loaded = load_for_run(c, a, o);
    } catch (const std::exception& e) {
      // Without its artifact no input set can run: each one reports the same error.
      const auto* ce = dynamic_cast<const CorpusError*>(&e);
      const std::string message = load_failure(a, e.what());
      for (const auto* s : sets) {
        SetResult r = error_result(c, s->name, o, Verdict::kError, message, ce ? ce->kind() : ErrorKind::kLoad);
        r.artifact = a.label;
        r.runtime = a.runtime_name;
        apply_xfail(c, s, a.variant, r);
        report(s, std::move(r));
      }
      continue;
    }
    std::set<std::string> overrides_used;
    bool all_compared = true;
    for (const auto* s : sets) {
      auto ref = artifact_outputs.find(s->name);
      auto data = set_data.find(s->name);
      const bool first_use = data == set_data.end();
      if (first_use) data = set_data.emplace(s->name, read_set(c, *s)).first;
      SetResult r = run_set(c, *s, data->second, first_use, a, loaded,
                            primary || ref == artifact_outputs.end() ? nullptr : &ref->second, o);
      if (s == sets.front()) r.read_seconds += loaded.read_seconds;  // the artifact file is read once
      if (primary && r.verdict != Verdict::kError) artifact_outputs[s->name] = r.output;
      localize_result(c, *s, a, o, r);
      if (!o.save_outputs.empty() && (r.verdict == Verdict::kPass || r.verdict == Verdict::kFail))
        save_output(o.save_outputs, r);
      all_compared = all_compared && r.verdict != Verdict::kError;
      overrides_used.insert(r.comparison.overrides_used.begin(), r.comparison.overrides_used.end());
      apply_xfail(c, s, a.variant, r);
      report(s, std::move(r));
    }
    // A per-output tolerance that reached no output of any set the artifact ran is a manifest error (checked when
    // the whole plan ran and every set compared something: otherwise the output structure is not known).
    std::string unused;
    for (const auto& [path, tol] : a.tolerance->outputs)
      if (!overrides_used.count(path)) unused += (unused.empty() ? "'" : ", '") + path + "'";
    if (all_compared && !unused.empty() && only_sets.empty() && o.results.empty()) {
      SetResult r = error_result(c, "*", o, Verdict::kError,
                                 artifact_who(c, a) + ": tolerance override " + unused +
                                     " matches no output of any input set (a typo would leave the output it "
                                     "meant under another tolerance)",
                                 ErrorKind::kCorpus);
      r.artifact = a.label;
      r.runtime = a.runtime_name;
      emit(std::move(r));
    }
  }
  return results;
}

struct OpenedArtifact::State {
  CaseSpec c;  // a copy: the plan points into it
  PlannedArtifact a;
  Loaded loaded;
  RunOptions o;
};

OpenedArtifact::OpenedArtifact(const CaseSpec& c, const std::string& label, const RunOptions& o)
    : state_(std::make_shared<State>()) {
  State& st = *state_;
  st.c = c;
  st.o = o;
  if (!st.c.error.empty()) throw CorpusError(st.c.error);
  bool found = false;
  std::string labels;
  for (const auto& a : plan_artifacts(st.c)) {
    labels += (labels.empty() ? "'" : ", '") + a.label + "'";
    if (a.label != label) continue;
    found = true;
    if (a.status != PlannedArtifact::Status::kRun) throw CorpusError(artifact_who(st.c, a) + ": " + a.why);
    st.a = a;
  }
  if (!found) throw CorpusError(c.name + ": no artifact '" + label + "' in the plan (" + labels + ")");
  const auto missing = missing_operator_namespaces(st.c);
  if (!missing.empty()) {
    std::string names;
    for (const auto& n : missing) names += (names.empty() ? "'" : ", '") + n + "'";
    throw CorpusError(artifact_who(st.c, st.a) + ": not run: it calls operators of namespace " + names +
                          ", which no loaded library registers (--load-library PATH)",
                      ErrorKind::kNotRun);
  }
  apply_policy(st.o);
  st.loaded = runtime_for(st.a.runtime).load(st.c, st.a, st.o, LoadMode::kVerified);
}

c10::IValue OpenedArtifact::call(const std::string& method, const std::vector<c10::IValue>& args,
                                 const std::vector<std::string>& keywords, std::optional<int64_t> seed) const {
  const State& st = *state_;
  InputSetSpec s;
  s.name = "call";
  s.method = method;
  s.keywords = keywords;
  s.seed = seed;
  std::vector<c10::IValue> on_device;
  for (const auto& x : args) on_device.push_back(to_device(x, st.o.device, /*copy=*/true));
  c10::InferenceMode guard;
  const Call call_fn = st.loaded.prepare(s, std::move(on_device));
  if (seed) torch::manual_seed(static_cast<uint64_t>(*seed));
  c10::IValue out;
  try {
    out = call_fn();
    if (st.o.device.is_cuda()) torch::cuda::synchronize();
  } catch (const c10::Error& e) {
    throw CorpusError(artifact_who(st.c, st.a) + ": " + method + " raised: " + torch_message(e), ErrorKind::kCall);
  }
  return to_device(out, c10::Device(c10::kCPU));
}

const std::string& OpenedArtifact::runtime() const { return state_->a.runtime_name; }
double OpenedArtifact::load_seconds() const { return state_->loaded.load_seconds; }

}  // namespace torchconform
