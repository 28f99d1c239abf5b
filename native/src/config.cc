// Filter-config parsing and validation. Runs once per config (ECDS update), never per
// request, so clarity beats speed here: every error names the field that caused it.
#include <cctype>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "rollway/murmur3.h"
#include "rollway/router.h"

namespace rollway {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxNameLength = 128;
constexpr size_t kMaxClusterLength = 256;
constexpr size_t kMaxStages = 64;
constexpr size_t kMaxVersionsPerStage = 64;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw ConfigError(path + ": " + problem);
}

const json* member(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const json& require_object(const json& value, const std::string& path) {
  if (!value.is_object()) fail(path, "must be an object");
  return value;
}

const json& require_member(const json& object, const char* key, const std::string& path) {
  const json* value = member(object, key);
  if (value == nullptr) fail(path.empty() ? std::string(key) : path + "." + key, "is required");
  return *value;
}

std::string as_string(const json& value, const std::string& path) {
  if (!value.is_string()) fail(path, "must be a string");
  return value.get<std::string>();
}

// Names end up in Envoy stat names, cluster names and header values.
bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-' || c == '+';
}

std::string as_name(const json& value, const std::string& path) {
  std::string name = as_string(value, path);
  if (name.empty()) fail(path, "must not be empty");
  if (name.size() > kMaxNameLength) fail(path, "is longer than 128 characters");
  for (char c : name) {
    if (!is_name_char(c)) fail(path, "may contain only letters, digits and . _ - +");
  }
  return name;
}

std::string as_cluster(const json& value, const std::string& path) {
  std::string cluster = as_string(value, path);
  if (cluster.empty()) fail(path, "must not be empty");
  if (cluster.size() > kMaxClusterLength) fail(path, "is longer than 256 characters");
  for (char c : cluster) {
    if (!is_name_char(c) && c != ':' && c != '/') {
      fail(path, "may contain only letters, digits and . _ - + : /");
    }
  }
  return cluster;
}

// RFC 7230 token characters, lowercased: valid both as a header name and a cookie name.
std::string as_token(const json& value, const std::string& path) {
  std::string token = as_string(value, path);
  if (token.empty()) fail(path, "must not be empty");
  if (token.size() > kMaxNameLength) fail(path, "is longer than 128 characters");
  for (char& c : token) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) fail(path, "is not a valid header/cookie name");
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return token;
}

// A URL path for a cookie's Path attribute: "/" then URL path characters, at most 256, and
// nothing that could end the attribute (no ';', ',', space or control character).
std::string as_cookie_path(const json& value, const std::string& path) {
  std::string cookie_path = as_string(value, path);
  if (cookie_path.empty() || cookie_path[0] != '/') fail(path, "must start with /");
  if (cookie_path.size() > kMaxClusterLength) fail(path, "is longer than 256 characters");
  for (char c : cookie_path) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("._~!$&'()*+=:@%/-").find(c) != std::string_view::npos;
    if (!ok) fail(path, "may contain only URL path characters (no ';', ',' or space)");
  }
  return cookie_path;
}

double as_non_negative(const json& value, const std::string& path) {
  if (!value.is_number()) fail(path, "must be a number >= 0");
  const double number = value.get<double>();
  if (!std::isfinite(number) || number < 0) fail(path, "must be a number >= 0");
  return number;
}

int64_t as_positive_int(const json& value, const std::string& path, int64_t max) {
  if (!value.is_number_integer()) fail(path, "must be a positive integer");
  if (value.is_number_unsigned()) {
    const uint64_t v = value.get<uint64_t>();
    if (v == 0 || v > static_cast<uint64_t>(max)) {
      fail(path, "must be between 1 and " + std::to_string(max));
    }
    return static_cast<int64_t>(v);
  }
  const int64_t v = value.get<int64_t>();
  if (v <= 0 || v > max) fail(path, "must be between 1 and " + std::to_string(max));
  return v;
}

