// Gating policies applied post hoc to a frozen router (native/API.md, "Policy object").
// The policy object itself, and the math of the stateful logit policies (β, Π, Ant) that run
// on the host between tokens: pure math on float arrays, no llama.cpp here, unit-tested on its
// own (native/tests/test_policy.cpp). The stateless policies (AMG, the k cap, disable/boost)
// run inside llama.cpp's graph (routing_tap.h, native/patches/).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moelens {

enum class AmgMode { Selected, Full };
enum class BetaForm { Raw, ScalePreserving };

struct AmgParams {
    float threshold = 1.0f;  // (0, 1]
    int min_k = 1;
    AmgMode mode = AmgMode::Selected;
};

struct BetaParams {
    float beta = 0.0f;  // [0, 1)
    std::optional<float> theta;
    BetaForm form = BetaForm::Raw;
    float mix = 1.0f;  // route on (1-mix)·z + mix·U
};

struct PiParams {
    float momentum = 0.95f;
    float eps = 1e-6f;
};

struct AntParams {
    float gamma = 0.0f;
};

struct ExpertBias {
    int layer;
    int expert;
    float bias;  // -inf disables
};

struct Policy {
    std::optional<AmgParams> amg;
    std::optional<int> max_k;
    std::optional<BetaParams> beta;
    std::optional<PiParams> pi;
    std::optional<AntParams> ant;
    std::vector<ExpertBias> biases;  // boosts first, then disables (order of the request)
    // Dropped slots do no expert work (CPU backend) instead of only being zero-gated.
    bool skip = true;

    // β, Π and Ant keep state across tokens: they run on the host, in token order.
    bool needs_token_order() const { return beta || pi || ant; }
    // AMG, and max_k below the loaded k (a cap), drop selected experts after selection.
    bool changes_weights(int loaded_k) const { return amg.has_value() || (max_k && *max_k < loaded_k); }
    bool any(int loaded_k) const { return needs_token_order() || !biases.empty() || changes_weights(loaded_k); }
};

// Per-layer linear predictor of the next router logits: ẑ_{t+1} = W·[z_t; U_t; 1],
// U_t = β·U_{t-1} + (1-β)·z_t (the fit's own memory). W is row-major E × (2E+1).
struct AntLayer {
    int layer = -1;
    std::vector<float> W;
};

struct AntPredictor {
    int n_expert = 0;
    float beta = 0.9f;
    std::vector<AntLayer> layers;  // one per MoE layer, in MoE-layer order
};

// Routing state of one sequence in one MoE layer. Reset at every sequence start.
struct LayerRouterState {
    std::vector<float> membrane;    // β memory U over the raw logits
    std::vector<float> ant_memory;  // the predictor's own β memory
    std::vector<float> prediction;  // ẑ_t predicted at t-1 (for Π), empty before the first step
    std::vector<float> variance;    // Π running variance, starts at 1
    std::vector<float> precision;   // last normalised precision π̃ (for display)
    bool started = false;

    void reset(int n_expert);
};

// Rewrites one token's router logits z (length E) in place according to the stateful logit
// policies (β, Π, Ant); `ant` may be null when no predictor is used. Disable/boost biases are
// not applied here: they are added in the graph, after these.
void apply_logit_policies(const Policy & policy, const AntLayer * ant, float ant_beta, LayerRouterState & state, float * z, int n_expert);

// Shannon entropy (nats) of a probability vector; normalises first so sigmoid scores work too.
float entropy_nats(const float * p, int n);

// Indices of the n largest values, descending, ties by lower index.
void top_n(const float * p, int n_total, int n, int32_t * ids_out, float * vals_out);

}  // namespace moelens
