// rollway._core: the pybind11 face of the C++ routing core (native/).
//
// Thin by design: argument conversion, error mapping (ConfigError -> ValueError) and
// result objects. No routing rule lives here.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rollway/crypto.h"
#include "rollway/murmur3.h"
#include "rollway/router.h"
#include "rollway/token.h"

namespace py = pybind11;
using namespace rollway;

namespace {

// Bytes of a str (UTF-8, like mmh3) or a bytes-like object, without copying when possible.
std::string_view data_view(const py::handle& data, std::string& storage) {
  if (PyUnicode_Check(data.ptr())) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(data.ptr(), &size);
    if (text == nullptr) throw py::error_already_set();
    return std::string_view(text, static_cast<size_t>(size));
  }
  if (PyBytes_Check(data.ptr())) {
    return std::string_view(PyBytes_AS_STRING(data.ptr()),
                            static_cast<size_t>(PyBytes_GET_SIZE(data.ptr())));
  }
  Py_buffer buffer;
  if (PyObject_GetBuffer(data.ptr(), &buffer, PyBUF_SIMPLE) != 0) {
    PyErr_Clear();
    throw py::type_error("data must be str or a bytes-like object");
  }
  storage.assign(static_cast<const char*>(buffer.buf), static_cast<size_t>(buffer.len));
  PyBuffer_Release(&buffer);
  return storage;
}

uint32_t checked_seed(long long seed) {
  if (seed < 0 || seed > 0xffffffffLL) throw py::value_error("seed is out of range");
  return static_cast<uint32_t>(seed);
}

int64_t to_unix_seconds(const std::optional<double>& now) {
  if (!now.has_value()) return static_cast<int64_t>(std::time(nullptr));
  if (!std::isfinite(*now)) throw py::value_error("now must be a finite number of seconds");
  return static_cast<int64_t>(std::floor(*now));
}

// Optional str argument as a view; None is empty.
std::string_view optional_view(const py::handle& value, const char* what) {
  if (value.is_none()) return {};
  if (!PyUnicode_Check(value.ptr())) throw py::type_error(std::string(what) + " must be str or None");
  Py_ssize_t size = 0;
  const char* text = PyUnicode_AsUTF8AndSize(value.ptr(), &size);
  if (text == nullptr) throw py::error_already_set();
  return std::string_view(text, static_cast<size_t>(size));
}

class PyRouter;

// One decision, with names resolved against the config it was made with.
struct PyDecision {
  std::shared_ptr<const RouterConfig> config;
  Decision d;

  py::object stage() const {
    return d.stage < 0 ? py::object(py::none()) : py::object(py::str(config->stages[d.stage].name));
  }
  py::object version() const {
    if (!d.routed()) return py::none();
    return py::str(config->stages[d.stage].versions[d.version].name);
  }
  py::object cluster() const {
    if (!d.routed()) return py::none();
    return py::str(config->stages[d.stage].versions[d.version].cluster);
  }
  py::object new_routing_id() const {
    if (!d.minted) return py::none();
    return py::str(d.new_id.text, d.new_id.length);
  }
  std::string repr() const {
    std::string out = "Decision(stage=";
    out += d.stage < 0 ? "None" : "'" + config->stages[d.stage].name + "'";
    out += ", version=";
    out += d.routed() ? "'" + config->stages[d.stage].versions[d.version].name + "'" : "None";
    out += ", reason='";
    out += reason_name(d.reason);
    out += "', refresh=";
    out += d.refresh ? "True" : "False";
    out += ", minted=";
    out += d.minted ? "True" : "False";
    out += ")";
    return out;
  }
};

// Many decisions made by one call, kept in C++ and turned into Python lists on demand.
struct BatchDecisions {
  std::shared_ptr<const RouterConfig> config;
  std::vector<Decision> rows;
  // Interned names: a list of 100k stage names is 100k references to a handful of strs.
  std::vector<py::str> stage_names;
  std::vector<std::vector<py::str>> version_names;
  std::vector<std::vector<py::str>> cluster_names;

