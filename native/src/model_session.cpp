#include "model_session.h"

#include "ggml-backend.h"
#include "ggml-rpc.h"
#include "ggml.h"
#include "gguf.h"
extern "C" {
#include "sha256/sha256.h"
}

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace moelens {

// llama.cpp reports why a load failed only through its log; keep the last error lines.
static std::mutex g_log_mutex;
static std::string g_last_errors;

static void log_to_stderr(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        g_last_errors += text;
        if (g_last_errors.size() > 4096) g_last_errors.erase(0, g_last_errors.size() - 4096);
    }
    if (level >= GGML_LOG_LEVEL_WARN || std::getenv("MOE_LENS_VERBOSE")) std::fputs(text, stderr);
}

// The cause among the error lines logged since the last call: llama.cpp ends a failed load
// with a generic "failed to load model" line after the line that says why, so the line that
// says "error loading model: …" is preferred, then the last line; "func: " prefixes go.
static std::string take_last_errors() {
    std::string s;
    {
        std::lock_guard<std::mutex> lock(g_log_mutex);
        std::swap(s, g_last_errors);
    }
    std::vector<std::string> lines;
    size_t at = 0;
    while (at < s.size()) {
        size_t nl = s.find('\n', at);
        if (nl == std::string::npos) nl = s.size();
        std::string line = s.substr(at, nl - at);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
        if (!line.empty()) lines.push_back(line);
        at = nl + 1;
    }
    if (lines.empty()) return "";
    static const std::string cause = "error loading model: ";
    for (const std::string & line : lines) {
        const size_t found = line.find(cause);
        if (found != std::string::npos) return line.substr(found + cause.size());
    }
    const std::string & last = lines.back();
    const size_t colon = last.find(": ");
    return colon != std::string::npos && last.find(' ') > colon ? last.substr(colon + 2) : last;
}

llama_model_kv_override parse_kv_override(const std::string & spec) {
    llama_model_kv_override kvo{};
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq >= sizeof(kvo.key))
        throw UserError("malformed --override-kv '" + spec + "': expected KEY=TYPE:VALUE");
    std::strncpy(kvo.key, spec.c_str(), eq);
    const std::string rest = spec.substr(eq + 1);
    auto value_after = [&](const char * prefix) { return rest.substr(std::strlen(prefix)); };
    try {
        if (rest.rfind("int:", 0) == 0) {
            kvo.tag = LLAMA_KV_OVERRIDE_TYPE_INT;
            size_t used = 0;
            kvo.val_i64 = std::stoll(value_after("int:"), &used);
            if (used != value_after("int:").size()) throw std::invalid_argument("trailing");
        } else if (rest.rfind("float:", 0) == 0) {
            kvo.tag = LLAMA_KV_OVERRIDE_TYPE_FLOAT;
            kvo.val_f64 = std::stod(value_after("float:"));
        } else if (rest.rfind("bool:", 0) == 0) {
            kvo.tag = LLAMA_KV_OVERRIDE_TYPE_BOOL;
            const std::string v = value_after("bool:");
            if (v != "true" && v != "false") throw std::invalid_argument("bool");
            kvo.val_bool = v == "true";
        } else if (rest.rfind("str:", 0) == 0) {
            kvo.tag = LLAMA_KV_OVERRIDE_TYPE_STR;
            const std::string v = value_after("str:");
            if (v.size() >= sizeof(kvo.val_str)) throw std::invalid_argument("long");
            std::strncpy(kvo.val_str, v.c_str(), sizeof(kvo.val_str) - 1);
        } else {
            throw std::invalid_argument("type");
        }
    } catch (const std::exception &) {
        throw UserError("malformed --override-kv '" + spec + "': TYPE must be int, float, bool or str with a valid value");
    }
    return kvo;
}

// Registers the ggml-rpc-server workers as devices (once per process: the registry is global);
// llama.cpp then spreads the offloaded layers (-ngl) over them as over local GPUs.
static void add_rpc_servers(const std::vector<std::string> & servers) {
    static std::vector<std::string> added;
    for (const std::string & endpoint : servers) {
        if (std::find(added.begin(), added.end(), endpoint) != added.end()) continue;
        ggml_backend_reg_t reg = ggml_backend_rpc_add_server(endpoint.c_str());
        if (!reg) throw UserError("cannot use the RPC server " + endpoint + " (expected HOST:PORT of a running ggml-rpc-server)");
        ggml_backend_register(reg);
        added.push_back(endpoint);
    }
}

