// librollway_filter.so: the Rollway routing core as an Envoy HTTP dynamic module.
//
// Two Envoy extensions in one module:
//   - a cluster specifier (route `inline_cluster_specifier_plugin`): Envoy calls it while it
//     resolves the route; it reads the cookies and headers, calls rollway::decide() and names
//     the cluster. The route is resolved once, with the cluster already chosen.
//   - an HTTP filter: takes that decision (the specifier runs just before Envoy creates the
//     stream's filters, on the same thread), writes the app's check header, counts, and on
//     the response writes the cookies and the refresh header.
// The specifier finds its service's config in a registry the filter configs publish to
// (ECDS delivers the filter config; the route only names the service).
//
// Three layers, as in Envoy's own SDKs:
//   1. the C ABI (envoy_abi.h): extern "C" hooks at the bottom of this file, each a
//      noexcept trampoline that catches everything, so no exception ever reaches Envoy;
//   2. a small typed layer (HostStream, SelectionContext) over Envoy's callbacks;
//   3. the logic: read cookies and headers, call rollway::decide(), name the cluster,
//      write the response cookies. The routing rules themselves live in native/.
//
// Per request: no JSON, no allocation except the small per-stream object (pooled).
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cookies.h"
#include "envoy_abi.h"
#include "rollway/router.h"

#define ROLLWAY_EXPORT extern "C" __attribute__((visibility("default")))

namespace rollway::filter {
namespace {

constexpr const char kAbiVersion[] = "v0.2.0";  // Envoy 1.40.0
constexpr const char kFilterName[] = "rollway";

inline envoy_dynamic_module_type_module_buffer buf(std::string_view s) {
  return {s.data(), s.size()};
}

void log(envoy_dynamic_module_type_log_level level, const std::string& message) {
  envoy_dynamic_module_callback_log(level, buf(message));
}

// ---- counters ----------------------------------------------------------------------------
//
// Every counter is defined without labels, by its full name, when the config is accepted:
// the ABI's labelled counters resolve the stat name on every increment, which cost ~12 us
// per request in benchmarks/envoy.py; an unlabelled increment is a direct add. The names
// keep the labelled layout (requests.stage.<stage>.version.<version>), so /stats reads
// the same either way.

enum Counter : size_t {
  kIdsMinted = 0,
  kBadCookieMalformed,
  kBadCookieExpired,
  kBadCookieSignature,
  kForwardMoves,
  kRollbackMoves,
  kTiebreakKept,
  kUnavailableMoves,
  kRefreshSignals,
  kOverridesApplied,
  kOverridesRejected,
  kNoCapacity,
  kConfigsRejected,
  kMovesNotCommitted,
  kIdsUnavailable,
  kKeyedByHeader,
  kDecidedInFilter,
  kCounterCount,
};

constexpr const char* kCounterNames[kCounterCount] = {
    "ids_minted",
    "bad_cookies.reason.malformed",
    "bad_cookies.reason.expired",
    "bad_cookies.reason.bad_signature",
    "forward_moves",
    "rollback_moves",
    "tiebreak_kept",
    "unavailable_moves",
    "refresh_signals",
    "overrides_applied",
    "overrides_rejected",
    "no_capacity",
    "configs_rejected",
    "moves_not_committed",
    "ids_unavailable",   // an id was due but the OS gave no random bytes: served without one
    "keyed_by_header",   // a cookie-less client routed by its routing-key header (no cookie set)
    // The filter decided because the cluster specifier had not (a route without it, or a
    // filter config update racing the request): routed by header and a second resolution.
    "decided_in_filter",
};

constexpr size_t kNoCounter = static_cast<size_t>(-1);

// ---- config -------------------------------------------------------------------------------

// One service's part of a filter config. Immutable after config_new; shared read-only by
// every worker. Envoy keeps the filter config alive while any stream filter made from it
// exists (its config object owns ours and is held by each filter), so stream filters keep
// a plain pointer.
struct FilterConfig {
  std::shared_ptr<const RouterConfig> router;
  size_t counter_id[kCounterCount] = {};                // kNoCounter when Envoy refused it
  std::vector<std::vector<size_t>> request_counter;     // [stage][version]
  std::vector<std::vector<size_t>> reload_counter;      // [stage][version]: refresh signals sent to tabs
  std::vector<std::vector<size_t>> move_counter;        // [stage][version]: sessions moved onto it
  std::string cookie_attributes;  // "; Path=/; Max-Age=N; HttpOnly; SameSite=Lax[; Secure]"
  // The version cookie without HttpOnly: it holds only a build id the page already shows,
  // and a page that does not render its version reads it once at load (rollway.js).
  std::string version_cookie_attributes;
  // The routing-id, version and stage cookie names (bytes owned by `router`).
  CookieNames cookie_names;
};

// One per accepted filter config (one per ECDS update): one service (the filter config is
// that service's, and every request is for it), or several ({"services": [...]}: one Envoy
// fronting many apps), each request's service named by its route's per-route config
// (RouteService). A route without one is not Rollway's: the filter leaves it alone.
struct ModuleConfig {
  std::vector<std::shared_ptr<const FilterConfig>> services;
  const FilterConfig* single = nullptr;         // one service: every request is its
  std::unordered_map<std::string, const FilterConfig*> by_name;
  size_t unknown_service_counter = static_cast<size_t>(-1);

