#include "predictor.h"

#include "base64.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

namespace moelens {

AntPredictor load_predictor(const std::string & path, ModelSession & s) {
    std::ifstream f(path);
    if (!f) throw UserError("cannot read the predictor file " + path);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(f);
    } catch (const std::exception & e) {
        throw UserError("the predictor file " + path + " is not valid JSON: " + e.what());
    }
    if (!j.is_object() || j.value("format", "") != "moe-lens-ant-predictor")
        throw UserError(path + " is not a MoE Lens Ant predictor file");
    if (j.value("version", 0) != 1)
        throw UserError(path + " has predictor format version " + j.value("version", nlohmann::json(nullptr)).dump() + "; this server reads version 1");
    const MoeLayout & L = s.layout();
    const std::string want = s.model_sha256();
    if (j.value("model_sha256", "") != want)
        throw UserError("the predictor " + path + " was fitted for another model file (sha256 " + j.value("model_sha256", "?").substr(0, 12) +
                        "…, loaded model " + want.substr(0, 12) + "…); calibrate again on this model");
    if (j.value("n_expert", 0) != L.n_expert || j.value("moe_layers", nlohmann::json::array()) != nlohmann::json(L.moe_layers))
        throw UserError("the predictor " + path + " does not match the model's experts or MoE layers");
    AntPredictor p;
    p.n_expert = L.n_expert;
    p.beta = j.value("beta", 0.9f);
    const size_t cols = size_t(2 * L.n_expert + 1);
    const auto & layers = j.at("layers");
    if (!layers.is_array() || layers.size() != L.moe_layers.size()) throw UserError("the predictor " + path + " has the wrong number of layers");
    for (size_t m = 0; m < layers.size(); ++m) {
        std::vector<unsigned char> bytes;
        if (!base64_decode(layers[m].value("W", ""), bytes) || bytes.size() != L.n_expert * cols * sizeof(float))
            throw UserError("the predictor " + path + " has a malformed weight matrix in layer " + std::to_string(m));
        AntLayer a;
        a.layer = layers[m].value("layer", -1);
        a.W.resize(L.n_expert * cols);
        std::memcpy(a.W.data(), bytes.data(), bytes.size());
        p.layers.push_back(std::move(a));
    }
    return p;
}

}  // namespace moelens
