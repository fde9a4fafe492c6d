#include "evaluations.h"

#include "base64.h"
#include "parallel.h"
#include "policy_json.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

namespace moelens {

using nlohmann::json;

std::vector<Window> plan_windows(int T, int n_ctx) {
    std::vector<Window> ws;
    int start = 0, rec = 0;
    for (;;) {
        const int end = std::min(start + n_ctx, T);
        const bool last = end == T;
        const int rec_end = last ? T : end - 1;
        ws.push_back({start, end, rec, rec_end});
        if (last) break;
        rec = rec_end;
        start = rec - n_ctx / 2;
    }
    return ws;
}

double token_nll(const float * logits, int n_vocab, llama_token token) {
    float max_logit = logits[0];
    for (int i = 1; i < n_vocab; ++i) max_logit = std::max(max_logit, logits[i]);
    double sum_exp = 0.0;
    for (int i = 0; i < n_vocab; ++i) sum_exp += expf(logits[i] - max_logit);
    return -(logits[token] - max_logit - log(sum_exp));
}

// Sets up the tap for one evaluation on one context and restores both afterwards, also on
// exceptions (the context's in-graph routing is reset, so a later plain decode is unmodified).
struct TapScope {
    RoutingTap & tap;
    llama_context * ctx;
    TapScope(ModelSession & s, llama_context * c, TapRun run) : tap(s.tap), ctx(c) {
        run.pack = s.router_pack ? &*s.router_pack : nullptr;
        run.host_threads = llama_n_threads(c);
        run.cpu_threadpool = s.cpu_threadpool();
        tap.begin(run);
        tap.attach(ctx);
    }
    ~TapScope() {
        tap.end();
        tap.attach(ctx);  // with the run ended: no policy, no capture
    }
};

// Accumulates per-token records of one decode into the typed arrays of a `batch` record.
struct BatchBuilder {
    int L, K, N, E = 0;
    std::vector<int32_t> ids, spans, experts, top_ids;
    std::vector<float> nll, weights, norms, entropy, top_probs;
    std::vector<uint16_t> probs;  // IEEE half, [token][layer][expert], when asked
    std::vector<uint8_t> active;
    std::vector<std::string> pieces;
    int start = -1, count = 0;

    void add(int g, const TokenizedText & text, const UbatchRouting & r, int row, double nll_value) {
        if (start < 0) start = g;
        ++count;
        ids.push_back(text.tokens[g]);
        spans.push_back(text.byte_start[g]);
        spans.push_back(text.byte_end[g]);
        pieces.push_back(text.pieces[g]);
        nll.push_back(float(nll_value));
        experts.insert(experts.end(), r.experts.begin() + size_t(row) * L * K, r.experts.begin() + size_t(row + 1) * L * K);
        weights.insert(weights.end(), r.weights.begin() + size_t(row) * L * K, r.weights.begin() + size_t(row + 1) * L * K);
        if (!r.norms.empty()) norms.insert(norms.end(), r.norms.begin() + size_t(row) * L * K, r.norms.begin() + size_t(row + 1) * L * K);
        if (!r.probs.empty()) probs.insert(probs.end(), r.probs.begin() + size_t(row) * L * E, r.probs.begin() + size_t(row + 1) * L * E);
        entropy.insert(entropy.end(), r.entropy.begin() + size_t(row) * L, r.entropy.begin() + size_t(row + 1) * L);
        active.insert(active.end(), r.active.begin() + size_t(row) * L, r.active.begin() + size_t(row + 1) * L);
        if (N > 0) {
            top_ids.insert(top_ids.end(), r.top_ids.begin() + size_t(row) * L * N, r.top_ids.begin() + size_t(row + 1) * L * N);
            top_probs.insert(top_probs.end(), r.top_probs.begin() + size_t(row) * L * N, r.top_probs.begin() + size_t(row + 1) * L * N);
        }
    }
    json take() {
        json j = {{"type", "batch"},
                  {"start", start},
                  {"count", count},
                  {"token_ids", base64_of(ids)},
                  {"byte_spans", base64_of(spans)},
                  {"pieces", pieces},
                  {"nll", base64_of(nll)},
                  {"experts", base64_of(experts)},
                  {"weights", base64_of(weights)},
                  {"entropy", base64_of(entropy)},
                  {"active", base64_of(active)}};
        if (!norms.empty()) j["expert_norms"] = base64_of(norms);
        if (!probs.empty()) j["probs"] = base64_of(probs);
        if (N > 0) {
            j["top_ids"] = base64_of(top_ids);
            j["top_probs"] = base64_of(top_probs);
        }
        *this = BatchBuilder{L, K, N, E};
        return j;
    }
};

// Running totals for the summary record.
struct SummaryBuilder {
    int L, E, K;
    double nll_sum = 0;
    long nll_count = 0;
    long tokens = 0;
    std::vector<double> active_per_layer;
    std::vector<std::vector<long>> usage;
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();