  const FilterConfig* find(const std::string& name) const {
    const auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  }
  ~ModuleConfig();
};

// A route's per-route config: which service its requests are for ({"service": "web"}).
// Made once per route-table update on the main thread; read-only afterwards.
struct RouteService {
  std::string name;
};

// ---- the registry: each service's current filter config, for the cluster specifier -------
//
// The route names a service ({"service": "web"}); its routing config comes by ECDS with the
// filter config. Each accepted filter config publishes its services here (main thread); the
// specifier reads a service's slot on a worker. A worker keeps the config it last read (one
// shared_ptr per thread), so a slot costs one atomic load per request until it changes, and
// a config replaced by an update lives until every worker has read its successor.
//
// Bounds: one slot per service name ever published, at most kMaxSlots (names beyond are
// refused with a log line, and their requests are decided by the filter); a slot holds one
// config; a worker holds one.
struct ServiceSlot {
  std::mutex mu;
  std::shared_ptr<const FilterConfig> current;  // guarded by mu
  std::atomic<uint64_t> version{0};             // bumped (under mu) on every change
};

constexpr size_t kMaxSlots = 4096;

class Registry {
 public:
  // The slot for a service, made on first use; NULL past kMaxSlots. Main thread.
  ServiceSlot* slot(const std::string& service) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(service);
    if (it != slots_.end()) return it->second.get();
    if (slots_.size() >= kMaxSlots) return nullptr;
    return slots_.emplace(service, std::make_unique<ServiceSlot>()).first->second.get();
  }

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<ServiceSlot>> slots_;
};

Registry& registry() {
  static Registry* instance = new Registry();  // never destroyed: workers may outlive exit handlers
  return *instance;
}

void publish(const std::shared_ptr<const FilterConfig>& config) {
  ServiceSlot* slot = registry().slot(config->router->service);
  if (slot == nullptr) {
    log(envoy_dynamic_module_type_log_level_Error,
        "rollway: more than 4096 services; '" + config->router->service + "' is decided by the filter");
    return;
  }
  std::lock_guard<std::mutex> lock(slot->mu);
  slot->current = config;
  slot->version.fetch_add(1, std::memory_order_release);
}

// A filter config going away takes its services out of the registry unless a newer config
// replaced them already (the usual case: an update publishes before the old one goes).
void retract(const std::shared_ptr<const FilterConfig>& config) {
  ServiceSlot* slot = registry().slot(config->router->service);
  if (slot == nullptr) return;
  std::lock_guard<std::mutex> lock(slot->mu);
  if (slot->current != config) return;
  slot->current.reset();
  slot->version.fetch_add(1, std::memory_order_release);
}

ModuleConfig::~ModuleConfig() {
  for (const auto& service : services) retract(service);
}

// The worker's view of one slot: the config it last read and the slot version it read.
struct SlotView {
  const ServiceSlot* slot;
  uint64_t version;
  const FilterConfig* config;
};
__attribute__((tls_model("initial-exec"))) thread_local SlotView slot_view;  // zero-initialized

__attribute__((noinline)) const FilterConfig* refresh_view(ServiceSlot& slot) noexcept {
  thread_local std::shared_ptr<const FilterConfig> kept;  // keeps slot_view.config alive
  std::lock_guard<std::mutex> lock(slot.mu);
  kept = slot.current;
  slot_view = {&slot, slot.version.load(std::memory_order_relaxed), kept.get()};
  return slot_view.config;
}

// The service's current config as this worker sees it, or NULL (none published).
inline const FilterConfig* current_config(ServiceSlot& slot) noexcept {
  const SlotView& view = slot_view;
  if (view.slot == &slot && view.version == slot.version.load(std::memory_order_acquire)) return view.config;
  return refresh_view(slot);
}

// A route's cluster-specifier config: which service its requests are for.
struct SpecifierConfig {
  ServiceSlot* slot;
};

size_t define_counter(void* config_envoy, const std::string& name) {
  size_t id = kNoCounter;
  if (envoy_dynamic_module_callback_http_filter_config_define_counter(config_envoy, buf(name), nullptr, 0, &id) !=
      envoy_dynamic_module_type_metrics_result_Success) {
    return kNoCounter;
  }
  return id;
}

void define_counters(void* config_envoy, FilterConfig& config, const std::string& prefix) {
  for (size_t i = 0; i < kCounterCount; ++i) {
    config.counter_id[i] = define_counter(config_envoy, prefix + kCounterNames[i]);
  }
}

// Per stage and version: requests routed there, refresh signals telling a tab to reload onto
// it, and sessions moved onto it (both committed: the response was not a 5xx). Names keep the
// stage and version in fixed places so Envoy's tag extraction (rollway.envoy.bootstrap
// STATS_TAGS) turns them into labels: envoy_rollway_requests{rollway_stage, rollway_version}.
void define_request_counters(void* config_envoy, FilterConfig& config, const std::string& prefix) {
  for (const StageEntry& stage : config.router->stages) {
    config.request_counter.emplace_back();
    config.reload_counter.emplace_back();
    config.move_counter.emplace_back();
    for (const VersionEntry& version : stage.versions) {
      const std::string where = ".stage." + stage.name + ".version." + version.name;
      config.request_counter.back().push_back(define_counter(config_envoy, prefix + "requests" + where));
      config.reload_counter.back().push_back(define_counter(config_envoy, prefix + "reloads" + where));
      config.move_counter.back().push_back(define_counter(config_envoy, prefix + "moves" + where));
    }
  }
}

// Secrets come from a file named in the config ("secrets_file": a JSON object of key id ->
// secret string), read once per config. They never travel in the config itself, so they
// stay out of Envoy's config dump and logs.
Secrets load_secrets(std::string_view config_json) {
  Secrets secrets;
  const auto doc = nlohmann::json::parse(config_json.begin(), config_json.end(), nullptr, false);
  if (!doc.is_object()) return secrets;  // the core reports the JSON error with its field
  const auto it = doc.find("secrets_file");
  if (it == doc.end()) return secrets;
  if (!it->is_string()) throw ConfigError("secrets_file: must be a path");
  const std::string path = it->get<std::string>();
  std::ifstream file(path);
  if (!file) throw ConfigError("secrets_file: cannot read '" + path + "'");
  std::stringstream content;
  content << file.rdbuf();
  const auto keys = nlohmann::json::parse(content.str(), nullptr, false);
  if (!keys.is_object()) throw ConfigError("secrets_file: '" + path + "' is not a JSON object");
  for (auto entry = keys.begin(); entry != keys.end(); ++entry) {
    if (!entry.value().is_string()) {
      throw ConfigError("secrets_file: key '" + entry.key() + "' must map to a string");
    }
    secrets[entry.key()] = entry.value().get<std::string>();
  }
  return secrets;
}

// One service's config; throws ConfigError. `prefix`: "" for the only service, else
// "service.<name>." so that each service's counters are its own.
std::shared_ptr<FilterConfig> new_service(void* config_envoy, std::string_view json, bool named) {
  auto config = std::make_shared<FilterConfig>();
  config->router = parse_router_config(json, load_secrets(json));
  const std::string prefix = named ? "service." + config->router->service + "." : "";
  define_counters(config_envoy, *config, prefix);
  define_request_counters(config_envoy, *config, prefix);
  const RouterConfig& router = *config->router;
  const std::string_view cookie_names[kWantedCookies] = {router.routing_cookie, router.version_cookie,
                                                         router.stage_cookie};
  config->cookie_names = CookieNames(cookie_names);
  const std::string path_and_age = "; Path=" + router.cookie_path + "; Max-Age=" + std::to_string(router.ttl_seconds);
  config->cookie_attributes = path_and_age + "; HttpOnly; SameSite=Lax";
  config->version_cookie_attributes = path_and_age + "; SameSite=Lax";
  if (router.cookie_secure) {
    config->cookie_attributes += "; Secure";
    config->version_cookie_attributes += "; Secure";
  }
  log(envoy_dynamic_module_type_log_level_Info,
      "rollway: filter config accepted: service " + router.service + ", generation " +
          std::to_string(router.generation) + ", " + std::to_string(router.stages.size()) + " stages");
  return config;
}

constexpr size_t kMaxServices = 256;

ModuleConfig* new_config(void* config_envoy, std::string_view json) {
  auto module = std::make_unique<ModuleConfig>();
  try {
    const auto doc = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
    const auto services = doc.is_object() ? doc.find("services") : doc.end();
    if (services == doc.end()) {
      module->services.push_back(new_service(config_envoy, json, false));
      module->single = module->services.back().get();
    } else {
      if (!services->is_array() || services->empty() || services->size() > kMaxServices) {
        throw ConfigError("services: must be a list of 1 to 256 service configs");
      }
      for (size_t i = 0; i < services->size(); ++i) {
        if (!(*services)[i].is_object()) throw ConfigError("services[" + std::to_string(i) + "]: must be an object");
        try {
          module->services.push_back(new_service(config_envoy, (*services)[i].dump(), true));
        } catch (const ConfigError& error) {
          throw ConfigError("services[" + std::to_string(i) + "]." + error.what());
        }
        const FilterConfig* service = module->services.back().get();
        if (!module->by_name.emplace(service->router->service, service).second) {
          throw ConfigError("services[" + std::to_string(i) + "].service: '" + service->router->service +
                            "' is listed twice");
        }
      }
      module->unknown_service_counter = define_counter(config_envoy, "unknown_services");
    }
  } catch (const ConfigError& error) {
    const size_t rejected = define_counter(config_envoy, kCounterNames[kConfigsRejected]);
    if (rejected != kNoCounter) {
      envoy_dynamic_module_callback_http_filter_config_increment_counter(config_envoy, rejected, nullptr, 0, 1);
    }
    log(envoy_dynamic_module_type_log_level_Error,
        std::string("rollway: filter config rejected, previous config keeps serving: ") + error.what());
    return nullptr;
  }
  for (const auto& service : module->services) publish(service);
  return module.release();
}

// A route's service name, from its per-route config or its cluster-specifier config: exactly
// {"service": "<name>"}, 1-128 characters. Empty when it is not that, with the reason logged.
std::string route_service_name(std::string_view json, const char* what) {
  const auto doc = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  const auto it = doc.is_object() ? doc.find("service") : doc.end();
  const bool named = it != doc.end() && it->is_string() && !it->get<std::string>().empty() &&
                     it->get<std::string>().size() <= 128 && doc.size() == 1;
  if (!named) {
    log(envoy_dynamic_module_type_log_level_Error,
        std::string("rollway: ") + what + " rejected: must be {\"service\": \"<name>\"}, got " +
            std::string(json.substr(0, 200)));
    return {};
  }
  return it->get<std::string>();
}

// The per-route config. NULL rejects the route table (Envoy keeps the one before).
RouteService* new_route_service(std::string_view json) {
  std::string name = route_service_name(json, "per-route config");
  if (name.empty()) return nullptr;
  auto route = std::make_unique<RouteService>();
  route->name = std::move(name);
  return route.release();
}

// The cluster-specifier config. NULL rejects the route table (Envoy keeps the one before).
SpecifierConfig* new_specifier(std::string_view json) {
  const std::string name = route_service_name(json, "cluster specifier config");
  if (name.empty()) return nullptr;
  return new SpecifierConfig{registry().slot(name)};
}

// ---- typed layer over the per-stream callbacks ---------------------------------------------

class HostStream {
 public:
  explicit HostStream(void* envoy) : envoy_(envoy) {}

