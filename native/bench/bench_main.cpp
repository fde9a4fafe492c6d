// moe-lens-bench: the tracing-overhead benchmark of `npm run bench` (not a test).
//
//   moe-lens-bench overhead -m MODEL [-n TOKENS] [-t THREADS] [-r REPS]
//     Evaluates the same N tokens, alternating, (a) as a full trace (routing tap on every MoE
//     layer, NLL per token, records encoded as for the wire) and (b) with plain llama_decode in
//     a context without any callback, same build, batches and threads. Prints the median of
//     each and their ratio, measured side by side in one run.
//   moe-lens-bench random-moe -m SOURCE.gguf -o OUT.gguf [--layers N] [--embd N] [--ff N]
//                  [--experts N] [--k N] [--heads N] [--heads-kv N] [--head-dim N] [--type f16|q8_0|q4_k]
//     Writes a larger random qwen3moe model with SOURCE's tokenizer (benchmarks and the
//     workbench's scale tests), streamed to disk.
#include "evaluations.h"
#include "model_session.h"

#include "ggml.h"
#include "gguf.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace moelens;

static int arg_int(int argc, char ** argv, const char * flag, int dflt) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], flag) == 0) return std::atoi(argv[i + 1]);
    return dflt;
}

static const char * arg_str(int argc, char ** argv, const char * flag) {
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], flag) == 0) return argv[i + 1];
    return nullptr;
}

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static int overhead(int argc, char ** argv) {
    const char * model = arg_str(argc, argv, "-m");
    if (!model) {
        std::fprintf(stderr, "overhead needs -m MODEL\n");
        return 2;
    }
    const int n_tokens = arg_int(argc, argv, "-n", 512);
    const int reps = arg_int(argc, argv, "-r", 5);
    LoadOptions opts;
    opts.model_path = model;
    opts.n_threads = arg_int(argc, argv, "-t", 2);
    opts.n_ctx = n_tokens;
    auto s = ModelSession::load(opts);
    const int n_ctx = s->n_ctx();
    const int n = std::min(n_tokens, n_ctx);
    // Deterministic token ids spread over the vocabulary.
    std::vector<llama_token> tokens(n);
    std::mt19937 rng(7);
    const int n_vocab = llama_vocab_n_tokens(s->vocab);
    for (auto & t : tokens) t = int(rng() % n_vocab);
    TraceRequest req;
    req.text = s->describe_tokens(tokens);

    const llama_context_ptr plain_owner = s->make_context(n_ctx, s->n_batch(), s->n_batch(), 1, false);
    llama_context * plain = plain_owner.get();
    size_t bytes = 0;
    // Encode as the server does (invalid UTF-8 in pieces of random ids is replaced).
    const Emit count_bytes = [&](const nlohmann::json & r) {
        bytes += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size();
        return true;
    };
    auto time_trace = [&] {
        const auto t0 = std::chrono::steady_clock::now();
        run_trace(*s, req, nullptr, count_bytes);
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    auto time_plain = [&] {
        const auto t0 = std::chrono::steady_clock::now();
        llama_memory_clear(llama_get_memory(plain), true);
        for (int pos = 0; pos < n; pos += s->n_batch()) {
            llama_batch b = sequence_batch(tokens, pos, std::min(n, pos + s->n_batch()), pos);
            if (llama_decode(plain, b) != 0) std::fprintf(stderr, "decode failed\n");
            llama_batch_free(b);
        }
        llama_synchronize(plain);
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    };
    time_trace();  // warm-up both
    time_plain();
    std::vector<double> traced, baseline;
    for (int r = 0; r < reps; ++r) {
        traced.push_back(time_trace());
        baseline.push_back(time_plain());
    }
    const double a = median(traced), b = median(baseline);
    std::printf("{\"model\":\"%s\",\"n_layer\":%d,\"n_moe_layers\":%zu,\"n_expert\":%d,\"k\":%d,\"tokens\":%d,\"threads\":%d,\"reps\":%d,"
                "\"trace_ms\":%.2f,\"plain_ms\":%.2f,\"ratio\":%.3f,\"record_bytes_per_token\":%.1f}\n",
                model, llama_model_n_layer(s->model), s->layout().moe_layers.size(), s->layout().n_expert, s->layout().k, n, opts.n_threads,
                reps, a, b, a / b, double(bytes) / (reps + 1) / n);
    return 0;
}

// Random values for a benchmark model: uniform with the given standard deviation (fast enough
// for billions of weights; a benchmark needs shapes and plausible magnitudes, not a distribution).
struct FastRandom {
    uint64_t state;
    explicit FastRandom(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull + 1) {}
    float uniform(float stddev) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        const float u = float(state >> 40) / float(1 << 24);  // [0, 1)
        return (2.0f * u - 1.0f) * stddev * 1.7320508f;       // sqrt(3): uniform with this std
    }
};