    SummaryBuilder(int L_, int E_, int K_) : L(L_), E(E_), K(K_), active_per_layer(L_, 0.0), usage(L_, std::vector<long>(E_, 0)) {}

    void add(const UbatchRouting & r, int row, double nll) {
        ++tokens;
        if (std::isfinite(nll)) {
            nll_sum += nll;
            ++nll_count;
        }
        for (int m = 0; m < L; ++m) {
            active_per_layer[m] += r.active[size_t(row) * L + m];
            for (int i = 0; i < K; ++i) {
                const size_t at = (size_t(row) * L + m) * K + i;
                const int e = r.experts[at];
                if (e >= 0 && e < E && r.weights[at] != 0.0f) ++usage[m][e];
            }
        }
    }
    json take() const {
        json per_layer = json::array();
        double total = 0;
        for (double a : active_per_layer) {
            per_layer.push_back(tokens ? a / tokens : 0.0);
            total += a;
        }
        const double mean = nll_count ? nll_sum / nll_count : NAN;
        return {{"type", "summary"},
                {"n_tokens", tokens},
                {"mean_nll", nll_count ? json(mean) : json(nullptr)},
                {"ppl", nll_count ? json(std::exp(mean)) : json(nullptr)},
                {"avg_active", tokens ? total / (double(tokens) * L) : 0.0},
                {"avg_active_per_layer", per_layer},
                {"usage", usage},
                {"elapsed_ms", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()}};
    }
};

static json header_record(ModelSession & s, const Policy & policy, int top_n, int n_tokens, const std::vector<Window> & ws,
                          int kv_shift = 0, bool probs = false) {
    json windows = json::array();
    for (const Window & w : ws)
        windows.push_back({{"start", w.start}, {"end", w.end}, {"scored_from", w.scored_from}, {"recorded_end", w.recorded_end}});
    return {{"type", "header"},
            {"model", s.info()},
            {"policy", policy_to_json(policy)},
            {"n_moe_layers", s.layout().moe_layers.size()},
            {"k", s.layout().k},
            {"top_n", top_n},
            {"n_tokens", n_tokens},
            {"windows", windows},
            {"kv_shift", kv_shift},
            {"probs", probs}};
}

static void check_decode(int rc, ModelSession & s) {
    if (rc == 0) return;
    if (rc == 2 && s.should_abort && s.should_abort()) throw Cancelled();
    throw std::runtime_error("llama_decode failed with status " + std::to_string(rc));
}

llama_batch sequence_batch(const std::vector<llama_token> & tokens, int from, int to, int pos0) {
    const int n = to - from;
    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; ++i) {
        batch.token[i] = tokens[from + i];
        batch.pos[i] = pos0 + i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    return batch;
}

// Decodes tokens[from, to) of one sequence at positions starting at `pos0`, all logits on.
static void decode_span(ModelSession & s, llama_context * ctx, const std::vector<llama_token> & tokens, int from, int to, int pos0) {
    llama_batch batch = sequence_batch(tokens, from, to, pos0);
    s.tap.begin_ubatch(batch.n_tokens);
    const int rc = llama_decode(ctx, batch);
    llama_batch_free(batch);
    check_decode(rc, s);
}

// NLL of the successor of each token in [from, to) (NaN without one inside the window),
// split over the session's threads: after a decode they are idle, and the vocabulary-wide
// log-softmax is a trace's largest cost on small models.
static std::vector<double> next_token_nll(ModelSession & s, llama_context * ctx, const std::vector<llama_token> & tokens, int from, int to,
                                          int pos, int window_end) {
    std::vector<double> out(std::max(0, to - from), NAN);
    const int n_vocab = llama_vocab_n_tokens(s.vocab);
    // The rows are looked up here, on one thread: llama_get_logits_ith synchronizes the context,
    // which writes its timing state (a data race under TSan when called from every thread).
    std::vector<const float *> rows(out.size(), nullptr);
    for (int g = from; g < to; ++g)
        if (g + 1 < window_end) rows[g - from] = llama_get_logits_ith(ctx, g - pos);
    auto work = [&](int a, int b) {
        for (int g = a; g < b; ++g)
            if (rows[g - from]) out[g - from] = token_nll_fast(rows[g - from], n_vocab, tokens[g + 1]);
    };
    parallel_ranges(llama_n_threads(ctx), from, to, 32, work);
    return out;
}

// The first decode of a trace longer than one batch is small, so that a client sees routing
// at once; the rest go in full batches. A text that fits one batch is one decode: splitting it
// would cost a second pass over the expert weights (measured: up to 15 % on 48 layers) and
// show the first routing no sooner than the whole. 32 tokens: on a 48-layer × 128-expert
// model on 2 cores the first batch then arrives in about a second (64 took 3 s under load,
// tools/bench-trace-memory.mjs).
static constexpr int kFirstBatch = 32;

bool run_trace(ModelSession & s, const TraceRequest & req, const AntPredictor * ant, const Emit & emit) {
    const MoeLayout & layout = s.layout();
    const int L = int(layout.moe_layers.size()), K = layout.k, E = layout.n_expert;
    const auto & tokens = req.text.tokens;
    const int T = int(tokens.size());
    llama_context * ctx = s.ctx();
    llama_memory_t mem = llama_get_memory(ctx);
    const int n_ctx = s.n_ctx();
    // Text longer than the context: with a memory that can shift (RoPE attention caches), the
    // oldest half of the context is dropped when it is full and the rest shifted, so every
    // token is evaluated once; otherwise overlapping windows (native/API.md, "Windows").
    const int kv_shift = T > n_ctx && llama_memory_can_shift(mem) ? n_ctx / 2 : 0;
    const std::vector<Window> windows = kv_shift ? std::vector<Window>{{0, T, 0, T}} : plan_windows(T, n_ctx);
    json header = header_record(s, req.policy, req.top_n, T, windows, kv_shift, req.full_probs);
    if (!emit(header)) return false;

    TapRun run;
    run.policy = &req.policy;
    run.ant = ant;
    run.record = true;
    run.top_n = req.top_n;
    run.expert_norms = req.expert_norms;
    run.full_probs = req.full_probs;
    TapScope scope(s, ctx, run);
    BatchBuilder batch{L, K, req.top_n, E};
    SummaryBuilder summary(L, E, K);
    bool first = true;
    for (const Window & w : windows) {
        llama_memory_clear(mem, true);
        s.tap.reset_states();
        int n_past = 0;  // tokens in the KV cache
        for (int pos = w.start; pos < w.end;) {
            if (kv_shift && n_past == n_ctx) {
                llama_memory_seq_rm(mem, 0, 0, kv_shift);
                llama_memory_seq_add(mem, 0, kv_shift, -1, -kv_shift);
                n_past -= kv_shift;
            }
            int n = std::min({s.n_batch(), w.end - pos, n_ctx - n_past});
            if (first && T > s.n_batch()) n = std::min(n, kFirstBatch);
            first = false;
            decode_span(s, ctx, tokens, pos, pos + n, n_past);
            const int from = std::max(pos, w.scored_from), to = std::min(pos + n, w.recorded_end);
            const std::vector<double> nll = next_token_nll(s, ctx, tokens, from, to, pos, w.end);
            for (int g = from; g < to; ++g) {
                batch.add(g, req.text, s.tap.routing(), g - pos, nll[g - from]);
                summary.add(s.tap.routing(), g - pos, nll[g - from]);
            }
            if (batch.count > 0 && !emit(batch.take())) return false;
            pos += n;
            n_past += n;
        }
    }
    return emit(summary.take());
}

bool run_generate(ModelSession & s, const GenerateRequest & req, const AntPredictor * ant, const Emit & emit) {
    const MoeLayout & layout = s.layout();
    const int L = int(layout.moe_layers.size()), K = layout.k, E = layout.n_expert;
    const int n_vocab = llama_vocab_n_tokens(s.vocab);
    TokenizedText text = req.prompt;
    const int P = int(text.tokens.size());
    if (P >= s.n_ctx())
        throw BadRequest("the prompt (" + std::to_string(P) + " tokens) does not fit the context (" + std::to_string(s.n_ctx()) + ")");
    if (!emit(header_record(s, req.policy, req.top_n, P, {{0, P, 0, P}}))) return false;

    llama_sampler * chain = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (req.temperature <= 0) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
    } else {
        llama_sampler_chain_add(chain, llama_sampler_init_top_k(req.top_k));
        llama_sampler_chain_add(chain, llama_sampler_init_top_p(req.top_p, 1));
        llama_sampler_chain_add(chain, llama_sampler_init_temp(req.temperature));
        llama_sampler_chain_add(chain, llama_sampler_init_dist(req.seed));
    }
    std::unique_ptr<llama_sampler, decltype(&llama_sampler_free)> sampler(chain, llama_sampler_free);