  size_t size() const { return rows.size(); }

  template <typename F>
  py::list column(F&& value_of) const {
    py::list out(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      py::object value = value_of(rows[i]);
      PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), value.release().ptr());
    }
    return out;
  }
};

class PyRouter {
 public:
  PyRouter(const std::string& config_json, const std::optional<py::dict>& secrets) {
    Secrets parsed;
    if (secrets.has_value()) {
      for (auto item : *secrets) {
        if (!PyUnicode_Check(item.first.ptr())) throw py::type_error("secret names must be str");
        std::string storage;
        const std::string_view value = data_view(item.second, storage);
        parsed.emplace(item.first.cast<std::string>(), std::string(value));
      }
    }
    try {
      config_ = parse_router_config(config_json, parsed);
    } catch (const ConfigError& error) {
      throw py::value_error(error.what());
    }
    for (const StageEntry& stage : config_->stages) {
      stage_names_.emplace_back(stage.name);
      version_names_.emplace_back();
      cluster_names_.emplace_back();
      for (const VersionEntry& version : stage.versions) {
        version_names_.back().emplace_back(version.name);
        cluster_names_.back().emplace_back(version.cluster);
      }
    }
  }

  const RouterConfig& config() const { return *config_; }

  PyDecision route(const py::object& routing_id, const py::object& wanted_version,
                   const std::optional<double>& now, const py::object& version_cookie,
                   const py::object& override_value,
                   const std::optional<uint64_t>& random_bits, const py::object& stage_cookie,
                   const py::object& header_key) const {
    RouteRequest request;
    request.header_key = optional_view(header_key, "header_key");
    request.routing_id = optional_view(routing_id, "routing_id");
    request.app_version = optional_view(wanted_version, "wanted_version");
    request.version_cookie = optional_view(version_cookie, "version_cookie");
    request.stage_cookie = optional_view(stage_cookie, "stage_cookie");
    request.override_value = optional_view(override_value, "override");
    request.now = to_unix_seconds(now);
    PyDecision out{config_, {}};
    out.d = random_bits.has_value() ? decide_with_random(*config_, request, *random_bits)
                                    : decide(*config_, request);
    return out;
  }

  BatchDecisions route_many(const py::sequence& routing_ids, const py::object& wanted_versions,
                            const std::optional<double>& now,
                            const py::object& version_cookies, const py::object& stage_cookies) const {
    const size_t n = static_cast<size_t>(py::len(routing_ids));
    auto column = [&](const py::object& values, const char* what) -> py::object {
      if (values.is_none()) return py::none();
      py::sequence seq = py::reinterpret_borrow<py::sequence>(values);
      if (static_cast<size_t>(py::len(seq)) != n) {
        throw py::value_error(std::string(what) + " must have one entry per routing id");
      }
      return py::reinterpret_borrow<py::object>(py::list(seq));
    };
    const py::object ids = py::list(routing_ids);
    const py::object wanted = column(wanted_versions, "wanted_versions");
    const py::object cookies = column(version_cookies, "version_cookies");
    const py::object stage_column = column(stage_cookies, "stage_cookies");
    BatchDecisions out;
    out.config = config_;
    out.stage_names = stage_names_;
    out.version_names = version_names_;
    out.cluster_names = cluster_names_;
    out.rows.resize(n);
    RouteRequest request;
    request.now = to_unix_seconds(now);
    for (size_t i = 0; i < n; ++i) {
      const auto index = static_cast<Py_ssize_t>(i);
      request.routing_id = optional_view(PyList_GET_ITEM(ids.ptr(), index), "routing_ids[i]");
      request.app_version =
          wanted.is_none() ? std::string_view()
                           : optional_view(PyList_GET_ITEM(wanted.ptr(), index), "wanted_versions[i]");
      request.version_cookie =
          cookies.is_none() ? std::string_view()
                            : optional_view(PyList_GET_ITEM(cookies.ptr(), index), "version_cookies[i]");
      request.stage_cookie =
          stage_column.is_none() ? std::string_view()
                                 : optional_view(PyList_GET_ITEM(stage_column.ptr(), index), "stage_cookies[i]");
      out.rows[i] = decide(*config_, request);
    }
    return out;
  }

