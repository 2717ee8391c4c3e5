// The one JSON mapping of results (nlohmann's type mapping: to_json / from_json found by ADL): what the JSON report
// writes, what an isolated case's child streams to its parent, and what the bindings hand to Python.
// docs/report-schema.json describes it; tests validate reports against it.
#include "results_json.h"

#include <cmath>
#include <limits>

namespace torchconform {
namespace {

// JSON has no inf: unbounded differences are written as null, and read back as +inf.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double num(const nlohmann::json& j) { return j.is_null() ? std::numeric_limits<double>::infinity() : j.get<double>(); }

}  // namespace

void to_json(nlohmann::json& j, const LeafReport& l) {
  j = {{"path", l.path},          {"kind", l.kind},
       {"dtype", l.dtype},        {"ok", l.ok},
       {"message", l.message},    {"mismatched", l.mismatched},
       {"total", l.total},        {"max_abs", num(l.max_abs)},
       {"max_rel", num(l.max_rel)}, {"max_ulp", num(l.max_ulp)},
       {"worst_index", l.worst_index}, {"worst_expected", l.worst_expected},
       {"worst_actual", l.worst_actual}, {"tolerance", l.tolerance},
       {"custom_tolerance", l.custom_tolerance}, {"loosened", l.loosened},
       {"needed_rtol", num(l.needed_rtol)}, {"needed_atol", num(l.needed_atol)},
       {"weak", l.weak},          {"accepts_rel_error", num(l.accepts_rel_error)},
       {"accepts_rel_error_median", num(l.accepts_rel_error_median)}};
  nlohmann::json applied = {{"mode", to_string(l.applied.mode)}, {"equal_nan", l.applied.equal_nan}};
  if (l.applied.mode == ToleranceMode::kAllClose) {
    applied["rtol"] = num(l.applied.rtol.value_or(0));
    applied["atol"] = num(l.applied.atol.value_or(0));
  }
  if (l.applied.mode == ToleranceMode::kUlp) applied["max_ulp"] = l.applied.max_ulp;
  j["applied_tolerance"] = std::move(applied);
}

void from_json(const nlohmann::json& j, LeafReport& l) {
  l.path = j.at("path").get<std::string>();
  l.kind = j.at("kind").get<std::string>();
  l.dtype = j.at("dtype").get<std::string>();
  l.ok = j.at("ok").get<bool>();
  l.message = j.at("message").get<std::string>();
  l.mismatched = j.at("mismatched").get<int64_t>();
  l.total = j.at("total").get<int64_t>();
  l.max_abs = num(j.at("max_abs"));
  l.max_rel = num(j.at("max_rel"));
  l.max_ulp = num(j.at("max_ulp"));
  l.worst_index = j.at("worst_index").get<std::string>();
  l.worst_expected = j.at("worst_expected").get<std::string>();
  l.worst_actual = j.at("worst_actual").get<std::string>();
  l.tolerance = j.at("tolerance").get<std::string>();
  l.custom_tolerance = j.at("custom_tolerance").get<bool>();
  l.loosened = j.at("loosened").get<bool>();
  l.needed_rtol = num(j.at("needed_rtol"));
  l.needed_atol = num(j.at("needed_atol"));
  l.weak = j.at("weak").get<std::string>();
  l.accepts_rel_error = num(j.at("accepts_rel_error"));
  l.accepts_rel_error_median = num(j.at("accepts_rel_error_median"));
  // (the same object as a manifest's tolerance, read by the manifest's parser: one definition of its fields)
  const nlohmann::json policy = {{"default", j.at("applied_tolerance")}, {"outputs", nlohmann::json::object()}};
  l.applied = parse_tolerance_policy(policy.dump(), "applied_tolerance").base;
  l.floating = l.dtype.rfind("float", 0) == 0 || l.dtype.rfind("bfloat", 0) == 0 || l.dtype.rfind("complex", 0) == 0 ||
               l.kind == "float";
}

void to_json(nlohmann::json& j, const Comparison& c) {
  j = {{"ok", c.ok},
       {"max_abs", num(c.max_abs())},
       {"max_rel", num(c.max_rel())},
       {"max_ulp", num(c.max_ulp())},
       {"needed_rtol", num(c.needed_rtol())},
       {"needed_atol", num(c.needed_atol())},
       {"mismatched", c.mismatched()},
       {"total", c.total()},
       {"tolerance_note", c.tolerance_note()},
       {"overrides_used", c.overrides_used},
       {"leaves", c.leaves}};
}

void from_json(const nlohmann::json& j, Comparison& c) {
  c.ok = j.at("ok").get<bool>();
  c.leaves = j.at("leaves").get<std::vector<LeafReport>>();
  c.overrides_used = j.at("overrides_used").get<std::vector<std::string>>();
}

void to_json(nlohmann::json& j, const SubmoduleCheck& k) {
  j = {{"path", k.path}, {"call", k.call}, {"method", k.method}, {"replayed", k.replayed}, {"why_not", k.why_not},
       {"note", k.note}, {"comparison", k.replayed ? nlohmann::json(k.comparison) : nlohmann::json(nullptr)}};
}

void from_json(const nlohmann::json& j, SubmoduleCheck& k) {
  k.path = j.at("path").get<std::string>();
  k.call = j.at("call").get<int64_t>();
  k.method = j.at("method").get<std::string>();
  k.replayed = j.at("replayed").get<bool>();
  k.why_not = j.at("why_not").get<std::string>();
  k.note = j.at("note").get<std::string>();
  if (k.replayed) k.comparison = j.at("comparison").get<Comparison>();
}

void to_json(nlohmann::json& j, const Localization& l) {
  j = {{"ran", l.ran}, {"note", l.note}, {"first_divergence", l.first_divergence}, {"submodules", l.checks}};
}

void from_json(const nlohmann::json& j, Localization& l) {
  l.ran = j.at("ran").get<bool>();
  l.note = j.at("note").get<std::string>();
  l.first_divergence = j.at("first_divergence").get<std::string>();
  l.checks = j.at("submodules").get<std::vector<SubmoduleCheck>>();
}

void to_json(nlohmann::json& j, const SetResult& r) {
  j = {{"case", r.case_name},
       {"input_set", r.set_name},
       {"device", r.device},
       {"artifact", r.artifact},
       {"runtime", r.runtime},
       {"verdict", to_string(r.verdict)},
       {"seconds", r.seconds},
       {"error", r.error},
       {"error_kind", to_string(r.error_kind)},
       {"loosened", loosened(r)},
       {"failed_call", r.failed_call},
       {"xfail_reason", r.xfail_reason},
       {"load_seconds", num(r.load_seconds)},
       {"first_call_seconds", num(r.first_call_seconds)},
       {"steady_seconds", num(r.steady_seconds)},
       {"read_seconds", r.read_seconds},
       {"decode_seconds", r.decode_seconds},
       {"call_seconds", r.call_seconds},
       {"compare_seconds", r.compare_seconds},
       {"setup_seconds", r.setup_seconds},
       {"calls", r.calls},
       {"line", format_result(r)}};
  // The comparison with the golden at the row's top level (its statistics are the row's), the one with the
  // TorchScript artifact nested, or null.
  j.update(nlohmann::json(r.comparison));
  j["vs_artifact"] = r.has_reference ? nlohmann::json(r.vs_artifact) : nlohmann::json(nullptr);
  j["localization"] =
      r.localization.ran || !r.localization.note.empty() ? nlohmann::json(r.localization) : nlohmann::json(nullptr);
  j["envelope"] = r.envelope.present ? nlohmann::json{{"within", r.envelope.within}, {"ratio", num(r.envelope.ratio)},
                                                      {"detail", r.envelope.detail}}
                                     : nlohmann::json(nullptr);
}

void from_json(const nlohmann::json& j, SetResult& r) {
  r.case_name = j.at("case").get<std::string>();
  r.set_name = j.at("input_set").get<std::string>();
  r.device = j.at("device").get<std::string>();
  r.artifact = j.at("artifact").get<std::string>();
  r.runtime = j.at("runtime").get<std::string>();
  r.verdict = verdict_from(j.at("verdict").get<std::string>());
  r.seconds = j.at("seconds").get<double>();
  r.error = j.at("error").get<std::string>();
  r.error_kind = error_kind_from(j.at("error_kind").get<std::string>());
  r.failed_call = j.at("failed_call").get<int>();
  r.xfail_reason = j.at("xfail_reason").get<std::string>();
  r.load_seconds = num(j.at("load_seconds"));
  r.first_call_seconds = num(j.at("first_call_seconds"));
  r.steady_seconds = num(j.at("steady_seconds"));
  r.read_seconds = j.at("read_seconds").get<double>();
  r.decode_seconds = j.at("decode_seconds").get<double>();
  r.call_seconds = j.at("call_seconds").get<double>();
  r.compare_seconds = j.at("compare_seconds").get<double>();
  r.setup_seconds = j.at("setup_seconds").get<double>();
  r.calls = j.at("calls").get<int>();
  r.comparison = j.get<Comparison>();
  r.has_reference = !j.at("vs_artifact").is_null();
  if (r.has_reference) r.vs_artifact = j.at("vs_artifact").get<Comparison>();
  if (!j.at("localization").is_null()) r.localization = j.at("localization").get<Localization>();
  if (!j.at("envelope").is_null()) {
    r.envelope.present = true;
    r.envelope.within = j.at("envelope").at("within").get<bool>();
    r.envelope.ratio = num(j.at("envelope").at("ratio"));
    r.envelope.detail = j.at("envelope").at("detail").get<std::string>();
  }
}

std::string result_to_json(const SetResult& r) {
  return nlohmann::json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

SetResult result_from_json(const std::string& text) { return nlohmann::json::parse(text).get<SetResult>(); }

std::string leaf_to_json(const LeafReport& l) {
  return nlohmann::json(l).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace torchconform
