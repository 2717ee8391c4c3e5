// Validation against docs/corpus-schema.json (compiled in). Only the keywords listed in schema.cpp are implemented,
// and a schema using any other keyword is refused rather than half-checked.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace torchconform {

// The first violation of `definition` by `value` as "<json path>: <what>", or "".
std::string schema_violation(const std::string& definition, const nlohmann::json& value);

// Throws CorpusError("<who>: schema: <violation>") when `value` violates `definition`.
void require_valid(const std::string& definition, const nlohmann::json& value, const std::string& who);

// Parses corpus JSON with a nesting limit (deeper documents are refused while parsing, before any recursive code
// sees them). Throws CorpusError naming `who`.
nlohmann::json parse_json(const std::string& text, const std::string& who);

}  // namespace torchconform
