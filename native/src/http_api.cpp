#include "http_api.h"

#include "bind_address.h"
#include "policy_json.h"
#include "predictor.h"
#include "request_json.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

namespace moelens {

using nlohmann::json;

bool constant_time_equals(const std::string & a, const std::string & b) {
    // Time depends only on the expected token's length, never on where the strings differ.
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < b.size(); ++i) diff |= static_cast<unsigned char>((i < a.size() ? a[i] : 0) ^ b[i]);
    return diff == 0;
}

// The route table: every route of native/API.md, once.
const ApiServer::Route ApiServer::kRoutes[] = {
    {"GET", "/health", &ApiServer::handle_health},           {"GET", "/v1/model", &ApiServer::handle_model},
    {"POST", "/v1/tokenize", &ApiServer::handle_tokenize},   {"POST", "/v1/trace", &ApiServer::handle_trace},
    {"POST", "/v1/generate", &ApiServer::handle_generate},   {"POST", "/v1/perplexity", &ApiServer::handle_perplexity},
    {"POST", "/v1/calibrate", &ApiServer::handle_calibrate}, {"POST", "/v1/predictor", &ApiServer::handle_predictor},
    {"POST", "/v1/speed", &ApiServer::handle_speed},         {"POST", "/v1/router-pack", &ApiServer::handle_router_pack},
};

