// What the server computes: routing traces (windowed), llama-perplexity's perplexity,
// generation with routing, and router-logit capture for calibration (native/API.md).
#pragma once

#include "model_session.h"
#include "policy.h"

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace moelens {

// Writes one NDJSON line to the client; returns false when the client has gone.
using Emit = std::function<bool(const nlohmann::json & record)>;

struct Window {
    int start, end;    // tokens evaluated, [start, end)
    int scored_from;   // first token recorded
    int recorded_end;  // one past the last token recorded
};

// Windows of n_ctx tokens over T tokens such that every token is recorded exactly once and
// its successor lies in the same window (see native/API.md, "Windows").
std::vector<Window> plan_windows(int n_tokens, int n_ctx);

struct TraceRequest {
    TokenizedText text;
    Policy policy;
    int top_n = 0;
    bool expert_norms = false;  // batch records carry ‖expert output‖₂ per selected slot
    bool full_probs = false;    // batch records carry the whole router distribution (f16)
};

// Streams header, batches and summary. Returns false if the client went away.
bool run_trace(ModelSession & s, const TraceRequest & req, const AntPredictor * ant, const Emit & emit);

struct GenerateRequest {
    TokenizedText prompt;
    Policy policy;
    int n_predict = 64;
    float temperature = 0.8f;
    int top_k = 40;
    float top_p = 0.95f;
    uint32_t seed = 42;
    int top_n = 0;
};
bool run_generate(ModelSession & s, const GenerateRequest & req, const AntPredictor * ant, const Emit & emit);

nlohmann::json run_perplexity(ModelSession & s, const std::vector<llama_token> & tokens, int n_ctx, int n_batch, const Policy & policy,
                              const AntPredictor * ant);

nlohmann::json run_calibrate(ModelSession & s, const std::vector<llama_token> & tokens);

struct SpeedRequest {
    std::vector<llama_token> tokens;  // the text, with BOS
    Policy policy;
    int n_prefill = 0;  // tokens evaluated for the prefill rate (0: all of them)
    int n_prompt = 32;  // tokens of the text before decoding starts
    int n_decode = 64;  // tokens generated one at a time (greedy) for the decode rate
};

// Prefill and batch-1 decode speed under a policy, timed inside the server (native/API.md).
nlohmann::json run_speed(ModelSession & s, const SpeedRequest & req, const AntPredictor * ant);

// Tokens [from, to) of sequence 0 as a batch at positions pos0, pos0 + 1, …, every logit on
// (free it with llama_batch_free).
llama_batch sequence_batch(const std::vector<llama_token> & tokens, int from, int to, int pos0);

// -log p(token | logits) in nats, computed as llama-perplexity does (perplexity).
double token_nll(const float * logits, int n_vocab, llama_token token);
// The same, vectorised in float (traces and generation; native/src/fast_nll.cpp).
double token_nll_fast(const float * logits, int n_vocab, llama_token token);

}  // namespace moelens
