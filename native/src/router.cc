#include <cmath>
#include <cstring>
#include <limits>

#include "rollway/crypto.h"
#include "rollway/murmur3.h"
#include "rollway/router.h"

namespace rollway {
namespace {

// A uniform double in (0, 1) from the top 52 bits; every step is exact in IEEE double, so
// the Python oracle reproduces it bit for bit.
inline double unit_interval(uint64_t bits) {
  return (static_cast<double>(bits >> 12) + 0.5) * 0x1p-52;
}

// Weighted rendezvous (P-MinHash): each stage scores -ln(u)/weight; the lowest wins.
// `next` picks under the weights of a change in progress (next_weight).
int pick_weighted_stage(const RouterConfig& config, const std::vector<int>& live, uint64_t hash_low, bool next) {
  int best = -1;
  double best_score = std::numeric_limits<double>::infinity();
  for (const int i : live) {
    const StageEntry& stage = config.stages[i];
    const double u = unit_interval(fmix64(hash_low ^ stage.salt));
    const double score = -std::log(u) * (next ? stage.next_score_scale : stage.score_scale);
    // Strict comparison: ties go to the earlier stage. Written as selects, not a branch:
    // which stage wins is random per session, so a branch mispredicts constantly.
    const bool better = score < best_score;
    best = better ? i : best;
    best_score = better ? score : best_score;
  }
  return best;
}

// One stage taking traffic is the common case and needs no logarithm; kept apart from the
// weighted pick so it is inlined without that function's register saves.
inline int pick_stage(const RouterConfig& config, uint64_t hash_low, bool next = false) {
  const std::vector<int>& live = next ? config.next_stages_with_traffic : config.stages_with_traffic;
  if (live.size() <= 1) return live.empty() ? -1 : live[0];
  return pick_weighted_stage(config, live, hash_low, next);
}

int pick_version(const StageEntry& stage, uint64_t hash_high) {
  if (stage.hash_order.empty()) return -1;
  const double point = unit_interval(fmix64(hash_high ^ stage.salt));
  // Count the thresholds at or below the point instead of branching out of the loop: the
  // interval a session falls into is random, so an early exit mispredicts.
  size_t below = 0;
  const size_t n = stage.hash_thresholds.size();
  for (size_t i = 0; i < n; ++i) below += stage.hash_thresholds[i] <= point ? 1 : 0;
  return stage.hash_order[below < n ? below : n - 1];  // the last threshold is 1 > point
}

// Whether the deploy's target can take the sessions that move: admitted, with capacity.
inline bool takes_moves(const StageEntry& stage, int target) {
  return target >= 0 && stage.versions[target].admitted && stage.versions[target].capacity > 0;
}

// The tiebreak between the version a session wants and the one its hash gives, once both
// are known to have capacity. Versions are listed oldest first, so a larger index is newer.
//
// A session that moves goes straight to the deploy's target, not to the version its hash
// gives: with three versions live (v3 starting while v2 is still replacing v1), v2's
// interval slides over v1's as v3 grows, and following the hash would take a v1 session to
// v2 now and to v3 later -- two moves in one deploy. If the target cannot take new
// sessions yet (announced, not admitted by every Envoy), the session waits where it is.
Reason tiebreak(const StageEntry& stage, int wanted, int computed, int* routed) {
  const int target = stage.direction_target;
  const bool target_open = takes_moves(stage, target);
  switch (stage.direction) {
    case DirectionState::kSteady:
      // No deploy is moving: a session stays where it is; only new sessions follow capacity.
      *routed = wanted;
      return Reason::kKept;
    case DirectionState::kForward:
      // Already on the target, or on something newer than its hash says: stay. A session is
      // never moved to an older version during a forward deploy, even when the target itself
      // is older than what it wants (an Envoy still finishing v2 while v3 is announced).
      // Otherwise the session is on a draining version and moves to the target.
      if (wanted == target || wanted > computed || !target_open || target < wanted) {
        *routed = wanted;
        return Reason::kKept;
      }
      *routed = target;
      return Reason::kMovedForward;
    case DirectionState::kRollback:
      // The mirror image: never move a session to something newer during a rollback.
      if (wanted == target || wanted < computed || !target_open || target > wanted) {
        *routed = wanted;
        return Reason::kKept;
      }
      *routed = target;
      return Reason::kMovedRollback;
  }
  *routed = computed;
  return Reason::kMovedForward;
}

inline int find_available(const StageEntry& stage, std::string_view name) {
  if (name.empty()) return -1;
  const int index = stage.find_version(name);
  return (index >= 0 && stage.versions[index].capacity > 0) ? index : -1;
}

// Whether `stage` would serve a session that wants `name` (a blue-green stage serves its
// active slot and, during a switch, its next slot).
bool serves(const StageEntry& stage, std::string_view name) {
  if (stage.mode == StageMode::kRolling) return find_available(stage, name) >= 0;
  for (const int slot : {stage.active_slot, stage.next_slot}) {
    if (slot >= 0 && stage.versions[slot].capacity > 0 && same_name(stage.versions[slot].name, name)) return true;
  }
  return false;
}

// The stage for a session: its hash under the current weights, unless a weight change is
// in progress and the new weights put it in a stage that serves the version it wants and
// that it is already in -- a faster Envoy, already on the new weights, moved it there.
// Where it is: the only one of the two stages that serves its version, or, when both do,
// the one its stage cookie names (moving it early would let an Envoy still on the old
// weights move it back).
int choose_stage(const RouterConfig& config, uint64_t hash_low, std::string_view wanted,
                 std::string_view wanted_stage) {
  const int current = pick_stage(config, hash_low);
  if (!config.weights_changing || wanted.empty()) return current;
  const int next = pick_stage(config, hash_low, true);
  if (next < 0 || next == current || !serves(config.stages[next], wanted)) return current;
  if (current < 0 || !serves(config.stages[current], wanted)) return next;
  return same_name(config.stages[next].name, wanted_stage) ? next : current;
}

// Chooses the version inside `stage` for a session with the given wanted version.
void route_in_stage(const StageEntry& stage, uint64_t hash_high, std::string_view wanted_name,
                    Decision& d) {
  if (stage.mode == StageMode::kBlueGreen) {
    if (stage.next_slot >= 0 && !wanted_name.empty()) {
      const VersionEntry& next = stage.versions[stage.next_slot];
      if (next.capacity > 0 && same_name(next.name, wanted_name)) {
        d.version = stage.next_slot;  // already switched by a faster Envoy: keep it there
        d.reason = Reason::kKept;
        return;
      }
    }
    d.version = stage.active_slot;
    d.reason = Reason::kBlueGreen;
    return;
  }
  const int computed = pick_version(stage, hash_high);
  if (wanted_name.empty()) {
    d.version = computed;
    d.reason = Reason::kHashed;
    return;
  }
  const int wanted = find_available(stage, wanted_name);
  if (wanted < 0) {
    // Its version is gone (or unknown). During a deploy it moves to the target, like every
    // other session leaving a draining version, so that it moves once; otherwise its hash.
    // (A steady stage has a target only while a reversal is held: the rollback's target.)
    const int target = stage.direction_target;
    d.version = takes_moves(stage, target) ? target : computed;
    d.reason = Reason::kUnavailable;
  } else if (wanted == computed) {
    d.version = computed;
    d.reason = Reason::kAffinity;
  } else if (computed < 0) {
    // Only not-yet-admitted capacity is left and the session already wants it.
    d.version = wanted;
    d.reason = Reason::kKept;
  } else {
    d.reason = tiebreak(stage, wanted, computed, &d.version);
  }
}

inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

const char* reason_name(Reason reason) {
  switch (reason) {
    case Reason::kHashed: return "hashed";
    case Reason::kAffinity: return "affinity";
    case Reason::kKept: return "kept";
    case Reason::kMovedForward: return "moved_forward";
    case Reason::kMovedRollback: return "moved_rollback";
    case Reason::kUnavailable: return "unavailable";
    case Reason::kBlueGreen: return "blue_green";
    case Reason::kOverride: return "override";
    case Reason::kNoCapacity: return "no_capacity";
  }
  return "unknown";
}

const char* override_status_name(OverrideStatus status) {
  switch (status) {
    case OverrideStatus::kNone: return "none";
    case OverrideStatus::kApplied: return "applied";
    case OverrideStatus::kRejected: return "rejected";
  }
  return "unknown";
}

OverrideRequest parse_override(std::string_view value, std::string_view secret, int64_t now,
                               int64_t max_ttl_seconds) noexcept {
  OverrideRequest result;
  if (secret.empty() || value.empty() || value.size() > kMaxOverrideLength) return result;
  constexpr std::string_view kMacField = ";mac=";
  const size_t mac_at = value.rfind(kMacField);
  if (mac_at == std::string_view::npos) return result;
  const std::string_view signed_part = value.substr(0, mac_at);
  const std::string_view mac_hex = value.substr(mac_at + kMacField.size());
  if (mac_hex.size() != 64) return result;

  bool have_exp = false;
  size_t start = 0;
  while (start <= signed_part.size()) {
    size_t end = signed_part.find(';', start);
    if (end == std::string_view::npos) end = signed_part.size();
    const std::string_view field = signed_part.substr(start, end - start);
    const size_t eq = field.find('=');
    if (eq == std::string_view::npos) return result;
    const std::string_view key = field.substr(0, eq);
    const std::string_view val = field.substr(eq + 1);
    if (val.empty()) return result;
    if (key == "stage" && result.stage.empty()) {
      result.stage = val;
    } else if (key == "version" && result.version.empty()) {
      result.version = val;
    } else if (key == "exp" && !have_exp) {
      if (val.size() > 12) return result;
      int64_t exp = 0;
      for (char c : val) {
        if (c < '0' || c > '9') return result;
        exp = exp * 10 + (c - '0');
      }
      result.expires_at = exp;
      have_exp = true;
    } else {
      return result;  // unknown or repeated field
    }
    start = end + 1;
  }
  if (!have_exp || result.expires_at <= now || result.expires_at - now > max_ttl_seconds) {
    return result;
  }
  const Sha256Digest mac = hmac_sha256(secret, signed_part);
  unsigned char expected[32];
  for (size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(mac_hex[2 * i]);
    const int lo = hex_value(mac_hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return result;
    expected[i] = static_cast<unsigned char>((hi << 4) | lo);
  }
  if (!constant_time_equal(std::string_view(reinterpret_cast<const char*>(mac.data()), 32),
                           std::string_view(reinterpret_cast<const char*>(expected), 32))) {
    return result;
  }
  result.valid = true;
  return result;
}

namespace {

// The routing key of a request served without an id (the OS gave no random bytes).
constexpr char kAnonymousRoutingKey[] = "0000000000000000";
static_assert(sizeof kAnonymousRoutingKey - 1 == kRoutingKeyLength, "a routing key's length");

Decision decide_impl(const RouterConfig& config, const RouteRequest& request, bool fixed_random,
                     uint64_t random_bits) noexcept {
  Decision d;
  const TokenKey* key = config.token_key_or_null();
  const ParsedToken token = parse_token(request.routing_id, request.now, config.ttl_seconds, key);
  d.id_status = token.status;
  std::string_view routing_key = token.routing_key;
  char header_key[kRoutingKeyLength];
  if (token.status != IdStatus::kValid && !config.routing_key_header.empty() &&
      header_routing_key(config.header_key, request.header_key, header_key)) {
    d.keyed = true;
    routing_key = std::string_view(header_key, kRoutingKeyLength);
  } else if (token.status != IdStatus::kValid) {
    d.new_id = fixed_random ? mint_token_with(request.now, key, random_bits)
                            : mint_token(request.now, key);
    d.minted = d.new_id.minted();
    // No random bytes from the OS: no id (never a predictable one), and the request is
    // served as an anonymous session, hashed by a fixed key; the next request tries again.
    d.id_unavailable = !d.minted;
    routing_key = d.minted ? d.new_id.routing_key() : std::string_view(kAnonymousRoutingKey, kRoutingKeyLength);
  }
  // Every routing key has the same length (parsed or minted): a constant the hash is inlined for.
  const Hash128 h = murmur3_x64_128(routing_key.data(), kRoutingKeyLength, 0);
  const std::string_view wanted =
      request.app_version.empty() ? request.version_cookie : request.app_version;

  bool overridden = false;
  if (!request.override_value.empty()) {
    d.override_status = OverrideStatus::kRejected;
    const OverrideRequest ov = parse_override(request.override_value, config.override_secret,
                                              request.now, config.override_max_ttl_seconds);
    if (ov.valid) {
      const int stage = ov.stage.empty() ? pick_stage(config, h.low) : config.find_stage(ov.stage);
      if (stage >= 0) {
        const StageEntry& entry = config.stages[stage];
        Decision trial = d;
        trial.stage = stage;
        if (!ov.version.empty()) {
          trial.version = find_available(entry, ov.version);
          trial.reason = Reason::kOverride;
        } else {
          route_in_stage(entry, h.high, wanted, trial);
        }
        if (trial.version >= 0 && entry.versions[trial.version].capacity > 0) {
          d = trial;
          d.override_status = OverrideStatus::kApplied;
          overridden = true;
        }
      }
    }
  }

  if (!overridden) {
    d.stage = choose_stage(config, h.low, wanted, request.stage_cookie);
    if (d.stage < 0) {
      d.reason = Reason::kNoCapacity;
      return d;
    }
    route_in_stage(config.stages[d.stage], h.high, wanted, d);
    if (d.version < 0) {  // defensive: a stage that takes traffic always has a version
      d.stage = -1;
      d.reason = Reason::kNoCapacity;
      return d;
    }
  }

  const std::string& routed = config.stages[d.stage].versions[d.version].name;
  // The signal follows the tab, not the session: the cookie is shared by every tab of the
  // browser, so a tab still on the old version is told even after another tab (or this
  // one, before it reloaded) moved the cookie. The page reloads at most once per target
  // version (rollway.js keeps that guard in sessionStorage); a tab that reloaded sends the
  // new version and is not told again.
  d.refresh = !request.app_version.empty() && !same_name(request.app_version, routed);
  return d;
}

}  // namespace

Decision decide(const RouterConfig& config, const RouteRequest& request) noexcept {
  return decide_impl(config, request, false, 0);
}

Decision decide_with_random(const RouterConfig& config, const RouteRequest& request,
                            uint64_t random_bits) noexcept {
  return decide_impl(config, request, true, random_bits);
}

}  // namespace rollway