namespace {

constexpr auto kBusyWait = std::chrono::seconds(2);

void send_error(httplib::Response & res, int status, const std::string & code, const std::string & message) {
    res.status = status;
    res.set_content(error_body(code, message), "application/json");
}

void send_json(httplib::Response & res, const json & body) {
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

HttpError busy() { return HttpError(429, "busy", "the model is busy with another request; retry shortly"); }

// An abort check for llama_decode that asks `gone` at most every 50 ms.
std::function<bool()> throttled(std::function<bool()> gone) {
    auto last = std::make_shared<std::chrono::steady_clock::time_point>();
    auto result = std::make_shared<bool>(false);
    return [gone = std::move(gone), last, result] {
        const auto now = std::chrono::steady_clock::now();
        if (!*result && now - *last > std::chrono::milliseconds(50)) {
            *last = now;
            *result = gone();
        }
        return *result;
    };
}

}  // namespace

ApiServer::ApiServer(ServerConfig config, std::unique_ptr<ModelSession> session)
    : config_(std::move(config)), http_(std::make_unique<GuardedServer>(config_.transport)), session_(std::move(session)) {
    base_k_ = session_->layout().k;
    if (!config_.predictor_path.empty()) predictor_ = load_predictor(config_.predictor_path, *session_);
    if (!config_.router_pack_path.empty()) session_->router_pack = load_router_pack(config_.router_pack_path, *session_);
    publish_model_info();
    install_routes();
}

ApiServer::~ApiServer() = default;

int ApiServer::bind() {
    // main() resolved --host and checked it (bind_address.h); this refuses anything else.
    if (!config_.allow_remote && !is_loopback_address(config_.host))
        throw UserError("refusing to listen on non-loopback address " + config_.host + ": pass --allow-remote to do it anyway");
    const int port =
        config_.port == 0 ? http_->bind_to_any_port(config_.host) : (http_->bind_to_port(config_.host, config_.port) ? config_.port : -1);
    if (port <= 0) throw UserError("cannot listen on " + config_.host + ":" + std::to_string(config_.port));
    return port;
}

void ApiServer::serve() { http_->listen_after_bind(); }

void ApiServer::stop() {
    stopping_ = true;
    http_->stop();
}

void ApiServer::install_routes() {
    httplib::Server & http = *http_;
    http.set_payload_max_length(config_.max_body);

    for (const Route & route : kRoutes) {
        const Handler handler = route.handler;
        auto call = [this, handler](const httplib::Request & req, httplib::Response & res) { (this->*handler)(req, res); };
        if (std::string(route.method) == "GET")
            http.Get(route.path, call);
        else
            http.Post(route.path, call);
    }

    http.set_pre_routing_handler([this](const httplib::Request & req, httplib::Response & res) {
        const std::string header = req.get_header_value("Authorization");
        const std::string prefix = "Bearer ";
        const std::string given = header.rfind(prefix, 0) == 0 ? header.substr(prefix.size()) : std::string();
        if (!constant_time_equals(given, config_.token)) {
            send_error(res, 401, "unauthorized", "missing or wrong bearer token");
            return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });

    // Errors cpp-httplib produces itself (no route, body too large, unreadable request) get
    // the same JSON body as ours; the handlers' own errors already have one.
    http.set_error_handler([](const httplib::Request & req, httplib::Response & res) {
        if (!res.body.empty()) return;
        switch (res.status) {
            case 400: {
                const ReadFailure why = current_read_failure();
                if (why == ReadFailure::Deadline)
                    send_error(res, 408, "request_timeout", "the request did not arrive in time");
                else
                    send_error(res, 400, "bad_request", "malformed HTTP request");
                return;
            }
            case 404: {
                std::string allowed;
                for (const Route & r : kRoutes)
                    if (req.path == r.path) allowed += (allowed.empty() ? "" : ", ") + std::string(r.method);
                if (allowed.empty()) return send_error(res, 404, "not_found", "no such route");
                res.set_header("Allow", allowed);
                return send_error(res, 405, "method_not_allowed", req.path + " accepts " + allowed);
            }
            case 413: return send_error(res, 413, "too_large", "the request body is larger than the server's --max-body");
            case 414: return send_error(res, 414, "uri_too_long", "the request target is too long");
            case 415: return send_error(res, 415, "unsupported_media_type", "compressed request bodies are not accepted");
            default: return send_error(res, res.status, "http_error", "HTTP error " + std::to_string(res.status));
        }
    });

    http.set_exception_handler([](const httplib::Request &, httplib::Response & res, std::exception_ptr ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const HttpError & e) {
            if (e.status == 429) res.set_header("Retry-After", "1");
            send_error(res, e.status, e.code, e.what());
        } catch (const UserError & e) {  // BadRequest included
            send_error(res, 400, "bad_request", e.what());
        } catch (const Cancelled &) {
            send_error(res, 503, "cancelled", "the request was cancelled: the client went away or the server is stopping");
        } catch (const std::exception & e) { send_error(res, 500, "internal", e.what()); } catch (...) {
            send_error(res, 500, "internal", "unknown error");
        }
    });
}

// ---- helpers ---------------------------------------------------------------------------

// Takes `lock` within kBusyWait by polling try_lock. Not timed_mutex::try_lock_for: that waits
// in pthread_mutex_clocklock, which ThreadSanitizer does not intercept (google/sanitizers#1620),
// so the TSan build would see neither the lock nor the order it gives, and report races.
template <typename Lock> static bool lock_within_busy_wait(Lock & lock) {
    const auto deadline = std::chrono::steady_clock::now() + kBusyWait;
    while (!lock.try_lock()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

std::shared_ptr<ApiServer::ModelLock> ApiServer::acquire_model() {
    auto lock = std::make_shared<ModelLock>(model_mutex_, std::defer_lock);
    if (!lock_within_busy_wait(*lock)) throw busy();
    if (!session_) throw HttpError(503, "no_model", "the model could not be reloaded; restart the server");
    return lock;
}

Policy ApiServer::read_policy(const json & body) {
    const MoeLayout & layout = session_->layout();
    const int n_layer = llama_model_n_layer(session_->model);
    Policy policy = policy_from_json(field_or_null(body, "policy"), layout.n_expert, n_layer);
    // Disabling every expert of a layer leaves its router nothing to choose: NaN weights.
    std::map<int, std::set<int>> disabled;
    for (const ExpertBias & b : policy.biases)
        if (std::isinf(b.bias) && b.bias < 0) disabled[b.layer].insert(b.expert);
    for (const auto & [layer, experts] : disabled)
        if (int(experts.size()) >= layout.n_expert)
            throw BadRequest("policy.disable disables all " + std::to_string(layout.n_expert) + " experts of layer " +
                             std::to_string(layer) + ": at least one must stay enabled");
    return policy;
}

void ApiServer::ensure_expert_slots(const Policy & policy) {
    const int want = policy.max_k && *policy.max_k > base_k_ ? *policy.max_k : base_k_;
    if (want == session_->layout().k) return;
    LoadOptions opts = session_->options();
    const std::string key = session_->architecture + ".expert_used_count";
    std::vector<std::string> kept;
    for (const auto & o : opts.override_kv)
        if (o.rfind(key + "=", 0) != 0) kept.push_back(o);
    kept.push_back(key + "=int:" + std::to_string(want));
    opts.override_kv = kept;
    {
        // Readers of the vocabulary (tokenize) hold this shared; wait for them.
        std::unique_lock<std::shared_mutex> exclusive(session_mutex_);
        session_.reset();  // free the old model first: two large models may not fit together
        try {
            session_ = ModelSession::load(opts);
            // The pack belongs to the server's state, not to one loading of the model.
            if (!config_.router_pack_path.empty()) session_->router_pack = load_router_pack(config_.router_pack_path, *session_);
        } catch (...) {
            opts.override_kv.pop_back();
            try {
                session_ = ModelSession::load(opts);
            } catch (const std::exception & e) { std::fprintf(stderr, "moe-lens-server: cannot reload the model: %s\n", e.what()); }
            throw;
        }
    }
    publish_model_info();
    if (session_->layout().k != want)
        throw UserError("the model ignored " + key + "=" + std::to_string(want) + " (it reports k=" + std::to_string(session_->layout().k) +
                        ")");
}

const AntPredictor * ApiServer::predictor_for(const Policy & policy) const {
    if (policy.ant && !predictor_)
        throw HttpError(409, "no_predictor",
                        "the Ant policy needs a fitted predictor and none is loaded: run calibration first (moe-lens calibrate, or \"MoE "
                        "Lens: Calibrate Ant on Text…\")");
    return predictor_ ? &*predictor_ : nullptr;
}

std::function<bool()> ApiServer::abort_check(std::function<bool()> client_gone) {
    auto gone = throttled(std::move(client_gone));
    return [this, gone] { return stopping_.load() || gone(); };
}

void ApiServer::stream(httplib::Response & res, std::shared_ptr<ModelLock> lock, std::function<void(const Emit &)> work) {
    res.set_header("Cache-Control", "no-store");
    res.set_chunked_content_provider(
        "application/x-ndjson",
        [this, lock, work = std::move(work)](size_t, httplib::DataSink & sink) {
            const Emit emit = [&sink](const json & record) {
                const std::string line = record.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
                return sink.is_writable() && sink.write(line.data(), line.size());
            };
            {
                const AbortGuard abort(session_->should_abort, abort_check([&sink] { return !sink.is_writable(); }));
                try {
                    work(emit);
                } catch (const Cancelled &) {
                    // the client is gone (or the server stops): nobody to tell
                } catch (const HttpError & e) {
                    emit({{"type", "error"}, {"code", e.code}, {"message", e.what()}});
                } catch (const UserError & e) {
                    emit({{"type", "error"}, {"code", "bad_request"}, {"message", e.what()}});
                } catch (const std::exception & e) { emit({{"type", "error"}, {"code", "failed"}, {"message", e.what()}}); }
            }
            // The model is free before the client can see the end of the stream.
            if (lock->owns_lock()) lock->unlock();
            sink.done();
            return true;
        },
        // Also runs when the provider never did (the client left before the response began).
        [lock](bool) mutable { lock.reset(); });
}

void ApiServer::publish_model_info() {
    const std::string info = session_->info().dump();
    std::lock_guard<std::mutex> lock(snapshot_mutex_);
    model_info_ = info;
    predictor_loaded_ = predictor_.has_value();
}

// ---- handlers --------------------------------------------------------------------------

void ApiServer::handle_health(const httplib::Request &, httplib::Response & res) {
    const bool busy = !model_mutex_.try_lock();
    if (!busy) model_mutex_.unlock();
    send_json(res, {{"ok", true}, {"busy", busy}});
}

void ApiServer::handle_model(const httplib::Request &, httplib::Response & res) {
    json info;
    {
        std::lock_guard<std::mutex> lock(snapshot_mutex_);
        info = json::parse(model_info_);
        info["predictor_loaded"] = predictor_loaded_;
    }
    send_json(res, info);
}

void ApiServer::handle_tokenize(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    const std::string text = required_text(body, "text");
    const std::optional<bool> add_bos = optional_bool(body, "add_bos");
    std::shared_lock<std::shared_mutex> lock(session_mutex_, std::defer_lock);
    if (!lock_within_busy_wait(lock)) throw busy();
    if (!session_) throw HttpError(503, "no_model", "the model could not be reloaded; restart the server");
    const TokenizedText t = session_->tokenize(text, add_bos.value_or(llama_vocab_get_add_bos(session_->vocab)));
    json spans = json::array();
    for (size_t i = 0; i < t.tokens.size(); ++i) spans.push_back({t.byte_start[i], t.byte_end[i]});
    send_json(res, {{"tokens", t.tokens}, {"pieces", t.pieces}, {"byte_spans", spans}});
}

void ApiServer::handle_trace(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    auto lock = acquire_model();
    TraceRequest tr;
    tr.policy = read_policy(body);
    tr.top_n = int_field(body, "top_n", 0, session_->layout().n_expert, 0);
    tr.full_probs = optional_bool(body, "probs").value_or(false);
    tr.expert_norms = optional_bool(body, "expert_norms").value_or(false);
    const int n_vocab = llama_vocab_n_tokens(session_->vocab);
    std::vector<llama_token> ids;
    std::string text;
    std::optional<bool> add_bos;
    if (body.contains("tokens")) {
        const json & tokens = body["tokens"];
        if (!tokens.is_array() || tokens.empty()) throw BadRequest("\"tokens\" must be a non-empty array of token ids");
        ids.reserve(tokens.size());
        for (const json & t : tokens) {
            if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= n_vocab)
                throw BadRequest("\"tokens\" must hold integers in [0, " + std::to_string(n_vocab) + ")");
            ids.push_back(t.get<int>());
        }
    } else {
        text = required_text(body, "text");
        add_bos = optional_bool(body, "add_bos");
    }
    ensure_expert_slots(tr.policy);
    const AntPredictor * ant = predictor_for(tr.policy);
    if (ids.empty()) {
        tr.text = session_->tokenize(text, add_bos.value_or(llama_vocab_get_add_bos(session_->vocab)));
        if (tr.text.tokens.empty()) throw BadRequest("the text produced no tokens");
    } else {
        tr.text = session_->describe_tokens(ids);
    }
    stream(res, lock, [this, tr = std::move(tr), ant](const Emit & emit) { run_trace(*session_, tr, ant, emit); });
}

void ApiServer::handle_generate(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    const std::string prompt = required_text(body, "prompt");
    auto lock = acquire_model();
    GenerateRequest g;
    g.policy = read_policy(body);
    g.n_predict = int_field(body, "n_predict", 0, 4096, 64);
    g.temperature = float(num_field(body, "temperature", 0.0, 10.0, 0.8));
    g.top_k = int_field(body, "top_k", 0, 1 << 20, 40);
    g.top_p = float(num_field(body, "top_p", 0.0, 1.0, 0.95));
    g.seed = uint32_t(int_field(body, "seed", 0, 2147483647, 42));
    g.top_n = int_field(body, "top_n", 0, session_->layout().n_expert, 0);
    ensure_expert_slots(g.policy);
    const AntPredictor * ant = predictor_for(g.policy);
    g.prompt = session_->tokenize(prompt, true);
    // Refused here, before the stream starts, so the client gets a 400 and not a 200 + error record.
    if (int(g.prompt.tokens.size()) >= session_->n_ctx())
        throw BadRequest("the prompt (" + std::to_string(g.prompt.tokens.size()) + " tokens) does not fit the context (" +
                         std::to_string(session_->n_ctx()) + " tokens, -c)");
    stream(res, lock, [this, g = std::move(g), ant](const Emit & emit) { run_generate(*session_, g, ant, emit); });
}

void ApiServer::handle_perplexity(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    const std::string text = required_text(body, "text");
    const int n_ctx = int_field(body, "n_ctx", 8, 1 << 20, 512);
    const int n_batch = int_field(body, "n_batch", 1, 1 << 20, 2048);
    auto lock = acquire_model();
    const Policy policy = read_policy(body);
    ensure_expert_slots(policy);
    const AntPredictor * ant = predictor_for(policy);
    const AbortGuard abort(session_->should_abort, abort_check([&req] { return req.is_connection_closed(); }));
    send_json(res, run_perplexity(*session_, session_->tokenize(text, true).tokens, n_ctx, n_batch, policy, ant));
}

void ApiServer::handle_calibrate(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    const std::string text = required_text(body, "text");
    auto lock = acquire_model();
    ensure_expert_slots(Policy{});
    const AbortGuard abort(session_->should_abort, abort_check([&req] { return req.is_connection_closed(); }));
    send_json(res, run_calibrate(*session_, session_->tokenize(text, true).tokens));
}

void ApiServer::handle_speed(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    const std::string text = required_text(body, "text");
    SpeedRequest sr;
    sr.n_prefill = int_field(body, "n_prefill", 0, 1 << 24, 0);
    sr.n_prompt = int_field(body, "n_prompt", 1, 1 << 20, 32);
    sr.n_decode = int_field(body, "n_decode", 1, 4096, 64);
    auto lock = acquire_model();
    sr.policy = read_policy(body);
    ensure_expert_slots(sr.policy);
    const AntPredictor * ant = predictor_for(sr.policy);
    sr.tokens = session_->tokenize(text, true).tokens;
    const AbortGuard abort(session_->should_abort, abort_check([&req] { return req.is_connection_closed(); }));
    send_json(res, run_speed(*session_, sr, ant));
}

void ApiServer::handle_router_pack(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    if (!body.contains("path")) throw BadRequest("\"path\" is required (a router pack file, or null for the model's own routers)");
    const json & path = body["path"];
    if (!path.is_null() && !path.is_string()) throw BadRequest("\"path\" must be a string or null");
    auto lock = acquire_model();
    if (path.is_null()) {
        session_->router_pack.reset();
        config_.router_pack_path.clear();
    } else {
        session_->router_pack = load_router_pack(path.get<std::string>(), *session_);  // the old one stays on error
        config_.router_pack_path = path.get<std::string>();
    }
    publish_model_info();
    send_json(res, {{"router_pack", session_->info()["router_pack"]}});
}

void ApiServer::handle_predictor(const httplib::Request & req, httplib::Response & res) {
    const json body = parse_body(req.body);
    if (!body.contains("path")) throw BadRequest("\"path\" is required (a file path, or null to unload)");
    const json & path = body["path"];
    if (!path.is_null() && !path.is_string()) throw BadRequest("\"path\" must be a string or null");
    auto lock = acquire_model();
    if (path.is_null())
        predictor_.reset();
    else
        predictor_ = load_predictor(path.get<std::string>(), *session_);
    publish_model_info();
    send_json(res, {{"predictor_loaded", predictor_.has_value()}});
}

}  // namespace moelens