  // Value `index` of a request header, or empty. Valid until the next header modification.
  std::string_view request_header(std::string_view key, size_t index = 0, size_t* count = nullptr) const {
    return header(envoy_dynamic_module_type_http_header_type_RequestHeader, key, index, count);
  }
  std::string_view response_header(std::string_view key) const {
    return header(envoy_dynamic_module_type_http_header_type_ResponseHeader, key, 0, nullptr);
  }
  std::string_view header(envoy_dynamic_module_type_http_header_type type, std::string_view key, size_t index,
                          size_t* count) const {
    envoy_dynamic_module_type_envoy_buffer out{nullptr, 0};
    size_t values = 0;
    if (!envoy_dynamic_module_callback_http_get_header(envoy_, type, buf(key), &out, index, &values)) {
      values = 0;
    }
    if (count != nullptr) *count = values;
    if (out.ptr == nullptr) return {};
    return std::string_view(out.ptr, out.length);
  }

  void set_request_header(std::string_view key, std::string_view value) const {
    envoy_dynamic_module_callback_http_set_header(
        envoy_, envoy_dynamic_module_type_http_header_type_RequestHeader, buf(key), buf(value));
  }
  void add_request_header(std::string_view key, std::string_view value) const {
    envoy_dynamic_module_callback_http_add_header(
        envoy_, envoy_dynamic_module_type_http_header_type_RequestHeader, buf(key), buf(value));
  }
  void remove_request_header(std::string_view key) const {
    envoy_dynamic_module_callback_http_set_header(
        envoy_, envoy_dynamic_module_type_http_header_type_RequestHeader, buf(key), {nullptr, 0});
  }
  void add_response_header(std::string_view key, std::string_view value) const {
    envoy_dynamic_module_callback_http_add_header(
        envoy_, envoy_dynamic_module_type_http_header_type_ResponseHeader, buf(key), buf(value));
  }
  void set_response_header(std::string_view key, std::string_view value) const {
    envoy_dynamic_module_callback_http_set_header(
        envoy_, envoy_dynamic_module_type_http_header_type_ResponseHeader, buf(key), buf(value));
  }
  void clear_route_cache() const { envoy_dynamic_module_callback_http_clear_route_cache(envoy_); }
  // Resolves the route now if it is not (after clear_route_cache): runs the specifier.
  void resolve_route() const { (void)envoy_dynamic_module_callback_get_most_specific_route_config(envoy_); }

