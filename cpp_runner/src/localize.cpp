// Localising a mismatch: the set's recorded submodule calls (writing/submodules.py: what each submodule of the eager
// model received and returned, in completion order) replayed on the TorchScript artifact's own submodules with the
// recorded eager inputs, so each one's own error is measured and not the error it inherits from upstream (the
// Shadow approach of PyTorch's numeric suite). The first record whose output diverges is the innermost diverging
// submodule that ran first: where the mismatch starts.
#include "runtime.h"

#include <torch/script.h>

#include <algorithm>
#include <sstream>

namespace torchconform {
namespace {

// The submodule at a dotted path ("features.2.conv"), or why there is none.
std::optional<torch::jit::Module> submodule(const torch::jit::Module& root, const std::string& path,
                                            std::string* why) {
  torch::jit::Module m = root;
  std::string rest = path;
  while (!rest.empty()) {
    const size_t dot = rest.find('.');
    const std::string part = rest.substr(0, dot);
    if (!m.hasattr(part) || !m.attr(part).isModule()) {
      *why = "the artifact has no submodule '" + part + "' here (inlined by tracing, freezing or scripting)";
      return std::nullopt;
    }
    m = m.attr(part).toModule();
    rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
  }
  return m;
}

// The method a recorded call replays: a traced submodule called k times carries forward, forward1, ... (one per
// traced call); a scripted one has one forward for every call.
std::string method_for(const torch::jit::Module& m, int64_t call) {
  if (call > 0 && m.find_method("forward" + std::to_string(call))) return "forward" + std::to_string(call);
  return "forward";
}

}  // namespace

Localization localize(const CaseSpec& c, const InputSetSpec& s, const TolerancePolicy& tolerance,
                      const RunOptions& o) {
  Localization out;
  if (!s.submodules) {
    out.note = "no submodule records for this set (export with record_submodules to localise)";
    return out;
  }
  const std::string who = c.name + "/" + s.submodules->file;
  // Recorded paths name the eager model's submodules; the policy's per-output paths name the model's outputs, so
  // each submodule is compared under the case's default tolerance.
  const TolerancePolicy policy{tolerance.base, {}};
  c10::IValue records;
  torch::jit::Module root;
  try {
    records = load_value(read_verified(c, *s.submodules), who);
    root = load_torchscript(c, c.artifact, o);
  } catch (const CorpusError& e) {
    out.note = std::string("localisation not possible: ") + e.what();
    return out;
  }
  if (!records.isList()) {
    out.note = "localisation not possible: " + who + " does not hold a list of records";
    return out;
  }
  out.ran = true;
  c10::InferenceMode guard;
  for (const c10::IValue& rec : records.toListRef()) {
    SubmoduleCheck check;
    // (path, call, args, kwargs, output); corpora recorded before keyword inputs were kept hold (path, call, args,
    // output).
    const size_t n = rec.isTuple() ? rec.toTupleRef().elements().size() : 0;
    if ((n != 4 && n != 5) || !rec.toTupleRef().elements()[0].isString() ||
        !rec.toTupleRef().elements()[1].isInt() || !rec.toTupleRef().elements()[2].isTuple() ||
        (n == 5 && !rec.toTupleRef().elements()[3].isGenericDict())) {
      out.note = "localisation stopped: " + who + " holds a record that is not (path, call, args, kwargs, output)";
      break;
    }
    const auto& e = rec.toTupleRef().elements();
    const c10::IValue& expected = e[n - 1];
    check.path = e[0].toStringRef();
    check.call = e[1].toInt();
    std::string why;
    const auto m = submodule(root, check.path, &why);
    if (!m) {
      check.why_not = why;
      out.checks.push_back(std::move(check));
      continue;
    }
    check.method = method_for(*m, check.call);
    const auto found = m->find_method(check.method);
    if (!found) {
      check.why_not = "the artifact's submodule has no " + check.method + " (its calls are inlined into the parent's "
                      "graph)";
      out.checks.push_back(std::move(check));
      continue;
    }
    const torch::jit::Method& method = *found;
    std::vector<c10::IValue> args;
    for (const auto& x : e[2].toTupleRef().elements()) args.push_back(to_device(x, o.device, /*copy=*/true));
    const auto& schema = method.function().getSchema();
    const size_t arity = schema.arguments().size() - 1;  // without self (a module method)
    if (args.size() > arity) {
      check.why_not = "recorded with " + std::to_string(args.size()) + " arguments, the artifact's " + check.method +
                      " takes " + std::to_string(arity);
      out.checks.push_back(std::move(check));
      continue;
    }
    // Keyword inputs: by name where the method takes them; a non-tensor one it does not take was a constant of the
    // trace (tracing bakes non-tensor arguments in) and is left out, saying so; a tensor one it does not take means
    // the artifact computes something else, and the call is not replayed.
    torch::jit::Kwargs kwargs;
    std::vector<std::string> dropped;
    if (n == 5) {
      for (const auto& kv : e[3].toGenericDict()) {
        if (!kv.key().isString()) {
          why = "a keyword input whose name is not a string";
          break;
        }
        const std::string& name = kv.key().toStringRef();
        if (schema.argumentIndexWithName(name)) {
          kwargs[name] = to_device(kv.value(), o.device, /*copy=*/true);
        } else if (kv.value().isTensor() || kv.value().isList() || kv.value().isTuple() ||
                   kv.value().isGenericDict()) {
          why = "keyword input '" + name + "' (not a scalar) is not a parameter of the artifact's " + check.method;
          break;
        } else {
          std::ostringstream v;
          v << name << "=" << kv.value();
          dropped.push_back(v.str());
        }
      }
    }
    if (!why.empty()) {
      check.why_not = why;
      out.checks.push_back(std::move(check));
      continue;
    }
    if (!dropped.empty()) {
      std::sort(dropped.begin(), dropped.end());
      std::string list;
      for (const auto& d : dropped) list += (list.empty() ? "" : ", ") + d;
      check.note = "replayed without the keyword inputs " + list + " (not parameters of the artifact's " +
                   check.method + ": constants baked in by tracing)";
    }
    try {
      if (s.seed) torch::manual_seed(static_cast<uint64_t>(*s.seed));
      const c10::IValue got = to_device(method(std::move(args), kwargs), c10::Device(c10::kCPU));
      check.comparison = compare(expected, got, policy, OverrideCheck::kCollect);
      check.replayed = true;
    } catch (const c10::Error& err) {
      check.why_not = "the call raised: " + torch_message(err);
    } catch (const std::exception& err) {
      check.why_not = std::string("the call raised: ") + err.what();
    }
    if (check.replayed && !check.comparison.ok && out.first_divergence.empty())
      out.first_divergence = check.path + " (" + check.method + ", call " + std::to_string(check.call) + ")";
    out.checks.push_back(std::move(check));
  }
  size_t replayed = 0, diverging = 0;
  for (const auto& k : out.checks) replayed += k.replayed, diverging += k.replayed && !k.comparison.ok;
  std::ostringstream note;
  note << replayed << " of " << out.checks.size() << " recorded submodule calls replayed with the eager inputs, "
       << diverging << " diverge";
  if (!out.note.empty()) note << "; " << out.note;
  out.note = note.str();
  return out;
}

}  // namespace torchconform
