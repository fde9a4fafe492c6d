#include "routing_tap.h"

#include "parallel.h"

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace moelens {

bool parse_moe_node_name(const char * name, MoeNode & kind, int & layer) {
    static const struct {
        const char * prefix;
        MoeNode kind;
    } kNames[] = {
        {"ffn_moe_logits-", MoeNode::Logits},
        {"ffn_moe_probs-", MoeNode::Probs},
        {"ffn_moe_topk-", MoeNode::TopK},
        {"ffn_moe_weights-", MoeNode::Weights},
        {"ffn_moe_weights_softmax-", MoeNode::WeightsSoftmax},
        {"ffn_moe_weights_norm-", MoeNode::WeightsNorm},
        {"ffn_moe_weights_scaled-", MoeNode::WeightsScaled},
    };
    if (std::strncmp(name, "ffn_moe_", 8) != 0) return false;
    for (const auto & n : kNames) {
        const size_t len = std::strlen(n.prefix);
        if (std::strncmp(name, n.prefix, len) != 0) continue;
        const char * digits = name + len;
        if (*digits == '\0') return false;
        for (const char * p = digits; *p; ++p)
            if (*p < '0' || *p > '9') return false;  // a view such as "… (reshaped)"
        kind = n.kind;
        layer = std::atoi(digits);
        return true;
    }
    return false;
}

static bool is_weights_kind(MoeNode k) {
    return k == MoeNode::Weights || k == MoeNode::WeightsSoftmax || k == MoeNode::WeightsNorm || k == MoeNode::WeightsScaled;
}

// Reads a contiguous f32 tensor.
static void read_f32(ggml_tensor * t, std::vector<float> & buf) {
    GGML_ASSERT(t->type == GGML_TYPE_F32 && ggml_is_contiguous(t));
    buf.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, buf.data(), 0, ggml_nbytes(t));
}

// ---- discovery ------------------------------------------------------------------------------

void RoutingTap::begin_discovery() {
    mode_ = Mode::Discover;
    disc_kinds_.clear();
    disc_logits_.clear();
    disc_probs_.clear();
    disc_weights_.clear();
    disc_k_.clear();
    disc_e_.clear();
    disc_device_.clear();
}

void RoutingTap::discover(ggml_tensor * t, MoeNode kind, int layer) {
    if (layer >= int(disc_kinds_.size())) {
        disc_kinds_.resize(layer + 1);
        disc_logits_.resize(layer + 1);
        disc_probs_.resize(layer + 1);
        disc_weights_.resize(layer + 1);
        disc_k_.resize(layer + 1, 0);
        disc_e_.resize(layer + 1, 0);
        disc_device_.resize(layer + 1);
    }
    disc_kinds_[layer].push_back(kind);
    if (kind == MoeNode::TopK) {
        disc_k_[layer] = int(t->ne[0]);
        return;
    }
    std::vector<float> v;
    read_f32(t, v);
    if (kind == MoeNode::Logits) {
        disc_logits_[layer].assign(v.begin(), v.begin() + t->ne[0]);
    } else if (kind == MoeNode::Probs) {
        disc_e_[layer] = int(t->ne[0]);
        const ggml_backend_buffer_t buf = t->view_src ? t->view_src->buffer : t->buffer;
        disc_device_[layer] = buf ? ggml_backend_buffer_name(buf) : "";
        disc_probs_[layer].assign(v.begin(), v.begin() + t->ne[0]);
    } else if (is_weights_kind(kind)) {
        disc_weights_[layer].push_back(v.empty() ? 0.0f : v[0]);
    }
}

static std::vector<float> softmax_of(const std::vector<float> & z) {
    std::vector<float> p(z.size());
    float mx = -INFINITY;
    for (float v : z) mx = std::max(mx, v);
    double sum = 0;
    for (size_t i = 0; i < z.size(); ++i) sum += (p[i] = std::exp(z[i] - mx));
    for (float & v : p) v = float(v / sum);
    return p;
}

static bool close_to(const std::vector<float> & a, const std::vector<float> & b) {
    if (a.size() != b.size() || a.empty()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::fabs(a[i] - b[i]) > 1e-3f * std::max(1.0f, std::fabs(b[i]))) return false;
    return true;
}

