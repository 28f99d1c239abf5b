// The routing decision: the one home of Rollway's routing rules.
//
// Everything that routes a request (the Envoy filter, the Python binding, the simulator)
// calls `decide()` on a `RouterConfig` parsed once from the control plane's JSON. The
// decision reads no JSON, allocates nothing and never throws.
//
// The rules (design.md, "The routing decision"):
//
// 1. Stage: weighted rendezvous hashing in its exponential-race form: each stage s with
//    traffic draws u_s = U(fmix64(h.low ^ salt_s)) in (0,1) and scores -ln(u_s) / w_s; the
//    lowest score wins. P(stage s) = w_s / sum(w) exactly. Between two stages the sets are
//    nested (moving weight x moves exactly a share x of sessions); for any change the share
//    that moves is 1 - J_P(old, new) <= 2 TV / (1 + TV) < 2 TV (Moulton & Jiang, 2018:
//    "Maximally consistent sampling and the Jaccard index of probability distributions"),
//    the best any stateless scheme can guarantee. A stage without capacity scores +inf.
// 2. Version (rolling stage): a point p = U(fmix64(h.high ^ salt_s)) falls into cumulative
//    capacity intervals laid out newest version first. While the share of "this version or
//    newer" only grows (a forward deploy), a session's version only gets newer, so it moves
//    at most once per deploy; a rollback shrinks the newest interval and moves sessions
//    back once.
// 3. Tiebreak, when the version the session wants differs from the computed one: see
//    `Reason` and router.cc; the direction (steady/forward/rollback + target) travels in
//    the config so every Envoy breaks ties the same way while capacity views differ.
// 4. Blue-green: the active slot takes the whole stage (during a switch, sessions that want
//    the incoming slot's version stay there).
// 5. Refresh: when the routed version differs from the client's app version, unless the
//    version cookie shows the client was already sent to that version.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rollway/token.h"

namespace rollway {

// Raised by parse_router_config. The message starts with the offending field's path,
// e.g. "stages[1].versions[0].capacity: must be a number >= 0".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class StageMode : uint8_t { kRolling = 0, kBlueGreen = 1 };
enum class DirectionState : uint8_t { kSteady = 0, kForward = 1, kRollback = 2 };

struct VersionEntry {
  std::string name;     // build id; for a blue-green slot, the version the slot runs
  std::string cluster;  // Envoy cluster, conventionally <service>.<stage>.<version|slot>
  double capacity = 0;
  // Rolling only. A version that is announced but not admitted keeps the sessions that
  // already want it but is not given new ones (the control plane admits a version only
  // after every Envoy has acknowledged a config that contains it).
  bool admitted = true;
  std::string slot;  // blue-green only: the slot's name
};

struct StageEntry {
  std::string name;
  double weight = 0;
  StageMode mode = StageMode::kRolling;
  std::vector<VersionEntry> versions;  // rolling: oldest first; blue-green: the slots
  DirectionState direction = DirectionState::kSteady;
  int direction_target = -1;  // index into versions, or -1
  int active_slot = -1;       // blue-green: index into versions
  // Blue-green, during a switch: the slot being switched to. Sessions that already want its
  // version stay on it; everyone else stays on the active slot. The control plane sends
  // this first, and makes the slot active only once every Envoy holds it, so a lagging
  // Envoy never sends a switched session back.
  int next_slot = -1;
  // A stage-weight change in progress (the control plane sends the new weight here first,
  // and as `weight` once every Envoy holds it). A session that wants a version this stage
  // serves, and that the new weights put in this stage, goes here already: a faster Envoy
  // may have moved it, and this Envoy must not send it back. Equal to `weight` when absent.
  double next_weight = 0;

  // Derived at parse time so that decide() only compares and multiplies.
  uint64_t salt = 0;         // murmur3_x64_128(name).low
  double score_scale = 0;    // 1 / weight, or 0 when the stage takes no traffic
  double next_score_scale = 0;  // the same for next_weight
  std::vector<int> hash_order;           // rolling: admitted versions with capacity, newest first
  std::vector<double> hash_thresholds;   // cumulative capacity share along hash_order; last is 1

  bool takes_traffic() const { return score_scale > 0; }
  int find_version(std::string_view name) const;
};

// Name equality for the hot path: length decides most mismatches, and names up to 16 bytes
// (stage names, short build ids) compare inline instead of through an out-of-line memcmp.
inline bool same_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.size() > 16) return a.compare(b) == 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

using Secrets = std::unordered_map<std::string, std::string>;

struct RouterConfig {
  std::string service;
  uint64_t generation = 0;