bool as_bool(const json& value, const std::string& path) {
  if (!value.is_boolean()) fail(path, "must be true or false");
  return value.get<bool>();
}

VersionEntry parse_version(const json& value, const std::string& path) {
  require_object(value, path);
  VersionEntry version;
  version.name = as_name(require_member(value, "name", path), path + ".name");
  version.capacity = as_non_negative(require_member(value, "capacity", path), path + ".capacity");
  version.cluster = as_cluster(require_member(value, "cluster", path), path + ".cluster");
  if (const json* admitted = member(value, "admitted")) {
    version.admitted = as_bool(*admitted, path + ".admitted");
  }
  return version;
}

void parse_rolling(const json& value, const std::string& path, StageEntry& stage) {
  const json& versions = require_member(value, "versions", path);
  if (!versions.is_array()) fail(path + ".versions", "must be a list");
  if (versions.size() > kMaxVersionsPerStage) fail(path + ".versions", "has more than 64 versions");
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < versions.size(); ++i) {
    const std::string vpath = path + ".versions[" + std::to_string(i) + "]";
    VersionEntry version = parse_version(versions[i], vpath);
    if (!seen.insert(version.name).second) {
      fail(vpath + ".name", "duplicate version '" + version.name + "'");
    }
    stage.versions.push_back(std::move(version));
  }

  stage.direction = DirectionState::kSteady;
  if (const json* direction = member(value, "direction")) {
    const std::string dpath = path + ".direction";
    require_object(*direction, dpath);
    const std::string state = as_string(require_member(*direction, "state", dpath), dpath + ".state");
    if (state == "steady") {
      stage.direction = DirectionState::kSteady;
    } else if (state == "forward") {
      stage.direction = DirectionState::kForward;
    } else if (state == "rollback") {
      stage.direction = DirectionState::kRollback;
    } else {
      fail(dpath + ".state", "must be one of steady, forward, rollback (got '" + state + "')");
    }
    // `steady` may name a target too: a reversal held at steady (see the control plane's
    // admission) tells Envoys where sessions whose version vanished should go.
    const json* target_json = member(*direction, "target");
    if (stage.direction != DirectionState::kSteady || target_json != nullptr) {
      const std::string target =
          as_name(require_member(*direction, "target", dpath), dpath + ".target");
      stage.direction_target = stage.find_version(target);
      if (stage.direction_target < 0) {
        fail(dpath + ".target", "names no version of this stage ('" + target + "')");
      }
    }
  }

  // Newest first: the newest version owns the lowest interval, so its growth pushes
  // sessions from older versions, never the other way round.
  double total = 0;
  for (int i = static_cast<int>(stage.versions.size()) - 1; i >= 0; --i) {
    const VersionEntry& version = stage.versions[i];
    if (!version.admitted || version.capacity <= 0) continue;
    total += version.capacity;
    stage.hash_order.push_back(i);
    stage.hash_thresholds.push_back(total);
  }
  for (double& threshold : stage.hash_thresholds) threshold /= total;
}

void parse_blue_green(const json& value, const std::string& path, StageEntry& stage) {
  const json& slots = require_member(value, "slots", path);
  if (!slots.is_object() || slots.empty()) fail(path + ".slots", "must be an object of slots");
  if (slots.size() > 2) fail(path + ".slots", "a blue-green stage has at most two slots");
  for (auto it = slots.begin(); it != slots.end(); ++it) {
    const std::string spath = path + ".slots." + it.key();
    require_object(it.value(), spath);
    VersionEntry slot;
    slot.slot = it.key();
    for (char c : slot.slot) {
      if (!is_name_char(c)) fail(spath, "slot names may contain only letters, digits and . _ - +");
    }
    slot.name = as_name(require_member(it.value(), "version", spath), spath + ".version");
    slot.capacity = as_non_negative(require_member(it.value(), "capacity", spath), spath + ".capacity");
    slot.cluster = as_cluster(require_member(it.value(), "cluster", spath), spath + ".cluster");
    stage.versions.push_back(std::move(slot));
  }
  const std::string active = as_string(require_member(value, "active", path), path + ".active");
  for (size_t i = 0; i < stage.versions.size(); ++i) {
    if (stage.versions[i].slot == active) stage.active_slot = static_cast<int>(i);
  }
  if (stage.active_slot < 0) fail(path + ".active", "names no slot of this stage ('" + active + "')");
  if (const json* next = member(value, "next")) {
    const std::string name = as_string(*next, path + ".next");
    for (size_t i = 0; i < stage.versions.size(); ++i) {
      if (stage.versions[i].slot == name) stage.next_slot = static_cast<int>(i);
    }
    if (stage.next_slot < 0) fail(path + ".next", "names no slot of this stage ('" + name + "')");
    if (stage.next_slot == stage.active_slot) fail(path + ".next", "must differ from active");
  }
}

