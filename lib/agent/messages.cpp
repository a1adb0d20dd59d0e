#include "agent/messages.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace mimobox::agent {

namespace json = boost::json;
namespace b64 = boost::beast::detail::base64;

namespace {

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : 4;
        if (n == 4 || i + n >= s.size()) return false;  // bad lead byte, or sequence cut short
        for (std::size_t k = 1; k <= n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
        // Overlong forms and surrogates are what a strict parser refuses; refuse them here too.
        if (n == 1 && c < 0xc2) return false;
        if (n == 2) {
            const auto c1 = static_cast<unsigned char>(s[i + 1]);
            if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 >= 0xa0)) return false;
        }
        if (n == 3) {
            const auto c1 = static_cast<unsigned char>(s[i + 1]);
            if (c > 0xf4 || (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 >= 0x90)) return false;
        }
        i += n + 1;
    }
    return true;
}

json::value bytes_to_json(std::string_view s) {
    if (valid_utf8(s)) return json::string(s);
    std::string out(b64::encoded_size(s.size()), '\0');
    out.resize(b64::encode(out.data(), s.data(), s.size()));
    return json::object{{"base64", out}};
}

std::optional<std::string> bytes_from_json(const json::value& v) {
    if (auto* s = v.if_string()) return std::string(*s);
    auto* o = v.if_object();
    if (!o || o->size() != 1) return std::nullopt;
    auto* enc = o->if_contains("base64");
    if (!enc || !enc->is_string()) return std::nullopt;
    const auto& text = enc->get_string();
    std::string out(b64::decoded_size(text.size()), '\0');
    auto [written, read] = b64::decode(out.data(), text.data(), text.size());
    // The decoder stops at padding; anything after it other than '=' means it was not base64.
    if (std::string_view(text).substr(read).find_first_not_of('=') != std::string_view::npos) return std::nullopt;
    out.resize(written);
    return out;
}

const json::object* versioned(const json::value& v, boost::system::error_code& ec) {
    auto* o = v.if_object();
    if (!o) {
        ec = agent_errc::malformed_message;
        return nullptr;
    }
    auto* ver = o->if_contains("v");
    if (!ver || !ver->is_int64()) {
        ec = agent_errc::malformed_message;
        return nullptr;
    }
    if (ver->get_int64() != protocol_version) {
        ec = agent_errc::version_mismatch;
        return nullptr;
    }
    return o;
}

std::optional<std::uint64_t> get_u64(const json::object& o, std::string_view key, std::uint64_t fallback) {
    auto* v = o.if_contains(key);
    if (!v) return fallback;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
    return std::nullopt;
}

std::optional<bool> get_bool(const json::object& o, std::string_view key, bool fallback) {
    auto* v = o.if_contains(key);
    if (!v) return fallback;
    if (!v->is_bool()) return std::nullopt;
    return v->get_bool();
}

}  // namespace

json::value to_json(const request& r) {
    json::object o{{"v", protocol_version}};
    if (std::holds_alternative<ping_request>(r)) {
        o["op"] = "ping";
    } else if (std::holds_alternative<kill_request>(r)) {
        o["op"] = "kill";
    } else {
        const auto& e = std::get<exec_request>(r);
        o["op"] = "exec";
        if (e.shell) {
            o["shell"] = bytes_to_json(*e.shell);
        } else {
            json::array argv;
            for (auto& a : e.argv) argv.push_back(bytes_to_json(a));
            o["argv"] = std::move(argv);
        }
        json::array env;
        for (auto& [k, v] : e.env) env.push_back(json::array{bytes_to_json(k), bytes_to_json(v)});
        o["env"] = std::move(env);
        o["cwd"] = bytes_to_json(e.cwd);
        o["timeout_ms"] = e.timeout_ms;
        o["stdin"] = e.stdin_open;
        o["max_output"] = e.max_output;
    }
    return o;
}

json::value to_json(const response& r) {
    json::object o{{"v", protocol_version}};
    if (auto* p = std::get_if<pong_response>(&r)) {
        o["type"] = "pong";
        o["agent_version"] = p->agent_version;
    } else if (auto* x = std::get_if<exit_response>(&r)) {
        o["type"] = "exit";
        o["exit_code"] = x->exit_code;
        o["signal"] = x->signal;
        o["timed_out"] = x->timed_out;
        o["stdout_truncated"] = x->stdout_truncated;
        o["stderr_truncated"] = x->stderr_truncated;
        o["duration_us"] = x->duration_us;
    } else {
        const auto& e = std::get<error_response>(r);
        o["type"] = "error";
        o["errno"] = e.error_number;
        o["message"] = bytes_to_json(e.message);
    }
    return o;
}

