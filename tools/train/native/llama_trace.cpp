// Minimal llama.cpp trace dumper used to check parity with reference_trace.py
// before the project's own server trace exists.  It tokenizes a file the way
// llama.cpp does (add_special = true, parse_special = false), decodes it as one
// sequence, and prints JSON: per token the id, log p(next token), and per MoE
// layer the selected experts (ffn_moe_topk-L) and router probs (ffn_moe_probs-L).
//
// Build (see tools/train/README.md): g++ -O2 -std=c++17 llama_trace.cpp
//   -I<llama.cpp>/include -I<llama.cpp>/ggml/include <libllama.a> <libggml*.a> -fopenmp
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

struct capture {
    std::map<int, std::vector<int32_t>> topk;   // layer -> [n_tokens * k]
    std::map<int, std::vector<float>> probs;    // layer -> [n_tokens * E]
    int k = 0, E = 0;
};

static bool parse_layer(const char * name, const char * prefix, int & layer) {
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0) return false;
    const char * rest = name + n;
    char * end = nullptr;
    long v = strtol(rest, &end, 10);
    if (end == rest || *end != '\0') return false;   // exact "<prefix><layer>" only, no views
    layer = (int) v;
    return true;
}

static bool cb(struct ggml_tensor * t, bool ask, void * ud) {
    auto * cap = (capture *) ud;
    int layer;
    bool is_topk = parse_layer(t->name, "ffn_moe_topk-", layer);
    bool is_probs = !is_topk && parse_layer(t->name, "ffn_moe_probs-", layer);
    if (ask) return is_topk || is_probs;
    if (!is_topk && !is_probs) return true;
    // ffn_moe_topk is usually a strided view (the first k rows of the argsort),
    // so read the whole span and index rows by nb[1].
    const int64_t inner = t->ne[0], ntok = t->ne[1];
    const size_t span = (size_t) (ntok - 1) * t->nb[1] + (size_t) inner * t->nb[0];
    std::vector<uint8_t> raw(span);
    ggml_backend_tensor_get(t, raw.data(), 0, span);
    if (is_topk) {
        std::vector<int32_t> buf(inner * ntok);
        for (int64_t r = 0; r < ntok; r++)
            for (int64_t j = 0; j < inner; j++)
                buf[r * inner + j] = *(const int32_t *) (raw.data() + r * t->nb[1] + j * t->nb[0]);
        cap->topk[layer] = buf;
        cap->k = (int) inner;
    } else {
        std::vector<float> buf(inner * ntok);
        for (int64_t r = 0; r < ntok; r++)
            for (int64_t j = 0; j < inner; j++)
                buf[r * inner + j] = *(const float *) (raw.data() + r * t->nb[1] + j * t->nb[0]);
        cap->probs[layer] = buf;
        cap->E = (int) inner;
    }
    return true;
}

int main(int argc, char ** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf TEXT_FILE [n_threads]\n", argv[0]);
        return 1;
    }
    std::ifstream f(argv[2], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    int n_threads = argc > 3 ? atoi(argv[3]) : 2;

    llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    auto mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);

    int n = -llama_tokenize(vocab, text.c_str(), (int) text.size(), nullptr, 0, true, false);
    std::vector<llama_token> toks(n);
    llama_tokenize(vocab, text.c_str(), (int) text.size(), toks.data(), n, true, false);

    capture cap;
    auto cp = llama_context_default_params();
    cp.n_ctx = n;
    cp.n_batch = n;
    cp.n_ubatch = n;
    cp.n_threads = cp.n_threads_batch = n_threads;
    cp.cb_eval = cb;
    cp.cb_eval_user_data = &cap;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "context failed\n"); return 1; }

    llama_batch batch = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        batch.token[i] = toks[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n;
    if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed\n"); return 1; }

    const int n_vocab = llama_vocab_n_tokens(vocab);
    printf("{\"n_tokens\": %d, \"n_expert_used\": %d, \"n_expert\": %d, \"tokens\": [\n", n, cap.k, cap.E);
    for (int i = 0; i < n; i++) {
        const float * lg = llama_get_logits_ith(ctx, i);
        double mx = lg[0];
        for (int v = 1; v < n_vocab; v++) mx = std::max(mx, (double) lg[v]);
        double s = 0;
        for (int v = 0; v < n_vocab; v++) s += std::exp(lg[v] - mx);
        printf("{\"pos\": %d, \"id\": %d, \"logprob_next\": ", i, toks[i]);
        if (i + 1 < n) printf("%.6f", lg[toks[i + 1]] - mx - std::log(s)); else printf("null");
        printf(", \"experts\": [");
        for (auto & [layer, v] : cap.topk) {
            printf("%s[", layer ? ", " : "");
            for (int j = 0; j < cap.k; j++) printf("%s%d", j ? ", " : "", v[i * cap.k + j]);
            printf("]");
        }
        printf("], \"probs\": [");
        for (auto & [layer, v] : cap.probs) {
            printf("%s[", layer ? ", " : "");
            for (int j = 0; j < cap.E; j++) printf("%s%.6f", j ? ", " : "", v[i * cap.E + j]);
            printf("]");
        }
        printf("]}%s\n", i + 1 < n ? "," : "");
    }
    printf("]}\n");
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