StageEntry parse_stage(const json& value, const std::string& path) {
  require_object(value, path);
  StageEntry stage;
  stage.name = as_name(require_member(value, "name", path), path + ".name");
  stage.weight = as_non_negative(require_member(value, "weight", path), path + ".weight");
  stage.next_weight = stage.weight;
  if (const json* next = member(value, "next_weight")) {
    stage.next_weight = as_non_negative(*next, path + ".next_weight");
  }
  const std::string mode = as_string(require_member(value, "mode", path), path + ".mode");
  if (mode == "rolling") {
    stage.mode = StageMode::kRolling;
    parse_rolling(value, path, stage);
  } else if (mode == "blue_green") {
    stage.mode = StageMode::kBlueGreen;
    parse_blue_green(value, path, stage);
  } else {
    fail(path + ".mode", "must be rolling or blue_green (got '" + mode + "')");
  }
  const Hash128 h = murmur3_x64_128(stage.name.data(), stage.name.size(), 0);
  stage.salt = h.low;
  const bool has_capacity = stage.mode == StageMode::kRolling
                                ? !stage.hash_order.empty()
                                : stage.versions[stage.active_slot].capacity > 0;
  stage.score_scale = (has_capacity && stage.weight > 0) ? 1.0 / stage.weight : 0.0;
  stage.next_score_scale = (has_capacity && stage.next_weight > 0) ? 1.0 / stage.next_weight : 0.0;
  return stage;
}

std::string secret_for(const Secrets& secrets, const std::string& key_id, const std::string& path) {
  auto it = secrets.find(key_id);
  if (it == secrets.end()) fail(path, "no secret named '" + key_id + "' was provided");
  if (it->second.size() < 16) fail(path, "secret '" + key_id + "' is shorter than 16 bytes");
  return it->second;
}

}  // namespace

int StageEntry::find_version(std::string_view wanted) const {
  for (size_t i = 0; i < versions.size(); ++i) {
    if (same_name(versions[i].name, wanted)) return static_cast<int>(i);
  }
  return -1;
}

int RouterConfig::find_stage(std::string_view wanted) const {
  for (size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].name == wanted) return static_cast<int>(i);
  }
  return -1;
}

