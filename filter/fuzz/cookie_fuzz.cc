// libFuzzer target: Cookie header parsing and everything a request's bytes reach in the
// core (token parsing, override parsing, the decision) under ASan and UBSan.
//
// Input layout: a control byte, then the bytes split into [cookie header | app version |
// override] at two positions taken from the control byte and the length.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cookies.h"
#include "rollway/router.h"

namespace {

const rollway::RouterConfig& config() {
  static const auto parsed = rollway::parse_router_config(R"({
    "service": "web", "generation": 1,
    "routing_id": {"cookie": "rw_rid", "ttl_seconds": 86400, "signing_key_id": "rid"},
    "override": {"key_id": "ops"},
    "stages": [
      {"name": "prod", "weight": 9, "mode": "rolling", "direction": {"state": "forward", "target": "v2"},
       "versions": [{"name": "v1", "capacity": 3, "cluster": "a"}, {"name": "v2", "capacity": 1, "cluster": "b"},
                    {"name": "v3", "capacity": 1, "cluster": "c", "admitted": false}]},
      {"name": "bg", "weight": 1, "mode": "blue_green", "active": "blue",
       "slots": {"blue": {"version": "v1", "capacity": 1, "cluster": "d"},
                 "green": {"version": "v2", "capacity": 1, "cluster": "e"}}}]})",
      {{"rid", "fuzzing-routing-id-secret"}, {"ops", "fuzzing-operator-secret"}});
  return *parsed;
}

// The scanner as first written (split on ';', then on the first '=', trim, unquote): the
// reference the one-pass scanner must agree with on every input.
bool reference_scan(std::string_view header, const std::string_view* names, rollway::CookieMatch* matches,
                    size_t count) {
  auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  auto trim = [&](std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) ++b;
    while (e > b && is_space(s[e - 1])) --e;
    return s.substr(b, e - b);
  };
  auto all_found = [&] {
    for (size_t i = 0; i < count; ++i) {
      if (!matches[i].found) return false;
    }
    return true;
  };
  if (header.size() > rollway::kMaxCookieHeaderScan) return all_found();
  size_t pos = 0;
  while (pos < header.size() && !all_found()) {
    size_t end = header.find(';', pos);
    if (end == std::string_view::npos) end = header.size();
    const std::string_view pair = header.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = trim(pair.substr(0, eq));
    std::string_view value = trim(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    for (size_t i = 0; i < count; ++i) {
      if (!matches[i].found && name == names[i]) {
        matches[i].value = value;
        matches[i].found = true;
        break;
      }
    }
  }
  return all_found();
}

// The scanner must agree with the reference on one header and across a split into two.
void check_against_reference(std::string_view header, const std::string_view (&names)[3],
                             rollway::CookieMatch (&matches)[3]) {
  const rollway::CookieNames wanted(names);
  const bool all_found = rollway::scan_cookie_header(header, wanted, matches);
  rollway::CookieMatch expected[3];
  if (reference_scan(header, names, expected, 3) != all_found) __builtin_trap();
  for (int i = 0; i < 3; ++i) {   // the same matches, pointing at the same bytes
    if (matches[i].found != expected[i].found || matches[i].value.data() != expected[i].value.data() ||
        matches[i].value.size() != expected[i].value.size()) {
      if (matches[i].found || expected[i].found) __builtin_trap();
    }
  }
  // Across two headers (HTTP/2 splits them): the second fills only what the first lacked.
  rollway::CookieMatch split[3];
  rollway::CookieMatch split_expected[3];
  const size_t half = header.size() / 2;
  rollway::scan_cookie_header(header.substr(0, half), wanted, split);
  rollway::scan_cookie_header(header.substr(half), wanted, split);
  reference_scan(header.substr(0, half), names, split_expected, 3);
  reference_scan(header.substr(half), names, split_expected, 3);
  for (int i = 0; i < 3; ++i) {
    if (split[i].found != split_expected[i].found ||
        (split[i].found && split[i].value.data() != split_expected[i].value.data())) {
      __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut1 = all.empty() ? 0 : (data[0] * 7u) % (all.size() + 1);
  const size_t cut2 = cut1 + (all.size() - cut1) / 2;
  const std::string_view header = all.substr(0, cut1);
  const std::string_view app_version = all.substr(cut1, cut2 - cut1);
  const std::string_view override_value = all.substr(cut2);

  // The deployed names, then a set with a name longer than the scanner's 8-byte head (the
  // memcmp path), a one-byte name and a shared prefix.
  const std::string_view names[3] = {"rw_rid", "rw_ver", "rw_stage"};
  const std::string_view other_names[3] = {"rollway_routing_id", "v", "rollway_routing"};
  rollway::CookieMatch matches[3];
  check_against_reference(header, names, matches);
  rollway::CookieMatch other_matches[3];
  check_against_reference(header, other_names, other_matches);
  const rollway::CookieMatch& rid = matches[0];
  const rollway::CookieMatch& version = matches[1];
  if (rid.found && (rid.value.data() < header.data() || rid.value.data() + rid.value.size() > header.data() + header.size())) {
    __builtin_trap();  // a match must point inside the header
  }

  rollway::RouteRequest request;
  request.routing_id = rid.value;
  request.version_cookie = version.value;
  request.stage_cookie = matches[2].value;
  request.app_version = app_version;
  request.override_value = override_value;
  request.now = 1750000000;
  const rollway::Decision d = rollway::decide(config(), request);
  if (d.routed() && static_cast<size_t>(d.stage) >= config().stages.size()) __builtin_trap();
  if (d.minted && d.new_id.length != rollway::kSignedTokenLength) __builtin_trap();
  return 0;
}
