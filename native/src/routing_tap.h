// The routing tap: llama.cpp's eval callback (llama_context_params.cb_eval), which reads
// the MoE nodes that build_moe_ffn names (`ffn_moe_logits-L`, `ffn_moe_probs-L`,
// `ffn_moe_topk-L`, `ffn_moe_weights*-L`) and, when a policy asks for it, rewrites the
// router scores before selection and the final weights after it. It accepts only the
// nodes the current evaluation needs: every accepted node splits the graph.
#pragma once

#include "policy.h"

#include <cstdint>
#include <string>
#include <vector>

struct ggml_tensor;

namespace moelens {

enum class MoeNode { Logits, Probs, TopK, Weights, WeightsSoftmax, WeightsNorm, WeightsScaled };

// Parses "ffn_moe_topk-12" into (TopK, 12). Views ("… (reshaped)") and other names fail.
bool parse_moe_node_name(const char * name, MoeNode & kind, int & layer);

// What build_moe_ffn produces for this model, found by evaluating one token (discovery).
struct MoeLayout {
    std::vector<int> moe_layers;       // model layer indices with routed experts
    std::vector<int> moe_index_of;     // model layer -> MoE ordinal, -1 for dense layers
    int n_expert = 0;
    int k = 0;                         // expert slots as loaded
    bool has_logits_node = true;       // false: the router scores are `ffn_moe_probs` itself
    MoeNode final_weights = MoeNode::Weights;
    std::string gating = "softmax";    // softmax | sigmoid | softmax_weight
    bool weights_norm = false;
    float weights_scale = 1.0f;

    int moe_index(int layer) const {
        return layer >= 0 && layer < int(moe_index_of.size()) ? moe_index_of[layer] : -1;
    }
};

// Per-row routing of one ubatch, [row][moe layer][slot] like the trace arrays.
struct UbatchRouting {
    int n_rows = 0;
    std::vector<int32_t> experts;
    std::vector<float> weights;
    std::vector<float> entropy;
    std::vector<uint8_t> active;
    std::vector<int32_t> top_ids;
    std::vector<float> top_probs;
    std::vector<float> logits;  // calibration: raw router logits [row][moe layer][expert]
};

class RoutingTap {
public:
    enum class Mode { Off, Discover, Evaluate };

    // Set before each llama_decode.
    Mode mode = Mode::Off;
    bool record = false;            // fill `routing` (trace, generate)
    bool capture_logits = false;    // fill `routing.logits` (calibration)
    int top_n = 0;
    const Policy * policy = nullptr;
    const AntPredictor * ant = nullptr;
    // Policy state per MoE layer for the one sequence being traced (stateful policies need
    // rows in token order, so they run with one sequence per batch).
    std::vector<LayerRouterState> states;

    const MoeLayout & layout() const { return layout_; }
    void set_layout(const MoeLayout & layout) { layout_ = layout; }

    // Prepares buffers for a ubatch of n rows and clears the statistics of the last one.
    void begin_ubatch(int n_rows);
    void reset_states();

    UbatchRouting routing;
    // AMG statistics over everything evaluated since the last reset (perplexity).
    double active_sum = 0;
    double active_count = 0;

    // Discovery results (names in graph order) before a layout exists.
    std::vector<std::string> discovered_names;

    static bool callback(ggml_tensor * t, bool ask, void * user_data);

private:
    bool wants(MoeNode kind) const;
    void on_scores(ggml_tensor * t, int m, int layer);
    void on_probs(ggml_tensor * t, int m);
    void on_topk(ggml_tensor * t, int m);
    void on_weights(ggml_tensor * t, int m);
    void discover(ggml_tensor * t, MoeNode kind, int layer);

    MoeLayout layout_;
    std::vector<float> buf_;
    // The selected-experts node seen in the ask pass. It is read when the final weights
    // arrive (it stays alive until the expert matmuls), which saves a graph split per layer.
    ggml_tensor * pending_topk_ = nullptr;
    std::vector<int32_t> ids_;      // current layer's selected ids [row][k]
    std::vector<float> probs_;      // current layer's router distribution [row][E] (AMG full mode)
    // Discovery scratch: first row of logits/probs per layer, to identify the gating function.
    std::vector<std::vector<float>> disc_logits_, disc_probs_, disc_weights_;
    std::vector<std::vector<MoeNode>> disc_kinds_;
    std::vector<int> disc_k_, disc_e_;
    friend class ModelSession;
};

}  // namespace moelens
