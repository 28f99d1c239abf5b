/* A fake Envoy host for unit-testing librollway_filter.so without Envoy.
 *
 * Exports the envoy_dynamic_module_callback_* functions the module imports (same
 * signatures as Envoy 1.40), backed by in-memory header maps, counters and a log, plus
 * fake_* helpers the tests drive through cffi. Loaded with RTLD_GLOBAL before the module
 * so the module's undefined symbols resolve here. Single-threaded, test-only.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct { const char* ptr; size_t length; } buffer;

#define MAX_HEADERS 256
#define MAX_COUNTERS 256
#define KEY_MAX 512

typedef struct { char key[KEY_MAX]; char* value; size_t length; } header;
typedef struct { header items[MAX_HEADERS]; size_t count; } header_map;

static header_map maps[4];  /* request, request trailer, response, response trailer */
static int route_cache_clears;
static char counter_names[MAX_COUNTERS][KEY_MAX];
static size_t counter_label_counts[MAX_COUNTERS];
static size_t defined_counters;
static struct { char key[KEY_MAX]; uint64_t value; } counter_values[MAX_COUNTERS];
static size_t counter_value_count;
static char last_log[4096];
static int last_log_level = -1;

static int key_equal(const char* stored, buffer key) {
  return strlen(stored) == key.length && strncasecmp(stored, key.ptr, key.length) == 0;
}

static void map_remove(header_map* map, buffer key) {
  size_t out = 0;
  for (size_t i = 0; i < map->count; ++i) {
    if (key_equal(map->items[i].key, key)) { free(map->items[i].value); continue; }
    map->items[out++] = map->items[i];
  }
  map->count = out;
}

static bool map_add(header_map* map, buffer key, buffer value) {
  if (map->count >= MAX_HEADERS || key.length >= KEY_MAX) return false;
  header* h = &map->items[map->count++];
  memcpy(h->key, key.ptr, key.length);
  h->key[key.length] = 0;
  h->value = malloc(value.length + 1);
  memcpy(h->value, value.ptr ? value.ptr : "", value.length);
  h->value[value.length] = 0;
  h->length = value.length;
  return true;
}

bool envoy_dynamic_module_callback_http_get_header(void* filter, int kind, buffer key, buffer* out,
                                                   size_t index, size_t* count) {
  (void)filter;
  out->ptr = NULL; out->length = 0;
  size_t seen = 0;
  header_map* map = &maps[kind];
  for (size_t i = 0; i < map->count; ++i) {
    if (!key_equal(map->items[i].key, key)) continue;
    if (seen == index) { out->ptr = map->items[i].value; out->length = map->items[i].length; }
    ++seen;
  }
  if (count) *count = seen;
  return true;
}

bool envoy_dynamic_module_callback_http_set_header(void* filter, int kind, buffer key, buffer value) {
  (void)filter;
  map_remove(&maps[kind], key);
  if (value.ptr == NULL || value.length == 0) return true;
  return map_add(&maps[kind], key, value);
}

bool envoy_dynamic_module_callback_http_add_header(void* filter, int kind, buffer key, buffer value) {
  (void)filter;
  return map_add(&maps[kind], key, value);
}

static int route_cached;
void envoy_dynamic_module_callback_http_clear_route_cache(void* filter) {
  (void)filter;
  ++route_cache_clears;
  route_cached = 0;
}

/* The route's cluster specifier (set by the test: the module's select hook and the object
   its cluster_specifier_config_new made), run the way Envoy runs it: when the route is
   resolved (fake_resolve_route, as Envoy does before it makes the filters) and again when
   the filter asks for the route after clearing the route cache. */
typedef bool (*select_hook)(const void* config, void* context);
static select_hook specifier_select;
static const void* specifier_config;
static char selected_cluster[KEY_MAX];
static int selections;

void fake_set_specifier(select_hook hook, const void* config) { specifier_select = hook; specifier_config = config; }

/* Envoy resolving the route: the specifier selects. Returns whether it named a cluster. */
bool fake_resolve_route(void) {
  route_cached = 1;
  selected_cluster[0] = 0;
  if (specifier_select == NULL) return false;
  ++selections;
  return specifier_select(specifier_config, &selected_cluster);
}
const char* fake_selected_cluster(void) { return selected_cluster; }
int fake_selections(void) { return selections; }

bool envoy_dynamic_module_callback_cluster_specifier_get_request_header_value(void* context, buffer key, buffer* out,
                                                                             size_t index, size_t* count) {
  (void)context;
  return envoy_dynamic_module_callback_http_get_header(NULL, 0, key, out, index, count);
}

typedef struct { const char* key; size_t key_length; const char* value; size_t value_length; } http_header;

size_t envoy_dynamic_module_callback_cluster_specifier_get_request_headers_size(void* context) {
  (void)context;
  return maps[0].count;
}

