// The Ant predictor file (`*.moe-ant.json`, native/API.md): load and check it against the
// loaded model. Fitting happens in the client (extension/core/ant.ts).
#pragma once

#include "model_session.h"
#include "policy.h"

#include <string>

namespace moelens {
// Throws UserError when the file is unreadable, not a predictor, of an unknown version, or
// fitted for another model (hash, expert count or MoE layers differ).
AntPredictor load_predictor(const std::string & path, ModelSession & session);
}  // namespace moelens