  void count(size_t counter_id) const {
    if (counter_id == kNoCounter) return;
    envoy_dynamic_module_callback_http_filter_increment_counter(envoy_, counter_id, nullptr, 0, 1);
  }
  void count(const FilterConfig& config, Counter counter) const { count(config.counter_id[counter]); }

 private:
  void* envoy_;
};

// The cluster specifier's view of a request being routed: valid during one select call.
//
// The request's headers are fetched once, as pointers into Envoy's header map, and looked up
// here: the ABI's lookup by name copies and lowercases the name and builds a result vector,
// ~2,000 instructions a call in Envoy 1.40 under callgrind, where fetching all of a
// request's headers costs a few hundred. Envoy's header names are lowercase, as are the
// names Rollway looks up (the core lowercases configured names). A request with more than
// kFetchedHeaders headers is looked up by name instead.
class SelectionContext {
 public:
  explicit SelectionContext(void* envoy) : envoy_(envoy) {
    count_ = envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(envoy_);
    by_name_ = count_ > kFetchedHeaders;
    if (!by_name_ && !envoy_dynamic_module_callback_cluster_specifier_get_request_headers(envoy_, headers_)) count_ = 0;
  }

  std::string_view request_header(std::string_view key, size_t index = 0, size_t* count = nullptr) const {
    if (by_name_) return by_name(key, index, count);
    std::string_view found;
    size_t seen = 0;
    for (size_t i = 0; i < count_; ++i) {
      const envoy_dynamic_module_type_envoy_http_header& h = headers_[i];
      if (h.key_length != key.size() || std::memcmp(h.key_ptr, key.data(), key.size()) != 0) continue;
      if (seen++ == index) found = std::string_view(h.value_ptr, h.value_length);
    }
    if (count != nullptr) *count = seen;
    return found;
  }
  // Whether the headers were fetched (else they are looked up by name), how many, and one.
  bool fetched() const { return !by_name_; }
  size_t header_count() const { return count_; }
  std::pair<std::string_view, std::string_view> header_at(size_t i) const {
    return {std::string_view(headers_[i].key_ptr, headers_[i].key_length),
            std::string_view(headers_[i].value_ptr, headers_[i].value_length)};
  }
  bool has(std::string_view key) const {
    size_t count = 0;
    request_header(key, 0, &count);
    return count > 0;
  }
  void set_cluster(std::string_view name) const {
    envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(envoy_, buf(name));
  }

 private:
  static constexpr size_t kFetchedHeaders = 64;

  std::string_view by_name(std::string_view key, size_t index, size_t* count) const {
    envoy_dynamic_module_type_envoy_buffer out{nullptr, 0};
    size_t values = 0;
    if (!envoy_dynamic_module_callback_cluster_specifier_get_request_header_value(envoy_, buf(key), &out, index,
                                                                                  &values)) {
      values = 0;
    }
    if (count != nullptr) *count = values;
    if (out.ptr == nullptr) return {};
    return std::string_view(out.ptr, out.length);
  }

