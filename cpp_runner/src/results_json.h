// The JSON mapping of results (internal; Python and the reports get it through result_to_json).
#pragma once

#include <torchconform/runner.h>

#include <nlohmann/json.hpp>

namespace torchconform {

void to_json(nlohmann::json& j, const LeafReport& l);
void from_json(const nlohmann::json& j, LeafReport& l);
void to_json(nlohmann::json& j, const Comparison& c);
void from_json(const nlohmann::json& j, Comparison& c);
void to_json(nlohmann::json& j, const SetResult& r);
void from_json(const nlohmann::json& j, SetResult& r);

}  // namespace torchconform
