// libFuzzer target: the filter's own hooks, as Envoy calls them, through the fake Envoy host
// (tests/fake_envoy/fake_envoy_host.c), under ASan and UBSan. Each input is one request and
// its response: Cookie headers (one or two), the app-version, override and client-sent
// cluster headers, and the response status, split at 0x00 bytes. Streams are recycled by the
// module's pool across inputs, as on an Envoy worker.
//
// Besides no crash, leak or undefined behaviour, it checks what must hold for every request:
// - the cluster header Envoy routes by is one of the config's clusters or absent, never the
//   client's own value (a client never chooses the cluster);
// - the override header never reaches the upstream;
// - the route cache is cleared once per request;
// - every Set-Cookie is one of Rollway's three cookies with its attributes.
// A seventh part, when present, runs the input through a config of two services (one Envoy
// fronting several, issue 27) on a route chosen by its first byte: web's, api's (cookies
// under /api), one naming a service the config lacks, or an operator's own route. Then each
// service's clusters and cookies are its own, a route naming no known service loses the
// cluster header, and an operator's route is left exactly as it came.
//
// Most inputs (by their length) are routed as Envoy 1.40 routes them: the route's cluster
// specifier decides while the route is resolved, then the filter is made and writes that
// decision; then the cluster Envoy routes by is the one the specifier named, the header app
// hosts check says the same, and the route is resolved once (a client's own cluster header
// naming a real cluster makes the filter decide and resolve again). Some inputs resolve a route
// whose decision no filter takes first (it must never reach another request); the rest
// reach the filter with no decision (a route resolved without the specifier), and the filter
// decides and has the route resolved again, to the cluster it chose.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unistd.h>

extern "C" {
struct Buffer {
  const char* ptr;
  size_t length;
};
void* envoy_dynamic_module_on_http_filter_config_new(void*, Buffer, Buffer);
void* envoy_dynamic_module_on_http_filter_new(void*, void*);
const void* envoy_dynamic_module_on_http_filter_per_route_config_new(Buffer, Buffer);
const void* envoy_dynamic_module_on_cluster_specifier_config_new(void*, Buffer, Buffer);
bool envoy_dynamic_module_on_cluster_specifier_select(const void*, void*);
void fake_set_route_config(const void*);
void fake_set_specifier(bool (*)(const void*, void*), const void*);
bool fake_resolve_route(void);
const char* fake_selected_cluster(void);
int envoy_dynamic_module_on_http_filter_request_headers(void*, void*, bool);
int envoy_dynamic_module_on_http_filter_response_headers(void*, void*, bool);
void envoy_dynamic_module_on_http_filter_destroy(void*);
void fake_reset_all(void);
void fake_reset_stream(void);
void fake_add_header(int kind, const char* key, const char* value, size_t length);
size_t fake_header_count(int kind, const char* key);
const char* fake_header(int kind, const char* key, size_t index);
int fake_route_cache_clears(void);
}

namespace {

constexpr int kRequest = 0;
constexpr int kResponse = 2;
const char* const kClusters[] = {"web.prod.v1", "web.prod.v2", "web.prod.v3", "web.bg.blue", "web.bg.green"};

void* config() {
  static void* made = [] {
    fake_reset_all();
    char path[] = "/tmp/rollway-filter-fuzz-XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) abort();
    const char secrets[] = R"({"rid": "fuzzing-routing-id-secret", "ops": "fuzzing-operator-secret"})";
    if (write(fd, secrets, sizeof secrets - 1) != static_cast<ssize_t>(sizeof secrets - 1)) abort();
    close(fd);
    const std::string json = std::string(R"({"service": "web", "generation": 7, "secrets_file": ")") + path + R"(",
      "routing_id": {"cookie": "rw_rid", "ttl_seconds": 86400, "signing_key_id": "rid"},
      "version_cookie": "rw_ver", "override": {"key_id": "ops", "max_ttl_seconds": 600},
      "stages": [
        {"name": "prod", "weight": 9, "mode": "rolling", "direction": {"state": "forward", "target": "v2"},
         "versions": [{"name": "v1", "capacity": 3, "cluster": "web.prod.v1"},
                      {"name": "v2", "capacity": 1, "cluster": "web.prod.v2"},
                      {"name": "v3", "capacity": 1, "cluster": "web.prod.v3", "admitted": false}]},
        {"name": "bg", "weight": 1, "mode": "blue_green", "active": "blue",
         "slots": {"blue": {"version": "v1", "capacity": 1, "cluster": "web.bg.blue"},
                   "green": {"version": "v2", "capacity": 1, "cluster": "web.bg.green"}}}]})";
    void* made_config = envoy_dynamic_module_on_http_filter_config_new(
        reinterpret_cast<void*>(1), {"rollway", 7}, {json.data(), json.size()});
    unlink(path);                          // the secrets are read once, at config_new
    if (made_config == nullptr) abort();   // the config above is valid: a rejection is a bug
    return made_config;
  }();
  return made;
}