  void* envoy_;
  size_t count_ = 0;
  bool by_name_ = false;
  envoy_dynamic_module_type_envoy_http_header headers_[kFetchedHeaders];
};

// ---- the logic ----------------------------------------------------------------------------

// What the decision made for a request means for its stream: what the request hook counts
// and writes, and what the response phase must write.
struct StreamFilter {
  explicit StreamFilter(const ModuleConfig* m) { reset(m); }
  // For a recycled object: everything the hooks read. `m` is NULL for an object the cluster
  // specifier fills before the filter exists.
  void reset(const ModuleConfig* m) {
    module = m;
    config = m != nullptr ? m->single : nullptr;
    routed_version = routed_stage = nullptr;
    set_version_cookie = set_stage_cookie = refresh = minted = writes_response = moved = false;
    decided = has_override_header = false;
    sent_cluster_header = true;
  }
  const ModuleConfig* module;
  const FilterConfig* config;                   // the decision's service config (set when decided)
  const std::string* routed_version = nullptr;  // owned by config->router
  const std::string* routed_stage = nullptr;    // owned by config->router
  bool set_version_cookie = false;
  bool set_stage_cookie = false;
  bool refresh = false;
  bool minted = false;
  bool moved = false;            // the decision moved the session (forward, rollback, version gone)
  bool decided = false;          // `decision` holds this request's decision
  bool has_override_header = false;  // the request carries the override header: it is removed
  // The client sent a cluster header of its own (or we do not know): it is overwritten.
  // Otherwise ours is appended, which spares Envoy's header map a lookup by name (building
  // its lazy index costs ~3,000 instructions; no other lookup on the path needs it).
  bool sent_cluster_header = true;
  int stage_index = -1;          // with routed_version: indices into the counters
  int version_index = -1;
  // Whether the response phase has anything to write: most responses do not (a returning
  // session kept where it was), and then the response hook returns before touching the
  // rest of this object or setting up its frame.
  bool writes_response = false;
  Decision decision;
  StreamFilter* next_free = nullptr;  // the pool's list while the object waits for reuse
};

// Stream objects are recycled per thread instead of allocated per request: a stream is made
// and destroyed on its worker, and new/delete was a tenth of the filter's own instructions.
// The free streams form an intrusive list (a pop and a push, nothing to grow or fail); at
// most kPooledStreams wait per thread, the rest are freed.
//
// The per-thread state is trivially destructible, so reaching it costs one %fs access: a
// thread_local with a destructor gets a guard variable that the compiler reads through
// __tls_get_addr on every access (two calls per request, ~40 instructions). The free list is
// released at thread exit by a separate object, touched only when the pool is empty.
//
// `parked`: the stream object the cluster specifier filled for the request whose route it
// just resolved. Envoy resolves a request's route and then, in the same call on the same
// thread, creates its filters (checked in Envoy 1.40: select, filter_new, request_headers,
// in that order, with nothing between the first two), so filter_new takes it. A decision is
// taken only if none of this module's filter hooks ran on the thread since it was parked
// (`hooks` counts them; `parked_at` is the count at parking): a route resolved again for a
// stream whose filter exists (a filter clearing the route cache, a retry re-selecting)
// parks a decision no filter takes, and the next hook makes it stale. A stale one is freed
// by the next select or filter_new. (What this cannot tell apart: a re-selection followed at
// once by the filter of a stream on a route without Rollway's specifier, with no hook of
// ours between. Rollway's own route tables give every route of a single-service filter the
// specifier, which the snapshot check enforces, and never set refresh_cluster_on_retry.) `forced`: while the filter decides
// itself (no parked decision), the cluster its decision chose, which the specifier names
// when the filter makes Envoy resolve the route again.
struct StreamPool {
  StreamFilter* free;
  size_t free_count;
  StreamFilter* parked;
  uint64_t parked_at;
  uint64_t hooks;
  bool forcing;
  const std::string* forced_cluster;  // NULL while forcing: no capacity
};
// initial-exec: a direct %fs access instead of a __tls_get_addr call per stream. The module's
// whole TLS block is under 200 bytes (168 in this build: `readelf -l`, PT_TLS), well inside
// the static TLS glibc keeps for dlopen'd libraries (a module that could not get it would
// fail to load, loudly, not misbehave).
__attribute__((tls_model("initial-exec"))) thread_local StreamPool stream_pool;  // zero-initialized
constexpr size_t kPooledStreams = 1024;

struct StreamPoolRelease {
  ~StreamPoolRelease() {
    while (stream_pool.free != nullptr) delete std::exchange(stream_pool.free, stream_pool.free->next_free);
    delete std::exchange(stream_pool.parked, nullptr);
    stream_pool.free_count = 0;
  }
};

// The slow path: a thread's first streams, or more streams open at once than ever before.
// Registering the release here (once per thread, by constructing the thread_local) keeps the
// guard off the fast path. Nothing throws: the constructor is trivial.
__attribute__((noinline)) StreamFilter* new_stream(const ModuleConfig* config) noexcept {
  thread_local StreamPoolRelease release;
  (void)release;
  return new (std::nothrow) StreamFilter(config);
}

StreamFilter* take_stream(const ModuleConfig* config) noexcept {
  StreamPool& pool = stream_pool;
  if (pool.free == nullptr) return new_stream(config);
  StreamFilter* stream = std::exchange(pool.free, pool.free->next_free);
  --pool.free_count;
  stream->reset(config);
  return stream;
}

void give_stream(StreamFilter* stream) noexcept {
  if (stream == nullptr) return;
  StreamPool& pool = stream_pool;
  if (pool.free_count >= kPooledStreams) {
    delete stream;
    return;
  }
  stream->next_free = std::exchange(pool.free, stream);
  ++pool.free_count;
}

constexpr size_t kSetCookieBuffer = 1024;  // names <= 128, token <= 41, version <= 128

// One lookup per name, not one read of all headers. Measured in Envoy 1.40 under callgrind
// (a module doing only the reads): two get_header calls cost ~1,000 instructions whether a
// request has 3 headers or a browser's 18; get_headers (every header through a callback)
// costs the same with 3 and ~2,300 with 18. The override header is looked up only when an
// override key is configured: without one it means nothing to Rollway and is passed
// through like any other header.
//
// Fills `request` with the three cookies (the first occurrence of each, in any number of
// Cookie headers), the app version and the override (first values). `Headers` is the
// filter's (HostStream) or the specifier's (SelectionContext) access to the request.
// Returns whether the request carries the override header at all (even empty): it is then
// removed, so no override header ever reaches the upstream.
template <typename Headers>
bool read_each(const Headers& host, const FilterConfig& config, RouteRequest& request) {
  const RouterConfig& router = *config.router;
  CookieMatch cookies[kWantedCookies];
  size_t cookie_headers = 0;
  const std::string_view first = host.request_header("cookie", 0, &cookie_headers);
  if (cookie_headers > 0 && !scan_cookie_header(first, config.cookie_names, cookies)) {
    for (size_t i = 1; i < cookie_headers; ++i) {
      if (scan_cookie_header(host.request_header("cookie", i), config.cookie_names, cookies)) break;
    }
  }
  request.routing_id = cookies[0].value;
  request.version_cookie = cookies[1].value;
  request.stage_cookie = cookies[2].value;
  request.app_version = host.request_header(router.app_version_header);
  // Looked up only for a service that names one; the core uses it only when the request has
  // no valid routing-id cookie.
  if (!router.routing_key_header.empty()) {
    request.header_key = host.request_header(router.routing_key_header);
  }
  if (router.override_secret.empty()) return false;
  size_t overrides = 0;
  request.override_value = host.request_header(router.override_header, 0, &overrides);
  return overrides > 0;
}

// What reading a request found besides the values the core decides by.
struct RequestFacts {
  bool has_override_header;  // even empty: it is removed before the upstream sees it
  bool has_cluster_header;   // the request carries one (or it is not known): it is overwritten
  std::string_view cluster_header;  // its first value, when read
};

RequestFacts read_request(HostStream host, const FilterConfig& config, RouteRequest& request) {
  return {read_each(host, config, request), true, {}};
}

// The specifier reads its fetched headers in one pass: what read_each finds, and whether the
// client sent a cluster header of its own.
RequestFacts read_request(const SelectionContext& host, const FilterConfig& config, RouteRequest& request) {
  if (!host.fetched()) {
    size_t clusters = 0;
    const std::string_view cluster = host.request_header(config.router->cluster_header, 0, &clusters);
    return {read_each(host, config, request), clusters > 0, cluster};
  }
  const RouterConfig& router = *config.router;
  const bool want_key = !router.routing_key_header.empty();
  const bool want_override = !router.override_secret.empty();
  CookieMatch cookies[kWantedCookies];
  bool cookies_done = false;
  bool have_app_version = false;
  bool have_key = false;
  RequestFacts facts{false, false, {}};
  for (size_t i = 0; i < host.header_count(); ++i) {
    const auto [key, value] = host.header_at(i);
    if (key == "cookie") {
      if (!cookies_done) cookies_done = scan_cookie_header(value, config.cookie_names, cookies);
    } else if (key == router.app_version_header) {
      if (!have_app_version) request.app_version = value;
      have_app_version = true;
    } else if (key == router.cluster_header) {
      if (!facts.has_cluster_header) facts.cluster_header = value;
      facts.has_cluster_header = true;
    } else if (want_key && key == router.routing_key_header) {
      if (!have_key) request.header_key = value;
      have_key = true;
    } else if (want_override && key == router.override_header) {
      if (!facts.has_override_header) request.override_value = value;
      facts.has_override_header = true;
    }
  }
  request.routing_id = cookies[0].value;
  request.version_cookie = cookies[1].value;
  request.stage_cookie = cookies[2].value;
  return facts;
}

// Decides the request read; fills `stream` with what the decision means for it.
void decide_request(RouteRequest& request, const RequestFacts& facts, const FilterConfig& config,
                    StreamFilter& stream) {
  const RouterConfig& router = *config.router;
  stream.has_override_header = facts.has_override_header;
  stream.sent_cluster_header = facts.has_cluster_header;
  request.now = static_cast<int64_t>(std::time(nullptr));
  stream.decision = decide(router, request);
  stream.decided = true;
  stream.config = &config;
  const Decision& d = stream.decision;
  stream.minted = d.minted;
  if (!d.routed()) {
    stream.writes_response = d.minted;
    return;
  }
  const VersionEntry& version = router.stages[d.stage].versions[d.version];
  // The version cookie is what the session's next page load asks for. A tab served the
  // version it runs (its app-version header) leaves it alone: the cookie is shared by all
  // tabs, and an older tab kept on its version must not send a new tab back to it. Page
  // loads and moves (a tab told to reload) write it.
  const bool kept_on_own_version = !request.app_version.empty() && !d.refresh;
  // A client keyed by its header keeps no cookies: none is set for it.
  stream.set_version_cookie = !d.keyed && !same_name(request.version_cookie, version.name) &&
                              (request.version_cookie.empty() || !kept_on_own_version);
  stream.set_stage_cookie = !d.keyed && !same_name(request.stage_cookie, router.stages[d.stage].name);
  stream.moved = d.reason == Reason::kMovedForward || d.reason == Reason::kMovedRollback ||
                 d.reason == Reason::kUnavailable;
  stream.stage_index = d.stage;
  stream.version_index = d.version;
  stream.writes_response =
      d.minted || stream.set_version_cookie || stream.set_stage_cookie || d.refresh || stream.moved;
  stream.routed_version = &version.name;
  stream.routed_stage = &router.stages[d.stage].name;
  stream.refresh = d.refresh;
}

// ---- the cluster specifier -----------------------------------------------------------------

// The service's cluster of that name (a version's or a blue-green slot's), or NULL.
const std::string* find_cluster(const RouterConfig& router, std::string_view name) {
  for (const StageEntry& stage : router.stages) {
    for (const VersionEntry& version : stage.versions) {
      if (version.cluster == name) return &version.cluster;
    }
  }
  return nullptr;
}

// Envoy is resolving a request's route: decide, name the cluster, and park the decision for
// the filter Envoy creates next. False (no cluster: the route answers 503) when the service
// has no capacity, or no config yet (the filter then decides, and routes by its decision).
bool select_cluster(const SpecifierConfig& specifier, void* context) {
  StreamPool& pool = stream_pool;
  if (pool.forcing) {
    if (pool.forced_cluster == nullptr) return false;
    envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(context, buf(*pool.forced_cluster));
    return true;
  }
  const FilterConfig* config = specifier.slot != nullptr ? current_config(*specifier.slot) : nullptr;
  // The stream object: a decision nobody took is reused, else one from the pool.
  StreamFilter* stream = std::exchange(pool.parked, nullptr);
  if (config == nullptr) {
    give_stream(stream);
    return false;
  }
  if (stream != nullptr) {
    stream->reset(nullptr);
  } else if ((stream = take_stream(nullptr)) == nullptr) {
    return false;
  }
  const SelectionContext host(context);
  RouteRequest request;
  const RequestFacts facts = read_request(host, *config, request);
  // The request carries the cluster header, naming one of the service's clusters: the
  // filter has seen it (a retry re-selecting, or a filter that cleared the route cache):
  // the cluster stays, nothing is decided again (a new session would mint another id). A
  // client that sent the header itself gets no decision parked either, so its filter
  // decides and routes by its own decision (the slow path): the header never picks.
  if (facts.has_cluster_header) {
    if (const std::string* kept = find_cluster(*config->router, facts.cluster_header)) {
      give_stream(stream);
      host.set_cluster(*kept);
      return true;
    }
  }
  decide_request(request, facts, *config, *stream);
  pool.parked = stream;
  pool.parked_at = pool.hooks;
  const Decision& d = stream->decision;
  if (!d.routed()) return false;
  host.set_cluster(config->router->stages[d.stage].versions[d.version].cluster);
  return true;
}

// ---- the filter ---------------------------------------------------------------------------

// Envoy made the stream's filter: the decision the specifier just parked is this request's,
// if it is for this filter config's service (several services: checked against the route
// in the request hook). Otherwise a fresh object: the request hook decides.
StreamFilter* new_filter(const ModuleConfig* module) noexcept {
  StreamPool& pool = stream_pool;
  StreamFilter* parked = std::exchange(pool.parked, nullptr);
  if (parked != nullptr) {
    if (pool.parked_at == pool.hooks && (module->single == nullptr || parked->config == module->single)) {
      parked->module = module;
      return parked;
    }
    give_stream(parked);
  }
  return take_stream(module);
}

// Several services: the request's route names its service. A route without Rollway's
// per-route config is not Rollway's (an operator's own route): nothing is touched. A route
// naming a service this config lacks (the route table arrived before the filter config
// that adds it): the cluster header goes, and the route answers 503.
__attribute__((noinline)) const FilterConfig* service_of_route(HostStream host, void* envoy,
                                                               const ModuleConfig& module) {
  const auto* route = static_cast<const RouteService*>(envoy_dynamic_module_callback_get_most_specific_route_config(envoy));
  if (route == nullptr) return nullptr;
  const FilterConfig* service = module.find(route->name);
  if (service == nullptr) {
    host.remove_request_header(module.services.front()->router->cluster_header);
    host.clear_route_cache();
    host.count(module.unknown_service_counter);
  }
  return service;
}

void count_decision(HostStream host, const FilterConfig& config, const Decision& d) {
  if (d.keyed) host.count(config, kKeyedByHeader);
  if (d.minted || d.id_unavailable) {
    host.count(config, d.minted ? kIdsMinted : kIdsUnavailable);
    switch (d.id_status) {
      case IdStatus::kMalformed: host.count(config, kBadCookieMalformed); break;
      case IdStatus::kExpired: host.count(config, kBadCookieExpired); break;
      case IdStatus::kBadSignature: host.count(config, kBadCookieSignature); break;
      default: break;
    }
  }
  switch (d.reason) {
    case Reason::kMovedForward: host.count(config, kForwardMoves); break;
    case Reason::kMovedRollback: host.count(config, kRollbackMoves); break;
    case Reason::kKept: host.count(config, kTiebreakKept); break;
    case Reason::kUnavailable: host.count(config, kUnavailableMoves); break;
    default: break;
  }
  if (d.override_status == OverrideStatus::kApplied) host.count(config, kOverridesApplied);
  if (d.override_status == OverrideStatus::kRejected) host.count(config, kOverridesRejected);
}

// The request side of a decided stream: the cluster header (the cluster's name, which app
// hosts check; always overwritten or removed, so a client's own value never reaches them),
// the override header removed, the counters.
void write_request(HostStream host, const StreamFilter& stream) {
  const FilterConfig& config = *stream.config;
  const RouterConfig& router = *config.router;
  const Decision& d = stream.decision;
  if (d.routed()) {
    const std::string& cluster = router.stages[d.stage].versions[d.version].cluster;
    if (stream.sent_cluster_header) {
      host.set_request_header(router.cluster_header, cluster);
    } else {
      host.add_request_header(router.cluster_header, cluster);
    }
    host.count(config.request_counter[d.stage][d.version]);
  } else {
    host.remove_request_header(router.cluster_header);
    host.count(config, kNoCapacity);
  }
  if (stream.has_override_header) host.remove_request_header(router.override_header);
  count_decision(host, config, d);
}

// No decision from the specifier (a route without it, or the filter config changed between
// the route's resolution and the filter's creation): decide here, then route by it. A
// cluster-header route takes the header written; a specifier route is resolved again now,
// and the specifier names the cluster this decision chose.
__attribute__((noinline)) void decide_in_filter(HostStream host, StreamFilter& stream, const FilterConfig& config) {
  stream.reset(stream.module);
  RouteRequest request;
  const RequestFacts facts = read_request(host, config, request);
  decide_request(request, facts, config, stream);
  write_request(host, stream);
  host.count(config, kDecidedInFilter);
  const Decision& d = stream.decision;
  StreamPool& pool = stream_pool;
  pool.forcing = true;
  pool.forced_cluster = d.routed() ? &config.router->stages[d.stage].versions[d.version].cluster : nullptr;
  host.clear_route_cache();
  host.resolve_route();
  pool.forcing = false;
}

void on_request_headers(HostStream host, void* envoy, StreamFilter& stream) {
  const FilterConfig* own = stream.module->single;
  if (own == nullptr) {
    own = service_of_route(host, envoy, *stream.module);
    if (own == nullptr) {  // not Rollway's route, or a service this config lacks: nothing to write
      stream.reset(stream.module);
      return;
    }
  }
  if (stream.decided && stream.config == own) {
    write_request(host, stream);
  } else {
    decide_in_filter(host, stream, *own);
  }
}

// Writes "name=value<attributes>" into out; false if it would not fit (never truncates).
bool format_cookie(char (&out)[kSetCookieBuffer], size_t* length, std::string_view name,
                   std::string_view value, std::string_view attributes) {
  const size_t total = name.size() + 1 + value.size() + attributes.size();
  if (total > sizeof out) return false;
  char* p = out;
  std::memcpy(p, name.data(), name.size());
  p += name.size();
  *p++ = '=';
  std::memcpy(p, value.data(), value.size());
  p += value.size();
  std::memcpy(p, attributes.data(), attributes.size());
  *length = total;
  return true;
}

__attribute__((noinline)) void on_response_headers(HostStream host, StreamFilter& stream) {
  const FilterConfig& config = *stream.config;
  const RouterConfig& router = *config.router;
  char cookie[kSetCookieBuffer];
  size_t length = 0;
  if (stream.minted &&
      format_cookie(cookie, &length, router.routing_cookie, stream.decision.new_id.view(), config.cookie_attributes)) {
    host.add_response_header("set-cookie", std::string_view(cookie, length));
  }
  // Most responses have nothing more to carry: a returning session kept where it was.
  if (stream.routed_version == nullptr ||
      !(stream.set_version_cookie || stream.set_stage_cookie || stream.refresh || stream.moved)) {
    return;
  }
  // A 5xx (Envoy's own 503 when a lagging view sent the request to hosts that are gone, or
  // the version failing) commits nothing: no version cookie, no refresh signal, so the
  // session stays where it was instead of being moved onto a version that did not serve it.
  const std::string_view status = host.response_header(":status");
  if (!status.empty() && status[0] == '5') {
    host.count(config, kMovesNotCommitted);
    return;
  }
  if (stream.routed_version != nullptr && stream.set_version_cookie &&
      format_cookie(cookie, &length, router.version_cookie, *stream.routed_version,
                    config.version_cookie_attributes)) {
    host.add_response_header("set-cookie", std::string_view(cookie, length));
  }
  if (stream.routed_stage != nullptr && stream.set_stage_cookie &&
      format_cookie(cookie, &length, router.stage_cookie, *stream.routed_stage, config.cookie_attributes)) {
    host.add_response_header("set-cookie", std::string_view(cookie, length));
  }
  if (stream.routed_version != nullptr && stream.refresh) {
    host.set_response_header(router.refresh_header, *stream.routed_version);
    host.count(config, kRefreshSignals);
    host.count(config.reload_counter[stream.stage_index][stream.version_index]);
  }
  if (stream.moved) host.count(config.move_counter[stream.stage_index][stream.version_index]);
}

}  // namespace
}  // namespace rollway::filter