    llama_context * ctx = s.ctx();
    TapRun run;
    run.policy = &req.policy;
    run.ant = ant;
    run.record = true;
    run.top_n = req.top_n;
    TapScope scope(s, ctx, run);
    BatchBuilder batch{L, K, req.top_n};
    SummaryBuilder summary(L, E, K);
    llama_memory_clear(llama_get_memory(ctx), true);

    // The prompt, in context-batch pieces; rows of the last piece are kept for the record.
    UbatchRouting last_rows;
    int last_from = 0;
    for (int pos = 0; pos < P; pos += s.n_batch()) {
        const int n = std::min(s.n_batch(), P - pos);
        decode_span(s, ctx, text.tokens, pos, pos + n, pos);
        for (int g = pos; g < pos + n - (pos + n == P ? 1 : 0); ++g) {
            const double nll = token_nll_fast(llama_get_logits_ith(ctx, g - pos), n_vocab, text.tokens[g + 1]);
            batch.add(g, text, s.tap.routing(), g - pos, nll);
            summary.add(s.tap.routing(), g - pos, nll);
        }
        last_rows = s.tap.routing();
        last_from = pos;
    }
    int row = P - 1 - last_from;
    for (int i = 0; i <= req.n_predict; ++i) {
        const int at = int(text.tokens.size()) - 1;
        const float * logits = llama_get_logits_ith(ctx, row);
        const bool stop = i == req.n_predict || int(text.tokens.size()) >= s.n_ctx();
        llama_token next = -1;
        double nll = NAN;
        if (!stop) {
            next = llama_sampler_sample(sampler.get(), ctx, row);
            nll = token_nll_fast(logits, n_vocab, next);
        }
        batch.add(at, text, last_rows, row, nll);
        summary.add(last_rows, row, nll);
        if (!emit(batch.take())) return false;
        if (stop || llama_vocab_is_eog(s.vocab, next)) break;
        // Append the sampled token and evaluate it.
        const std::string p = s.piece(next);
        text.tokens.push_back(next);
        text.pieces.push_back(p);
        text.byte_start.push_back(text.byte_end.back());
        text.byte_end.push_back(text.byte_end.back() + int32_t(p.size()));
        decode_span(s, ctx, text.tokens, at + 1, at + 2, at + 1);
        last_rows = s.tap.routing();
        row = 0;
    }
    return emit(summary.take());
}

