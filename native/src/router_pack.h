// Router packs (docs/router-packs.md): small GGUF files with trained routing parameters for
// one base model — per MoE layer a router matrix replacing ffn_gate_inp, and optionally the
// Affinity text's trained mechanisms (a per-dimension β memory on the router input, a frozen
// per-expert precision Π, an anticipatory predictor of the next router input). Loading checks
// every key and tensor against the loaded model; apply_pack() is the per-token math.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moelens {

class ModelSession;

struct RouterPackLayer {
    int layer = -1;                                             // model layer index
    std::vector<float> W;                                       // [n_expert][n_embd]: replaces ffn_gate_inp
    std::vector<float> beta;                                    // [n_embd]
    std::vector<float> pi;                                      // [n_expert]
    std::vector<float> ant_w1, ant_b1, ant_w2, ant_b2, w_pred;  // [H][n_ant_in], [H], [n_embd][H], [n_embd], [n_expert][n_embd]
};

struct RouterPack {
    std::string path, name, description;
    int n_embd = 0, n_expert = 0, ant_hidden = 0;
    bool beta = false, pi = false, ant = false;
    std::vector<RouterPackLayer> layers;  // one per MoE layer, in MoE-layer order

    bool any_mechanism() const { return beta || pi || ant; }
    // β keeps a state across tokens: the rows of a sequence must arrive in order, all of them.
    bool needs_token_order() const { return beta; }
    std::string mechanisms() const;  // "beta+ant", "" for none
};

// Reads and validates a pack for the loaded model; throws UserError naming the cause.
RouterPack load_router_pack(const std::string & path, const ModelSession & session);

// β state of one layer for one sequence (zero at every sequence start).
struct PackState {
    std::vector<float> h;
    void reset(int n_embd) { h.assign(n_embd, 0.0f); }
};

// Step 1–4 of docs/router-packs.md for one token: x is the router input (n_embd), z the logits
// ggml computed with the pack's W (n_expert). With β the logits are W·h_t, computed here;
// otherwise z is kept and Ant and Π act on it.
void apply_pack(const RouterPack & pack, const RouterPackLayer & layer, PackState & state, const float * x, float * z);

}  // namespace moelens