// Two services, site (at /, its clusters web.*) and api (its cookies under /api), and the
// routes that name them, with their cluster specifiers.
struct Many {
  void* config;
  const void* routes[3];      // site, api, a service the config lacks
  const void* specifiers[3];  // the same three
};

const void* specifier_for(const char* json) {
  const void* made = envoy_dynamic_module_on_cluster_specifier_config_new(reinterpret_cast<void*>(3), {"rollway", 7},
                                                                         {json, strlen(json)});
  if (made == nullptr) abort();
  return made;
}

const Many& many() {
  static const Many made = [] {
    const std::string json = R"({"services": [
      {"service": "site", "generation": 1, "routing_id": {"cookie": "rw_rid", "ttl_seconds": 86400},
       "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "direction": {"state": "forward", "target": "v2"},
                   "versions": [{"name": "v1", "capacity": 1, "cluster": "web.prod.v1"},
                                {"name": "v2", "capacity": 1, "cluster": "web.prod.v2"}]}]},
      {"service": "api", "generation": 1, "cookie_path": "/api",
       "routing_id": {"cookie": "rw_rid_api", "ttl_seconds": 86400}, "version_cookie": "rw_ver_api",
       "stage_cookie": "rw_stage_api",
       "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                   "versions": [{"name": "a1", "capacity": 2, "cluster": "api.prod.a1"},
                                {"name": "a2", "capacity": 1, "cluster": "api.prod.a2", "admitted": false}]}]}]})";
    Many out{};
    out.config = envoy_dynamic_module_on_http_filter_config_new(reinterpret_cast<void*>(1), {"rollway", 7},
                                                                {json.data(), json.size()});
    const char* names[] = {R"({"service": "site"})", R"({"service": "api"})", R"({"service": "gone"})"};
    for (int i = 0; i < 3; ++i) {
      out.routes[i] = envoy_dynamic_module_on_http_filter_per_route_config_new({"rollway", 7}, {names[i], strlen(names[i])});
      if (out.routes[i] == nullptr) abort();
      out.specifiers[i] = specifier_for(names[i]);
    }
    if (out.config == nullptr) abort();
    return out;
  }();
  return made;
}

bool known_cluster(std::string_view value, std::string_view service = "") {
  for (const char* cluster : kClusters) {
    if (value == cluster) return true;
  }
  if (service == "web") return value == "web.prod.v1" || value == "web.prod.v2";
  if (service == "api") return value == "api.prod.a1" || value == "api.prod.a2";
  return false;
}

