// The policy object of native/API.md <-> moelens::Policy, with range checks.
#pragma once

#include "errors.h"
#include "policy.h"

#include <nlohmann/json.hpp>

namespace moelens {

// Throws BadRequest naming the offending field. `n_expert` and `n_layer` bound indices.
Policy policy_from_json(const nlohmann::json & j, int n_expert, int n_layer);
nlohmann::json policy_to_json(const Policy & p);

}  // namespace moelens