// ---- the C ABI: noexcept trampolines ----------------------------------------------------------

using rollway::filter::HostStream;
using rollway::filter::ModuleConfig;
using rollway::filter::RouteService;
using rollway::filter::SpecifierConfig;
using rollway::filter::StreamFilter;

// Called once when Envoy loads the module. Returns our ABI version (static storage).
ROLLWAY_EXPORT const char* envoy_dynamic_module_on_program_init() {
  return rollway::filter::kAbiVersion;
}

// Main thread. `name`/`config` are Envoy's, valid only during the call: the core copies what
// it keeps. Returns a ModuleConfig* we own, or NULL to reject (Envoy keeps the previous one).
ROLLWAY_EXPORT void* envoy_dynamic_module_on_http_filter_config_new(
    void* config_envoy, envoy_dynamic_module_type_envoy_buffer name,
    envoy_dynamic_module_type_envoy_buffer config) noexcept {
  try {
    const std::string_view filter_name(name.ptr != nullptr ? name.ptr : "", name.ptr != nullptr ? name.length : 0);
    if (filter_name != rollway::filter::kFilterName) {
      rollway::filter::log(envoy_dynamic_module_type_log_level_Error,
                           "rollway: unknown filter_name '" + std::string(filter_name) +
                               "' (this module provides 'rollway')");
      return nullptr;
    }
    const std::string_view json(config.ptr != nullptr ? config.ptr : "", config.ptr != nullptr ? config.length : 0);
    return rollway::filter::new_config(config_envoy, json);
  } catch (...) {
    return nullptr;
  }
}

