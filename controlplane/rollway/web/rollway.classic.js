// Generated from rollway.js by `python -m rollway.web`: edit that file instead.
(function () {
"use strict";
// rollway.js: the page's half of Rollway. No dependencies; ES module (this file) and a
// classic-script build (rollway.classic.js, `window.Rollway.install`).
//
// During a rolling deploy two versions of the app serve at once. The page sends the version
// it was loaded from on its own requests (`x-app-version`), so the proxy keeps this tab's API
// calls on that version while it has capacity, whatever the cookie shared by all tabs says.
// When the proxy routes the tab elsewhere, the response says so (`x-rw-refresh: <version>`)
// and the tab reloads onto it: at the next navigation (default), at once, or as a callback
// decides. A tab reloads at most once per target version and three times a minute (a guard
// in sessionStorage), never because of a 5xx.
//
//   import { install } from "/rollway.js";
//   install();   // the version from <meta name="rollway-version">, else the rw_ver cookie
//
// EventSource and WebSocket cannot set headers: their requests carry the rw_ver cookie. A
// tab told to reload reconnects its app's EventSources and WebSockets once (the page keeps
// its objects: they see a new "open"), so they leave the old version's hosts, which a
// deploy drains, without waiting for the reload (`reconnect: false` turns this off).
//
// One domain, several apps (`/` and `/admin`, each rolled by Rollway on its own): give each
// page its own paths (`pathPrefix`, and `excludePrefixes` for the other apps under it). Its
// version goes only to its own paths, and only their responses may tell it to reload.

const GUARD = "rollway.reloaded";
/** @type {import("./rollway.js").Installed | null} */
let installed = null;

function loadedVersion(cookie) {
  const meta = /** @type {HTMLMetaElement | null} */ (document.querySelector('meta[name="rollway-version"]'));
  if (meta?.content) return meta.content;
  for (const part of document.cookie.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === cookie) return part.slice(eq + 1).trim();   // a version name: no escapes
  }
  return "";
}

// The loop guard, kept across reloads in sessionStorage as "version@ms" entries. Claims a
// reload onto `target` for this tab: false if the tab already reloaded for it, if it
// reloaded MAX_PER_MINUTE times in the last minute (a server naming a new version each time
// cannot loop it), or if sessionStorage is unavailable (then nothing reloads by itself).
const MAX_PER_MINUTE = 3;
function claim(target) {
  try {
    const now = Date.now();
    const seen = (sessionStorage.getItem(GUARD) || "").split(" ").filter(Boolean).map((e) => e.split("@"));
    if (seen.some(([v]) => v === target)) return false;
    if (seen.filter(([, t]) => now - Number(t) < 60000).length >= MAX_PER_MINUTE) return false;
    seen.push([target, String(now)]);
    sessionStorage.setItem(GUARD, seen.slice(-32).map((e) => e.join("@")).join(" "));
    return true;
  } catch (_) {
    return false;
  }
}

// Types: rollway.d.ts (tsc --checkJs holds this file to them).
/**
 * @param {import("./rollway.js").InstallOptions} [options]
 * @returns {import("./rollway.js").Installed}
 */
function install(options = {}) {
  if (installed) return installed;
  /** @type {Required<Omit<import("./rollway.js").InstallOptions, "version" | "reconnect">> & {version?: string, reconnect?: boolean}} */
  const o = {
    appVersionHeader: "x-app-version", refreshHeader: "x-rw-refresh", versionCookie: "rw_ver",
    onRefresh: "navigation", apiOrigins: [], pathPrefix: "/", excludePrefixes: [],
  };
  // An option given as undefined (`{apiOrigins: config.apiOrigins}`) keeps its default.
  for (const [key, value] of Object.entries(options)) if (value !== undefined) o[key] = value;
  const header = o.appVersionHeader.toLowerCase();
  const version = o.version || loadedVersion(o.versionCookie);
  const origins = new Set([location.origin, ...o.apiOrigins.map((u) => new URL(u).origin)]);
  // "/admin" holds /admin and /admin/..., not /administrator (as the route matches).
  const under = (path, prefix) => prefix === "/" || path === prefix || path.startsWith(prefix.replace(/\/$/, "") + "/");
  const ours = (url) => {
    try {
      const target = new URL(url, location.href);
      if (!origins.has(target.origin)) return false;
      if (target.origin !== location.origin) return true;       // another app's origin: all its paths
      return under(target.pathname, o.pathPrefix) && !o.excludePrefixes.some((p) => under(target.pathname, p));
    } catch (_) {
      return false;
    }
  };
  const handled = new Set();
  let pending = "";
  /** @type {Set<any>} */
  const live = new Set();   // this app's long-lived connections, as the page holds them
  const natives = { EventSource, WebSocket };
  // The page's `new EventSource(url)` / `new WebSocket(url)`: the same object for the page,
  // over a native connection it can swap for a new one (`m`, once per version it is told of).
  // Listeners go to the native connection (and come along to the next); `on<event>`
  // handlers are called through the native one's.
  const wrap = (/** @type {any} */ Native, /** @type {string[]} */ types) => {
    const Wrapped = class {
      constructor(/** @type {any} */ url, /** @type {any} */ init) {
        this.u = url, this.i = init, this.a = [];
        this.c();
        if (ours(url)) live.add(this);
      }
      c(/** @type {any} */ binaryType) {
        const n = (this.n = new Native(this.u, this.i));
        if (binaryType) n.binaryType = binaryType;
        types.forEach((t) => (n["on" + t] = (/** @type {any} */ e) => n == this.n && this["on" + t]?.call(this, e)));
        this.a.forEach((/** @type {any[]} */ a) => n.addEventListener(...a));
      }
      addEventListener(/** @type {any[]} */ ...a) {
        this.a.push(a);
        this.n.addEventListener(...a);
      }
      removeEventListener(/** @type {any[]} */ ...a) {
        this.a = this.a.filter((/** @type {any[]} */ [t, f]) => t != a[0] || f != a[1]);
        this.n.removeEventListener(...a);
      }
      m() {
        const n = this.n;
        if (n.readyState > 1) return;
        this.c(n.binaryType);
        this.a.forEach((/** @type {any[]} */ a) => n.removeEventListener(...a));   // the old one's close is not the page's
        n.close();
      }
      close(/** @type {any[]} */ ...a) {
        live.delete(this);
        this.n.close(...a);
      }
      send(/** @type {any} */ data) { this.n.send(data); }
      set binaryType(v) { this.n.binaryType = v; }
      get binaryType() { return this.n.binaryType; }
    };
    // The rest of the page's view of the connection is the native one's, read through.
    for (const k of ["readyState", "url", "protocol"]) {
      Object.defineProperty(Wrapped.prototype, k, { get() { return this.n[k]; } });
    }
    return Native && Object.assign(Wrapped, Native);   // its constants (OPEN, CLOSED, ...) are enumerable
  };
  const events = ["open", "message", "error"];
  if (o.reconnect !== false) Object.assign(globalThis, {
    EventSource: wrap(natives.EventSource, events), WebSocket: wrap(natives.WebSocket, [...events, "close"]) });

  const told = (status, target) => {
    // A version name as route maps allow it; anything else is not a signal from Rollway.
    if (!target || !/^[\w.+-]{1,128}$/.test(target) || target === version || status >= 500 ||
        handled.has(target)) return;
    handled.add(target);
    const event = { version: target, from: version, reload: () => claim(target) && (location.reload(), true) };
    if (typeof o.onRefresh === "function") o.onRefresh(event);
    else if (o.onRefresh !== "immediate") pending = target;
    else if (event.reload()) return;   // the tab goes: its connections with it
    live.forEach((c) => c.m());
  };

  const fetch0 = globalThis.fetch;
  globalThis.fetch = function (/** @type {any} */ input, init) {
    // A Request carries its URL and headers; a string or a URL has neither.
    const mine = ours(input?.url || input);
    if (version && mine) {
      const headers = new Headers(init?.headers || input?.headers);
      if (!headers.has(header)) headers.set(header, version);
      init = { ...init, headers };
    }
    return fetch0.call(globalThis, input, init).then((response) => {
      if (mine) told(response.status, response.headers.get(o.refreshHeader));   // another app's is not ours
      return response;
    });
  };

  const xhr = XMLHttpRequest.prototype;
  const { open, send, setRequestHeader } = xhr;
  const state = new WeakMap();   // xhr -> {ours, set}: is it ours, did the app set the header
  xhr.open = function (method, url) {
    state.set(this, { ours: ours(url), set: false });
    return open.apply(this, arguments);
  };
  xhr.setRequestHeader = function (name) {
    const s = state.get(this);
    if (s && String(name).toLowerCase() === header) s.set = true;
    return setRequestHeader.apply(this, arguments);
  };
  xhr.send = function () {
    const s = state.get(this);
    if (s?.ours && version && !s.set) setRequestHeader.call(this, header, version);
    if (s?.ours) this.addEventListener("loadend", () => told(this.status, this.getResponseHeader(o.refreshHeader)));
    return send.apply(this, arguments);
  };

  // "navigation": an in-app navigation (pushState, back/forward) becomes a full load, so
  // nothing the user typed on this page is lost; a page that unloads by itself (a link, a
  // form) arrives on the new version anyway and only takes the guard.
  const pushState = history.pushState;
  history.pushState = function (state, title, url) {
    if (pending && url != null && claim(pending)) return location.assign(new URL(url, location.href).href);
    return pushState.apply(this, arguments);
  };
  const onPop = () => pending && claim(pending) && location.reload();
  const onHide = () => pending && claim(pending);
  addEventListener("popstate", onPop);
  addEventListener("pagehide", onHide);

  installed = {
    version,
    get pending() {
      return pending;
    },
    uninstall() {
      globalThis.fetch = fetch0;
      Object.assign(xhr, { open, send, setRequestHeader });
      history.pushState = pushState;
      Object.assign(globalThis, natives);
      removeEventListener("popstate", onPop);
      removeEventListener("pagehide", onHide);
      installed = null;
    },
  };
  return installed;
}

/** @type {any} */ (window).Rollway = { install: install };
})();
