// libFuzzer target: filter-config parsing. Any input either parses into a config that
// routes, or raises ConfigError; nothing else may happen (ASan, UBSan, no other exception).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "rollway/router.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::shared_ptr<const rollway::RouterConfig> config;
  try {
    config = rollway::parse_router_config(text, {{"k", "fuzzing-secret-0123456789"}});
  } catch (const rollway::ConfigError&) {
    return 0;
  }
  rollway::RouteRequest request;
  request.now = 1750000000;
  request.routing_id = "16850a4f00123456789abcdef";
  for (const char* wanted : {"", "v1", "v2", "blue"}) {
    request.app_version = wanted;
    const rollway::Decision d = rollway::decide(*config, request);
    if (d.routed()) {
      const auto& stage = config->stages.at(static_cast<size_t>(d.stage));
      if (stage.versions.at(static_cast<size_t>(d.version)).capacity <= 0) __builtin_trap();
    }
  }
  return 0;
}
