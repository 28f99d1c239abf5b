// The floors of benchmarks/envoy.py --instructions: what any dynamic module costs, and what
// routing by a cluster header costs, with no routing logic at all.
//
//   g++ -O2 -shared -fPIC -Ifilter -o libfloor_noop.so benchmarks/modules/floor_module.cc
//   g++ -O2 -shared -fPIC -Ifilter -DFIXED_CLUSTER=web.prod.v1 -o libfloor_fixed.so ...
//
// Without FIXED_CLUSTER (floor e) every hook returns at once. With it (floor f) the request
// hook sets the cluster header to that constant and clears the route cache: exactly the
// Envoy-side work of routing by cluster header, which Rollway's filter does on every request.
// With SUBSET_CLUSTER (floor f2) it sets dynamic metadata envoy.lb rw_cluster=<name> and the
// cluster header the app checks, without clearing the route cache: the route is resolved
// once, to one cluster per service, and the subset load balancer picks the version's
// endpoints by their metadata (the design measured against header routing, not used).
// With SPECIFIER_CLUSTER (floors h, h+e) the module is also a cluster specifier that names
// that constant while Envoy resolves the route (Envoy's cost of routing from a module with no
// second resolution); its HTTP filter hooks do nothing. With CHECK_HEADER as well (floor
// h+e+w) the filter's request hook appends the cluster header app hosts check, and the
// specifier first fetches the request's headers: every call Envoy makes for Rollway's
// design, with no routing logic.
// With READ_BY_NAME or READ_ALL as well as FIXED_CLUSTER (floors f-name, f-all) the hook
// first reads the Cookie and app-version headers, by two get_header calls or by one
// get_headers call and a scan: the two ways the ABI offers to read a request.
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <new>

#include "envoy_abi.h"

#define EXPORT extern "C" __attribute__((visibility("default")))
#define STR2(x) #x
#define STR(x) STR2(x)

namespace {
int g_filter;   // every stream shares one dummy filter object: nothing to allocate per stream
volatile size_t g_read_bytes;  // what the reads found, so the compiler keeps them

struct AbiHeader {  // envoy_dynamic_module_type_envoy_http_header in Envoy 1.40
  const char* key;
  size_t key_length;
  const char* value;
  size_t value_length;
};
}
extern "C" size_t envoy_dynamic_module_callback_http_get_headers_size(void*, envoy_dynamic_module_type_http_header_type);
extern "C" bool envoy_dynamic_module_callback_http_get_headers(void*, envoy_dynamic_module_type_http_header_type,
                                                               AbiHeader*);

EXPORT const char* envoy_dynamic_module_on_program_init() { return "v0.2.0"; }
EXPORT void* envoy_dynamic_module_on_http_filter_config_new(void*, envoy_dynamic_module_type_envoy_buffer,
                                                           envoy_dynamic_module_type_envoy_buffer) noexcept {
  return &g_filter;
}
EXPORT void envoy_dynamic_module_on_http_filter_config_destroy(void*) noexcept {}
EXPORT void* envoy_dynamic_module_on_http_filter_new(void*, void*) noexcept { return &g_filter; }

EXPORT int envoy_dynamic_module_on_http_filter_request_headers(void* filter_envoy, void*, bool) noexcept {
#if defined(CHECK_HEADER)
  static constexpr char kCheckHeader[] = "x-rw-cluster";
  static constexpr char kCheckCluster[] = STR(SPECIFIER_CLUSTER);
  envoy_dynamic_module_callback_http_add_header(filter_envoy, envoy_dynamic_module_type_http_header_type_RequestHeader,
                                                {kCheckHeader, sizeof(kCheckHeader) - 1},
                                                {kCheckCluster, sizeof(kCheckCluster) - 1});
#elif defined(SUBSET_CLUSTER)
  static constexpr char kNamespace[] = "envoy.lb";
  static constexpr char kKey[] = "rw_cluster";
  static constexpr char kHeader[] = "x-rw-cluster";
  static constexpr char kCluster[] = STR(SUBSET_CLUSTER);
  envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
      filter_envoy, {kNamespace, sizeof(kNamespace) - 1}, {kKey, sizeof(kKey) - 1}, {kCluster, sizeof(kCluster) - 1});
  envoy_dynamic_module_callback_http_set_header(filter_envoy, envoy_dynamic_module_type_http_header_type_RequestHeader,
                                                {kHeader, sizeof(kHeader) - 1}, {kCluster, sizeof(kCluster) - 1});
