#include "routing_tap.h"

#include "ggml-backend.h"
#include "ggml.h"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace moelens {

bool parse_moe_node_name(const char * name, MoeNode & kind, int & layer) {
    static const struct { const char * prefix; MoeNode kind; } kNames[] = {
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
    return k == MoeNode::Weights || k == MoeNode::WeightsSoftmax || k == MoeNode::WeightsNorm ||
           k == MoeNode::WeightsScaled;
}

void RoutingTap::begin_ubatch(int n_rows) {
    const int L = int(layout_.moe_layers.size()), K = layout_.k, E = layout_.n_expert;
    routing.n_rows = n_rows;
    if (record) {
        routing.experts.assign(size_t(n_rows) * L * K, -1);
        routing.weights.assign(size_t(n_rows) * L * K, 0.0f);
        routing.entropy.assign(size_t(n_rows) * L, NAN);
        routing.active.assign(size_t(n_rows) * L, 0);
        routing.top_ids.assign(size_t(n_rows) * L * top_n, -1);
        routing.top_probs.assign(size_t(n_rows) * L * top_n, 0.0f);
    }
    if (capture_logits) routing.logits.assign(size_t(n_rows) * L * E, NAN);
}

void RoutingTap::reset_states() {
    states.assign(layout_.moe_layers.size(), LayerRouterState{});
    for (auto & s : states) s.reset(layout_.n_expert);
}

bool RoutingTap::wants(MoeNode kind) const {
    const bool logit_policy = policy && policy->changes_logits();
    const bool weight_policy = policy && policy->changes_weights(layout_.k);
    const bool amg_full = policy && policy->amg && policy->amg->mode == AmgMode::Full;
    switch (kind) {
        case MoeNode::Logits:
            return layout_.has_logits_node && (logit_policy || capture_logits);
        case MoeNode::Probs:
            return record || amg_full || (!layout_.has_logits_node && (logit_policy || capture_logits));
        case MoeNode::TopK:
            return false;  // read together with the final weights (see pending_topk_)
        default:
            return kind == layout_.final_weights && (record || weight_policy);
    }
}

bool RoutingTap::callback(ggml_tensor * t, bool ask, void * user_data) {
    auto * tap = static_cast<RoutingTap *>(user_data);
    if (tap->mode == Mode::Off) return !ask;

    MoeNode kind;
    int layer;
    if (!parse_moe_node_name(t->name, kind, layer)) return !ask;

    if (tap->mode == Mode::Discover) {
        if (ask) return true;
        tap->discover(t, kind, layer);
        return true;
    }

    const int m = tap->layout_.moe_index(layer);
    if (m < 0) return !ask;
    if (ask) {
        if (kind == MoeNode::TopK) tap->pending_topk_ = t;
        return tap->wants(kind);
    }

    switch (kind) {
        case MoeNode::Logits: tap->on_scores(t, m, layer); break;
        case MoeNode::Probs:
            if (!tap->layout_.has_logits_node) tap->on_scores(t, m, layer);  // the scores are the probs
            tap->on_probs(t, m);
            break;
        default:
            if (kind == tap->layout_.final_weights) tap->on_weights(t, m);
            break;
    }
    return true;
}

// Reads a contiguous f32 tensor into buf_.
static void read_f32(ggml_tensor * t, std::vector<float> & buf) {
    GGML_ASSERT(t->type == GGML_TYPE_F32 && ggml_is_contiguous(t));
    buf.resize(ggml_nelements(t));
    ggml_backend_tensor_get(t, buf.data(), 0, ggml_nbytes(t));
}

void RoutingTap::on_scores(ggml_tensor * t, int m, int layer) {
    read_f32(t, buf_);
    const int E = int(t->ne[0]);
    const int n = int(ggml_nelements(t) / E);
    const int L = int(layout_.moe_layers.size());
    if (capture_logits) {
        for (int r = 0; r < n && r < routing.n_rows; ++r)
            std::memcpy(&routing.logits[(size_t(r) * L + m) * E], &buf_[size_t(r) * E], E * sizeof(float));
    }
    if (!policy || !policy->changes_logits()) return;
    const bool use_ant = ant && (policy->ant || policy->pi) && m < int(ant->layers.size());
    const AntLayer * ant_layer = use_ant ? &ant->layers[m] : nullptr;
    for (int r = 0; r < n; ++r)
        apply_logit_policies(*policy, layer, ant_layer, use_ant ? ant->beta : 0.0f, states[m], &buf_[size_t(r) * E], E);
    ggml_backend_tensor_set(t, buf_.data(), 0, ggml_nbytes(t));
}

void RoutingTap::on_probs(ggml_tensor * t, int m) {
    read_f32(t, buf_);
    const int E = int(t->ne[0]);
    const int n = int(ggml_nelements(t) / E);
    const int L = int(layout_.moe_layers.size());
    if (policy && policy->amg && policy->amg->mode == AmgMode::Full) probs_ = buf_;
    if (!record) return;
    for (int r = 0; r < n && r < routing.n_rows; ++r) {
        const float * p = &buf_[size_t(r) * E];
        routing.entropy[size_t(r) * L + m] = entropy_nats(p, E);
        if (top_n > 0) {
            const size_t at = (size_t(r) * L + m) * top_n;
            moelens::top_n(p, E, top_n, &routing.top_ids[at], &routing.top_probs[at]);
        }
    }
}

void RoutingTap::on_topk(ggml_tensor * t, int m) {
    GGML_ASSERT(t->type == GGML_TYPE_I32);
    // A view of the argsort result: rows are strided by nb[1].
    std::vector<char> raw(ggml_nbytes(t));
    ggml_backend_tensor_get(t, raw.data(), 0, raw.size());
    const int K = int(t->ne[0]);
    const int n = int(t->ne[1] * t->ne[2] * t->ne[3]);
    const int L = int(layout_.moe_layers.size());
    ids_.resize(size_t(n) * K);
    for (int r = 0; r < n; ++r)
        for (int i = 0; i < K; ++i) {
            int32_t id;
            std::memcpy(&id, raw.data() + size_t(r) * t->nb[1] + size_t(i) * t->nb[0], sizeof(id));
            ids_[size_t(r) * K + i] = id;
            if (record && r < routing.n_rows) routing.experts[(size_t(r) * L + m) * layout_.k + i] = id;
        }
}

void RoutingTap::on_weights(ggml_tensor * t, int m) {
    ids_.clear();
    if (pending_topk_ && (record || (policy && policy->amg && policy->amg->mode == AmgMode::Full))) on_topk(pending_topk_, m);
    pending_topk_ = nullptr;
    read_f32(t, buf_);
    const int K = layout_.k;
    const int n = int(ggml_nelements(t) / K);
    const int L = int(layout_.moe_layers.size());
    const bool gate = policy && policy->changes_weights(K);
    const int cap = policy && policy->max_k && *policy->max_k < K ? *policy->max_k : K;
    const bool have_ids = ids_.size() == size_t(n) * K;
    const bool have_probs = probs_.size() == size_t(n) * layout_.n_expert;
    for (int r = 0; r < n; ++r) {
        float * w = &buf_[size_t(r) * K];
        int active = 0;
        if (gate) {
            active = amg_gate(policy->amg ? &*policy->amg : nullptr, cap, w, K,
                              have_ids ? &ids_[size_t(r) * K] : nullptr,
                              have_probs ? &probs_[size_t(r) * layout_.n_expert] : nullptr, layout_.n_expert);
        } else {
            for (int i = 0; i < K; ++i) active += w[i] != 0.0f;
        }
        active_sum += active;
        active_count += 1;
        if (record && r < routing.n_rows) {
            std::memcpy(&routing.weights[(size_t(r) * L + m) * K], w, K * sizeof(float));
            routing.active[size_t(r) * L + m] = uint8_t(active);
        }
    }
    if (gate) ggml_backend_tensor_set(t, buf_.data(), 0, ggml_nbytes(t));
}

void RoutingTap::discover(ggml_tensor * t, MoeNode kind, int layer) {
    if (layer >= int(disc_kinds_.size())) {
        disc_kinds_.resize(layer + 1);
        disc_logits_.resize(layer + 1);
        disc_probs_.resize(layer + 1);
        disc_weights_.resize(layer + 1);
        disc_k_.resize(layer + 1, 0);
        disc_e_.resize(layer + 1, 0);
    }
    discovered_names.push_back(t->name);
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
        disc_probs_[layer].assign(v.begin(), v.begin() + t->ne[0]);
    } else if (is_weights_kind(kind)) {
        disc_weights_[layer].push_back(v.empty() ? 0.0f : v[0]);
    }
}

}  // namespace moelens