json run_perplexity(ModelSession & s, const std::vector<llama_token> & tokens_in, int n_ctx, int n_batch, const Policy & policy,
                    const AntPredictor * ant) {
    std::vector<llama_token> tokens = tokens_in;
    if (int(tokens.size()) < 2 * n_ctx)
        throw BadRequest("perplexity needs at least " + std::to_string(2 * n_ctx) + " tokens for n_ctx=" + std::to_string(n_ctx) +
                         "; the text has " + std::to_string(tokens.size()));
    // Stateful policies need each sequence's rows in token order: one chunk per batch and
    // every output on (so the last layer's MoE sees every row).
    const RouterPack * pack = s.router_pack ? &*s.router_pack : nullptr;
    const bool ordered = policy.needs_token_order() || (pack && pack->needs_token_order());
    // only the stateful policies need llama.cpp's eval callback; the rest runs in the graph
    const bool host_policy = policy.needs_token_order() || (pack && pack->any_mechanism());
    const int n_seq = ordered ? 1 : std::max(1, n_batch / n_ctx);
    const int n_ctx_all = n_seq * n_ctx;
    n_batch = ordered ? n_ctx : std::min(n_batch, n_ctx_all);
    if (!(n_batch < n_ctx || n_batch % n_ctx == 0)) throw BadRequest("n_batch must be below n_ctx or a multiple of it");

    const llama_context_ptr ctx = s.make_context(n_ctx_all, n_batch, std::min(512, n_batch), n_seq, host_policy);
    const bool add_bos = llama_vocab_get_add_bos(s.vocab);
    const int n_vocab = llama_vocab_n_tokens(s.vocab);
    const int n_chunk = int(tokens.size()) / n_ctx;
    const int num_batches = (n_ctx + n_batch - 1) / n_batch;
    const int first = n_ctx / 2;

    TapRun run;
    run.policy = &policy;
    run.ant = ant;
    run.count_active = policy.changes_weights(s.layout().k);
    TapScope scope(s, ctx.get(), run);

    llama_batch batch = llama_batch_init(std::min(n_batch, n_ctx * n_seq), 0, 1);
    std::unique_ptr<llama_batch, void (*)(llama_batch *)> batch_guard(&batch, [](llama_batch * b) { llama_batch_free(*b); });
    std::vector<float> logits;
    double nll = 0, nll2 = 0;
    long count = 0;
    json chunk_ppl = json::array();
    for (int i = 0; i < n_chunk; i += n_seq) {
        const int start = i * n_ctx, end = start + n_ctx;
        const int n_seq_batch = std::min(n_seq, n_chunk - i);
        llama_memory_clear(llama_get_memory(ctx.get()), true);
        s.tap.reset_states();
        for (int j = 0; j < num_batches; ++j) {
            const int batch_start = start + j * n_batch;
            const int batch_size = std::min(end - batch_start, n_batch);
            int n_outputs = 0;
            batch.n_tokens = 0;
            for (int seq = 0; seq < n_seq_batch; ++seq) {
                const int seq_start = batch_start + seq * n_ctx;
                const llama_token original = tokens[seq_start];
                if (add_bos && j == 0) tokens[seq_start] = llama_vocab_bos(s.vocab);
                for (int k = 0; k < batch_size; ++k) {
                    const int idx = seq * n_ctx + k;
                    batch.token[idx] = tokens[seq_start + k];
                    batch.pos[idx] = j * n_batch + k;
                    batch.n_seq_id[idx] = 1;
                    batch.seq_id[idx][0] = seq;
                    batch.logits[idx] = ordered || batch.pos[idx] >= first ? 1 : 0;
                    n_outputs += batch.logits[idx] != 0;
                }
                batch.n_tokens += batch_size;
                tokens[seq_start] = original;
            }
            s.tap.begin_ubatch(batch.n_tokens);
            check_decode(llama_decode(ctx.get(), batch), s);
            if (num_batches > 1 && n_outputs > 0) {
                // Only reached without stateful policies (they use n_batch = n_ctx), so the
                // outputs are exactly the scored rows, as in llama-perplexity.
                const float * bl = llama_get_logits(ctx.get());
                logits.insert(logits.end(), bl, bl + size_t(n_outputs) * n_vocab);
            }
        }
        for (int seq = 0; seq < n_seq_batch; ++seq) {
            const float * all_logits = num_batches > 1 ? logits.data() : llama_get_logits_ith(ctx.get(), seq * n_ctx + first);
            const llama_token * tok = tokens.data() + start + seq * n_ctx + first;
            for (int t = 0; t < n_ctx - 1 - first; ++t) {
                const double v = token_nll(all_logits + size_t(t) * n_vocab, n_vocab, tok[t + 1]);
                nll += v;
                nll2 += v * v;
            }
            count += n_ctx - first - 1;
            chunk_ppl.push_back(std::exp(nll / count));
        }
        logits.clear();
    }
    const double mean = nll / count;
    const double ppl = std::exp(mean);
    double var = nll2 / count - mean * mean;
    const double err = var > 0 ? std::sqrt(var / (count - 1)) * ppl : 0.0;
    char printed[128];
    std::snprintf(printed, sizeof(printed), "Final estimate: PPL = %.4lf +/- %.5lf", ppl, err);
    const double avg_active = s.tap.active_count > 0 ? s.tap.active_sum / s.tap.active_count : double(s.layout().k);
    return {{"ppl", ppl},        {"ppl_err", err},         {"n_chunks", n_chunk},
            {"n_ctx", n_ctx},    {"n_seq", n_seq},         {"tokens", tokens.size()},
            {"scored", count},   {"chunk_ppl", chunk_ppl}, {"avg_active_experts", avg_active},
            {"k", s.layout().k}, {"printed", printed},     {"policy", policy_to_json(policy)}};
}