// Checks that `path` is a readable GGUF whose metadata, tensor table and tensor data are all
// there, so a damaged file is named as such, with the path and the cause, before llama.cpp
// tries it (its own message for a truncated file is one log line among many).
static void check_model_file(const std::string & path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw UserError("model file not found: " + path);
    if (fs::is_directory(st)) throw UserError(path + " is a directory, not a GGUF model file");
    if (!fs::is_regular_file(st)) throw UserError(path + " is not a regular file, so not a GGUF model file");
    const uintmax_t file_size = fs::file_size(path, ec);
    std::ifstream f(path, std::ios::binary);
    if (!f || ec) throw UserError("cannot read the model file " + path);
    char magic[4] = {0};
    f.read(magic, 4);
    if (f.gcount() < 4 || std::memcmp(magic, "GGUF", 4) != 0) throw UserError("not a GGUF file (bad magic): " + path);

    // The header, metadata and tensor table, parsed and checked by ggml's GGUF reader.
    take_last_errors();
    gguf_init_params params{};
    params.no_alloc = true;
    params.ctx = nullptr;
    std::unique_ptr<gguf_context, decltype(&gguf_free)> gguf(gguf_init_from_file(path.c_str(), params), gguf_free);
    if (!gguf) {
        const std::string why = take_last_errors();
        throw UserError("the model file " + path + " is corrupt or truncated (" + std::to_string(file_size) +
                        " bytes): its GGUF header, metadata or tensor table cannot be read" + (why.empty() ? "" : ": " + why));
    }
    // The tensor data must lie inside the file.
    const size_t data_offset = gguf_get_data_offset(gguf.get());
    uintmax_t needed = data_offset;
    std::string last_tensor;
    for (int64_t i = 0; i < gguf_get_n_tensors(gguf.get()); ++i) {
        const uintmax_t end = uintmax_t(data_offset) + gguf_get_tensor_offset(gguf.get(), i) + gguf_get_tensor_size(gguf.get(), i);
        if (end > needed) {
            needed = end;
            last_tensor = gguf_get_tensor_name(gguf.get(), i);
        }
    }
    if (needed > file_size)
        throw UserError("the model file " + path + " is truncated: it has " + std::to_string(file_size) + " bytes, but its tensors need " +
                        std::to_string(needed) + (last_tensor.empty() ? "" : " (tensor '" + last_tensor + "' ends there)") +
                        "; download or copy it again");
}

std::unique_ptr<ModelSession> ModelSession::load(const LoadOptions & options) {
    static std::once_flag backend_once;
    std::call_once(backend_once, [] {
        llama_log_set(log_to_stderr, nullptr);
        llama_backend_init();
    });
    check_model_file(options.model_path);
    add_rpc_servers(options.rpc_servers);

    std::vector<llama_model_kv_override> overrides;
    for (const auto & spec : options.override_kv) overrides.push_back(parse_kv_override(spec));
    overrides.push_back(llama_model_kv_override{});  // terminator: empty key

    std::unique_ptr<ModelSession> s(new ModelSession());
    s->options_ = options;
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = options.n_gpu_layers;
    mp.kv_overrides = overrides.size() > 1 ? overrides.data() : nullptr;
    take_last_errors();
    s->model_.reset(llama_model_load_from_file(options.model_path.c_str(), mp));
    if (!s->model_) {
        const std::string why = take_last_errors();
        throw UserError("failed to load model " + options.model_path + (why.empty() ? "" : ": " + why));
    }
    s->model = s->model_.get();
    s->vocab = llama_model_get_vocab(s->model);

    char buf[256];
    if (llama_model_meta_val_str(s->model, "general.architecture", buf, sizeof(buf)) >= 0) s->architecture = buf;
    const std::string trained_k = s->meta(s->architecture + ".expert_used_count");
    s->n_expert_used_trained = trained_k.empty() ? 0 : std::atoi(trained_k.c_str());
    const std::string shared = s->meta(s->architecture + ".expert_shared_count");
    s->n_expert_shared = shared.empty() ? 0 : std::atoi(shared.c_str());

    const int n_ctx_train = llama_model_n_ctx_train(s->model);
    s->n_ctx_ = std::max(8, n_ctx_train > 0 ? std::min(options.n_ctx, n_ctx_train) : options.n_ctx);
    s->n_batch_ = std::min(512, s->n_ctx_);
    // One CPU threadpool for every context of the session, as llama.cpp's own tools attach
    // one. Without it the CPU backend starts and joins its threads for every graph it
    // computes, and a stateful policy (β, Π, Ant) has llama.cpp compute each token's graph
    // in pieces, one per MoE router the eval callback reads: measured on the demo model on 2
    // cores, batch-1 decode under β 0.9 + Π ran at 13–26 tokens/s in some runs (the threads
    // spinning in ggml_barrier) against 2,600–3,000 for the baseline; with the pool, all
    // policies decode at 3,550–3,690 tokens/s.
    const int n_threads = options.n_threads > 0 ? options.n_threads : int(std::max(1u, std::thread::hardware_concurrency()));
    s->options_.n_threads = n_threads;  // every context computes with the pool's count
    ggml_threadpool_params pool = ggml_threadpool_params_default(n_threads);
    s->threadpool_.reset(ggml_threadpool_new(&pool));
    if (!s->threadpool_) throw UserError("failed to start " + std::to_string(n_threads) + " CPU threads");
    s->ctx_ = s->make_context(s->n_ctx_, s->n_batch_, s->n_batch_, 1, true);
    s->discover_layout();
    return s;
}

