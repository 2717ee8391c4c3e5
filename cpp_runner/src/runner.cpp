#include <torchconform/runner.h>

#include "archive.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
// AOTInductor's package loader arrived in LibTorch 2.6; older ones (e.g. Debian's 1.13, used by `torchconform compat`)
// build a runner without the aoti runtime, and every run says so (runtimes()).
#if __has_include(<torch/csrc/inductor/aoti_package/model_package_loader.h>)
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#define TORCHCONFORM_HAVE_AOTI 1
#endif
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>
#ifdef TORCHCONFORM_HAVE_NATIVERT
#include <torch/nativert/ModelRunnerHandle.h>
#endif

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
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <numeric>
#include <set>
#include <fstream>
#include <sstream>

namespace torchconform {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string torch_message(const c10::Error& e) { return e.what_without_backtrace(); }

// `copy`: tensors are copied even when already on the device.
c10::IValue to_device(const c10::IValue& v, const c10::Device& device, bool copy = false) {
  if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    // A copy holds plain values: conj/neg bits resolved, as torch.load would give them.
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

// The artifact is loaded from the verified bytes, never re-read from disk, so what runs is what was hashed.
torch::jit::Module load_module(const CaseSpec& c, const std::string& file, const std::string& bytes,
                               const RunOptions& o) {
  std::istringstream in(bytes);
  try {
    auto m = torch::jit::load(in, o.device);
    m.eval();  // the training flag is saved with the module (PyTorch test EvalModeForLoadedModule)
    return m;
  } catch (const c10::Error& e) {
    throw CorpusError(c.name + "/" + file + ": torch::jit::load failed: " + torch_message(e), ErrorKind::kLoad);
  } catch (const std::exception& e) {  // some load failures are not c10::Errors (e.g. a missing node attribute)
    throw CorpusError(c.name + "/" + file + ": torch::jit::load failed: " + e.what(), ErrorKind::kLoad);
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

// One loaded artifact of a case, whatever its runtime: `prepare` turns an input set (its arguments already on the
// device) into the checked call, e.g. a fresh TorchScript module with the set's prelude applied.
struct Loaded {
  std::string label;    // SetResult::artifact
  std::string runtime;  // SetResult::runtime
  const TolerancePolicy* tolerance = nullptr;
  std::optional<std::string> xfail;  // the variant's mark (the set's and the case's apply too)
  double read_seconds = 0;  // reading and hashing the artifact's file
  double load_seconds = 0;  // deserializing it (TorchScript) or unpacking and loading its package (AOTInductor)
  std::function<std::function<c10::IValue()>(const InputSetSpec&, std::vector<c10::IValue>)> prepare;
};

double median(std::vector<double> v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// An input set's files, read, hashed and decoded once per case run and shared by all the case's artifacts.
struct SetData {
  c10::IValue inputs, expected;  // on the CPU; every artifact gets its own copy of the inputs
  double read_seconds = 0, decode_seconds = 0;
  std::string error;  // why the set cannot run (every artifact reports it)
};

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

// A fresh copy of the set's arguments on the device: an artifact that writes into its inputs cannot change what
// the next artifact of the case sees.
std::vector<c10::IValue> fresh_args(const SetData& d, const c10::Device& device) {
  std::vector<c10::IValue> args;
  for (const auto& x : d.inputs.toTupleRef().elements()) args.push_back(to_device(x, device, /*copy=*/true));
  return args;
}

// `first_use`: this artifact is the first of the case to use the set (its read and decode times are its own).
SetResult run_set(const CaseSpec& c, const InputSetSpec& s, const SetData& d, bool first_use, const Loaded& a,
                  const c10::IValue* reference, const RunOptions& o) {
  SetResult r;
  r.case_name = c.name;
  r.set_name = s.name;
  r.device = o.device.str();
  r.artifact = a.label;
  r.runtime = a.runtime;
  r.load_seconds = a.load_seconds;
  if (first_use) r.read_seconds = d.read_seconds, r.decode_seconds = d.decode_seconds;
  const auto t0 = Clock::now();
  const std::string who = c.name + (a.label.empty() ? "" : ":" + a.label) + "/" + s.name;
  try {
    if (!d.error.empty()) throw CorpusError(d.error);
    c10::InferenceMode guard;
    const auto tp = Clock::now();
    const auto call_fn = a.prepare(s, fresh_args(d, o.device));
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
      r.comparison = compare(d.expected, r.output, *a.tolerance, OverrideCheck::kCollect);
      if (reference) {
        r.has_reference = true;
        r.vs_artifact = compare(*reference, r.output, *a.tolerance, OverrideCheck::kCollect);
      }
      r.compare_seconds += since(tk);
      if (!r.comparison.ok || (reference && !r.vs_artifact.ok)) {
        r.failed_call = call;
        break;
      }
    }
    r.steady_seconds = median(steady);
    r.verdict = r.comparison.ok && (!r.has_reference || r.vs_artifact.ok) ? Verdict::kPass : Verdict::kFail;
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

// An `xfail` mark turns FAIL/ERROR into XFAIL and PASS into XPASS (strict: a stale mark fails the run). The
// variant's mark comes first, then the input set's, then the case's.
void apply_xfail(const CaseSpec& c, const InputSetSpec* s, const std::optional<std::string>& variant_mark,
                 SetResult& r) {
  const std::optional<std::string>& mark = variant_mark ? variant_mark : s && s->xfail ? s->xfail : c.xfail;
  // An artifact no runtime here can run was not checked at all: no mark turns that into an expected failure.
  if (!mark || r.error_kind == ErrorKind::kNotRun) return;
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

// ---- TorchScript ---------------------------------------------------------------------------------------------
Loaded load_torchscript(const CaseSpec& c, const FileRef& file, const std::string& label, const RunOptions& o) {
  Loaded a;
  a.label = label;
  a.runtime = "torchscript";
  auto t0 = Clock::now();
  auto bytes = std::make_shared<std::string>(read_verified(c, file));
  check_zip(*bytes, c.name + "/" + file.file);  // sizes and compression bounded before LibTorch's reader sees it
  a.read_seconds = since(t0);
  t0 = Clock::now();
  auto shared = std::make_shared<torch::jit::Module>(load_module(c, file.file, *bytes, o));
  a.load_seconds = since(t0);
  a.prepare = [&c, bytes, shared, file, o](const InputSetSpec& s, std::vector<c10::IValue> args) {
    const std::string who = c.name + "/" + s.name;
    // A prelude changes module state (set_temperature): give it a fresh module so no other set sees the change.
    auto module = shared;
    if (!s.prelude.empty()) module = std::make_shared<torch::jit::Module>(load_module(c, file.file, *bytes, o));
    for (const auto& call : s.prelude) {
      try {
        resolve(*module, call.method, who)(call.args);
      } catch (const c10::Error& e) {
        throw CorpusError(who + ": prelude " + call.text + " failed: " + torch_message(e), ErrorKind::kCall);
      }
    }
    torch::jit::Method method = resolve(*module, s.method, who);
    return std::function<c10::IValue()>([module, method, args = std::move(args)]() mutable {
      return method(args);
    });
  };
  return a;
}

// ---- exported programs: flat tensors in, pytree-structured values out -----------------------------------------
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
// (torch.utils._pytree JSON: {"type": "builtins.tuple", "children_spec": [...]}, leaves have type null).
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

std::string runtime_label(const VariantSpec& v, const std::string& runtime) { return v.name + "@" + runtime; }

bool runtime_built(const std::string& runtime);

// Why an exported program cannot run here at all ("" when some runtime of this runner can run it). Such a program
// gets one ERROR result (kind not_run): a run that verified nothing of it must not look green.
std::string not_runnable(const VariantSpec& v) {
  if (std::any_of(v.runtimes.begin(), v.runtimes.end(), runtime_built)) return "";
  if (v.runtimes.empty()) return "not run: the manifest lists no runtime for this program";
  std::string why;
  for (const auto& rt : v.runtimes) {
    std::string detail = "unknown runtime";
    for (const auto& info : runtimes())
      if (info.name == rt) detail = info.detail;
    why += (why.empty() ? "" : "; ") + rt + ": " + detail;
  }
  return "not run: no runtime of this runner can run it (" + why + ")";
}

bool runtime_built(const std::string& runtime) {
#ifdef TORCHCONFORM_HAVE_NATIVERT
  if (runtime == "nativert") return true;
#endif
#ifdef TORCHCONFORM_HAVE_AOTI
  if (runtime == "aoti") return true;
#endif
  return false;
}


// An exported program's Loaded, before its runtime loads it: the label, and the program file read and checked
// against its SHA-256 (also for AOTInductor, where the package is what runs: a changed .pt2 must not pass on the
// strength of a stale package; the package's key is the program's hash).
[[maybe_unused]] Loaded program_loaded(const CaseSpec& c, const VariantSpec& v, const std::string& runtime) {
  Loaded a;
  a.label = runtime_label(v, runtime);
  a.runtime = runtime;
  const auto t0 = Clock::now();
  read_verified(c, *v.file);
  a.read_seconds = since(t0);
  return a;
}

#ifdef TORCHCONFORM_HAVE_AOTI
Loaded load_aoti(const CaseSpec& c, const VariantSpec& v, const RunOptions& o) {
  Loaded a = program_loaded(c, v, "aoti");
  const std::string who = c.name + ":" + a.label;
  const std::string cache = o.aoti_cache.empty() ? default_aoti_cache() : o.aoti_cache;
  const std::string package = aoti_package_path(cache, v.file->sha256, o.device.type() == c10::kCUDA ? "cuda" : "cpu");
  if (!std::filesystem::exists(package))
    throw CorpusError(who + ": no AOTInductor package for " + c.name + "/" + v.file->file + " (sha256 " +
                      v.file->sha256.substr(0, 12) + "..., LibTorch " + libtorch_version() + ", " +
                      o.device.str() + ") at " + package + "; build it with `torchconform compile " +
                      c.dir.parent_path().string() + "`",
                      ErrorKind::kMissingPackage);
  const auto t0 = Clock::now();
  std::shared_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  nlohmann::json out_spec;
  try {
    loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(
        package, "model", /*run_single_threaded=*/false, /*num_runners=*/1,
        o.device.is_cuda() ? o.device.index() : static_cast<c10::DeviceIndex>(-1));
    const auto specs = loader->get_call_spec();
    if (specs.size() != 2) throw CorpusError(who + ": the package has no call spec");
    out_spec = nlohmann::json::parse(specs[1]).at(1);
  } catch (const c10::Error& e) {
    throw CorpusError(who + ": AOTIModelPackageLoader(" + package + ") failed: " + torch_message(e),
                      ErrorKind::kLoad);
  } catch (const nlohmann::json::exception& e) {
    throw CorpusError(who + ": unreadable output spec in " + package + ": " + e.what());
  }
  a.load_seconds = since(t0);
  a.prepare = [&v, who, loader, out_spec](const InputSetSpec& s, std::vector<c10::IValue> args) {
    if (!s.prelude.empty())
      throw CorpusError(who + "/" + s.name + ": an exported program has no methods for the set's prelude");
    auto tensors = program_inputs(v, args, who + "/" + s.name);
    return std::function<c10::IValue()>([&v, who, loader, out_spec, tensors]() {
      const auto flat = loader->run(tensors);
      size_t next = 0;
      auto value = unflatten(out_spec, flat, next, v.int_outputs_as_tensors, who);
      if (next != flat.size())
        throw CorpusError(who + ": the program returned " + std::to_string(flat.size()) +
                          " tensors, its output spec has " + std::to_string(next));
      return value;
    });
  };
  return a;
}

#endif  // TORCHCONFORM_HAVE_AOTI

#ifdef TORCHCONFORM_HAVE_NATIVERT
// Untested on the machines this was written on (no LibTorch there exported NativeRT); built only where the
// configure-time check links a ModelRunnerHandle.
Loaded load_nativert(const CaseSpec& c, const VariantSpec& v, const RunOptions& o) {
  Loaded a = program_loaded(c, v, "nativert");
  const std::string who = c.name + ":" + a.label;
  const auto t0 = Clock::now();
  std::shared_ptr<torch::nativert::ModelRunnerHandle> runner;
  try {
    runner = std::make_shared<torch::nativert::ModelRunnerHandle>((c.dir / v.file->file).string(), "model");
  } catch (const c10::Error& e) {
    throw CorpusError(who + ": NativeRT ModelRunnerHandle failed: " + torch_message(e), ErrorKind::kLoad);
  }
  a.load_seconds = since(t0);
  a.prepare = [who, runner](const InputSetSpec& s, std::vector<c10::IValue> args) {
    if (!s.prelude.empty())
      throw CorpusError(who + "/" + s.name + ": an exported program has no methods for the set's prelude");
    return std::function<c10::IValue()>([runner, args]() { return runner->run(args, {}); });
  };
  return a;
}
#endif

Loaded load_program(const CaseSpec& c, const VariantSpec& v, const std::string& runtime, const RunOptions& o) {
#ifdef TORCHCONFORM_HAVE_NATIVERT
  if (runtime == "nativert") return load_nativert(c, v, o);
#endif
#ifdef TORCHCONFORM_HAVE_AOTI
  if (runtime == "aoti") return load_aoti(c, v, o);
#endif
  throw CorpusError(c.name + ":" + v.name + ": runtime '" + runtime + "' is not built into this runner",
                    ErrorKind::kNotRun);
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

std::vector<PlannedResult> plan(const CaseSpec& c) {
  std::vector<PlannedResult> out;
  if (!c.error.empty()) return {{"", "torchscript", "*", nullptr, std::nullopt}};  // a broken manifest: set "*"
  auto spec = [&](const std::string& name) {
    for (const auto& s : c.sets)
      if (s.name == name) return &s;
    return static_cast<const InputSetSpec*>(nullptr);
  };
  if (c.has_artifact)
    for (const auto& s : c.sets) out.push_back({"", "torchscript", s.name, &s, std::nullopt});
  for (const auto& v : c.variants) {
    if (!v.file && std::none_of(v.input_sets.begin(), v.input_sets.end(), spec)) continue;  // as run_case does
    if (!v.file) {
      out.push_back({v.name, "export", "*", nullptr, v.xfail});
    } else if (v.kind == "torchscript") {
      for (const auto& n : v.input_sets)
        if (spec(n)) out.push_back({v.name, "torchscript", n, spec(n), v.xfail});
    } else if (!not_runnable(v).empty()) {
      if (std::any_of(v.input_sets.begin(), v.input_sets.end(), spec)) out.push_back({v.name, "none", "*", nullptr, v.xfail});
    } else {
      for (const auto& rt : v.runtimes)
        if (runtime_built(rt))
          for (const auto& n : v.input_sets)
            if (spec(n)) out.push_back({runtime_label(v, rt), rt, n, spec(n), v.xfail});
    }
  }
  return out;
}

const char* libtorch_version() { return TORCH_VERSION; }

std::string result_id(const SetResult& r) {
  return r.case_name + (r.artifact.empty() ? "" : ":" + r.artifact) + "/" + r.set_name;
}

std::string default_aoti_cache() {
  if (const char* dir = std::getenv("TORCHCONFORM_AOTI_CACHE"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return (std::filesystem::path(xdg) / "torchconform" / "aoti").string();
  const char* home = std::getenv("HOME");
  return (std::filesystem::path(home && *home ? home : "/tmp") / ".cache" / "torchconform" / "aoti").string();
}

std::string aoti_package_path(const std::string& cache, const std::string& program_sha256,
                              const std::string& device_type) {
  return (std::filesystem::path(cache) /
          (program_sha256.substr(0, 32) + "-torch" + TORCH_VERSION + "-" + device_type) / "model.pt2")
      .string();
}

std::vector<RuntimeInfo> runtimes() {
  std::vector<RuntimeInfo> out;
  out.push_back({"torchscript", true, "torch::jit::load"});
#ifdef TORCHCONFORM_HAVE_AOTI
  out.push_back({"aoti", true, "torch::inductor::AOTIModelPackageLoader (packages from `torchconform compile`)"});
#else
  out.push_back({"aoti", false, std::string("LibTorch ") + TORCH_VERSION +
                                    " has no torch/csrc/inductor/aoti_package/model_package_loader.h"});
#endif
#ifdef TORCHCONFORM_HAVE_NATIVERT
  out.push_back({"nativert", true, "torch::nativert::ModelRunnerHandle"});
#else
  out.push_back({"nativert", false, TORCHCONFORM_NATIVERT_STATUS});
#endif
  return out;
}

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
    emit(error_result(c, "*", o, Verdict::kError, c.error, ErrorKind::kCorpus));
    return results;
  }
  for (const auto& name : only_sets)
    if (std::none_of(c.sets.begin(), c.sets.end(), [&](const InputSetSpec& s) { return s.name == name; }))
      throw CorpusError(c.name + ": no input set named '" + name + "'");
  auto wanted = [&](const std::string& name) {
    return std::any_of(c.sets.begin(), c.sets.end(), [&](const InputSetSpec& s) { return s.name == name; }) &&
           (only_sets.empty() || std::find(only_sets.begin(), only_sets.end(), name) != only_sets.end());
  };

  // Runs `names` (in the case's order) on one artifact; `load` errors become an ERROR per set.
  std::map<std::string, c10::IValue> artifact_outputs;  // the TorchScript artifact's, for the variants' comparison
  std::map<std::string, SetData> set_data;               // each set read, hashed and decoded once
  auto run_all = [&](const std::function<Loaded()>& load, const std::string& label, const std::string& runtime,
                     const std::optional<std::string>& mark, const std::vector<std::string>& names, bool primary) {
    std::vector<const InputSetSpec*> sets;
    for (const auto& s : c.sets)
      if (wanted(s.name) && std::find(names.begin(), names.end(), s.name) != names.end()) sets.push_back(&s);
    if (sets.empty()) return;
    Loaded a;
    try {
      a = load();
    } catch (const std::exception& e) {
      // Without its artifact no input set can run: each one reports the same error.
      const auto* ce = dynamic_cast<const CorpusError*>(&e);
      for (const auto* s : sets) {
        SetResult r = error_result(c, s->name, o, Verdict::kError, e.what(), ce ? ce->kind() : ErrorKind::kLoad);
        r.artifact = label;
        r.runtime = runtime;
        apply_xfail(c, s, mark, r);
        emit(std::move(r));
      }
      return;
    }
    a.xfail = mark;
    std::set<std::string> overrides_used;
    bool all_compared = true;
    for (const auto* s : sets) {
      auto ref = artifact_outputs.find(s->name);
      auto data = set_data.find(s->name);
      const bool first_use = data == set_data.end();
      if (first_use) data = set_data.emplace(s->name, read_set(c, *s)).first;
      SetResult r = run_set(c, *s, data->second, first_use, a,
                            primary || ref == artifact_outputs.end() ? nullptr : &ref->second, o);
      if (s == sets.front()) r.read_seconds += a.read_seconds;  // the artifact file is read once
      if (primary && r.verdict != Verdict::kError) artifact_outputs[s->name] = r.output;
      all_compared = all_compared && r.verdict != Verdict::kError;
      overrides_used.insert(r.comparison.overrides_used.begin(), r.comparison.overrides_used.end());
      apply_xfail(c, s, mark, r);
      emit(std::move(r));
    }
    // A per-output tolerance that reached no output of any set the artifact ran is a manifest error (checked when
    // every set compared something: otherwise the output structure is not known).
    std::string unused;
    for (const auto& [path, tol] : a.tolerance->outputs)
      if (!overrides_used.count(path)) unused += (unused.empty() ? "'" : ", '") + path + "'";
    if (all_compared && !unused.empty() && only_sets.empty()) {
      SetResult r = error_result(c, "*", o, Verdict::kError,
                                 c.name + (label.empty() ? "" : ":" + label) + ": tolerance override " + unused +
                                     " matches no output of any input set (a typo would leave the output it "
                                     "meant under another tolerance)",
                                 ErrorKind::kCorpus);
      r.artifact = label;
      r.runtime = runtime;
      emit(std::move(r));
    }
  };

  std::vector<std::string> all;
  for (const auto& s : c.sets) all.push_back(s.name);
  if (c.has_artifact)
    run_all([&] {
      Loaded a = load_torchscript(c, c.artifact, "", o);
      a.tolerance = &c.tolerance;
      return a;
    }, "", "torchscript", std::nullopt, all, true);

  for (const auto& v : c.variants) {
    if (!v.file) {  // the capture failed at export: one result says so (an expected failure, or the run fails)
      if (std::none_of(v.input_sets.begin(), v.input_sets.end(), wanted)) continue;
      SetResult r = error_result(c, "*", o, Verdict::kError,
                                 c.name + ":" + v.name + ": " + v.transform + " failed at export: " + v.error,
                                 ErrorKind::kLoad);
      r.artifact = v.name;
      r.runtime = "export";
      apply_xfail(c, nullptr, v.xfail, r);
      emit(std::move(r));
      continue;
    }
    if (v.kind == "torchscript") {
      run_all([&] {
        Loaded a = load_torchscript(c, *v.file, v.name, o);
        a.tolerance = &v.tolerance;
        return a;
      }, v.name, "torchscript", v.xfail, v.input_sets, false);
      continue;
    }
    if (const std::string why = not_runnable(v); !why.empty()) {
      if (std::none_of(v.input_sets.begin(), v.input_sets.end(), wanted)) continue;
      SetResult r = error_result(c, "*", o, Verdict::kError, c.name + ":" + v.name + ": " + why, ErrorKind::kNotRun);
      r.artifact = v.name;
      r.runtime = "none";
      emit(std::move(r));
      continue;
    }
    for (const auto& runtime : v.runtimes) {
      // A runtime this build lacks, beside one it has, produces no rows: runtimes() says which and why, in every
      // report's header.
      if (!runtime_built(runtime)) continue;
      run_all([&] {
        Loaded a = load_program(c, v, runtime, o);
        a.tolerance = &v.tolerance;
        return a;
      }, runtime_label(v, runtime), runtime, v.xfail, v.input_sets, false);
    }
  }
  return results;
}

namespace {

// --- results as JSON: the reports' rows, and the child -> parent stream of isolated runs -------------------------
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double num(const nlohmann::json& j) { return j.is_null() ? std::numeric_limits<double>::infinity() : j.get<double>(); }

nlohmann::json comparison_json(const Comparison& c) {
  using nlohmann::json;
  // JSON has no inf: unbounded differences are written as null.
  json row = {{"max_abs", num(c.max_abs())}, {"max_rel", num(c.max_rel())}, {"max_ulp", num(c.max_ulp())},
              {"mismatched", c.mismatched()},  {"total", c.total()},          {"ok", c.ok},
              {"tolerance_note", c.tolerance_note()}};
  json leaves = json::array();
  for (const auto& l : c.leaves)
    leaves.push_back({{"path", l.path}, {"kind", l.kind}, {"dtype", l.dtype}, {"ok", l.ok}, {"message", l.message},
                      {"mismatched", l.mismatched}, {"total", l.total}, {"max_abs", num(l.max_abs)},
                      {"max_rel", num(l.max_rel)}, {"max_ulp", num(l.max_ulp)}, {"worst_index", l.worst_index},
                      {"worst_expected", l.worst_expected}, {"worst_actual", l.worst_actual},
                      {"tolerance", l.tolerance}, {"custom_tolerance", l.custom_tolerance},
                      {"loosened", l.loosened}});
  row["leaves"] = leaves;
  return row;
}

Comparison comparison_from_json(const nlohmann::json& j) {
  Comparison c;
  c.ok = j.at("ok").get<bool>();
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
    leaf.custom_tolerance = l.at("custom_tolerance").get<bool>();
    leaf.loosened = l.at("loosened").get<bool>();
    c.leaves.push_back(std::move(leaf));
  }
  return c;
}

nlohmann::json result_json(const SetResult& r) {
  using nlohmann::json;
  json row = {{"case", r.case_name},      {"input_set", r.set_name},   {"device", r.device},
              {"artifact", r.artifact},   {"runtime", r.runtime},
              {"verdict", to_string(r.verdict)}, {"seconds", r.seconds}, {"error", r.error},
              {"error_kind", to_string(r.error_kind)}, {"loosened", loosened(r)},
              {"failed_call", r.failed_call},    {"xfail_reason", r.xfail_reason},
              {"load_seconds", num(r.load_seconds)}, {"first_call_seconds", num(r.first_call_seconds)},
              {"steady_seconds", num(r.steady_seconds)}, {"read_seconds", r.read_seconds},
              {"decode_seconds", r.decode_seconds}, {"call_seconds", r.call_seconds},
              {"compare_seconds", r.compare_seconds}, {"setup_seconds", r.setup_seconds},
              {"calls", r.calls}};
  row.update(comparison_json(r.comparison));
  row["vs_artifact"] = r.has_reference ? comparison_json(r.vs_artifact) : json(nullptr);
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
  r.error_kind = error_kind_from(j.at("error_kind").get<std::string>());
  r.failed_call = j.at("failed_call").get<int>();
  r.xfail_reason = j.at("xfail_reason").get<std::string>();
  r.artifact = j.at("artifact").get<std::string>();
  r.runtime = j.at("runtime").get<std::string>();
  r.load_seconds = num(j.at("load_seconds"));
  r.first_call_seconds = num(j.at("first_call_seconds"));
  r.steady_seconds = num(j.at("steady_seconds"));
  r.read_seconds = j.at("read_seconds").get<double>();
  r.decode_seconds = j.at("decode_seconds").get<double>();
  r.call_seconds = j.at("call_seconds").get<double>();
  r.compare_seconds = j.at("compare_seconds").get<double>();
  r.setup_seconds = j.at("setup_seconds").get<double>();
  r.calls = j.at("calls").get<int>();
  r.comparison = comparison_from_json(j);
  if (!j.at("vs_artifact").is_null()) {
    r.has_reference = true;
    r.vs_artifact = comparison_from_json(j.at("vs_artifact"));
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

  // Runs the child never reported: the one in flight when it died or hung, and those after it.
  std::string in_flight;
  for (const PlannedResult& p : plan(c)) {
    if (std::any_of(results.begin(), results.end(),
                    [&](const SetResult& r) { return r.set_name == p.set && r.artifact == p.label; }))
      continue;
    const std::string id = c.name + (p.label.empty() ? "" : ":" + p.label) + "/" + p.set;
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
      in_flight = id;
      message += " while running " + id;
    } else {
      message += "; not run (the process ended in " + in_flight + ")";
    }
    SetResult r = error_result(c, p.set, o, v, message,
                               v == Verdict::kTimeout ? ErrorKind::kTimeout
                               : v == Verdict::kCrash ? ErrorKind::kCrash
                                                      : ErrorKind::kCorpus);
    r.artifact = p.label;
    r.runtime = p.runtime;
    if (in_flight == id) r.seconds = since(t0) - std::accumulate(results.begin(), results.end(), 0.0,
                                                                [](double a, const SetResult& x) { return a + x.seconds; });
    if (v == Verdict::kError) apply_xfail(c, p.spec, p.mark, r);
    emit(std::move(r));
  }
  return results;
}

std::string format_result(const SetResult& r) {
  std::ostringstream os;
  const std::string verdict = to_string(r.verdict);
  os << verdict << std::string(verdict.size() < 6 ? 6 - verdict.size() : 1, ' ') << result_id(r) << " ["
     << r.device << "] ";
  if (!r.error.empty()) {
    os << r.error;
  } else {
    os << r.comparison.summary();
    if (r.has_reference) os << "; vs artifact: " << r.vs_artifact.summary();
    if (r.failed_call) os << " (call " << r.failed_call << ")";
    // A tolerance other than the dtype's default is part of what the verdict means: it is on the line.
    const std::string note = r.comparison.tolerance_note();
    if (!note.empty()) os << " [" << note << "]";
    const std::string ref_note = r.has_reference ? r.vs_artifact.tolerance_note() : "";
    if (!ref_note.empty() && ref_note != note) os << " [vs artifact " << ref_note << "]";
  }
  if (!r.xfail_reason.empty()) os << " [xfail: " << r.xfail_reason << "]";
  os << " (" << fmt(r.seconds * 1000) << " ms)";
  // Everything on the line that came from a corpus (names, reasons, messages) is escaped once more as a whole: no
  // byte of it can end the line, move the cursor or reorder what a terminal shows.
  return printable(os.str());
}

bool loosened(const SetResult& r) {
  return r.comparison.loosened() || (r.has_reference && r.vs_artifact.loosened());
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
    if ((r.verdict == Verdict::kPass || r.verdict == Verdict::kXPass) && loosened(r)) ++s.loosened;
    s.seconds += r.seconds;
  }
  return s;
}

void write_json_report(const std::string& path, const Corpus& corpus, const std::string& policy,
                       const std::string& skipped, const std::vector<SetResult>& results) {
  using nlohmann::json;
  json out;
  out["corpus"] = corpus.root.string();
  out["corpus_sha256"] = corpus.index_sha256;
  out["exported_with"] = {{"torch", corpus.exported_torch}, {"python", corpus.exported_python}};
  out["runtime"] = {{"libtorch", libtorch_version()}, {"policy", policy}, {"skipped", skipped}};
  json rts = json::object();
  for (const auto& r : runtimes()) rts[r.name] = {{"available", r.available}, {"detail", r.detail}};
  out["runtimes"] = rts;
  const Summary s = summarize(results);
  out["summary"] = {{"passed", s.passed},   {"failed", s.failed},       {"errors", s.errors},
                    {"crashed", s.crashed}, {"timed_out", s.timed_out}, {"xfailed", s.xfailed},
                    {"xpassed", s.xpassed}, {"loosened", s.loosened},   {"verified", s.verified()},
                    {"exit_code", s.exit_code()}};
  json rows = json::array();
  for (const auto& r : results) {
    json row = result_json(r);
    row["line"] = format_result(r);
    rows.push_back(row);
  }
  out["results"] = rows;
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write JSON report " + path);
  f << out.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

std::string format_summary(const std::vector<SetResult>& results) {
  const Summary s = summarize(results);
  std::ostringstream os;
  os << "summary: " << s.passed << " passed";
  if (s.loosened) os << " (" << s.loosened << " under a LOOSENED tolerance)";
  os << ", " << s.failed << " failed, " << s.errors << " errors, " << s.crashed << " crashed, " << s.timed_out
     << " timed out, " << s.xfailed << " xfailed, " << s.xpassed << " xpassed (" << results.size()
     << " input-set runs, " << fmt(s.seconds) << " s)";
  if (s.verified() == 0) os << "; NOTHING WAS VERIFIED: no result compared an output with its golden";
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
  if (options.timeout && !(*options.timeout > 0)) throw UsageError("--timeout must be > 0 seconds");
  if (options.timeout && !options.isolate)
    throw UsageError("--timeout is enforced by killing a case's process; --no-isolate runs every case in this "
                     "process, where nothing can stop it: use one or the other");
  const double timeout = options.timeout.value_or(600);
  std::string skipped;
  const auto devices = resolve_devices(options.device, &skipped);
  const Corpus corpus = Corpus::open(options.corpus);
  const auto cases = corpus.select(options.cases);

  size_t n_sets = 0, n_variants = 0;
  for (const auto* c : cases) n_sets += c->sets.size(), n_variants += c->variants.size();
  std::ostringstream banner;
  banner << "corpus " << options.corpus << ": " << cases.size() << " cases, " << n_sets
         << " input sets, " << n_variants << " variants, exported with torch " << corpus.exported_torch << " / python " << corpus.exported_python
         << "; runtime LibTorch " << libtorch_version() << "; corpus.json sha256 " << corpus.index_sha256;
  out(printable(banner.str()));
  std::string rt = "runtimes:";
  for (const auto& r : runtimes()) rt += " " + r.name + (r.available ? " yes;" : " NO (" + r.detail + ");");
  out(rt.substr(0, rt.size() - 1));
  if (!skipped.empty()) out(skipped);

  VerifyOutcome outcome;
  std::string policies;
  const auto t0 = Clock::now();
  for (const auto& device : devices) {
    RunOptions ro;
    ro.device = device;
    ro.threads = options.threads;
    ro.repeat = options.repeat;
    ro.aoti_cache = options.aoti_cache;
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
      auto results = options.isolate ? run_case_isolated(*cases[i], ro, timeout, sink)
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
    // printable() first: XML 1.0 cannot hold most control characters, even as character references.
    f << "  <testcase classname=\"" << xml_escape(printable(r.case_name)) << "\" name=\""
      << xml_escape(printable((r.artifact.empty() ? "" : r.artifact + "/") + r.set_name + "[" + r.device + "]"))
      << "\" time=\"" << r.seconds << "\">";
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

// ---- benchmarks ---------------------------------------------------------------------------------------------------
namespace {

Loaded load_labelled(const CaseSpec& c, const std::string& label, const RunOptions& o) {
  if (!c.error.empty()) throw CorpusError(c.error);
  if (label.empty()) {
    if (!c.has_artifact) throw CorpusError(c.name + ": the case has no TorchScript artifact (mode export)");
    return load_torchscript(c, c.artifact, "", o);
  }
  std::string known = "\"\" (the TorchScript artifact)";
  for (const auto& v : c.variants) {
    if (v.kind == "torchscript") {
      known += ", " + v.name;
      if (v.name != label) continue;
      if (!v.file) throw CorpusError(c.name + ":" + v.name + ": the variant failed at export: " + v.error);
      return load_torchscript(c, *v.file, v.name, o);
    }
    if (!v.file) {  // a failed capture has no program for any runtime
      if (label == v.name || label.rfind(v.name + "@", 0) == 0)
        throw CorpusError(c.name + ":" + v.name + ": " + v.transform + " failed at export: " + v.error);
      continue;
    }
    for (const auto& rt : v.runtimes) {
      if (!runtime_built(rt)) continue;
      known += ", " + runtime_label(v, rt);
      if (runtime_label(v, rt) == label) return load_program(c, v, rt, o);
    }
  }
  throw CorpusError(c.name + ": no artifact '" + label + "' in this runner (artifacts: " + known + ")");
}

const InputSetSpec& find_set(const CaseSpec& c, const std::string& name) {
  for (const auto& s : c.sets)
    if (s.name == name) return s;
  throw CorpusError(c.name + ": no input set named '" + name + "'");
}

}  // namespace

BenchTiming bench_artifact(const CaseSpec& c, const std::string& label, const std::string& method,
                           const std::vector<c10::IValue>& args, const RunOptions& o, const BenchOptions& b) {
  Loaded a = load_labelled(c, label, o);
  InputSetSpec s;
  s.name = "bench";
  s.method = method;
  BenchTiming t;
  t.load_seconds = a.load_seconds + a.read_seconds;
  c10::InferenceMode guard;
  std::vector<c10::IValue> on_device;
  for (const auto& x : args) on_device.push_back(to_device(x, o.device));
  const auto fn = a.prepare(s, std::move(on_device));
  auto timed_call = [&] {
    const auto tc = Clock::now();
    fn();
    if (o.device.is_cuda()) torch::cuda::synchronize();
    return since(tc);
  };
  t.first_call_seconds = timed_call();
  const auto tw = Clock::now();
  for (int i = 0; i < b.warmup_calls || since(tw) < b.warmup_seconds; ++i) timed_call();
  const auto ts = Clock::now();
  while (static_cast<int>(t.samples.size()) < std::max(1, b.min_calls) || since(ts) < b.min_seconds) {
    if (static_cast<int>(t.samples.size()) >= b.max_calls) break;
    t.samples.push_back(timed_call());
  }
  return t;
}

FloorResult measure_floor(const Corpus& corpus, const RunOptions& o) {
  FloorResult f;
  c10::InferenceMode guard;
  [[maybe_unused]] const std::string cache = o.aoti_cache.empty() ? default_aoti_cache() : o.aoti_cache;
  for (const auto& c : corpus.cases) {
    if (!c.error.empty()) continue;
    std::map<std::string, std::vector<c10::IValue>> inputs;  // decoded before the clock runs
    for (const auto& s : c.sets) {
      const SetData d = read_set(c, s);
      if (d.error.empty()) inputs[s.name] = fresh_args(d, o.device);
    }
    auto timed = [&](double& bucket, const std::function<void()>& fn) {
      const auto t0 = Clock::now();
      try {
        fn();
      } catch (const std::exception&) {  // an artifact that cannot load: its failed attempt is part of the floor
      }
      const double took = since(t0);
      bucket += took;
      f.seconds += took;
    };
    auto calls = [&](const std::vector<std::string>& names, const std::function<void(const InputSetSpec&,
                                                                                         std::vector<c10::IValue>&)>& call) {
      for (const auto& name : names) {
        auto it = inputs.find(name);
        if (it == inputs.end()) continue;
        const InputSetSpec& s = find_set(c, name);
        for (int i = 0; i < std::max(1, o.repeat); ++i) {
          if (s.seed) torch::manual_seed(static_cast<uint64_t>(*s.seed));
          timed(f.call_seconds, [&] { call(s, it->second); });
          ++f.calls;
        }
      }
    };
    auto torchscript = [&](const FileRef& file, const std::vector<std::string>& names) {
      const std::string path = (c.dir / file.file).string();
      std::optional<torch::jit::Module> shared;
      ++f.artifacts;
      timed(f.load_seconds, [&] { shared = torch::jit::load(path, o.device); });
      if (!shared) return;
      calls(names, [&](const InputSetSpec& s, std::vector<c10::IValue>& args) {
        torch::jit::Module m = *shared;
        if (!s.prelude.empty()) {  // what any caller has to do: a module of its own for a state-changing prelude
          m = torch::jit::load(path, o.device);
          for (const auto& p : s.prelude) resolve(m, p.method, c.name)(p.args);
        }
        resolve(m, s.method, c.name)(args);
      });
    };
    std::vector<std::string> all;
    for (const auto& s : c.sets) all.push_back(s.name);
    if (c.has_artifact) torchscript(c.artifact, all);
    for (const auto& v : c.variants) {
      if (!v.file) continue;
      if (v.kind == "torchscript") {
        torchscript(*v.file, v.input_sets);
        continue;
      }
#ifdef TORCHCONFORM_HAVE_AOTI
      if (std::find(v.runtimes.begin(), v.runtimes.end(), "aoti") == v.runtimes.end()) continue;
      const std::string package =
          aoti_package_path(cache, v.file->sha256, o.device.type() == c10::kCUDA ? "cuda" : "cpu");
      std::shared_ptr<torch::inductor::AOTIModelPackageLoader> loader;
      ++f.artifacts;
      timed(f.load_seconds, [&] {
        loader = std::make_shared<torch::inductor::AOTIModelPackageLoader>(
            package, "model", false, 1, o.device.is_cuda() ? o.device.index() : static_cast<c10::DeviceIndex>(-1));
      });
      if (!loader) continue;
      std::map<std::string, std::vector<at::Tensor>> tensors;
      for (const auto& name : v.input_sets)
        if (inputs.count(name)) tensors[name] = program_inputs(v, inputs[name], c.name);
      calls(v.input_sets, [&](const InputSetSpec& s, std::vector<c10::IValue>&) { loader->run(tensors[s.name]); });
#endif
    }
  }
  return f;
}

CallOverhead measure_call_overhead(const CaseSpec& c, const std::string& set, const RunOptions& o, int calls,
                                   int rounds) {
  if (calls < 1 || rounds < 1) throw UsageError("measure_call_overhead: calls and rounds must be >= 1");
  const InputSetSpec& s = find_set(c, set);
  if (!s.prelude.empty()) throw UsageError(c.name + "/" + set + ": pick an input set without a prelude");
  const SetData d = read_set(c, s);
  if (!d.error.empty()) throw CorpusError(d.error);
  Loaded a = load_labelled(c, "", o);
  a.tolerance = &c.tolerance;
  torch::jit::Module raw = torch::jit::load((c.dir / c.artifact.file).string(), o.device);
  raw.eval();
  torch::jit::Method raw_method = resolve(raw, s.method, c.name);
  RunOptions ro = o;
  ro.repeat = calls;
  std::vector<double> raw_t, runner_t, ratio;
  {
    c10::InferenceMode guard;
    const auto args = fresh_args(d, o.device);
    for (int i = 0; i < 5; ++i) raw_method(args);  // both warmed up before the first round
  }
  run_set(c, s, d, false, a, nullptr, ro);
  for (int round = 0; round < rounds; ++round) {
    double raw_per = 0;
    {
      c10::InferenceMode guard;
      const auto args = fresh_args(d, o.device);
      const auto t0 = Clock::now();
      for (int i = 0; i < calls; ++i) {
        if (s.seed) torch::manual_seed(static_cast<uint64_t>(*s.seed));
        raw_method(args);
        if (o.device.is_cuda()) torch::cuda::synchronize();
      }
      raw_per = since(t0) / calls;
    }
    const SetResult r = run_set(c, s, d, false, a, nullptr, ro);
    if (r.verdict != Verdict::kPass)
      throw CorpusError(c.name + "/" + set + ": the runner did not pass this set: " + format_result(r));
    const double runner_per = r.seconds / calls;
    raw_t.push_back(raw_per);
    runner_t.push_back(runner_per);
    ratio.push_back(runner_per / raw_per);
  }
  return {median(raw_t), median(runner_t), median(ratio), calls, rounds};
}

}  // namespace torchconform
