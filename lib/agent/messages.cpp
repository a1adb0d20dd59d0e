#include "agent/messages.hpp"

#include "agent/base64.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace mimobox::agent {

namespace json = boost::json;

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
    return json::object{{"base64", base64::encode(s)}};
}

std::optional<std::string> bytes_from_json(const json::value& v) {
    if (auto* s = v.if_string()) return std::string(*s);
    auto* o = v.if_object();
    if (!o || o->size() != 1) return std::nullopt;
    auto* enc = o->if_contains("base64");
    if (!enc || !enc->is_string()) return std::nullopt;
    return base64::decode(enc->get_string());
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

constexpr std::string_view file_ops[] = {"read", "write", "list_dir", "stat", "remove", "rename", "mkdir"};
constexpr std::string_view file_types[] = {"file", "dir", "symlink", "other"};

template <std::size_t N>
std::optional<std::size_t> index_of(const std::string_view (&names)[N], const json::value* v) {
    if (!v || !v->is_string()) return std::nullopt;
    for (std::size_t i = 0; i < N; ++i)
        if (v->get_string() == names[i]) return i;
    return std::nullopt;
}

// An absolute path without NUL bytes, at most PATH_MAX (the guest resolves the rest).
std::optional<std::string> path_from_json(const json::value* v) {
    if (!v) return std::nullopt;
    auto s = bytes_from_json(*v);
    if (!s || s->empty() || (*s)[0] != '/' || s->find('\0') != std::string::npos || s->size() >= 4096) return std::nullopt;
    return s;
}

// A directory entry from the guest names one thing inside the directory: anything else (a
// path, . or .., a NUL that C code would cut at) would let the guest point the embedder elsewhere.
bool valid_entry_name(std::string_view name) {
    return !name.empty() && name.size() <= max_entry_name && name != "." && name != ".." &&
           name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

json::value file_request_to_json(const file_request& f) {
    json::object o{{"v", protocol_version}, {"op", "file"}};
    o["file_op"] = file_ops[static_cast<std::size_t>(f.op)];
    o["path"] = bytes_to_json(f.path);
    if (f.op == file_request::operation::rename) o["target"] = bytes_to_json(f.target);
    o["mode"] = f.mode;
    o["recursive"] = f.recursive;
    return o;
}

boost::system::result<request> file_request_from_json(const json::object& o) {
    file_request f;
    auto op = index_of(file_ops, o.if_contains("file_op"));
    auto path = path_from_json(o.if_contains("path"));
    auto mode = get_u64(o, "mode", f.mode);
    auto recursive = get_bool(o, "recursive", false);
    if (!op || !path || !mode || *mode > 07777 || !recursive) return agent_errc::malformed_message;
    f.op = static_cast<file_request::operation>(*op);
    f.path = std::move(*path);
    f.mode = static_cast<std::uint32_t>(*mode);
    f.recursive = *recursive;
    if (f.op == file_request::operation::rename) {
        auto target = path_from_json(o.if_contains("target"));
        if (!target) return agent_errc::malformed_message;
        f.target = std::move(*target);
    }
    return request{std::move(f)};
}

}  // namespace

json::value to_json(const request& r) {
    json::object o{{"v", protocol_version}};
    if (std::holds_alternative<ping_request>(r)) {
        o["op"] = "ping";
    } else if (std::holds_alternative<kill_request>(r)) {
        o["op"] = "kill";
    } else if (auto* i = std::get_if<init_request>(&r)) {
        o["op"] = "init";
        o["entropy"] = bytes_to_json(i->entropy);
        o["hostname"] = bytes_to_json(i->hostname);
        if (i->wall_clock_ns != 0) o["wall_clock_ns"] = i->wall_clock_ns;
        if (i->force_reseed) o["reseed"] = true;
    } else if (auto* f = std::get_if<file_request>(&r)) {
        return file_request_to_json(*f);
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
    } else if (std::holds_alternative<ok_response>(r)) {
        o["type"] = "ok";
    } else if (auto* st = std::get_if<stat_response>(&r)) {
        o["type"] = "stat";
        o["file_type"] = file_types[static_cast<std::size_t>(st->type)];
        o["size"] = st->size;
        o["mode"] = st->mode;
        o["mtime_ns"] = st->mtime_ns;
    } else if (auto* l = std::get_if<listing_response>(&r)) {
        o["type"] = "listing";
        json::array entries;
        for (const auto& e : l->entries)
            entries.push_back(json::array{bytes_to_json(e.name), file_types[static_cast<std::size_t>(e.type)], e.size});
        o["entries"] = std::move(entries);
        o["truncated"] = l->truncated;
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
    if (op->get_string() == "file") return file_request_from_json(*o);
    if (op->get_string() == "init") {
        auto* entropy = o->if_contains("entropy");
        auto* hostname = o->if_contains("hostname");
        if (!entropy || !hostname) return agent_errc::malformed_message;
        auto e = bytes_from_json(*entropy);
        auto h = bytes_from_json(*hostname);
        if (!e || !h || e->size() > 512 || h->size() > 64) return agent_errc::malformed_message;
        init_request init;
        init.entropy = std::move(*e);
        init.hostname = std::move(*h);
        if (auto* clock = o->if_contains("wall_clock_ns")) {
            if (!clock->is_int64() || clock->get_int64() <= 0) return agent_errc::malformed_message;
            init.wall_clock_ns = clock->get_int64();
        }
        if (auto* reseed = o->if_contains("reseed")) {
            if (!reseed->is_bool()) return agent_errc::malformed_message;
            init.force_reseed = reseed->get_bool();
        }
        return request{std::move(init)};
    }
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
    if (!timeout || *timeout > max_timeout_ms || !max_output || !stdin_open) return agent_errc::malformed_message;
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
        // An exit status is 0-255 (-1 with a signal), a signal 0-64: the embedder may index by them.
        if (!code || !code->is_int64() || !sig || !sig->is_int64() || code->get_int64() < -1 || code->get_int64() > 255 ||
            sig->get_int64() < 0 || sig->get_int64() > 64)
            return agent_errc::malformed_message;
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
    if (type->get_string() == "ok") return response{ok_response{}};
    if (type->get_string() == "stat") {
        stat_response st;
        auto type_index = index_of(file_types, o->if_contains("file_type"));
        auto size = get_u64(*o, "size", 0);
        auto mode = get_u64(*o, "mode", 0);
        auto* mtime = o->if_contains("mtime_ns");
        if (!type_index || !size || !mode || *mode > 07777 || !mtime || !mtime->is_int64())
            return agent_errc::malformed_message;
        st.type = static_cast<file_type>(*type_index);
        st.size = *size;
        st.mode = static_cast<std::uint32_t>(*mode);
        st.mtime_ns = mtime->get_int64();
        return response{st};
    }
    if (type->get_string() == "listing") {
        listing_response l;
        auto* entries = o->if_contains("entries");
        auto truncated = get_bool(*o, "truncated", false);
        if (!entries || !entries->is_array() || !truncated || entries->get_array().size() > listing_response::max_entries)
            return agent_errc::malformed_message;
        l.truncated = *truncated;
        for (const auto& e : entries->get_array()) {
            auto* fields = e.if_array();
            if (!fields || fields->size() != 3) return agent_errc::malformed_message;
            auto name = bytes_from_json((*fields)[0]);
            auto type_index = index_of(file_types, &(*fields)[1]);
            const auto& size = (*fields)[2];
            if (!name || !valid_entry_name(*name) || !type_index ||
                !(size.is_uint64() || (size.is_int64() && size.get_int64() >= 0)))
                return agent_errc::malformed_message;
            l.entries.push_back({std::move(*name), static_cast<file_type>(*type_index), size.to_number<std::uint64_t>()});
        }
        return response{std::move(l)};
    }
    if (type->get_string() == "error") {
        auto* num = o->if_contains("errno");
        auto* msg = o->if_contains("message");
        if (!num || !num->is_int64() || !msg) return agent_errc::malformed_message;
        auto text = bytes_from_json(*msg);
        if (!text) return agent_errc::malformed_message;
        if (text->size() > max_error_message) text->resize(max_error_message);
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
