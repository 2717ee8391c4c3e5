#include "schema.h"

#include "pattern.h"

#include <torchconform/corpus.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <mutex>
#include <set>

namespace torchconform {
namespace {
using nlohmann::json;

constexpr int kMaxJsonDepth = 64;

// The keywords this validator implements. Annotations ($schema, $id, $comment, title, description, definitions) are
// ignored by design; anything else in the schema is refused, so a keyword nobody implemented can never pass silently.
const std::set<std::string>& keywords() {
  static const std::set<std::string> k = {
      "$schema", "$id", "$comment", "title", "description", "definitions", "$ref", "type", "required", "properties",
      "additionalProperties", "items", "enum", "const", "minimum", "maximum", "pattern", "minLength", "maxLength",
      "minItems", "maxItems"};
  return k;
}

std::string type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    default: return "unknown";
  }
}

// JSON Schema's integer is mathematical: 1.0 is one (draft 6 on); the readers then take its integer value.
bool integral(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.2e18;
}

bool has_type(const json& v, const std::string& t) {
  if (t == "number") return v.is_number();
  if (t == "integer") return integral(v);
  return type_name(v) == t;
}

size_t code_points(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xc0) != 0x80; }));
}

const Pattern& compiled(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, Pattern> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(pattern);
  if (it == cache.end()) it = cache.emplace(pattern, Pattern(pattern)).first;
  return it->second;
}

// Every sub-schema uses only implemented keywords, in implemented forms: checked over the whole schema once, before
// it validates anything (a keyword in a branch some data never reaches must not pass unnoticed either).
void audit(const json& schema) {
  if (schema.is_boolean()) return;
  TORCH_CHECK(schema.is_object(), "a schema must be an object or a boolean, got ", schema.dump());
  for (const auto& [k, x] : schema.items()) {
    TORCH_CHECK(keywords().count(k), "schema keyword '", k, "' is not implemented by this validator (refused, not "
                "ignored)");
    if (k == "properties" || k == "definitions") {
      TORCH_CHECK(x.is_object(), "'", k, "' must be an object");
      for (const auto& [name, sub] : x.items()) audit(sub);
    } else if (k == "additionalProperties" || k == "items") {
      TORCH_CHECK(x.is_object() || x.is_boolean(), "'", k, "' must be a schema (tuple validation is not implemented)");
      audit(x);
    } else if (k == "pattern") {
      compiled(x.get<std::string>());  // an unsupported construct is refused here, not at the first long string
    }
  }
}

const json& schema_root() {
  static const json root = [] {
    json r = json::parse(corpus_schema_text());
    audit(r);
    return r;
  }();
  return root;
}

// One JSON-pointer token of a $ref (RFC 6901 inside an RFC 3986 fragment): %XX decoded, then ~1 -> '/', ~0 -> '~'.
// A token that still holds a '/' points deeper than a definition, which is not implemented.
std::string pointer_token(const std::string& raw) {
  std::string decoded;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '%' && i + 2 < raw.size() && std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
      decoded += static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      decoded += raw[i];
    }
  }
  TORCH_CHECK(decoded.find('/') == std::string::npos, "unsupported $ref #/definitions/", raw,
              " (only #/definitions/<name> is implemented)");
  std::string token;
  for (size_t i = 0; i < decoded.size(); ++i) {
    if (decoded[i] == '~' && i + 1 < decoded.size() && (decoded[i + 1] == '0' || decoded[i + 1] == '1')) {
      token += decoded[i + 1] == '1' ? '/' : '~';
      ++i;
    } else {
      token += decoded[i];
    }
  }
  return token;
}