  // The C++ core in a C++ loop: ns per decision over `rounds` passes of `routing_ids`.
  double bench_route_loop(const std::vector<std::string>& routing_ids,
                          const std::vector<std::string>& wanted_versions, int rounds,
                          double now) const {
    if (routing_ids.empty() || rounds <= 0) throw py::value_error("need ids and rounds > 0");
    if (!wanted_versions.empty() && wanted_versions.size() != routing_ids.size()) {
      throw py::value_error("wanted_versions must have one entry per routing id");
    }
    py::gil_scoped_release release;
    RouteRequest request;
    request.now = static_cast<int64_t>(now);
    uint64_t sink = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < rounds; ++r) {
      for (size_t i = 0; i < routing_ids.size(); ++i) {
        request.routing_id = routing_ids[i];
        request.app_version = wanted_versions.empty() ? std::string_view() : wanted_versions[i];
        const Decision d = decide(*config_, request);
        sink += static_cast<uint64_t>(d.version) + static_cast<uint64_t>(d.stage);
      }
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    volatile uint64_t keep = sink;  // defeat dead-code elimination of the loop
    (void)keep;
    return std::chrono::duration<double, std::nano>(elapsed).count() /
           (static_cast<double>(rounds) * static_cast<double>(routing_ids.size()));
  }

  py::list stages() const {
    py::list out;
    for (const StageEntry& stage : config_->stages) {
      py::dict entry;
      entry["name"] = stage.name;
      entry["weight"] = stage.weight;
      entry["mode"] = stage.mode == StageMode::kRolling ? "rolling" : "blue_green";
      entry["takes_traffic"] = stage.takes_traffic();
      py::list versions;
      for (const VersionEntry& version : stage.versions) {
        py::dict v;
        v["name"] = version.name;
        v["capacity"] = version.capacity;
        v["cluster"] = version.cluster;
        v["admitted"] = version.admitted;
        if (!version.slot.empty()) v["slot"] = version.slot;
        versions.append(v);
      }
      entry["versions"] = versions;
      if (stage.mode == StageMode::kRolling) {
        static const char* kStates[] = {"steady", "forward", "rollback"};
        py::dict direction;
        direction["state"] = kStates[static_cast<int>(stage.direction)];
        if (stage.direction_target >= 0) direction["target"] = stage.versions[stage.direction_target].name;
        entry["direction"] = direction;
      } else {
        entry["active"] = stage.versions[stage.active_slot].slot;
        if (stage.next_slot >= 0) entry["next"] = stage.versions[stage.next_slot].slot;
      }
      out.append(entry);
    }
    return out;
  }

 private:
  std::shared_ptr<const RouterConfig> config_;
  std::vector<py::str> stage_names_;
  std::vector<std::vector<py::str>> version_names_;
  std::vector<std::vector<py::str>> cluster_names_;
};