std::string ModelSession::meta(const std::string & key) const {
    char buf[512];
    const int n = llama_model_meta_val_str(model, key.c_str(), buf, sizeof(buf));
    return n < 0 ? std::string() : std::string(buf);
}

static bool abort_trampoline(void * data) {
    auto * s = static_cast<ModelSession *>(data);
    return s->should_abort && s->should_abort();
}

llama_context_ptr ModelSession::make_context(int n_ctx, int n_batch, int n_ubatch, int n_seq, bool with_tap) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_ubatch = n_ubatch;
    cp.n_seq_max = n_seq;
    cp.n_threads = options_.n_threads;
    cp.n_threads_batch = options_.n_threads;
    if (with_tap) {
        cp.cb_eval = RoutingTap::eval_callback;
        cp.cb_eval_user_data = &tap;
    }
    cp.abort_callback = abort_trampoline;
    cp.abort_callback_data = this;
    llama_context_ptr ctx(llama_init_from_model(model, cp));
    if (!ctx) throw UserError("failed to create a llama.cpp context: " + take_last_errors());
    llama_attach_threadpool(ctx.get(), threadpool_.get(), threadpool_.get());
    return ctx;
}

void ModelSession::discover_layout() {
    llama_token first = llama_vocab_bos(vocab);
    if (first < 0) first = 0;
    llama_batch batch = llama_batch_get_one(&first, 1);
    tap.begin_discovery();
    const int rc = llama_decode(ctx(), batch);
    MoeLayout L = tap.end_discovery(llama_model_n_layer(model));
    llama_memory_clear(llama_get_memory(ctx()), true);
    if (rc != 0) throw UserError("the model failed to evaluate a token (llama_decode returned " + std::to_string(rc) + ")");
    if (L.moe_layers.empty())
        throw UserError("this model has no experts: " + (architecture.empty() ? std::string("its") : architecture) +
                        " layers are dense (no build_moe_ffn routing was found), so there is no routing to show");
    if (n_expert_used_trained == 0) n_expert_used_trained = L.k;
    tap.set_layout(L);
    tap.reset_states();
}

nlohmann::json ModelSession::info() const {
    const MoeLayout & L = layout();
    char desc[256];
    llama_model_desc(model, desc, sizeof(desc));
    const char * vocab_types[] = {"none", "spm", "bpe", "wpm", "ugm", "rwkv", "plamo2"};
    const int vt = int(llama_vocab_type(vocab));
    return {
        {"path", options_.model_path},
        {"architecture", architecture},
        {"description", desc},
        {"n_layer", llama_model_n_layer(model)},
        {"moe_layers", L.moe_layers},
        {"n_expert", L.n_expert},
        {"n_expert_used", L.k},
        {"n_expert_used_trained", n_expert_used_trained},
        {"n_expert_shared", n_expert_shared},
        {"gating", L.gating},
        {"weights_norm", L.weights_norm},
        {"weights_scale", L.weights_scale},
        {"n_ctx", n_ctx_},
        {"n_ctx_train", llama_model_n_ctx_train(model)},
        {"n_vocab", llama_vocab_n_tokens(vocab)},
        {"add_bos", llama_vocab_get_add_bos(vocab)},
        {"bos", llama_vocab_bos(vocab)},
        {"vocab_type", vt >= 0 && vt < 7 ? vocab_types[vt] : "unknown"},
        {"size_bytes", llama_model_size(model)},
        {"n_params", llama_model_n_params(model)},
        // what this server can do beyond the basic routes (see native/API.md)
        {"capabilities", {"in_graph_routing", "expert_norms", "router_packs"}},
        {"skip_supported", llama_moe_routing_can_skip(ctx())},
        {"router_pack", router_pack ? nlohmann::json{{"path", router_pack->path},
                                                     {"name", router_pack->name},
                                                     {"description", router_pack->description},
                                                     {"mechanisms", router_pack->mechanisms()}}
                                    : nlohmann::json(nullptr)},
        {"router_devices", L.router_devices},
    };
}

