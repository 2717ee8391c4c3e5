// Parsing a manifest (internal to the corpus reader).
#pragma once

#include <torchconform/corpus.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace torchconform {

// A case from its manifest (already parsed JSON), checked against the schema first. `expected_name` is the name
// corpus.json lists it under. Throws CorpusError naming the file and the key.
CaseSpec parse_case(const std::filesystem::path& dir, const nlohmann::json& manifest, const std::string& expected_name);

// Throws CorpusError unless `j` (corpus.json or a manifest) has this reader's format and format version.
void check_format(const nlohmann::json& j, const std::string& who);

}  // namespace torchconform