MoeLayout RoutingTap::end_discovery(int n_layer) {
    mode_ = Mode::Off;
    MoeLayout L;
    L.moe_index_of.assign(std::max<int>(n_layer, disc_kinds_.size()), -1);
    for (size_t layer = 0; layer < disc_kinds_.size(); ++layer) {
        const auto & kinds = disc_kinds_[layer];
        auto has = [&](MoeNode k) { return std::find(kinds.begin(), kinds.end(), k) != kinds.end(); };
        if (!has(MoeNode::TopK)) continue;
        L.moe_index_of[layer] = int(L.moe_layers.size());
        L.moe_layers.push_back(int(layer));
        L.router_devices.push_back(disc_device_[layer]);
        if (L.k != 0) continue;  // the first MoE layer describes them all
        L.k = disc_k_[layer];
        L.n_expert = disc_e_[layer];
        L.has_logits_node = has(MoeNode::Logits);
        for (MoeNode k : kinds)
            if (is_weights_kind(k)) L.final_weights = k;
        L.weights_norm = has(MoeNode::WeightsNorm);
        const auto & w = disc_weights_[layer];
        if (L.final_weights == MoeNode::WeightsScaled && w.size() >= 2 && w[w.size() - 2] != 0.0f)
            L.weights_scale = w.back() / w[w.size() - 2];
        if (has(MoeNode::WeightsSoftmax)) {
            L.gating = "softmax_weight";
        } else if (L.has_logits_node) {
            const auto & z = disc_logits_[layer];
            std::vector<float> sig(z.size());
            for (size_t i = 0; i < z.size(); ++i) sig[i] = 1.0f / (1.0f + std::exp(-z[i]));
            if (close_to(disc_probs_[layer], softmax_of(z)))
                L.gating = "softmax";
            else if (close_to(disc_probs_[layer], sig))
                L.gating = "sigmoid";
            else
                L.gating = "other";
        }
    }
    return L;
}

// ---- one evaluation ---------------------------------------------------------------------------

void RoutingTap::begin(const TapRun & run) {
    mode_ = Mode::Evaluate;
    run_ = run;
    active_sum = active_count = 0;
    routing_ = UbatchRouting{};
    reset_states();
}

void RoutingTap::end() {
    mode_ = Mode::Off;
    run_ = TapRun{};
}

void RoutingTap::attach(llama_context * ctx) const {
    // A changed graph key makes llama.cpp reserve its compute buffers again at the next decode:
    // nothing submitted to a device may still be using them then.
    llama_synchronize(ctx);
    llama_moe_routing_params p = llama_moe_routing_default_params();
    std::vector<float> bias;
    std::vector<const float *> routers;
    if (run_.pack) {
        routers.assign(layout_.moe_index_of.size(), nullptr);
        for (const RouterPackLayer & L : run_.pack->layers) routers[L.layer] = L.W.data();
        p.router_weights = routers.data();
    }
    if (const Policy * policy = run_.policy) {
        if (policy->amg) {
            p.gate_threshold = policy->amg->threshold;
            p.gate_min_k = policy->amg->min_k;
            p.gate_threshold_full = policy->amg->mode == AmgMode::Full;
        }
        if (policy->max_k && *policy->max_k < layout_.k) p.gate_max_k = *policy->max_k;
        p.skip_dropped = policy->skip;
        if (!policy->biases.empty()) {
            // boosts add up; a disabled expert is -inf whatever else applies to it
            const int n_layer = int(layout_.moe_index_of.size());
            bias.assign(size_t(n_layer) * layout_.n_expert, 0.0f);
            for (const ExpertBias & b : policy->biases) {
                if (b.layer < 0 || b.layer >= n_layer || b.expert < 0 || b.expert >= layout_.n_expert) continue;
                float & v = bias[size_t(b.layer) * layout_.n_expert + b.expert];
                v = std::isinf(b.bias) && b.bias < 0 ? -INFINITY : v + b.bias;
            }
            p.logit_bias = bias.data();
        }
    }
    if (run_.record || run_.count_active) p.capture |= LLAMA_MOE_CAPTURE_ROUTING;
    if (run_.record) p.capture |= LLAMA_MOE_CAPTURE_PROBS;  // entropy and top-n
    if (run_.record && run_.expert_norms) p.capture |= LLAMA_MOE_CAPTURE_NORMS;
    if (p.capture != LLAMA_MOE_CAPTURE_NONE) {
        p.capture_callback = routing_callback;
        p.capture_user_data = const_cast<RoutingTap *>(this);
    }
    if (!llama_set_moe_routing(ctx, &p)) throw std::runtime_error("llama.cpp refused the routing policy (llama_set_moe_routing)");
}