bool rollway_cookie(std::string_view set_cookie, std::string_view suffix = "", std::string_view path = "/") {
  for (std::string_view base : {"rw_rid", "rw_ver", "rw_stage"}) {
    const std::string name = std::string(base) + std::string(suffix) + "=";
    if (set_cookie.substr(0, name.size()) == name) {
      return set_cookie.find("; Path=" + std::string(path) + "; Max-Age=86400") != std::string_view::npos;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view parts[7];
  size_t count = 0;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  while (count < 7) {
    const size_t cut = rest.find('\0');
    parts[count++] = rest.substr(0, cut);
    if (cut == std::string_view::npos) break;
    rest.remove_prefix(cut + 1);
  }
  // The route: none of these for a single-service input; else web's, api's, an unknown
  // service's, or an operator's own (no Rollway per-route config).
  const int route = count > 6 ? (parts[6].empty() ? 3 : static_cast<unsigned char>(parts[6][0]) % 4) : -1;
  void* const filter_config = route < 0 ? config() : many().config;
  fake_set_route_config(route >= 0 && route < 3 ? many().routes[route] : nullptr);
  static const void* const web_specifier = specifier_for(R"({"service": "web"})");
  // An operator's route has no specifier; every other route has its service's.
  fake_set_specifier(route == 3 ? nullptr : envoy_dynamic_module_on_cluster_specifier_select,
                     route < 0 ? web_specifier : route < 3 ? many().specifiers[route] : nullptr);
  const bool by_specifier = route != 3 && size % 4 != 0;   // else: a route resolved without it
  const std::string_view service = route == 0 ? "web" : route == 1 ? "api" : "";
  fake_reset_stream();
  const char* const names[] = {"cookie", "cookie", "x-app-version", "x-rw-override", "x-rw-cluster"};
  for (size_t i = 0; i < count && i < 5; ++i) {
    if (i > 0 || !parts[i].empty()) fake_add_header(kRequest, names[i], parts[i].data(), parts[i].size());
  }
  if (by_specifier && size % 7 == 0) fake_resolve_route();   // a decision no filter takes
  const bool named = by_specifier && fake_resolve_route();
  const std::string chosen = fake_selected_cluster();
  void* stream = envoy_dynamic_module_on_http_filter_new(filter_config, reinterpret_cast<void*>(2));
  if (stream == nullptr) abort();
  envoy_dynamic_module_on_http_filter_request_headers(reinterpret_cast<void*>(2), stream, true);

  const size_t clusters = fake_header_count(kRequest, "x-rw-cluster");
  // The cluster Envoy routes by (the last selection) is the one the header names, or none.
  const std::string routed_by = fake_selected_cluster();
  if (route != 3 && route != 2) {
    if (clusters == 1 ? routed_by != fake_header(kRequest, "x-rw-cluster", 0) : !routed_by.empty()) abort();
  }
  if (route == 3) {   // an operator's route: left exactly as it came
    if (fake_route_cache_clears() != 0) abort();
    const bool sent = count > 4;
    if (clusters != (sent ? 1u : 0u)) abort();
    if (sent && std::string_view(fake_header(kRequest, "x-rw-cluster", 0)) != parts[4]) abort();
  } else if (by_specifier && route != 2) {   // decided once, at route resolution
    // ... unless the client sent a cluster header naming one of the service's clusters: the
    // specifier keeps that (a retry's re-selection looks the same) and decides nothing, and
    // the filter decides and routes by its own decision instead.
    const bool sent_known = count > 4 && (route < 0 ? known_cluster(parts[4])
                                                    : route == 0 ? parts[4] == "web.prod.v1" || parts[4] == "web.prod.v2"
                                                                 : parts[4] == "api.prod.a1" || parts[4] == "api.prod.a2");
    if (fake_route_cache_clears() != (sent_known ? 1 : 0) || named != !chosen.empty()) abort();
    if (!sent_known && routed_by != chosen) abort();
    if (route < 0 && fake_header_count(kRequest, "x-rw-override") != 0) abort();   // never forwarded upstream
    if (clusters > 1 || (clusters == 1 && !known_cluster(fake_header(kRequest, "x-rw-cluster", 0), service))) abort();
    if (route == 0 && clusters == 1 && std::string_view(fake_header(kRequest, "x-rw-cluster", 0)).substr(0, 4) != "web.") abort();
    if (route == 1 && clusters == 1 && std::string_view(fake_header(kRequest, "x-rw-cluster", 0)).substr(0, 4) != "api.") abort();
  } else {
    if (fake_route_cache_clears() != 1) abort();
    if (route < 0 && fake_header_count(kRequest, "x-rw-override") != 0) abort();   // never forwarded upstream
    if (route == 2 && clusters != 0) abort();                                     // an unknown service: no cluster
    if (clusters > 1 || (clusters == 1 && !known_cluster(fake_header(kRequest, "x-rw-cluster", 0), service))) abort();
    if (route == 0 && clusters == 1 && std::string_view(fake_header(kRequest, "x-rw-cluster", 0)).substr(0, 4) != "web.") abort();
    if (route == 1 && clusters == 1 && std::string_view(fake_header(kRequest, "x-rw-cluster", 0)).substr(0, 4) != "api.") abort();
  }

  const std::string_view status = count > 5 && !parts[5].empty() ? parts[5].substr(0, 3) : "200";
  fake_add_header(kResponse, ":status", status.data(), status.size());
  envoy_dynamic_module_on_http_filter_response_headers(reinterpret_cast<void*>(2), stream, true);
  const size_t cookies = fake_header_count(kResponse, "set-cookie");
  if (cookies > 3 || (route >= 2 && cookies != 0)) abort();
  for (size_t i = 0; i < cookies; ++i) {
    const char* cookie = fake_header(kResponse, "set-cookie", i);
    if (!(route == 1 ? rollway_cookie(cookie, "_api", "/api") : rollway_cookie(cookie))) abort();
  }
  envoy_dynamic_module_on_http_filter_destroy(stream);
  return 0;
}