// The first violation as "path: what", or "". `root` resolves "#/definitions/..." references.
std::string check(const json& root, const json& schema, const json& v, const std::string& path) {
  if (schema.is_boolean()) return schema.get<bool>() ? "" : path + ": the schema allows no value here";
  TORCH_CHECK(schema.is_object(), "a schema must be an object or a boolean");
  for (const auto& [k, _] : schema.items())
    TORCH_CHECK(keywords().count(k), "schema keyword '", k, "' is not implemented by this validator (refused, not "
                "ignored)");
  if (schema.contains("$ref")) {
    const std::string ref = schema["$ref"].get<std::string>();
    if (ref == "#") return check(root, root, v, path);
    const std::string prefix = "#/definitions/";
    TORCH_CHECK(ref.rfind(prefix, 0) == 0, "unsupported $ref ", ref, " (only #/definitions/<name> is implemented)");
    const std::string name = pointer_token(ref.substr(prefix.size()));
    TORCH_CHECK(root.contains("definitions") && root["definitions"].contains(name), "$ref ", ref,
                " names no definition");
    return check(root, root["definitions"][name], v, path);
  }
  if (schema.contains("type")) {
    std::vector<std::string> types;
    if (schema["type"].is_string()) types.push_back(schema["type"].get<std::string>());
    else for (const auto& t : schema["type"]) types.push_back(t.get<std::string>());
    if (std::none_of(types.begin(), types.end(), [&](const std::string& t) { return has_type(v, t); })) {
      std::string want;
      for (size_t i = 0; i < types.size(); ++i) want += (i ? " or " : "") + types[i];
      return path + ": expected " + want + ", got " + type_name(v);
    }
  }
  if (schema.contains("const") && v != schema["const"])
    return path + ": must be " + schema["const"].dump() + ", got " + v.dump();
  if (schema.contains("enum")) {
    const auto& options = schema["enum"];
    if (std::find(options.begin(), options.end(), v) == options.end()) {
      std::string list;
      for (const auto& o : options) list += (list.empty() ? "" : ", ") + o.dump();
      return path + ": " + v.dump() + " is not one of " + list;
    }
  }
  if (v.is_number()) {
    if (schema.contains("minimum") && v.get<double>() < schema["minimum"].get<double>())
      return path + ": must be >= " + schema["minimum"].dump() + ", got " + v.dump();
    if (schema.contains("maximum") && v.get<double>() > schema["maximum"].get<double>())
      return path + ": must be <= " + schema["maximum"].dump() + ", got " + v.dump();
  }
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    // Lengths before patterns: the cheap bound first.
    if (schema.contains("maxLength") && code_points(s) > schema["maxLength"].get<size_t>())
      return path + ": longer than " + schema["maxLength"].dump() + " characters";
    if (schema.contains("minLength") && code_points(s) < schema["minLength"].get<size_t>())
      return path + ": shorter than " + schema["minLength"].dump() + " characters";
    if (schema.contains("pattern") && !compiled(schema["pattern"].get<std::string>()).search(s))
      return path + ": " + v.dump() + " does not match " + schema["pattern"].get<std::string>();
  }
  if (v.is_object()) {
    if (schema.contains("required"))
      for (const auto& k : schema["required"])
        if (!v.contains(k.get<std::string>())) return path + ": missing required key '" + k.get<std::string>() + "'";
    const json no_props = json::object();
    const json& props = schema.contains("properties") ? schema["properties"] : no_props;
    for (const auto& [k, x] : v.items()) {
      const std::string sub = path + "." + k;
      if (props.contains(k)) {
        if (auto e = check(root, props[k], x, sub); !e.empty()) return e;
      } else if (schema.contains("additionalProperties")) {
        const json& extra = schema["additionalProperties"];
        if (extra.is_boolean()) {
          if (!extra.get<bool>()) return path + ": unexpected key '" + k + "'";
        } else if (auto e = check(root, extra, x, sub); !e.empty()) {
          return e;
        }
      }
    }
  }
  if (v.is_array()) {
    if (schema.contains("maxItems") && v.size() > schema["maxItems"].get<size_t>())
      return path + ": more than " + schema["maxItems"].dump() + " items";
    if (schema.contains("minItems") && v.size() < schema["minItems"].get<size_t>())
      return path + ": fewer than " + schema["minItems"].dump() + " items";
    if (schema.contains("items"))
      for (size_t i = 0; i < v.size(); ++i)
        if (auto e = check(root, schema["items"], v[i], path + "[" + std::to_string(i) + "]"); !e.empty()) return e;
  }
  return "";
}

}  // namespace

std::string schema_violation(const std::string& definition, const json& value) {
  if (!schema_root().at("definitions").contains(definition)) return "no schema definition '" + definition + "'";
  return check(schema_root(), schema_root().at("definitions").at(definition), value, "$");
}

void require_valid(const std::string& definition, const json& value, const std::string& who) {
  const std::string e = schema_violation(definition, value);
  if (!e.empty()) throw CorpusError(who + ": schema: " + e);
}

json parse_json(const std::string& text, const std::string& who) {
  // The keys of each object being parsed, innermost last: a key written twice is refused, since JSON readers
  // disagree on it (nlohmann and Python keep the last, others the first) and a face could then read another value
  // than the one the runner checked.
  std::vector<std::set<std::string>> keys;
  try {
    return json::parse(text, [&](int depth, json::parse_event_t event, json& parsed) {
      if (depth > kMaxJsonDepth)
        throw CorpusError(who + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
      if (event == json::parse_event_t::object_start) keys.emplace_back();
      else if (event == json::parse_event_t::object_end) keys.pop_back();
      else if (event == json::parse_event_t::key && !keys.back().insert(parsed.get<std::string>()).second)
        throw CorpusError(who + ": key '" + printable(parsed.get<std::string>()) + "' appears twice in one JSON "
                          "object (readers would disagree on its value); refused");
      return true;
    });
  } catch (const json::exception& e) {
    throw CorpusError(who + ": invalid JSON: " + e.what());
  }
}

std::string validate_with_schema(const std::string& schema_text, const std::string& json_text) {
  const json schema = parse_json(schema_text, "schema");
  audit(schema);
  json v;
  try {
    v = parse_json(json_text, "$");
  } catch (const CorpusError& e) {
    return e.what();
  }
  return check(schema, schema, v, "$");
}

std::string validate_against_schema(const std::string& definition, const std::string& json_text) {
  json v;
  try {
    v = parse_json(json_text, "$");
  } catch (const CorpusError& e) {
    return e.what();  // "$: invalid JSON: ..." or "$: JSON nested deeper than 64 levels"
  }
  return schema_violation(definition, v);
}

}  // namespace torchconform