json run_calibrate(ModelSession & s, const std::vector<llama_token> & tokens) {
    const MoeLayout & layout = s.layout();
    const int L = int(layout.moe_layers.size()), E = layout.n_expert;
    const int T = int(tokens.size());
    std::vector<std::vector<float>> per_layer(L, std::vector<float>(size_t(T) * E, NAN));
    llama_context * ctx = s.ctx();
    TapRun run;
    run.capture_logits = true;
    TapScope scope(s, ctx, run);
    for (const Window & w : plan_windows(T, s.n_ctx())) {
        llama_memory_clear(llama_get_memory(ctx), true);
        for (int pos = w.start; pos < w.end; pos += s.n_batch()) {
            const int n = std::min(s.n_batch(), w.end - pos);
            decode_span(s, ctx, tokens, pos, pos + n, pos - w.start);
            for (int g = std::max(pos, w.scored_from); g < std::min(pos + n, w.recorded_end); ++g)
                for (int m = 0; m < L; ++m)
                    std::memcpy(&per_layer[m][size_t(g) * E], &s.tap.routing().logits[(size_t(g - pos) * L + m) * E], E * sizeof(float));
        }
    }
    json logits = json::array();
    for (const auto & v : per_layer) logits.push_back(base64_of(v));
    return {{"n_tokens", T}, {"n_expert", E}, {"moe_layers", layout.moe_layers}, {"logits", logits}};
}

