// A loaded MoE model: llama.cpp model + trace context + the routing tap, with the MoE
// layout found at load time by evaluating one token (see RoutingTap, Mode::Discover).
#pragma once

#include "errors.h"
#include "router_pack.h"
#include "routing_tap.h"

#include "ggml-cpu.h"
#include "llama-cpp.h"
#include "llama.h"
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace moelens {

struct LoadOptions {
    std::string model_path;
    int n_ctx = 2048;
    int n_threads = 0;  // 0: one per hardware thread
    int n_gpu_layers = 0;
    std::vector<std::string> override_kv;  // KEY=TYPE:VALUE, as llama.cpp's tools take them
    std::vector<std::string> rpc_servers;  // HOST:PORT of ggml-rpc-server workers the layers are spread over
};

struct TokenizedText {
    std::vector<llama_token> tokens;
    std::vector<std::string> pieces;
    std::vector<int32_t> byte_start, byte_end;
};

class ModelSession {
public:
    // Throws UserError with a clear message naming the path for missing, unreadable,
    // non-GGUF, truncated or corrupt files and for dense models.
    static std::unique_ptr<ModelSession> load(const LoadOptions & options);
    ModelSession(const ModelSession &) = delete;
    ModelSession & operator=(const ModelSession &) = delete;

    nlohmann::json info() const;
    const MoeLayout & layout() const { return tap.layout(); }
    const LoadOptions & options() const { return options_; }

    // Tokenizes UTF-8 text and maps every token to its byte span in the text.
    TokenizedText tokenize(const std::string & text, bool add_bos) const;
    // Pieces and spans for given token ids (spans follow the concatenated pieces).
    TokenizedText describe_tokens(const std::vector<llama_token> & tokens) const;
    std::string piece(llama_token token) const;

    // A context for single-sequence evaluation (trace, generate, calibrate) with the tap.
    llama_context * ctx() const { return ctx_.get(); }
    int n_ctx() const { return n_ctx_; }
    int n_batch() const { return n_batch_; }

    // A separate context with llama-perplexity's shape; `with_tap` installs the tap's eval
    // callback (needed by the stateful policies; the in-graph routing works on any context).
    llama_context_ptr make_context(int n_ctx, int n_batch, int n_ubatch, int n_seq, bool with_tap);
    // The CPU threads every context of the session computes with.
    ggml_threadpool * cpu_threadpool() const { return threadpool_.get(); }

    std::string model_sha256() const;  // computed on first use, cached

    // Non-owning views of the model this session owns (model_ below).
    llama_model * model = nullptr;
    const llama_vocab * vocab = nullptr;
    RoutingTap tap;
    std::string architecture;
    int n_expert_used_trained = 0;
    int n_expert_shared = 0;
    // The router pack in use (docs/router-packs.md), if any: every evaluation routes with it.
    std::optional<RouterPack> router_pack;
    // Set by the HTTP layer (an AbortGuard) while a request evaluates: llama_decode aborts when true.
    std::function<bool()> should_abort;

private:
    ModelSession() = default;
    void discover_layout();
    std::string meta(const std::string & key) const;

    LoadOptions options_;
    // Declared in this order so that the context is freed before its threadpool and model.
    std::unique_ptr<ggml_threadpool, void (*)(ggml_threadpool *)> threadpool_{nullptr, ggml_threadpool_free};
    llama_model_ptr model_;
    llama_context_ptr ctx_;
    int n_ctx_ = 0;
    int n_batch_ = 0;
    mutable std::string sha256_;
};

// Parses "KEY=TYPE:VALUE" (TYPE int|float|bool|str); throws UserError.
llama_model_kv_override parse_kv_override(const std::string & spec);

}  // namespace moelens