// Any thread (after an ECDS update, the last stream holding the config may be on a worker).
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_config_destroy(void* config) noexcept {
  delete static_cast<ModuleConfig*>(config);
}

// Worker thread, once per stream, right after the specifier resolved its route. Returns a
// StreamFilter* we own until filter_destroy.
ROLLWAY_EXPORT void* envoy_dynamic_module_on_http_filter_new(void* config, void* /*filter_envoy*/) noexcept {
  if (config == nullptr) return nullptr;
  return rollway::filter::new_filter(static_cast<const ModuleConfig*>(config));
}

namespace rollway::filter {
namespace {
// Every filter hook that sees a stream counts itself (see StreamPool::hooks).
inline void count_hook() noexcept { ++stream_pool.hooks; }
}  // namespace
}  // namespace rollway::filter

ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_stream_complete(void*, void*) noexcept {
  rollway::filter::count_hook();
}

ROLLWAY_EXPORT int envoy_dynamic_module_on_http_filter_request_headers(void* filter_envoy, void* filter,
                                                                       bool /*end_of_stream*/) noexcept {
  rollway::filter::count_hook();
  try {
    auto* stream = static_cast<StreamFilter*>(filter);
    if (stream != nullptr) rollway::filter::on_request_headers(HostStream(filter_envoy), filter_envoy, *stream);
  } catch (...) {
    // Routing must never take Envoy down; the request proceeds on whatever route matched.
  }
  return kEnvoyFilterContinue;
}

