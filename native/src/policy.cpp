#include "policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moelens {

void LayerRouterState::reset(int n_expert) {
    membrane.assign(n_expert, 0.0f);
    ant_memory.assign(n_expert, 0.0f);
    prediction.clear();
    variance.assign(n_expert, 1.0f);
    precision.assign(n_expert, 1.0f);
    started = false;
}

static void update_membrane(std::vector<float> & U, const float * z, int n, float beta, BetaForm form,
                            const std::optional<float> & theta) {
    const float in_scale = form == BetaForm::ScalePreserving ? 1.0f - beta : 1.0f;
    for (int e = 0; e < n; ++e) {
        float u = beta * U[e] + in_scale * z[e];
        if (theta) u = std::min(u, *theta);
        U[e] = u;
    }
}

static void predict_next(const AntLayer & ant, const float * z, const float * U, int n, std::vector<float> & out) {
    const int cols = 2 * n + 1;
    out.assign(n, 0.0f);
    for (int r = 0; r < n; ++r) {
        const float * row = ant.W.data() + size_t(r) * cols;
        double acc = row[2 * n];
        for (int c = 0; c < n; ++c) acc += double(row[c]) * z[c] + double(row[n + c]) * U[c];
        out[r] = float(acc);
    }
}

void apply_logit_policies(const Policy & policy, int layer, const AntLayer * ant, float ant_beta,
                          LayerRouterState & st, float * z, int n) {
    if (int(st.membrane.size()) != n) st.reset(n);
    const std::vector<float> raw(z, z + n);

    // Π's error: raw logits against the prediction made one step earlier.
    if (policy.pi && !st.prediction.empty()) {
        const float m = policy.pi->momentum;
        for (int e = 0; e < n; ++e) {
            const float err = raw[e] - st.prediction[e];
            st.variance[e] = m * st.variance[e] + (1.0f - m) * err * err;
        }
    }

    // β: route on the membrane (mixed with the raw logits).
    std::vector<float> route = raw;
    if (policy.beta) {
        const BetaParams & b = *policy.beta;
        update_membrane(st.membrane, raw.data(), n, b.beta, b.form, b.theta);
        for (int e = 0; e < n; ++e) route[e] = (1.0f - b.mix) * raw[e] + b.mix * st.membrane[e];
    }

    // Ant: the fit's own memory, then the forecast of the next step's logits.
    std::vector<float> forecast;
    if (ant) {
        update_membrane(st.ant_memory, raw.data(), n, ant_beta, BetaForm::ScalePreserving, std::nullopt);
        predict_next(*ant, raw.data(), st.ant_memory.data(), n, forecast);
        if (policy.ant)
            for (int e = 0; e < n; ++e) route[e] += policy.ant->gamma * forecast[e];
    }

    // Π: precision π_e = 1/(var_e+ε), normalised to mean 1, multiplies the routing logits.
    if (policy.pi) {
        double sum = 0;
        for (int e = 0; e < n; ++e) {
            st.precision[e] = 1.0f / (st.variance[e] + policy.pi->eps);
            sum += st.precision[e];
        }
        const float mean = float(sum / n);
        for (int e = 0; e < n; ++e) {
            st.precision[e] /= mean;
            route[e] *= st.precision[e];
        }
        // The prediction of the next step: Ant's when fitted, else the scale-preserving β memory.
        if (ant) {
            st.prediction = forecast;
        } else {
            const float beta = policy.beta ? policy.beta->beta : 0.9f;
            if (!st.started) st.ant_memory.assign(raw.begin(), raw.end());
            else update_membrane(st.ant_memory, raw.data(), n, beta, BetaForm::ScalePreserving, std::nullopt);
            st.prediction = st.ant_memory;
        }
    }

    for (const ExpertBias & b : policy.biases) {
        if (b.layer != layer || b.expert < 0 || b.expert >= n) continue;
        route[b.expert] = std::isinf(b.bias) && b.bias < 0 ? -INFINITY : route[b.expert] + b.bias;
    }

    st.started = true;
    std::copy(route.begin(), route.end(), z);
}

int amg_gate(const AmgParams * amg, int cap, float * w, int k, const int32_t * ids, const float * full_probs, int n_expert) {
    double mass = 0;
    for (int i = 0; i < k; ++i) mass += w[i];
    int keep = std::min(k, std::max(cap, 1));

    if (amg) {
        // Walk in descending weight (the selection order is by router score, which can differ
        // from the final weight order for biased selection, so sort a copy of the indices).
        std::vector<int> order(k);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return w[a] > w[b]; });
        const bool full = amg->mode == AmgMode::Full && full_probs && ids;
        double denom = mass;
        if (full) {
            denom = 0;
            for (int e = 0; e < n_expert; ++e) denom += std::max(0.0f, full_probs[e]);
        }
        int n_keep = 0;
        double cum = 0;
        const double target = double(amg->threshold) * denom;
        while (n_keep < k) {
            cum += full ? full_probs[ids[order[n_keep]]] : w[order[n_keep]];
            ++n_keep;
            if (cum >= target * (1.0 - 1e-6)) break;  // a share equal to τ in float precision counts as reached
        }
        n_keep = std::max(n_keep, std::min(amg->min_k, k));
        keep = std::min(keep, n_keep);
        // Zero everything outside the kept prefix of the weight order.
        std::vector<char> kept(k, 0);
        for (int i = 0; i < keep; ++i) kept[order[i]] = 1;
        for (int i = 0; i < k; ++i)
            if (!kept[i]) w[i] = 0.0f;
    } else if (keep < k) {
        std::vector<int> order(k);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return w[a] > w[b]; });
        for (int i = keep; i < k; ++i) w[order[i]] = 0.0f;
    }

    if (keep == k) return k;  // nothing dropped: leave the weights bit-identical
    double kept_mass = 0;
    for (int i = 0; i < k; ++i) kept_mass += w[i];
    if (kept_mass > 0) {
        const double s = mass / kept_mass;
        for (int i = 0; i < k; ++i) w[i] = float(w[i] * s);
    }
    return keep;
}

float entropy_nats(const float * p, int n) {
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += std::max(0.0f, p[i]);
    if (sum <= 0) return 0.0f;
    double h = 0;
    for (int i = 0; i < n; ++i) {
        const double q = std::max(0.0f, p[i]) / sum;
        if (q > 0) h -= q * std::log(q);
    }
    return float(h);
}

void top_n(const float * p, int n_total, int n, int32_t * ids_out, float * vals_out) {
    std::vector<int> idx(n_total);
    std::iota(idx.begin(), idx.end(), 0);
    n = std::min(n, n_total);
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int a, int b) {
        return p[a] > p[b] || (p[a] == p[b] && a < b);
    });
    for (int i = 0; i < n; ++i) {
        ids_out[i] = idx[i];
        vals_out[i] = p[idx[i]];
    }
}

}  // namespace moelens
