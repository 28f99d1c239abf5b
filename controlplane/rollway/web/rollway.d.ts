// Types for rollway.js (the ES module) and rollway.classic.js (`window.Rollway`).

/** A response told this tab to reload onto `version`. */
export interface RefreshEvent {
  /** The version the proxy now routes this tab to (the `x-rw-refresh` value). */
  readonly version: string;
  /** The version this tab was loaded from. */
  readonly from: string;
  /** Reloads the tab, unless it already reloaded for this version or three times in the last minute (then returns false). */
  reload(): boolean;
}

/**
 * What to do when told to reload: `"navigation"` (default) reloads at the next in-app
 * navigation (pushState, back/forward), so nothing typed is lost; `"immediate"` reloads at
 * once; a function decides (and calls `event.reload()` when it wants to).
 */
export type RefreshPolicy = "navigation" | "immediate" | ((event: RefreshEvent) => void);

export interface InstallOptions {
  /** The version this page was built as; default: `<meta name="rollway-version">`, else the version cookie at load. */
  version?: string;
  /** Request header carrying the version (the route map's `headers.app_version`); default `x-app-version`. */
  appVersionHeader?: string;
  /** Response header telling the tab to reload (the route map's `headers.refresh`); default `x-rw-refresh`. */
  refreshHeader?: string;
  /** The version cookie read when the page renders no meta tag (the route map's `version_cookie`); default `rw_ver`. */
  versionCookie?: string;
  onRefresh?: RefreshPolicy;
  /**
   * Other origins whose API calls carry the header too (e.g. `"https://api.example.com"`).
   * They must allow it (`Access-Control-Allow-Headers`) and expose the refresh header
   * (`Access-Control-Expose-Headers`). Same-origin requests always carry it.
   */
  apiOrigins?: string[];
  /**
   * The paths of this page's app on its own origin (its route map's `path_prefix`); default
   * `"/"`. Requests elsewhere on the origin carry no header and their responses tell it
   * nothing: another app's refresh signal never reloads this page.
   */
  pathPrefix?: string;
  /** Other apps' prefixes under `pathPrefix` (`["/admin"]` for the app at `/`); default none. */
  excludePrefixes?: string[];
  /**
   * Reconnect this app's EventSources and WebSockets once when the tab is told to reload
   * (default `true`): they leave the old version's hosts, which a deploy drains, at once. The
   * page keeps its objects; they fire a new `open`. `false` leaves the constructors alone.
   */
  reconnect?: boolean;
}

export interface Installed {
  /** The version this tab sends ("" when none is known: then no header is added). */
  readonly version: string;
  /** Under `"navigation"`: the version the tab will reload onto at its next navigation, or "". */
  readonly pending: string;
  /** Restores fetch, XMLHttpRequest and history. */
  uninstall(): void;
}

/** Adds the app-version header to this page's fetch and XMLHttpRequest calls and watches their responses. Idempotent. */
export function install(options?: InstallOptions): Installed;

declare global {
  interface Window {
    /** The classic-script build (rollway.classic.js). */
    Rollway: { install: typeof install };
  }
}