ROLLWAY_EXPORT int envoy_dynamic_module_on_http_filter_response_headers(void* filter_envoy, void* filter,
                                                                        bool /*end_of_stream*/) noexcept {
  rollway::filter::count_hook();
  try {
    auto* stream = static_cast<StreamFilter*>(filter);
    if (stream != nullptr && stream->writes_response) rollway::filter::on_response_headers(HostStream(filter_envoy), *stream);
  } catch (...) {
  }
  return kEnvoyFilterContinue;
}

ROLLWAY_EXPORT int envoy_dynamic_module_on_http_filter_request_body(void*, void*, bool) noexcept {
  return kEnvoyFilterContinue;
}
ROLLWAY_EXPORT int envoy_dynamic_module_on_http_filter_request_trailers(void*, void*) noexcept {
  return kEnvoyFilterContinue;
}
ROLLWAY_EXPORT int envoy_dynamic_module_on_http_filter_response_body(void*, void*, bool) noexcept {
  return kEnvoyFilterContinue;
}
ROLLWAY_EXPORT int envoy_dynamic_module_on_http_filter_response_trailers(void*, void*) noexcept {
  return kEnvoyFilterContinue;
}

// Main thread, once per route-table update per route that carries Rollway's per-route config
// (DynamicModuleFilterPerRoute). `name`/`config` are Envoy's, valid during the call. Returns a
// RouteService* we own until per_route_config_destroy, or NULL to reject the route table.
ROLLWAY_EXPORT const void* envoy_dynamic_module_on_http_filter_per_route_config_new(
    envoy_dynamic_module_type_envoy_buffer /*name*/, envoy_dynamic_module_type_envoy_buffer config) noexcept {
  try {
    return rollway::filter::new_route_service(
        std::string_view(config.ptr != nullptr ? config.ptr : "", config.ptr != nullptr ? config.length : 0));
  } catch (...) {
    return nullptr;
  }
}

ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_per_route_config_destroy(const void* config) noexcept {
  delete static_cast<const RouteService*>(config);
}

// ---- the cluster specifier's hooks ----

// Main thread, once per route-table update per route that carries Rollway's cluster
// specifier. `config` is {"service": "<name>"} (Envoy's bytes, valid during the call).
// Returns a SpecifierConfig* we own until config_destroy, or NULL to reject the route table.
ROLLWAY_EXPORT const void* envoy_dynamic_module_on_cluster_specifier_config_new(
    void* /*config_envoy*/, envoy_dynamic_module_type_envoy_buffer /*name*/,
    envoy_dynamic_module_type_envoy_buffer config) noexcept {
  try {
    return rollway::filter::new_specifier(
        std::string_view(config.ptr != nullptr ? config.ptr : "", config.ptr != nullptr ? config.length : 0));
  } catch (...) {
    return nullptr;
  }
}

// Any thread (the last route entry holding it may be on a worker).
ROLLWAY_EXPORT void envoy_dynamic_module_on_cluster_specifier_config_destroy(const void* config) noexcept {
  delete static_cast<const SpecifierConfig*>(config);
}

// Worker thread, while Envoy resolves a request's route (and again if a filter or a retry
// refreshes it). `context` is valid during the call. True: the cluster was named.
ROLLWAY_EXPORT bool envoy_dynamic_module_on_cluster_specifier_select(const void* config, void* context) noexcept {
  try {
    if (config == nullptr) return false;
    return rollway::filter::select_cluster(*static_cast<const SpecifierConfig*>(config), context);
  } catch (...) {
    return false;
  }
}

ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_destroy(void* filter) noexcept {
  rollway::filter::count_hook();
  rollway::filter::give_stream(static_cast<StreamFilter*>(filter));
}

// Hooks Envoy requires every HTTP module to export; Rollway starts no callouts, streams or
// scheduled work and does not react to watermarks, so they do nothing.
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_http_callout_done(void*, void*, uint64_t, int, void*,
                                                                          size_t, void*, size_t) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_http_stream_headers(void*, void*, uint64_t, void*,
                                                                            size_t, bool) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_http_stream_data(void*, void*, uint64_t, const void*,
                                                                         size_t, bool) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_http_stream_trailers(void*, void*, uint64_t, void*,
                                                                             size_t) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_http_stream_complete(void*, void*, uint64_t) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_http_stream_reset(void*, void*, uint64_t, int) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_scheduled(void*, void*, uint64_t) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(void*, void*) noexcept {}
ROLLWAY_EXPORT void envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(void*, void*) noexcept {}