void RoutingTap::begin_ubatch(int n_rows) {
    const int L = int(layout_.moe_layers.size()), K = layout_.k, E = layout_.n_expert;
    const int N = run_.top_n;
    rows_seen_ = 0;
    routing_.n_rows = n_rows;
    if (run_.record) {
        routing_.experts.assign(size_t(n_rows) * L * K, -1);
        routing_.weights.assign(size_t(n_rows) * L * K, 0.0f);
        routing_.norms.assign(run_.expert_norms ? size_t(n_rows) * L * K : 0, 0.0f);
        routing_.probs.assign(run_.full_probs ? size_t(n_rows) * L * E : 0, 0);
        routing_.entropy.assign(size_t(n_rows) * L, NAN);
        routing_.active.assign(size_t(n_rows) * L, 0);
        routing_.top_ids.assign(size_t(n_rows) * L * N, -1);
        routing_.top_probs.assign(size_t(n_rows) * L * N, 0.0f);
    }
    if (run_.capture_logits) routing_.logits.assign(size_t(n_rows) * L * E, NAN);
}

void RoutingTap::reset_states() {
    states_.assign(layout_.moe_layers.size(), LayerRouterState{});
    for (auto & s : states_) s.reset(layout_.n_expert);
    pack_states_.assign(layout_.moe_layers.size(), PackState{});
}

void RoutingTap::routing_callback(const llama_moe_routing_ubatch * ub, void * user_data) {
    static_cast<RoutingTap *>(user_data)->on_routing(*ub);
}

// One MoE layer's rows of a ubatch into `routing_` (cells of this layer only).
void RoutingTap::record_layer(const llama_moe_routing_ubatch & ub, int m, double & layer_active_sum, double & layer_active_count) {
    const int L = int(layout_.moe_layers.size()), K = layout_.k, E = layout_.n_expert, N = run_.top_n;
    const int il = layout_.moe_layers[m];
    if (il >= ub.n_layer || !ub.weights[il] || ub.n_expert_used != K) return;
    const int32_t * ids = ub.experts[il];
    const float * w = ub.weights[il];
    const float * probs = ub.probs[il];
    const float * norms = ub.norms[il];
    const int n_rows = ub.n_rows[il];
    const bool every_row = n_rows == ub.n_tokens;
    for (int r = 0; r < n_rows; ++r) {
        int active = 0;
        for (int i = 0; i < K; ++i) active += w[size_t(r) * K + i] != 0.0f;
        if (run_.count_active) {
            layer_active_sum += active;
            layer_active_count += 1;
        }
        const int row = rows_seen_ + r;
        if (!run_.record || !every_row || row >= routing_.n_rows) continue;
        const size_t at = (size_t(row) * L + m) * K;
        std::memcpy(&routing_.experts[at], ids + size_t(r) * K, K * sizeof(int32_t));
        std::memcpy(&routing_.weights[at], w + size_t(r) * K, K * sizeof(float));
        if (norms && !routing_.norms.empty()) std::memcpy(&routing_.norms[at], norms + size_t(r) * K, K * sizeof(float));
        routing_.active[size_t(row) * L + m] = uint8_t(active);
        if (probs) {
            const float * p = probs + size_t(r) * E;
            routing_.entropy[size_t(row) * L + m] = entropy_nats(p, E);
            if (!routing_.probs.empty()) {
                uint16_t * h = &routing_.probs[(size_t(row) * L + m) * E];
                for (int e = 0; e < E; ++e) h[e] = ggml_fp32_to_fp16(p[e]);
            }
            if (N > 0) {
                const size_t tn = (size_t(row) * L + m) * N;
                top_n(p, E, N, &routing_.top_ids[tn], &routing_.top_probs[tn]);
            }
        }
    }
}

// Rows of a ubatch from which the CPU threads are paused while its records are computed.
static constexpr int kPauseThreadsMinRows = 64;