std::string ModelSession::piece(llama_token token) const {
    char buf[256];
    int n = llama_token_to_piece(vocab, token, buf, sizeof(buf), 0, false);
    if (n < 0) {
        std::string big(size_t(-n), '\0');
        n = llama_token_to_piece(vocab, token, big.data(), int(big.size()), 0, false);
        return big.substr(0, std::max(0, n));
    }
    return std::string(buf, n);
}

TokenizedText ModelSession::describe_tokens(const std::vector<llama_token> & tokens) const {
    TokenizedText out;
    out.tokens = tokens;
    int32_t at = 0;
    for (llama_token t : tokens) {
        const bool special = llama_vocab_get_attr(vocab, t) & (LLAMA_TOKEN_ATTR_CONTROL);
        std::string p = special ? std::string() : piece(t);
        out.byte_start.push_back(at);
        at += int32_t(p.size());
        out.byte_end.push_back(at);
        out.pieces.push_back(special ? (t == llama_vocab_bos(vocab) ? "<bos>" : "<special>") : p);
    }
    return out;
}

TokenizedText ModelSession::tokenize(const std::string & text, bool add_bos) const {
    int n = llama_tokenize(vocab, text.data(), int32_t(text.size()), nullptr, 0, add_bos, false);
    std::vector<llama_token> tokens(size_t(n < 0 ? -n : n));
    n = llama_tokenize(vocab, text.data(), int32_t(text.size()), tokens.data(), int32_t(tokens.size()), add_bos, false);
    if (n < 0) throw UserError("tokenization failed");
    tokens.resize(n);
    TokenizedText out = describe_tokens(tokens);
    // Align pieces with the text. Byte-level BPE pieces concatenate back to the text exactly;
    // other tokenizers may add a space prefix (SentencePiece) or normalise, so a piece that does
    // not match at the cursor is matched without its leading space, then searched for nearby;
    // spans never point outside the text and never go backwards.
    const int32_t size = int32_t(text.size());
    int32_t at = 0;
    for (size_t i = 0; i < tokens.size(); ++i) {
        const std::string & p = out.byte_end[i] > out.byte_start[i] ? out.pieces[i] : std::string();
        int32_t start = at, len = int32_t(p.size());
        if (len == 0) {
            // special tokens (BOS) cover nothing
        } else if (text.compare(at, len, p) == 0) {
            // exact
        } else if (p[0] == ' ' && text.compare(at, len - 1, p, 1, len - 1) == 0) {
            --len;
        } else {
            const size_t found = text.find(p, at);
            if (found != std::string::npos && found - at <= 8) start = int32_t(found);
        }
        out.byte_start[i] = std::min(start, size);
        out.byte_end[i] = std::min(start + len, size);
        at = out.byte_end[i];
    }
    return out;
}

std::string ModelSession::model_sha256() const {
    if (!sha256_.empty()) return sha256_;
    std::ifstream f(options_.model_path, std::ios::binary);
    if (!f) throw UserError("cannot read the model file to hash it");
    sha256_t st;
    sha256_init(&st);
    std::vector<char> buf(1 << 20);
    while (f) {
        f.read(buf.data(), buf.size());
        if (f.gcount() > 0) sha256_update(&st, reinterpret_cast<unsigned char *>(buf.data()), size_t(f.gcount()));
    }
    unsigned char digest[32];
    sha256_final(&st, digest);
    static const char hex[] = "0123456789abcdef";
    for (unsigned char c : digest) {
        sha256_.push_back(hex[c >> 4]);
        sha256_.push_back(hex[c & 15]);
    }
    return sha256_;
}

}  // namespace moelens