json run_speed(ModelSession & s, const SpeedRequest & req, const AntPredictor * ant) {
    using clock = std::chrono::steady_clock;
    const int T = int(req.tokens.size());
    const int n_prefill = req.n_prefill > 0 ? std::min(req.n_prefill, T) : T;
    const int n_prompt = std::min(req.n_prompt, T);
    if (n_prompt < 1) throw BadRequest("the text produced no tokens");
    if (n_prompt + req.n_decode > s.n_ctx())
        throw BadRequest("n_prompt + n_decode (" + std::to_string(n_prompt + req.n_decode) + ") exceeds the context (" +
                         std::to_string(s.n_ctx()) + ")");
    llama_context * ctx = s.ctx();
    TapRun run;
    run.policy = &req.policy;
    run.ant = ant;
    run.count_active = true;
    TapScope scope(s, ctx, run);

    // Prefill: the text in context-sized windows, batch by batch, only the last logits of a
    // batch asked for (as a prompt is evaluated).
    auto decode_rows = [&](int from, int to, int pos0, bool all_logits) {
        const int n = to - from;
        llama_batch batch = llama_batch_init(n, 0, 1);
        for (int i = 0; i < n; ++i) {
            batch.token[i] = req.tokens[from + i];
            batch.pos[i] = pos0 + i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = all_logits || i == n - 1;
        }
        batch.n_tokens = n;
        s.tap.begin_ubatch(n);
        const int rc = llama_decode(ctx, batch);
        llama_batch_free(batch);
        check_decode(rc, s);
    };
    const auto p0 = clock::now();
    for (int start = 0; start < n_prefill; start += s.n_ctx()) {
        llama_memory_clear(llama_get_memory(ctx), true);
        s.tap.reset_states();
        const int end = std::min(start + s.n_ctx(), n_prefill);
        for (int pos = start; pos < end; pos += s.n_batch()) decode_rows(pos, std::min(pos + s.n_batch(), end), pos - start, false);
    }
    llama_synchronize(ctx);
    const double prefill_ms = std::chrono::duration<double, std::milli>(clock::now() - p0).count();
    const double prefill_active = s.tap.active_sum, prefill_rows = s.tap.active_count;

    // Decode: the first n_prompt tokens as the prompt (not timed), then one token at a time,
    // greedy, for n_decode tokens whatever they are (end-of-generation tokens included).
    llama_memory_clear(llama_get_memory(ctx), true);
    s.tap.reset_states();
    for (int pos = 0; pos < n_prompt; pos += s.n_batch()) decode_rows(pos, std::min(pos + s.n_batch(), n_prompt), pos, false);
    const int n_vocab = llama_vocab_n_tokens(s.vocab);
    s.tap.active_sum = s.tap.active_count = 0;
    const auto d0 = clock::now();
    llama_token next = 0;
    for (int i = 0; i < req.n_decode; ++i) {
        const float * logits = llama_get_logits_ith(ctx, -1);
        next = llama_token(std::max_element(logits, logits + n_vocab) - logits);
        llama_batch one = llama_batch_get_one(&next, 1);
        s.tap.begin_ubatch(1);
        check_decode(llama_decode(ctx, one), s);
    }
    llama_synchronize(ctx);
    const double decode_ms = std::chrono::duration<double, std::milli>(clock::now() - d0).count();
    const double decode_active = s.tap.active_sum, decode_rows_n = s.tap.active_count;

    const double rows = prefill_rows + decode_rows_n;
    const bool skip = req.policy.skip && llama_moe_routing_can_skip(ctx) && req.policy.changes_weights(s.layout().k);
    return {{"prefill_tokens", n_prefill},
            {"prefill_ms", prefill_ms},
            {"decode_tokens", req.n_decode},
            {"decode_ms", decode_ms},
            {"avg_active_experts", rows > 0 ? (prefill_active + decode_active) / rows : double(s.layout().k)},
            {"decode_avg_active_experts", decode_rows_n > 0 ? decode_active / decode_rows_n : double(s.layout().k)},
            {"k", s.layout().k},
            {"skip", skip},
            {"policy", policy_to_json(req.policy)}};
}

}  // namespace moelens
