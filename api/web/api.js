// The REST client: same-origin cookies (gp_session), the CSRF header on writes, errors as the server's reason.
//
// Every error answer of the API has one shape (api/errors.py): {"error", "detail", "field"}. An ApiError
// carries it, and `reason` is the server's own sentence: pages show it as is when a move is refused.
// A 401 triggers one refresh (the gp_refresh cookie, rotated by the server) and a retry; when that
// fails too, `onUnauthorized` sends the user to the login page.

import { t, fmtDuration } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, body, retryAfter = null) {
    const reason = (body && typeof body.detail === "string" && body.detail) || `HTTP ${status}`;
    super(reason);
    this.status = status;
    this.code = (body && body.error) || "http_error";
    this.field = (body && body.field) || null;
    this.reason = reason;
    this.retryAfter = retryAfter;
  }

  /** A sentence for the user: the kind of refusal in their language, then the server's reason. */
  message_for_user() {
    if (this.status === 0) return t("error.network");
    if (this.status === 404) return t("error.not_found");
    if (this.status === 429) return t("error.too_many", { wait: fmtDuration(this.retryAfter || 60) });
    const key = { 403: "error.forbidden", 409: "error.conflict", 422: "error.invalid", 503: "error.unavailable" }[this.status];
    return t(key || "error.server", { reason: this.reason });
  }
}

export const CSRF_COOKIE = "gp_csrf";
export const CSRF_HEADER = "X-CSRF-Token";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** The readable CSRF cookie the server set at login (double submit). */
export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return "";
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "" || value === false) continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}${path.includes("?") ? "&" : "?"}${qs}` : path;
}

export class Api {
  constructor({ onUnauthorized = () => {} } = {}) {
    this.onUnauthorized = onUnauthorized;
    this._refreshing = null;
  }

  /** One request; `json` (a body), `form` (urlencoded), `query`, `raw` (return the Response), `signal`. */
  async request(method, path, { json, form, query, raw = false, signal, retry = true, headers: extra = {} } = {}) {
    const headers = { Accept: "application/json", ...extra };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = new URLSearchParams(form);
    }
    if (!SAFE.has(method)) headers[CSRF_HEADER] = csrfToken();
    let response;
    try {
      response = await fetch(withQuery(path, query), { method, headers, body, credentials: "same-origin", signal });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, { error: "network", detail: String(err) });
    }
    if (response.status === 401 && retry && !path.startsWith("/api/auth/")) {
      if (await this.refresh()) return this.request(method, path, { json, form, query, raw, signal, retry: false, headers: extra });
      this.onUnauthorized();
    }
    if (!response.ok) {
      let data = null;
      try {
        data = await response.json();
      } catch {
        data = { error: "http_error", detail: response.statusText };
      }
      const retryAfter = Number(response.headers.get("Retry-After")) || null;
      throw new ApiError(response.status, data, retryAfter);
    }
    if (raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : response.blob();
  }

  get(path, query, options = {}) {
    return this.request("GET", path, { ...options, query });
  }

  post(path, json, options = {}) {
    return this.request("POST", path, { ...options, json });
  }

  put(path, json, options = {}) {
    return this.request("PUT", path, { ...options, json });
  }

  patch(path, json, options = {}) {
    return this.request("PATCH", path, { ...options, json });
  }

  delete(path, options = {}) {
    return this.request("DELETE", path, options);
  }

  /** Spend the refresh cookie for a new session (one refresh at a time); true when it worked. */
  refresh() {
    if (!this._refreshing) {
      this._refreshing = fetch("/api/auth/refresh", {
        method: "POST",
        headers: { [CSRF_HEADER]: csrfToken(), Accept: "application/json" },
        credentials: "same-origin",
      })
        .then((r) => r.ok)
        .catch(() => false)
        .finally(() => {
          setTimeout(() => (this._refreshing = null), 0);
        });
    }
    return this._refreshing;
  }

  /** Log in with the password form; the server sets the session cookies. */
  login(username, password) {
    return this.request("POST", "/api/auth/token", { form: { username, password }, retry: false, headers: { "X-GridPatrol-Session": "cookie" } });
  }

  /** End this browser's session (the server revokes the refresh token and clears the cookies). */
  logout() {
    return this.request("POST", "/api/auth/logout", { retry: false });
  }

  me() {
    return this.get("/api/me");
  }
}

/** A file (from <input type=file>) as a data: URL, the form the ticket routes take photos in. */
export function fileAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** A Blob as base64 (no data: prefix). */
export async function blobAsBase64(blob) {
  const url = await fileAsDataUrl(blob);
  return url.slice(url.indexOf(",") + 1);
}

/**
 * The live ticket feed (SSE, GET /api/tickets/stream, cookie auth): `onTicket(notice)` per change of a
 * ticket the viewer may see, `onState(connected)` when the stream opens or drops. Reconnects after a
 * drop, refreshing the session first when it has expired; `close()` ends it.
 */
export function openTicketFeed(api, { onTicket, onScope = () => {}, onState = () => {} }) {
  let source = null;
  let closed = false;
  let timer = null;
  const open = () => {
    if (closed) return;
    source = new EventSource("/api/tickets/stream");
    source.addEventListener("open", () => onState(true));
    source.addEventListener("ticket", (event) => onTicket(JSON.parse(event.data)));
    source.addEventListener("scope", () => onScope());
    source.addEventListener("end", async (event) => {
      source.close();
      onState(false);
      const reason = JSON.parse(event.data || "{}").reason;
      if (reason === "revoked") return api.onUnauthorized();
      if (reason === "expired" && !(await api.refresh())) return api.onUnauthorized();
      timer = setTimeout(open, reason === "expired" ? 200 : 3000);
    });
    source.addEventListener("error", async () => {
      onState(false);
      if (closed || source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
      const ok = await api.refresh();
      if (!ok) {
        api.onUnauthorized();
        return;
      }
      timer = setTimeout(open, 1000);
    });
  };
  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (source) source.close();
    },
  };
}
