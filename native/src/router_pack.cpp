#include "router_pack.h"

#include "model_session.h"

#include "ggml.h"
#include "gguf.h"

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <set>

namespace moelens {

static const char * kArch = "moe-lens-router-pack";
static const char * kPrefix = "moe_lens.router_pack.";

std::string RouterPack::mechanisms() const {
    std::string s;
    for (auto [on, name] : {std::pair{beta, "beta"}, {pi, "pi"}, {ant, "ant"}})
        if (on) s += (s.empty() ? "" : "+") + std::string(name);
    return s;
}

namespace {

struct GgufFile {
    gguf_context * g = nullptr;
    ggml_context * data = nullptr;
    ~GgufFile() {
        if (g) gguf_free(g);
        if (data) ggml_free(data);
    }
};

struct Reader {
    const GgufFile & f;
    const std::string & path;

    [[noreturn]] void refuse(const std::string & why) const { throw UserError("router pack " + path + " refused: " + why); }
    int64_t key(const std::string & name, gguf_type type) const {
        const int64_t id = gguf_find_key(f.g, name.c_str());
        if (id < 0) refuse("it has no " + name);
        if (gguf_get_kv_type(f.g, id) != type) refuse(name + " has the wrong type");
        return id;
    }
    std::string str(const std::string & name) const { return gguf_get_val_str(f.g, key(name, GGUF_TYPE_STRING)); }
    uint32_t u32(const std::string & name) const { return gguf_get_val_u32(f.g, key(name, GGUF_TYPE_UINT32)); }
    std::vector<uint32_t> u32s(const std::string & name) const {
        const int64_t id = key(name, GGUF_TYPE_ARRAY);
        if (gguf_get_arr_type(f.g, id) != GGUF_TYPE_UINT32) refuse(name + " must be an array of u32");
        const auto * p = static_cast<const uint32_t *>(gguf_get_arr_data(f.g, id));
        return std::vector<uint32_t>(p, p + gguf_get_arr_n(f.g, id));
    }
    // An F32 tensor of exactly this shape, all values finite.
    std::vector<float> tensor(const std::string & name, std::initializer_list<int64_t> ne) const {
        ggml_tensor * t = ggml_get_tensor(f.data, name.c_str());
        if (!t) refuse("tensor " + name + " is missing");
        if (t->type != GGML_TYPE_F32) refuse("tensor " + name + " is not F32");
        int i = 0;
        for (int64_t n : ne)
            if (t->ne[i++] != n) refuse("tensor " + name + " has the wrong shape");
        for (; i < GGML_MAX_DIMS; ++i)
            if (t->ne[i] != 1) refuse("tensor " + name + " has the wrong shape");
        const float * p = static_cast<const float *>(t->data);
        std::vector<float> v(p, p + ggml_nelements(t));
        for (float x : v)
            if (!std::isfinite(x)) refuse("tensor " + name + " has a non-finite value");
        return v;
    }
};

}  // namespace

RouterPack load_router_pack(const std::string & path, const ModelSession & session) {
    GgufFile f;
    gguf_init_params ip = {false, &f.data};
    f.g = gguf_init_from_file(path.c_str(), ip);
    if (!f.g) throw UserError("router pack " + path + " cannot be read as a GGUF file (missing, unreadable or corrupt)");
    const Reader r{f, path};
    const MoeLayout & layout = session.layout();

    if (r.str("general.architecture") != kArch)
        r.refuse("it is not a router pack (general.architecture is not " + std::string(kArch) + ")");
    const std::string p = kPrefix;
    if (r.u32(p + "version") != 1) r.refuse("version " + std::to_string(r.u32(p + "version")) + " is not known to this server (1 is)");
    if (r.str(p + "base.sha256") != session.model_sha256())
        r.refuse("it was trained for another model file (base.sha256 differs from the loaded model's SHA-256)");
    if (r.str(p + "base.architecture") != session.architecture) r.refuse("its base architecture is not " + session.architecture);

    RouterPack pack;
    pack.path = path;
    pack.name = r.str(p + "name");
    pack.description = gguf_find_key(f.g, (p + "description").c_str()) >= 0 ? r.str(p + "description") : "";
    pack.n_embd = int(r.u32(p + "n_embd"));
    pack.n_expert = int(r.u32(p + "n_expert"));
    if (pack.n_embd != llama_model_n_embd(session.model)) r.refuse("n_embd differs from the model's");
    if (pack.n_expert != layout.n_expert) r.refuse("n_expert differs from the model's");
    if (int(r.u32(p + "n_expert_used")) != session.n_expert_used_trained) r.refuse("n_expert_used differs from the model's trained k");
    const std::vector<uint32_t> layers = r.u32s(p + "layers");
    if (std::vector<int>(layers.begin(), layers.end()) != layout.moe_layers) r.refuse("its layers are not the model's MoE layers");

    const std::string mech = r.str(p + "mechanisms");
    size_t at = 0;
    while (!mech.empty() && at <= mech.size()) {
        const size_t plus = mech.find('+', at);
        const std::string m = mech.substr(at, plus == std::string::npos ? std::string::npos : plus - at);
        if (m == "beta")
            pack.beta = true;
        else if (m == "pi")
            pack.pi = true;
        else if (m == "ant")
            pack.ant = true;
        else
            r.refuse("unknown mechanism \"" + m + "\"");
        if (plus == std::string::npos) break;
        at = plus + 1;
    }
    if (pack.ant) {
        pack.ant_hidden = int(r.u32(p + "ant.hidden"));
        if (pack.ant_hidden <= 0) r.refuse("ant.hidden must be positive");
        if (r.str(p + "ant.activation") != "relu") r.refuse("ant.activation must be \"relu\"");
    }

    const int64_t d = pack.n_embd, E = pack.n_expert, H = pack.ant_hidden, d_in = pack.beta ? 2 * d : d;
    std::set<std::string> expected;
    for (int layer : layout.moe_layers) {
        const std::string b = "blk." + std::to_string(layer) + ".router.";
        RouterPackLayer L;
        L.layer = layer;
        L.W = r.tensor(b + "weight", {d, E});
        expected.insert(b + "weight");
        if (pack.beta) {
            L.beta = r.tensor(b + "beta", {d});
            for (float v : L.beta)
                if (!(v > 0.0f && v < 1.0f)) r.refuse("β values must be in (0, 1)");
            expected.insert(b + "beta");
        }
        if (pack.pi) {
            L.pi = r.tensor(b + "pi", {E});
            expected.insert(b + "pi");
        }
        if (pack.ant) {
            L.ant_w1 = r.tensor(b + "ant.in.weight", {d_in, H});
            L.ant_b1 = r.tensor(b + "ant.in.bias", {H});
            L.ant_w2 = r.tensor(b + "ant.out.weight", {H, d});
            L.ant_b2 = r.tensor(b + "ant.out.bias", {d});
            L.w_pred = r.tensor(b + "ant.w_pred", {d, E});
            for (const char * n : {"ant.in.weight", "ant.in.bias", "ant.out.weight", "ant.out.bias", "ant.w_pred"}) expected.insert(b + n);
        }
        pack.layers.push_back(std::move(L));
    }
    for (int64_t i = 0; i < gguf_get_n_tensors(f.g); ++i)
        if (!expected.count(gguf_get_tensor_name(f.g, i))) r.refuse(std::string("unexpected tensor ") + gguf_get_tensor_name(f.g, i));
    return pack;
}

// y[r] = Σ_c M[r·n_in + c] · x[c]  (a ggml {n_in, n_out} matrix applied to x)
static void matvec(const std::vector<float> & M, const float * x, int n_in, int n_out, float * y) {
    for (int row = 0; row < n_out; ++row) {
        const float * m = M.data() + size_t(row) * n_in;
        float acc = 0.0f;
        for (int c = 0; c < n_in; ++c) acc += m[c] * x[c];
        y[row] = acc;
    }
}

void apply_pack(const RouterPack & pack, const RouterPackLayer & L, PackState & st, const float * x, float * z) {
    const int d = pack.n_embd, E = pack.n_expert;
    if (pack.beta) {
        if (int(st.h.size()) != d) st.reset(d);
        for (int i = 0; i < d; ++i) st.h[i] = L.beta[i] * st.h[i] + x[i];
        matvec(L.W, st.h.data(), d, E, z);
    }
    if (pack.ant) {
        std::vector<float> a(x, x + d);
        if (pack.beta) a.insert(a.end(), st.h.begin(), st.h.end());
        const int H = pack.ant_hidden;
        std::vector<float> g(H), xhat(d), zp(E);
        matvec(L.ant_w1, a.data(), int(a.size()), H, g.data());
        for (int i = 0; i < H; ++i) g[i] = std::max(0.0f, g[i] + L.ant_b1[i]);
        matvec(L.ant_w2, g.data(), H, d, xhat.data());
        for (int i = 0; i < d; ++i) xhat[i] += L.ant_b2[i];
        matvec(L.w_pred, xhat.data(), d, E, zp.data());
        for (int e = 0; e < E; ++e) z[e] += zp[e];
    }
    if (pack.pi)
        for (int e = 0; e < E; ++e) z[e] *= L.pi[e];
}

}  // namespace moelens