boost::system::result<request> request_from_json(const json::value& v) {
    boost::system::error_code ec;
    auto* o = versioned(v, ec);
    if (!o) return ec;
    auto* op = o->if_contains("op");
    if (!op || !op->is_string()) return agent_errc::malformed_message;
    if (op->get_string() == "ping") return request{ping_request{}};
    if (op->get_string() == "kill") return request{kill_request{}};
    if (op->get_string() != "exec") return agent_errc::malformed_message;

    exec_request e;
    if (auto* shell = o->if_contains("shell")) {
        auto s = bytes_from_json(*shell);
        if (!s) return agent_errc::malformed_message;
        e.shell = std::move(*s);
    } else {
        auto* argv = o->if_contains("argv");
        if (!argv || !argv->is_array() || argv->get_array().empty()) return agent_errc::malformed_message;
        for (auto& a : argv->get_array()) {
            auto s = bytes_from_json(a);
            if (!s || s->find('\0') != std::string::npos) return agent_errc::malformed_message;
            e.argv.push_back(std::move(*s));
        }
    }
    if (auto* env = o->if_contains("env")) {
        if (!env->is_array()) return agent_errc::malformed_message;
        for (auto& pair : env->get_array()) {
            auto* kv = pair.if_array();
            if (!kv || kv->size() != 2) return agent_errc::malformed_message;
            auto k = bytes_from_json((*kv)[0]);
            auto val = bytes_from_json((*kv)[1]);
            if (!k || !val || k->empty() || k->find('=') != std::string::npos || k->find('\0') != std::string::npos ||
                val->find('\0') != std::string::npos)
                return agent_errc::malformed_message;
            e.env[*k] = *val;
        }
    }
    if (auto* cwd = o->if_contains("cwd")) {
        auto s = bytes_from_json(*cwd);
        if (!s || s->empty() || s->find('\0') != std::string::npos) return agent_errc::malformed_message;
        e.cwd = std::move(*s);
    }
    auto timeout = get_u64(*o, "timeout_ms", 0);
    auto max_output = get_u64(*o, "max_output", e.max_output);
    auto stdin_open = get_bool(*o, "stdin", false);
    if (!timeout || !max_output || !stdin_open) return agent_errc::malformed_message;
    e.timeout_ms = *timeout;
    e.max_output = *max_output;
    e.stdin_open = *stdin_open;
    return request{std::move(e)};
}

boost::system::result<response> response_from_json(const json::value& v) {
    boost::system::error_code ec;
    auto* o = versioned(v, ec);
    if (!o) return ec;
    auto* type = o->if_contains("type");
    if (!type || !type->is_string()) return agent_errc::malformed_message;
    if (type->get_string() == "pong") {
        auto* ver = o->if_contains("agent_version");
        if (!ver || !ver->is_string()) return agent_errc::malformed_message;
        return response{pong_response{std::string(ver->get_string())}};
    }
    if (type->get_string() == "exit") {
        exit_response x;
        auto* code = o->if_contains("exit_code");
        auto* sig = o->if_contains("signal");
        if (!code || !code->is_int64() || !sig || !sig->is_int64()) return agent_errc::malformed_message;
        x.exit_code = static_cast<int>(code->get_int64());
        x.signal = static_cast<int>(sig->get_int64());
        auto timed_out = get_bool(*o, "timed_out", false);
        auto out_t = get_bool(*o, "stdout_truncated", false);
        auto err_t = get_bool(*o, "stderr_truncated", false);
        auto dur = get_u64(*o, "duration_us", 0);
        if (!timed_out || !out_t || !err_t || !dur) return agent_errc::malformed_message;
        x.timed_out = *timed_out;
        x.stdout_truncated = *out_t;
        x.stderr_truncated = *err_t;
        x.duration_us = *dur;
        return response{x};
    }
    if (type->get_string() == "error") {
        auto* num = o->if_contains("errno");
        auto* msg = o->if_contains("message");
        if (!num || !num->is_int64() || !msg) return agent_errc::malformed_message;
        auto text = bytes_from_json(*msg);
        if (!text) return agent_errc::malformed_message;
        return response{error_response{static_cast<int>(num->get_int64()), std::move(*text)}};
    }
    return agent_errc::malformed_message;
}

std::string serialize(const json::value& v) { return json::serialize(v); }

boost::system::result<json::value> parse_message(std::string_view body) {
    boost::system::error_code ec;
    json::parse_options opts;
    opts.max_depth = 8;  // messages are shallow; a deep document is an attack, not a message
    auto v = json::parse(body, ec, {}, opts);
    if (ec) return agent_errc::malformed_message;
    return v;
}

}  // namespace mimobox::agent