  std::string routing_cookie = "rw_rid";
  // The Path attribute of all three cookies: a service under a path prefix (an admin app at
  // /admin beside the page at /) keeps its cookies to its own paths.
  std::string cookie_path = "/";
  int64_t ttl_seconds = 86400;
  bool cookie_secure = false;
  std::string signing_key_id;  // empty: tokens are not signed
  bool has_token_key = false;
  TokenKey token_key{};
  // A header that keys clients without a valid routing-id cookie (routing_id.header); empty:
  // none. Its values are hashed with header_key, derived from the signing key's secret.
  std::string routing_key_header;
  TokenKey header_key{};

  std::string version_cookie = "rw_ver";
  // Names the stage a session was last routed to. Only consulted while a stage-weight change
  // is in progress and both the old and the new stage serve the version the session wants:
  // the version alone cannot say where it is then.
  std::string stage_cookie = "rw_stage";
  std::string app_version_header = "x-app-version";
  std::string refresh_header = "x-rw-refresh";
  std::string cluster_header = "x-rw-cluster";
  std::string override_header = "x-rw-override";

  std::string override_key_id;  // empty: every override is rejected
  std::string override_secret;
  int64_t override_max_ttl_seconds = 3600;

  std::vector<StageEntry> stages;
  std::vector<int> stages_with_traffic;  // derived: indices of stages that take traffic
  bool weights_changing = false;         // derived: some stage has next_weight != weight
  std::vector<int> next_stages_with_traffic;  // derived: the same under next_weight

  int find_stage(std::string_view name) const;
  const TokenKey* token_key_or_null() const { return has_token_key ? &token_key : nullptr; }
};

// Parses and validates the filter config. Throws ConfigError naming the field. Secrets are
// passed apart from the JSON so that keys never appear in Envoy's config dump or logs.
std::shared_ptr<const RouterConfig> parse_router_config(std::string_view json,
                                                        const Secrets& secrets);

enum class Reason : uint8_t {
  kHashed = 0,         // no wanted version: the computed version
  kAffinity = 1,       // wanted == computed
  kKept = 2,           // tiebreak kept the session on the version it wants
  kMovedForward = 3,   // tiebreak moved the session forward (draining -> target)
  kMovedRollback = 4,  // tiebreak moved the session toward the rollback target
  kUnavailable = 5,    // the wanted version is unknown here or has no capacity
  kBlueGreen = 6,      // the stage's active slot
  kOverride = 7,       // a signed test override chose the version
  kNoCapacity = 8,     // no stage has capacity: no cluster
};
const char* reason_name(Reason reason);

enum class OverrideStatus : uint8_t { kNone = 0, kApplied = 1, kRejected = 2 };
const char* override_status_name(OverrideStatus status);

// Inputs of one decision. All views are borrowed for the duration of decide() only.
struct RouteRequest {
  std::string_view routing_id;      // routing-id cookie value, may be empty
  std::string_view app_version;     // client app-version header, may be empty
  std::string_view version_cookie;  // version cookie value, may be empty
  std::string_view stage_cookie;    // stage cookie value, may be empty
  std::string_view override_value;  // override header, may be empty
  std::string_view header_key;      // the routing-key header's value, may be empty
  int64_t now = 0;                  // unix seconds
};

struct Decision {
  int stage = -1;    // index into config.stages, -1 with kNoCapacity
  int version = -1;  // index into stage.versions
  Reason reason = Reason::kNoCapacity;
  IdStatus id_status = IdStatus::kAbsent;
  OverrideStatus override_status = OverrideStatus::kNone;
  bool minted = false;   // new_id must be sent with Set-Cookie
  bool keyed = false;    // routed by the routing-key header: no cookie is set for it
  bool id_unavailable = false;  // an id was due but the OS gave no random bytes: none minted
  bool refresh = false;  // tell the client to reload onto the routed version
  MintedToken new_id;

  bool routed() const { return stage >= 0 && version >= 0; }
};

// The decision. Without a valid routing-id cookie, a usable routing-key header (when the
// config names one) keys the request and nothing is minted; otherwise a new routing id is
// minted (the cookie was absent, malformed, expired or forged) and routes the request.
Decision decide(const RouterConfig& config, const RouteRequest& request) noexcept;
// Same, with the random bits of a minted id given (deterministic tests and simulations).
Decision decide_with_random(const RouterConfig& config, const RouteRequest& request,
                            uint64_t random_bits) noexcept;

// Signed test overrides, "stage=NAME;version=NAME;exp=UNIX;mac=HEX64" where the MAC is
// HMAC-SHA256(operator secret, everything before ";mac=") and stage/version are optional.
struct OverrideRequest {
  bool valid = false;
  std::string_view stage;
  std::string_view version;
  int64_t expires_at = 0;
};
constexpr size_t kMaxOverrideLength = 512;
OverrideRequest parse_override(std::string_view value, std::string_view secret, int64_t now,
                               int64_t max_ttl_seconds) noexcept;

}  // namespace rollway