static int random_moe(int argc, char ** argv) {
    const char * src = arg_str(argc, argv, "-m");
    const char * out = arg_str(argc, argv, "-o");
    if (!src || !out) {
        std::fprintf(stderr, "random-moe needs -m SOURCE.gguf -o OUT.gguf\n");
        return 2;
    }
    const int n_layer = arg_int(argc, argv, "--layers", 8);
    const int n_embd = arg_int(argc, argv, "--embd", 512);
    const int n_ff = arg_int(argc, argv, "--ff", 256);
    const int n_expert = arg_int(argc, argv, "--experts", 64);
    const int k = arg_int(argc, argv, "--k", 8);
    const int n_head = arg_int(argc, argv, "--heads", 8);
    const int n_head_kv = arg_int(argc, argv, "--heads-kv", n_head);
    const int hd = arg_int(argc, argv, "--head-dim", n_embd / n_head);
    const char * type_name = arg_str(argc, argv, "--type");
    const std::string tname = type_name ? type_name : "f16";
    const ggml_type wtype = tname == "f16"    ? GGML_TYPE_F16
                            : tname == "q8_0" ? GGML_TYPE_Q8_0
                            : tname == "q4_k" ? GGML_TYPE_Q4_K
                                              : GGML_TYPE_COUNT;
    if (wtype == GGML_TYPE_COUNT) {
        std::fprintf(stderr, "--type must be f16, q8_0 or q4_k\n");
        return 2;
    }
    if (n_head % n_head_kv != 0 || k > n_expert) {
        std::fprintf(stderr, "inconsistent shape\n");
        return 2;
    }

    gguf_init_params ip = {true, nullptr};
    gguf_context * srcg = gguf_init_from_file(src, ip);
    if (!srcg) {
        std::fprintf(stderr, "cannot read %s\n", src);
        return 1;
    }
    gguf_context * g = gguf_init_empty();
    gguf_set_kv(g, srcg);
    const int64_t tok_id = gguf_find_key(srcg, "tokenizer.ggml.tokens");
    const int n_vocab = int(gguf_get_arr_n(srcg, tok_id));
    gguf_set_val_str(g, "general.architecture", "qwen3moe");
    gguf_set_val_str(g, "general.name", "moe-lens random benchmark MoE");
    gguf_set_val_u32(g, "qwen3moe.block_count", n_layer);
    gguf_set_val_u32(g, "qwen3moe.embedding_length", n_embd);
    gguf_set_val_u32(g, "qwen3moe.feed_forward_length", n_ff);
    gguf_set_val_u32(g, "qwen3moe.expert_feed_forward_length", n_ff);
    gguf_set_val_u32(g, "qwen3moe.expert_count", n_expert);
    gguf_set_val_u32(g, "qwen3moe.expert_used_count", k);
    gguf_set_val_u32(g, "qwen3moe.attention.head_count", n_head);
    gguf_set_val_u32(g, "qwen3moe.attention.head_count_kv", n_head_kv);
    gguf_set_val_u32(g, "qwen3moe.attention.key_length", hd);
    gguf_set_val_u32(g, "qwen3moe.attention.value_length", hd);
    gguf_set_val_u32(g, "qwen3moe.context_length", 4096);
    gguf_set_val_u32(g, "qwen3moe.rope.dimension_count", hd);

    // Tensor infos first (no data in memory), then the data streamed tensor by tensor: a
    // benchmark model can be several GB.
    ggml_init_params gp = {size_t(1) << 22, nullptr, true};
    ggml_context * ctx = ggml_init(gp);
    std::vector<std::pair<ggml_tensor *, bool>> tensors;  // (tensor, is a norm)
    auto add = [&](const std::string & name, std::vector<int64_t> ne, bool norm) {
        const ggml_type type = norm ? GGML_TYPE_F32 : (ne[0] % ggml_blck_size(wtype) == 0 ? wtype : GGML_TYPE_F16);
        ggml_tensor * t = ne.size() == 1   ? ggml_new_tensor_1d(ctx, type, ne[0])
                          : ne.size() == 2 ? ggml_new_tensor_2d(ctx, type, ne[0], ne[1])
                                           : ggml_new_tensor_3d(ctx, type, ne[0], ne[1], ne[2]);
        ggml_set_name(t, name.c_str());
        gguf_add_tensor(g, t);
        tensors.emplace_back(t, norm);
    };
    add("token_embd.weight", {n_embd, n_vocab}, false);
    add("output_norm.weight", {n_embd}, true);
    add("output.weight", {n_embd, n_vocab}, false);
    for (int l = 0; l < n_layer; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        add(p + "attn_norm.weight", {n_embd}, true);
        add(p + "attn_q.weight", {n_embd, n_head * hd}, false);
        add(p + "attn_k.weight", {n_embd, n_head_kv * hd}, false);
        add(p + "attn_v.weight", {n_embd, n_head_kv * hd}, false);
        add(p + "attn_output.weight", {n_head * hd, n_embd}, false);
        add(p + "attn_q_norm.weight", {hd}, true);
        add(p + "attn_k_norm.weight", {hd}, true);
        add(p + "ffn_norm.weight", {n_embd}, true);
        add(p + "ffn_gate_inp.weight", {n_embd, n_expert}, true);  // the router stays F32, as converters write it
        add(p + "ffn_gate_exps.weight", {n_embd, n_ff, n_expert}, false);
        add(p + "ffn_up_exps.weight", {n_embd, n_ff, n_expert}, false);
        add(p + "ffn_down_exps.weight", {n_ff, n_embd, n_expert}, false);
    }
    if (!gguf_write_to_file(g, out, /*only_meta=*/true)) {
        std::fprintf(stderr, "cannot write %s\n", out);
        return 1;
    }
    FILE * f = std::fopen(out, "ab");
    if (!f) {
        std::fprintf(stderr, "cannot append to %s\n", out);
        return 1;
    }
    const size_t align = gguf_get_alignment(g);
    FastRandom rng(11);
    std::vector<float> row;
    std::vector<uint8_t> bytes;
    for (auto & [t, norm] : tensors) {
        const int64_t n_per_row = t->ne[0], nrows = ggml_nelements(t) / n_per_row;
        // The router (F32) is random like the matrices: its logits have a std of about 0.02·sqrt(n_embd).
        const bool router = std::strstr(t->name, "ffn_gate_inp") != nullptr;
        bytes.assign(GGML_PAD(ggml_nbytes(t), align), 0);
        row.resize(n_per_row);
        const size_t row_bytes = ggml_row_size(t->type, n_per_row);
        for (int64_t r = 0; r < nrows; ++r) {
            for (auto & v : row) v = norm && !router ? 1.0f : rng.uniform(0.02f);
            if (t->type == GGML_TYPE_F32)
                std::memcpy(bytes.data() + r * row_bytes, row.data(), row_bytes);
            else
                ggml_quantize_chunk(t->type, row.data(), bytes.data() + r * row_bytes, 0, 1, n_per_row, nullptr);
        }
        if (std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
            std::fprintf(stderr, "write failed\n");
            std::fclose(f);
            return 1;
        }
    }
    std::fclose(f);
    gguf_free(g);
    gguf_free(srcg);
    ggml_free(ctx);
    std::printf("wrote %s: %d layers, n_embd %d, %d experts, k %d, expert ffn %d, heads %d/%d, %s\n", out, n_layer, n_embd, n_expert, k,
                n_ff, n_head, n_head_kv, tname.c_str());
    return 0;
}

int main(int argc, char ** argv) {
    if (argc >= 2 && std::strcmp(argv[1], "overhead") == 0) return overhead(argc - 1, argv + 1);
    if (argc >= 2 && std::strcmp(argv[1], "random-moe") == 0) return random_moe(argc - 1, argv + 1);
    std::fprintf(stderr, "usage: moe-lens-bench overhead -m MODEL [-n N] [-t T] [-r R] | random-moe -m SRC -o OUT [...]\n");
    return 2;
}