bool envoy_dynamic_module_callback_cluster_specifier_get_request_headers(void* context, http_header* out) {
  (void)context;
  for (size_t i = 0; i < maps[0].count; ++i) {
    out[i].key = maps[0].items[i].key;
    out[i].key_length = strlen(maps[0].items[i].key);
    out[i].value = maps[0].items[i].value;
    out[i].value_length = maps[0].items[i].length;
  }
  return true;
}

void envoy_dynamic_module_callback_cluster_specifier_set_cluster_name(void* context, buffer name) {
  char* out = context;
  size_t n = name.length < KEY_MAX - 1 ? name.length : KEY_MAX - 1;
  memcpy(out, name.ptr, n);
  out[n] = 0;
}

/* The route's per-route config object for this stream (set by the test, as Envoy would
   hand back what the module's per_route_config_new made), or NULL. */
static const void* route_config;
const void* envoy_dynamic_module_callback_get_most_specific_route_config(void* filter) {
  (void)filter;
  if (!route_cached) fake_resolve_route();
  return route_config;
}
void fake_set_route_config(const void* config) { route_config = config; }

int envoy_dynamic_module_callback_http_filter_config_define_counter(void* config, buffer name, buffer* labels,
                                                                   size_t label_count, size_t* id) {
  (void)config; (void)labels;
  if (defined_counters >= MAX_COUNTERS || name.length >= KEY_MAX) return 1;
  memcpy(counter_names[defined_counters], name.ptr, name.length);
  counter_names[defined_counters][name.length] = 0;
  counter_label_counts[defined_counters] = label_count;
  *id = defined_counters++;
  return 0;
}

static int increment(size_t id, buffer* labels, size_t label_count, uint64_t value) {
  if (id >= defined_counters || label_count != counter_label_counts[id]) return 2;  /* InvalidLabels */
  char key[KEY_MAX];
  size_t at = (size_t)snprintf(key, sizeof key, "%s", counter_names[id]);
  for (size_t i = 0; i < label_count && at < sizeof key - 1; ++i) {
    at += (size_t)snprintf(key + at, sizeof key - at, "|%.*s", (int)labels[i].length, labels[i].ptr);
  }
  for (size_t i = 0; i < counter_value_count; ++i) {
    if (strcmp(counter_values[i].key, key) == 0) { counter_values[i].value += value; return 0; }
  }
  if (counter_value_count >= MAX_COUNTERS) return 1;
  strcpy(counter_values[counter_value_count].key, key);
  counter_values[counter_value_count++].value = value;
  return 0;
}

int envoy_dynamic_module_callback_http_filter_increment_counter(void* filter, size_t id, buffer* labels,
                                                                size_t label_count, uint64_t value) {
  (void)filter;
  return increment(id, labels, label_count, value);
}

int envoy_dynamic_module_callback_http_filter_config_increment_counter(void* config, size_t id, buffer* labels,
                                                                       size_t label_count, uint64_t value) {
  (void)config;
  return increment(id, labels, label_count, value);
}

void envoy_dynamic_module_callback_log(int level, buffer message) {
  size_t n = message.length < sizeof last_log - 1 ? message.length : sizeof last_log - 1;
  memcpy(last_log, message.ptr, n);
  last_log[n] = 0;
  last_log_level = level;
}

/* ---- helpers for the tests ---- */

void fake_reset_stream(void) {
  for (int k = 0; k < 4; ++k) {
    for (size_t i = 0; i < maps[k].count; ++i) free(maps[k].items[i].value);
    maps[k].count = 0;
  }
  route_cache_clears = 0;
  route_cached = 0;
  selected_cluster[0] = 0;
}

void fake_reset_all(void) {
  fake_reset_stream();
  defined_counters = 0;
  counter_value_count = 0;
  last_log[0] = 0;
  last_log_level = -1;
}

void fake_add_header(int kind, const char* key, const char* value, size_t length) {
  buffer k = {key, strlen(key)};
  buffer v = {value, length};
  map_add(&maps[kind], k, v);
}

size_t fake_header_count(int kind, const char* key) {
  size_t count = 0;
  buffer k = {key, strlen(key)};
  buffer out;
  envoy_dynamic_module_callback_http_get_header(NULL, kind, k, &out, 0, &count);
  return count;
}

const char* fake_header(int kind, const char* key, size_t index) {
  buffer k = {key, strlen(key)};
  buffer out;
  envoy_dynamic_module_callback_http_get_header(NULL, kind, k, &out, index, NULL);
  return out.ptr;
}

int fake_route_cache_clears(void) { return route_cache_clears; }
size_t fake_defined_counters(void) { return defined_counters; }
const char* fake_counter_name(size_t id) { return id < defined_counters ? counter_names[id] : NULL; }

uint64_t fake_counter(const char* key) {
  for (size_t i = 0; i < counter_value_count; ++i) {
    if (strcmp(counter_values[i].key, key) == 0) return counter_values[i].value;
  }
  return 0;
}

const char* fake_last_log(void) { return last_log; }
int fake_last_log_level(void) { return last_log_level; }
