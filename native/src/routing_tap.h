// The routing tap: how the server observes and changes the routing of build_moe_ffn.
//
// Most of it happens inside llama.cpp's graph, through the MoE routing API that
// native/patches/0002 adds (llama_set_moe_routing): the expert disable/boost bias, AMG and
// the k cap run as graph ops, dropped slots skip their expert work on the CPU, and the
// selected experts, weights, router probabilities and expert-output norms are read once per
// ubatch. A router pack's matrices replace the model's routers in the graph too. Only what
// needs the host between two tokens uses llama.cpp's eval callback, one graph split per MoE
// layer: the stateful logit policies (β, Π, Ant), a router pack's trained mechanisms, and the
// raw-logit capture for calibration; and, at load time, the discovery of the MoE layout.
#pragma once

#include "policy.h"
#include "router_pack.h"

#include "llama.h"

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
    std::vector<int> moe_layers;    // model layer indices with routed experts
    std::vector<int> moe_index_of;  // model layer -> MoE ordinal, -1 for dense layers
    int n_expert = 0;
    int k = 0;                    // expert slots as loaded
    bool has_logits_node = true;  // false: the router scores are `ffn_moe_probs` itself
    MoeNode final_weights = MoeNode::Weights;
    std::string gating = "softmax";  // softmax | sigmoid | softmax_weight | other
    bool weights_norm = false;
    float weights_scale = 1.0f;
    // Per MoE layer: the backend buffer its router probabilities were computed in at discovery
    // ("CPU", "Vulkan0", "RPC0[host:port]", …), i.e. where that layer's routing runs.
    std::vector<std::string> router_devices;

    int moe_index(int layer) const { return layer >= 0 && layer < int(moe_index_of.size()) ? moe_index_of[layer] : -1; }
};

// Per-row routing of one decode, [row][moe layer][slot] like the trace arrays.
struct UbatchRouting {
    int n_rows = 0;
    std::vector<int32_t> experts;
    std::vector<float> weights;
    std::vector<float> norms;     // ‖expert output‖₂ per slot, when asked (REAP saliency)
    std::vector<uint16_t> probs;  // the router distribution in IEEE half, [row][layer][expert], when asked
    std::vector<float> entropy;
    std::vector<uint8_t> active;
    std::vector<int32_t> top_ids;
    std::vector<float> top_probs;
    std::vector<float> logits;  // calibration: raw router logits [row][moe layer][expert]
};

// What one evaluation (a trace, a perplexity, …) asks of the tap.
struct TapRun {
    const Policy * policy = nullptr;
    const AntPredictor * ant = nullptr;
    const RouterPack * pack = nullptr;  // trained routers replacing the model's (docs/router-packs.md)
    bool record = false;                // fill `routing` per row (traces, generation)
    int top_n = 0;                      // with record: the n most probable experts per row and layer
    bool expert_norms = false;          // with record: ‖expert output‖₂ per selected slot
    bool full_probs = false;            // with record: every expert's router probability (f16)
    bool capture_logits = false;        // fill `routing.logits` (calibration)
    bool count_active = false;          // active_sum / active_count over every evaluated row
    int host_threads = 1;               // threads for the per-ubatch records (the context's own count)
    // The session's CPU threads, paused while the host works on a ubatch's records.
    ggml_threadpool * cpu_threadpool = nullptr;
};

class RoutingTap {
public:
    // Load time: evaluate one token between these two calls; the layout is empty for a dense model.
    void begin_discovery();
    MoeLayout end_discovery(int n_layer);

    const MoeLayout & layout() const { return layout_; }
    void set_layout(const MoeLayout & layout) { layout_ = layout; }

    // One evaluation: begin() with its settings, attach() every context it decodes with, end().
    void begin(const TapRun & run);
    void attach(llama_context * ctx) const;
    void end();

    // Before each llama_decode: rows of the batch about to be evaluated.
    void begin_ubatch(int n_rows);
    // At every sequence start: the stateful policies' memory.
    void reset_states();

    const UbatchRouting & routing() const { return routing_; }
    // Active experts after the policy, summed over evaluated rows and MoE layers (count_active).
    double active_sum = 0;
    double active_count = 0;

    // llama_context_params.cb_eval
    static bool eval_callback(ggml_tensor * t, bool ask, void * user_data);

private:
    enum class Mode { Off, Discover, Evaluate };

    static void routing_callback(const llama_moe_routing_ubatch * ub, void * user_data);
    void on_routing(const llama_moe_routing_ubatch & ub);
    void record_layer(const llama_moe_routing_ubatch & ub, int m, double & layer_active_sum, double & layer_active_count);
    bool wants(MoeNode kind) const;
    void on_scores(ggml_tensor * t, int m);
    void discover(ggml_tensor * t, MoeNode kind, int layer);
    bool stateful_logits() const { return run_.policy && run_.policy->needs_token_order(); }
    bool pack_on_host() const { return run_.pack && run_.pack->any_mechanism(); }

    Mode mode_ = Mode::Off;
    TapRun run_;
    MoeLayout layout_;
    UbatchRouting routing_;
    int rows_seen_ = 0;  // rows of the current decode already delivered (several ubatches)
    // Policy state per MoE layer for the one sequence being evaluated (stateful policies need
    // rows in token order, so they run with one sequence per batch).
    std::vector<LayerRouterState> states_;
    std::vector<PackState> pack_states_;
    std::vector<float> x_;  // router inputs of the current layer's rows (packs)
    std::vector<float> buf_;
    // Discovery scratch: first row of logits/probs per layer, to identify the gating function.
    std::vector<std::vector<float>> disc_logits_, disc_probs_, disc_weights_;
    std::vector<std::vector<MoeNode>> disc_kinds_;
    std::vector<int> disc_k_, disc_e_;
    std::vector<std::string> disc_device_;
};

}  // namespace moelens