#elif defined(FIXED_CLUSTER)
  constexpr auto kRequest = envoy_dynamic_module_type_http_header_type_RequestHeader;
#if defined(READ_BY_NAME)
  for (const envoy_dynamic_module_type_module_buffer name : {envoy_dynamic_module_type_module_buffer{"cookie", 6},
                                                             envoy_dynamic_module_type_module_buffer{"x-app-version", 13}}) {
    envoy_dynamic_module_type_envoy_buffer value{nullptr, 0};
    size_t count = 0;
    envoy_dynamic_module_callback_http_get_header(filter_envoy, kRequest, name, &value, 0, &count);
    g_read_bytes = g_read_bytes + value.length;
  }
#elif defined(READ_ALL)
  AbiHeader headers[64];
  const size_t count = envoy_dynamic_module_callback_http_get_headers_size(filter_envoy, kRequest);
  if (count <= 64 && envoy_dynamic_module_callback_http_get_headers(filter_envoy, kRequest, headers)) {
    for (size_t i = 0; i < count; ++i) {
      const AbiHeader& h = headers[i];
      if ((h.key_length == 6 && std::memcmp(h.key, "cookie", 6) == 0) ||
          (h.key_length == 13 && std::memcmp(h.key, "x-app-version", 13) == 0)) {
        g_read_bytes = g_read_bytes + h.value_length;
      }
    }
  }
#endif
  static constexpr char kHeader[] = "x-rw-cluster";
  static constexpr char kCluster[] = STR(FIXED_CLUSTER);
  envoy_dynamic_module_callback_http_set_header(filter_envoy, kRequest, {kHeader, sizeof(kHeader) - 1},
                                                {kCluster, sizeof(kCluster) - 1});
  envoy_dynamic_module_callback_http_clear_route_cache(filter_envoy);
#else
  (void)filter_envoy;
#endif
  return kEnvoyFilterContinue;
}
EXPORT int envoy_dynamic_module_on_http_filter_response_headers(void*, void*, bool) noexcept { return 0; }
#if defined(SPECIFIER_CLUSTER)
EXPORT const void* envoy_dynamic_module_on_cluster_specifier_config_new(void*, envoy_dynamic_module_type_envoy_buffer,
                                                                        envoy_dynamic_module_type_envoy_buffer) noexcept {
  return &g_filter;
}
EXPORT void envoy_dynamic_module_on_cluster_specifier_config_destroy(const void*) noexcept {}
EXPORT bool envoy_dynamic_module_on_cluster_specifier_select(const void*, void* context) noexcept {
  static constexpr char kCluster[] = STR(SPECIFIER_CLUSTER);
#if defined(CHECK_HEADER)
  envoy_dynamic_module_type_envoy_http_header headers[64];
  const size_t count = envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(context);
  if (count <= 64 && envoy_dynamic_module_callback_cluster_specifier_get_request_headers(context, headers)) {
    for (size_t i = 0; i < count; ++i) g_read_bytes = g_read_bytes + headers[i].value_length;
  }
#endif
  envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(context, {kCluster, sizeof(kCluster) - 1});
  return true;
}
#endif
EXPORT int envoy_dynamic_module_on_http_filter_request_body(void*, void*, bool) noexcept { return 0; }
EXPORT int envoy_dynamic_module_on_http_filter_request_trailers(void*, void*) noexcept { return 0; }
EXPORT int envoy_dynamic_module_on_http_filter_response_body(void*, void*, bool) noexcept { return 0; }
EXPORT int envoy_dynamic_module_on_http_filter_response_trailers(void*, void*) noexcept { return 0; }
EXPORT void envoy_dynamic_module_on_http_filter_stream_complete(void*, void*) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_destroy(void*) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_http_callout_done(void*, void*, uint64_t, int, void*, size_t, void*,
                                                                  size_t) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_http_stream_headers(void*, void*, uint64_t, void*, size_t,
                                                                    bool) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_http_stream_data(void*, void*, uint64_t, const void*, size_t,
                                                                 bool) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_http_stream_trailers(void*, void*, uint64_t, void*, size_t) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_http_stream_complete(void*, void*, uint64_t) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_http_stream_reset(void*, void*, uint64_t, int) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_scheduled(void*, void*, uint64_t) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(void*, void*) noexcept {}
EXPORT void envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(void*, void*) noexcept {}