std::shared_ptr<const RouterConfig> parse_router_config(std::string_view text,
                                                        const Secrets& secrets) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& error) {
    // parse_error, and also out_of_range for numbers that overflow a double ("1e999"):
    // found by the config fuzzer. Every JSON failure is a ConfigError, never an escape.
    throw ConfigError(std::string("config: invalid JSON: ") + error.what());
  }
  require_object(root, "config");
  auto config = std::make_shared<RouterConfig>();

  config->service = as_name(require_member(root, "service", ""), "service");
  const json& generation = require_member(root, "generation", "");
  // nlohmann stores every non-negative integer literal as unsigned.
  if (!generation.is_number_unsigned()) fail("generation", "must be an integer >= 0");
  config->generation = generation.get<uint64_t>();

  if (const json* rid = member(root, "routing_id")) {
    require_object(*rid, "routing_id");
    if (const json* v = member(*rid, "cookie")) config->routing_cookie = as_token(*v, "routing_id.cookie");
    if (const json* v = member(*rid, "ttl_seconds")) {
      config->ttl_seconds = as_positive_int(*v, "routing_id.ttl_seconds", 366LL * 86400);
    }
    if (const json* v = member(*rid, "secure")) config->cookie_secure = as_bool(*v, "routing_id.secure");
    if (const json* v = member(*rid, "signing_key_id")) {
      config->signing_key_id = as_name(*v, "routing_id.signing_key_id");
      config->token_key =
          derive_token_key(secret_for(secrets, config->signing_key_id, "routing_id.signing_key_id"));
      config->has_token_key = true;
    }
    if (const json* v = member(*rid, "header")) {
      config->routing_key_header = as_token(*v, "routing_id.header");
      for (char& c : config->routing_key_header) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!config->has_token_key) {
        fail("routing_id.header", "needs routing_id.signing_key_id: a client's key is hashed with the service's secret");
      }
      config->header_key = derive_header_key(secret_for(secrets, config->signing_key_id, "routing_id.signing_key_id"));
    }
  }
  if (const json* v = member(root, "cookie_path")) config->cookie_path = as_cookie_path(*v, "cookie_path");
  if (const json* v = member(root, "version_cookie")) config->version_cookie = as_token(*v, "version_cookie");
  if (const json* headers = member(root, "headers")) {
    require_object(*headers, "headers");
    if (const json* v = member(*headers, "app_version")) config->app_version_header = as_token(*v, "headers.app_version");
    if (const json* v = member(*headers, "refresh")) config->refresh_header = as_token(*v, "headers.refresh");
    if (const json* v = member(*headers, "cluster")) config->cluster_header = as_token(*v, "headers.cluster");
    if (const json* v = member(*headers, "override")) config->override_header = as_token(*v, "headers.override");
  }
  if (const json* v = member(root, "stage_cookie")) config->stage_cookie = as_token(*v, "stage_cookie");
  if (config->routing_cookie == config->version_cookie) {
    fail("version_cookie", "must differ from routing_id.cookie");
  }
  if (config->stage_cookie == config->routing_cookie || config->stage_cookie == config->version_cookie) {
    fail("stage_cookie", "must differ from routing_id.cookie and version_cookie");
  }
  if (const json* ov = member(root, "override")) {
    require_object(*ov, "override");
    config->override_key_id = as_name(require_member(*ov, "key_id", "override"), "override.key_id");
    config->override_secret = secret_for(secrets, config->override_key_id, "override.key_id");
    if (const json* v = member(*ov, "max_ttl_seconds")) {
      config->override_max_ttl_seconds = as_positive_int(*v, "override.max_ttl_seconds", 7LL * 86400);
    }
  }

  const json& stages = require_member(root, "stages", "");
  if (!stages.is_array() || stages.empty()) fail("stages", "must be a non-empty list");
  if (stages.size() > kMaxStages) fail("stages", "has more than 64 stages");
  std::unordered_set<std::string> names;
  double total_weight = 0;
  double total_next_weight = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const std::string path = "stages[" + std::to_string(i) + "]";
    StageEntry stage = parse_stage(stages[i], path);
    if (!names.insert(stage.name).second) fail(path + ".name", "duplicate stage '" + stage.name + "'");
    total_weight += stage.weight;
    total_next_weight += stage.next_weight;
    config->stages.push_back(std::move(stage));
  }
  if (!(total_weight > 0)) fail("stages", "every stage has weight 0");
  if (!(total_next_weight > 0)) fail("stages", "every stage has next_weight 0");
  for (size_t i = 0; i < config->stages.size(); ++i) {
    const StageEntry& stage = config->stages[i];
    if (stage.takes_traffic()) config->stages_with_traffic.push_back(static_cast<int>(i));
    if (stage.next_score_scale > 0) config->next_stages_with_traffic.push_back(static_cast<int>(i));
    if (stage.next_weight != stage.weight) config->weights_changing = true;
  }
  return config;
}

}  // namespace rollway