// One ubatch of captured routing. Rows arrive in batch order (one sequence per decode, or
// several for perplexity, which only counts), continuing where the previous ubatch stopped.
// llama.cpp evaluates its last layer for the output rows only: traces ask for every output, so
// such a layer has fewer rows only where nothing is recorded (perplexity), and is counted as is.
void RoutingTap::on_routing(const llama_moe_routing_ubatch & ub) {
    if (mode_ != Mode::Evaluate) return;
    // The CPU threads have just finished the ubatch's graph and would spin (ggml's polling)
    // on the cores the records and the NLL are computed on next. Paused, they sleep, and the
    // next graph compute wakes them. Only for a ubatch of many rows: at batch 1 the records
    // take microseconds and waking the threads for every token cost about 8 % of decode speed
    // (demo model, 2 cores). On the 48-layer, 128-expert random model (moe-lens-bench
    // overhead, 20 runs alternating builds) the median overhead went from 1.087 to 1.072.
    if (run_.cpu_threadpool && ub.n_tokens >= kPauseThreadsMinRows) ggml_threadpool_pause(run_.cpu_threadpool);
    const int L = int(layout_.moe_layers.size());
    // Layers are independent: each thread fills its own layers' cells and counts its own actives.
    std::vector<double> active_sums(L, 0.0), active_counts(L, 0.0);
    parallel_ranges(run_.host_threads, 0, L, 4, [&](int m0, int m1) {
        for (int m = m0; m < m1; ++m) record_layer(ub, m, active_sums[m], active_counts[m]);
    });
    for (int m = 0; m < L; ++m) {
        active_sum += active_sums[m];
        active_count += active_counts[m];
    }
    rows_seen_ += ub.n_tokens;
}

// ---- the eval callback: discovery, stateful logit policies, calibration ------------------------

bool RoutingTap::wants(MoeNode kind) const {
    const bool host_logits = stateful_logits() || pack_on_host() || run_.capture_logits;
    switch (kind) {
        case MoeNode::Logits: return layout_.has_logits_node && host_logits;
        case MoeNode::Probs: return !layout_.has_logits_node && host_logits;
        default: return false;
    }
}

bool RoutingTap::eval_callback(ggml_tensor * t, bool ask, void * user_data) {
    auto * tap = static_cast<RoutingTap *>(user_data);
    if (tap->mode_ == Mode::Off) return !ask;

    MoeNode kind;
    int layer;
    if (!parse_moe_node_name(t->name, kind, layer)) return !ask;

    if (tap->mode_ == Mode::Discover) {
        if (!ask) tap->discover(t, kind, layer);
        return true;
    }

    const int m = tap->layout_.moe_index(layer);
    if (m < 0) return !ask;
    if (ask) return tap->wants(kind);
    if (kind == MoeNode::Logits || kind == MoeNode::Probs) tap->on_scores(t, m);
    return true;
}

void RoutingTap::on_scores(ggml_tensor * t, int m) {
    read_f32(t, buf_);
    const int E = int(t->ne[0]);
    const int n = int(ggml_nelements(t) / E);
    const int L = int(layout_.moe_layers.size());
    if (pack_on_host()) {
        // the router input is the logits matmul's second operand, alive until the expert matmuls
        const RouterPack & pack = *run_.pack;
        read_f32(t->src[1], x_);
        GGML_ASSERT(int(x_.size()) == n * pack.n_embd);
        for (int r = 0; r < n; ++r) apply_pack(pack, pack.layers[m], pack_states_[m], &x_[size_t(r) * pack.n_embd], &buf_[size_t(r) * E]);
    }
    if (run_.capture_logits) {
        for (int r = 0; r < n && r < routing_.n_rows; ++r)
            std::memcpy(&routing_.logits[(size_t(r) * L + m) * E], &buf_[size_t(r) * E], E * sizeof(float));
    }
    if (!stateful_logits()) {
        if (pack_on_host()) ggml_backend_tensor_set(t, buf_.data(), 0, ggml_nbytes(t));
        return;
    }
    const Policy & policy = *run_.policy;
    const AntPredictor * ant = run_.ant;
    const bool use_ant = ant && (policy.ant || policy.pi) && m < int(ant->layers.size());
    const AntLayer * ant_layer = use_ant ? &ant->layers[m] : nullptr;
    for (int r = 0; r < n; ++r) apply_logit_policies(policy, ant_layer, use_ant ? ant->beta : 0.0f, states_[m], &buf_[size_t(r) * E], E);
    ggml_backend_tensor_set(t, buf_.data(), 0, ggml_nbytes(t));
}

}  // namespace moelens
