// Unit tests of what the server reads from a request (native/src/request_json.*) and of the
// bind-address check (bind_address.*), with the inputs of issue 17 that broke the server.
#include "harness.h"

#include "bind_address.h"
#include "request_json.h"

#include <string>

using namespace moelens;
using moelens_tests::run;
using nlohmann::json;

template <class F> static bool bad_request(F && f) {
    try {
        f();
    } catch (const BadRequest &) { return true; }
    return false;
}

void moelens_tests::request_tests() {
    run("issue 17.1: a policy nested 135000 deep is refused before nlohmann recurses", [] {
        const std::string body = "{\"text\":\"hi\",\"policy\":" + std::string(135000, '[') + std::string(135000, ']') + "}";
        CHECK(json_nesting_exceeds(body, kMaxJsonDepth));
        CHECK(bad_request([&] { parse_body(body); }));
    });
    run("nesting counts brackets outside strings only", [] {
        CHECK(!json_nesting_exceeds(R"({"a":[[1]]})", 3));
        CHECK(json_nesting_exceeds(R"({"a":[[[1]]]})", 3));
        CHECK(!json_nesting_exceeds(R"({"a":"[[[[[[\"[[[["})", 1));
        CHECK(!json_nesting_exceeds(R"({"a":"\\"}[[)", 2));  // escaped backslash ends the string
        const json ok = parse_body(R"({"policy":{"boost":[[0,1,2.0]]}})");
        CHECK(ok["policy"]["boost"][0][2] == 2.0);
    });
    run("malformed bodies are bad requests", [] {
        for (const char * body : {"{nope", "[1,2]", "", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":1e999}", "{\"a\":\"\\ud800\"}", "\"x\""})
            CHECK(bad_request([&] { parse_body(body); }));
        CHECK(bad_request([] { parse_body(std::string("{\"text\":\"a\xff\"}")); }));
    });
    run("issue 17.8: add_bos of the wrong type is a bad request naming the field", [] {
        for (const char * value : {"\"yes\"", "1", "[]", "{}"}) {
            const json body = json::parse(std::string("{\"text\":\"hi\",\"add_bos\":") + value + "}");
            try {
                optional_bool(body, "add_bos");
                CHECK(false);
            } catch (const BadRequest & e) { CHECK(std::string(e.what()).find("\"add_bos\"") != std::string::npos); }
        }
        CHECK(!optional_bool(json::parse(R"({"add_bos":null})"), "add_bos").has_value());
        CHECK(optional_bool(json::parse(R"({"add_bos":false})"), "add_bos") == false);
    });
    run("typed fields check type and range", [] {
        const json b = json::parse(R"({"n":5,"big":18446744073709551615,"neg":-3,"f":0.5,"s":"x","e":""})");
        CHECK(int_field(b, "n", 0, 10, 1) == 5);
        CHECK(int_field(b, "absent", 0, 10, 7) == 7);
        CHECK(bad_request([&] { int_field(b, "big", 0, 10, 1); }));
        CHECK(bad_request([&] { int_field(b, "neg", 0, 10, 1); }));
        CHECK(bad_request([&] { int_field(b, "f", 0, 10, 1); }));
        CHECK(bad_request([&] { int_field(b, "s", 0, 10, 1); }));
        NEAR(num_field(b, "f", 0, 1, 0), 0.5);
        CHECK(bad_request([&] { num_field(b, "n", 0, 1, 0); }));
        CHECK(required_text(b, "s") == "x");
        CHECK(bad_request([&] { required_text(b, "e"); }));
        CHECK(bad_request([&] { required_text(b, "n"); }));
        CHECK(bad_request([&] { required_text(b, "absent"); }));
        CHECK(field_or_null(b, "absent").is_null());
    });
    run("UTF-8 validation rejects overlongs, surrogates and truncation", [] {
        CHECK(is_valid_utf8("Mühle 🌊"));
        CHECK(!is_valid_utf8("\xc0\xaf"));
        CHECK(!is_valid_utf8("\xed\xa0\x80"));
        CHECK(!is_valid_utf8("\xf0\x9f\x8c"));
        CHECK(!is_valid_utf8("\xff"));
    });
    run("loopback addresses", [] {
        CHECK(is_loopback_address("127.0.0.1"));
        CHECK(is_loopback_address("127.8.9.10"));
        CHECK(is_loopback_address("::1"));
        CHECK(is_loopback_address("::ffff:127.0.0.1"));
        CHECK(!is_loopback_address("0.0.0.0"));
        CHECK(!is_loopback_address("::"));
        CHECK(!is_loopback_address("128.0.0.1"));
        CHECK(!is_loopback_address("127.evil.example"));
        CHECK(!is_loopback_address("::ffff:10.0.0.1"));
    });
    run("issue 17.4: a 127.* name resolving to 0.0.0.0 is refused without --allow-remote", [] {
        bool refused = false;
        try {
            choose_bind_address("127.evil.example", {"0.0.0.0"}, false);
        } catch (const UserError & e) { refused = std::string(e.what()).find("non-loopback address 0.0.0.0") != std::string::npos; }
        CHECK(refused);
        bool mixed_refused = false;
        try {
            choose_bind_address("localhost", {"127.0.0.1", "192.168.1.5"}, false);
        } catch (const UserError &) { mixed_refused = true; }
        CHECK(mixed_refused);
        CHECK(choose_bind_address("localhost", {"::1", "127.0.0.1"}, false) == "::1");
        CHECK(choose_bind_address("0.0.0.0", {}, true) == "0.0.0.0");
        CHECK(choose_bind_address("[::1]", {}, true) == "::1");
    });
    run("resolving: numeric hosts resolve to themselves, unknown names fail", [] {
        CHECK(resolve_host("127.0.0.1") == std::vector<std::string>{"127.0.0.1"});
        CHECK(resolve_host("[::1]").front() == "::1");
        bool failed = false;
        try {
            resolve_host("no-such-host.invalid");
        } catch (const UserError &) { failed = true; }
        CHECK(failed);
    });
}