py::bytes to_bytes(const Sha256Digest& digest) {
  return py::bytes(reinterpret_cast<const char*>(digest.data()), digest.size());
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Rollway's C++ routing core (private; import from `rollway`).";

  m.def(
      "murmur3_32",
      [](const py::object& data, long long seed) {
        std::string storage;
        const std::string_view view = data_view(data, storage);
        return murmur3_x86_32(view.data(), view.size(), checked_seed(seed));
      },
      py::arg("data"), py::arg("seed") = 0,
      "MurmurHash3 x86_32 as an unsigned int (== mmh3.hash(data, seed, signed=False)).");
  m.def(
      "murmur3_128",
      [](const py::object& data, long long seed) {
        std::string storage;
        const std::string_view view = data_view(data, storage);
        const Hash128 h = murmur3_x64_128(view.data(), view.size(), checked_seed(seed));
        return (py::int_(h.high) << py::int_(64)) | py::int_(h.low);
      },
      py::arg("data"), py::arg("seed") = 0,
      "MurmurHash3 x64_128 as an unsigned int "
      "(== mmh3.hash128(data, seed, x64arch=True, signed=False)).");
  m.def(
      "hmac_sha256",
      [](const py::bytes& key, const py::bytes& message) {
        return to_bytes(hmac_sha256(std::string_view(key), std::string_view(message)));
      },
      py::arg("key"), py::arg("message"));
  m.def(
      "siphash24",
      [](const py::bytes& key, const py::bytes& message) {
        const std::string_view k(key);
        if (k.size() != 16) throw py::value_error("SipHash key must be 16 bytes");
        std::array<uint8_t, 16> bytes{};
        for (size_t i = 0; i < 16; ++i) bytes[i] = static_cast<uint8_t>(k[i]);
        return siphash24(bytes, std::string_view(message));
      },
      py::arg("key"), py::arg("message"));
  m.def(
      "new_routing_id",
      [](const std::optional<double>& now, const std::optional<py::object>& signing_secret,
         const std::optional<uint64_t>& random_bits) {
        std::optional<TokenKey> key;
        if (signing_secret.has_value() && !signing_secret->is_none()) {
          std::string storage;
          key = derive_token_key(data_view(*signing_secret, storage));
        }
        const int64_t t = to_unix_seconds(now);
        const TokenKey* k = key.has_value() ? &*key : nullptr;
        const MintedToken token =
            random_bits.has_value() ? mint_token_with(t, k, *random_bits) : mint_token(t, k);
        if (!token.minted()) throw std::runtime_error("no random bytes from the OS (getrandom failed)");
        return std::string(token.view());
      },
      py::arg("now") = py::none(), py::arg("signing_secret") = py::none(),
      py::arg("random_bits") = py::none(),
      "Mints a routing-id token issued at `now` (default: the current time).");
  m.def(
      "parse_routing_id",
      [](const std::string& token, double now, int64_t ttl_seconds,
         const std::optional<py::object>& signing_secret) {
        std::optional<TokenKey> key;
        if (signing_secret.has_value() && !signing_secret->is_none()) {
          std::string storage;
          key = derive_token_key(data_view(*signing_secret, storage));
        }
        const ParsedToken parsed = parse_token(token, static_cast<int64_t>(std::floor(now)),
                                               ttl_seconds, key.has_value() ? &*key : nullptr);
        py::dict out;
        out["status"] = id_status_name(parsed.status);
        out["issued_at"] = parsed.status == IdStatus::kValid ? py::object(py::int_(parsed.issued_at))
                                                            : py::object(py::none());
        out["routing_key"] = parsed.status == IdStatus::kValid
                                 ? py::object(py::str(std::string(parsed.routing_key)))
                                 : py::object(py::none());
        return out;
      },
      py::arg("token"), py::arg("now"), py::arg("ttl_seconds") = 86400,
      py::arg("signing_secret") = py::none());

  py::class_<PyDecision>(m, "Decision")
      .def_property_readonly("stage", &PyDecision::stage)
      .def_property_readonly("version", &PyDecision::version)
      .def_property_readonly("cluster", &PyDecision::cluster)
      .def_property_readonly("new_routing_id", &PyDecision::new_routing_id)
      .def_property_readonly("refresh", [](const PyDecision& p) { return p.d.refresh; })
      .def_property_readonly("reason", [](const PyDecision& p) { return reason_name(p.d.reason); })
      .def_property_readonly("id_status", [](const PyDecision& p) { return id_status_name(p.d.id_status); })
      .def_property_readonly("keyed", [](const PyDecision& p) { return p.d.keyed; })
      .def_property_readonly("override",
                             [](const PyDecision& p) { return override_status_name(p.d.override_status); })
      .def_property_readonly("stage_index", [](const PyDecision& p) { return p.d.stage; })
      .def_property_readonly("version_index", [](const PyDecision& p) { return p.d.version; })
      .def("__repr__", &PyDecision::repr);

  py::class_<BatchDecisions>(m, "BatchDecisions")
      .def("__len__", &BatchDecisions::size)
      .def("__getitem__",
           [](const BatchDecisions& b, Py_ssize_t i) {
             const Py_ssize_t n = static_cast<Py_ssize_t>(b.rows.size());
             if (i < 0) i += n;
             if (i < 0 || i >= n) throw py::index_error("decision index out of range");
             return PyDecision{b.config, b.rows[static_cast<size_t>(i)]};
           })
      .def_property_readonly("stage_index",
                             [](const BatchDecisions& b) {
                               return b.column([](const Decision& d) { return py::int_(d.stage); });
                             })
      .def_property_readonly("version_index",
                             [](const BatchDecisions& b) {
                               return b.column([](const Decision& d) { return py::int_(d.version); });
                             })
      .def_property_readonly("stage",
                             [](const BatchDecisions& b) {
                               return b.column([&](const Decision& d) -> py::object {
                                 if (d.stage < 0) return py::none();
                                 return b.stage_names[d.stage];
                               });
                             })
      .def_property_readonly("version",
                             [](const BatchDecisions& b) {
                               return b.column([&](const Decision& d) -> py::object {
                                 if (!d.routed()) return py::none();
                                 return b.version_names[d.stage][d.version];
                               });
                             })
      .def_property_readonly("cluster",
                             [](const BatchDecisions& b) {
                               return b.column([&](const Decision& d) -> py::object {
                                 if (!d.routed()) return py::none();
                                 return b.cluster_names[d.stage][d.version];
                               });
                             })
      .def_property_readonly("refresh",
                             [](const BatchDecisions& b) {
                               return b.column([](const Decision& d) { return py::bool_(d.refresh); });
                             })
      .def_property_readonly("reason",
                             [](const BatchDecisions& b) {
                               return b.column([](const Decision& d) { return py::str(reason_name(d.reason)); });
                             })
      .def_property_readonly("new_routing_id", [](const BatchDecisions& b) {
        return b.column([](const Decision& d) -> py::object {
          if (!d.minted) return py::none();
          return py::str(d.new_id.text, d.new_id.length);
        });
      });

  py::class_<PyRouter>(m, "Router")
      .def(py::init<const std::string&, const std::optional<py::dict>&>(), py::arg("config_json"),
           py::arg("secrets") = py::none())
      .def("route", &PyRouter::route, py::arg("routing_id") = py::none(),
           py::arg("wanted_version") = py::none(), py::arg("now") = py::none(), py::kw_only(),
           py::arg("version_cookie") = py::none(), py::arg("override") = py::none(),
           py::arg("random_bits") = py::none(), py::arg("stage_cookie") = py::none(),
           py::arg("header_key") = py::none())
      .def("route_many", &PyRouter::route_many, py::arg("routing_ids"),
           py::arg("wanted_versions") = py::none(), py::arg("now") = py::none(), py::kw_only(),
           py::arg("version_cookies") = py::none(), py::arg("stage_cookies") = py::none())
      .def("bench_route_loop", &PyRouter::bench_route_loop, py::arg("routing_ids"),
           py::arg("wanted_versions"), py::arg("rounds"), py::arg("now"))
      .def_property_readonly("service", [](const PyRouter& r) { return r.config().service; })
      .def_property_readonly("generation", [](const PyRouter& r) { return r.config().generation; })
      .def_property_readonly("routing_cookie", [](const PyRouter& r) { return r.config().routing_cookie; })
      .def_property_readonly("ttl_seconds", [](const PyRouter& r) { return r.config().ttl_seconds; })
      .def_property_readonly("version_cookie", [](const PyRouter& r) { return r.config().version_cookie; })
      .def_property_readonly("stage_cookie", [](const PyRouter& r) { return r.config().stage_cookie; })
      .def_property_readonly("cookie_path", [](const PyRouter& r) { return r.config().cookie_path; })
      .def_property_readonly("cluster_header", [](const PyRouter& r) { return r.config().cluster_header; })
      .def_property_readonly("stages", &PyRouter::stages);
}
