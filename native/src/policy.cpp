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

static void update_membrane(std::vector<float> & U, const float * z, int n, float beta, BetaForm form, const std::optional<float> & theta) {
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

void apply_logit_policies(const Policy & policy, const AntLayer * ant, float ant_beta, LayerRouterState & st, float * z, int n) {
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
            if (!st.started)
                st.ant_memory.assign(raw.begin(), raw.end());
            else
                update_membrane(st.ant_memory, raw.data(), n, beta, BetaForm::ScalePreserving, std::nullopt);
            st.prediction = st.ant_memory;
        }
    }

    st.started = true;
    std::copy(route.begin(), route.end(), z);
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
    std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    for (int i = 0; i < n; ++i) {
        ids_out[i] = idx[i];
        vals_out[i] = p[idx[i]];
    }
}

}  // namespace moelens
