// The trace's per-token NLL: one log-softmax over the vocabulary per token, the largest
// cost of a trace on small models. Compiled with -ffast-math (see CMakeLists.txt) so the
// exp loop vectorises; float accumulation is accurate to ~1e-6 relative, far inside what a
// trace shows. Perplexity keeps llama-perplexity's exact double sum (token_nll).
#include "evaluations.h"

#include <cmath>

namespace moelens {

double token_nll_fast(const float * logits, int n_vocab, llama_token token) {
    float max_logit = logits[0];
    for (int i = 1; i < n_vocab; ++i) max_logit = logits[i] > max_logit ? logits[i] : max_logit;
    float sum = 0.0f;
    for (int i = 0; i < n_vocab; ++i) sum += expf(logits[i] - max_logit);
    return double(max_logit) + double(logf(sum)) - double(logits[token]);
}

}  // namespace moelens
