// The shell of the web UI: hash router, page mounting, top bar, user menu, logout, language switch.
//
// PAGE MODULE CONTRACT (every page follows it):
//   A page is `api/web/pages/<name>.js` exporting `async function mount(root, ctx)` that fills `root`
//   (an empty <main> region) and may return `unmount()`, called before the next page mounts (close
//   sockets, stop timers, drop listeners). `ctx` holds:
//     api          the REST client (api.js): ctx.api.get(path, query), post/put/patch/delete, ApiError
//                  with .reason (the server's sentence) and .message_for_user()
//     me           GET /api/me: {id, username, display_name, role, grids}
//     t            translate a key of i18n.js; label(kind, value) names states, categories, sources...
//     navigate     navigate("#/tickets/12")
//     params       route parameters ({cameraId}, {id}, {section}...), strings
//     query        the hash's query (#/tickets?state=open) as an object
//     fmtTime      Asia/Shanghai "YYYY-MM-DD HH:mm:ss"; fmtDuration(seconds) → "2分15秒"
//     setTitle     the page's title in the browser tab
//   Routes: #/login, #/wall, #/live/:cameraId, #/tickets, #/tickets/new, #/tickets/:id, #/map and
//   #/dashboard (pages/dashboard.js, params.view "map"|"dashboard"), #/zones/:cameraId (pages/zones.js),
//   #/admin and #/admin/:section (pages/admin.js). A missing page module shows a clear message.
//   A page shows only what the API answers: it never hides anything for security.

import { Api, ApiError } from "./api.js";
import { h, clear, replace } from "./dom.js";
import { t, label, fmtTime, fmtDuration, getLang, setLang } from "./i18n.js";

const ROUTES = [
  { pattern: "/login", module: "login", public: true, chrome: false },
  { pattern: "/password", module: "login", exportName: "mountPassword" },
  { pattern: "/wall", module: "wall", nav: "live" },
  { pattern: "/live/:cameraId", module: "live", nav: "live" },
  { pattern: "/tickets/new", module: "tickets", nav: "tickets", params: { mode: "new" } },
  { pattern: "/tickets/:id", module: "tickets", nav: "tickets", params: { mode: "detail" } },
  { pattern: "/tickets", module: "tickets", nav: "tickets", params: { mode: "list" } },
  { pattern: "/map", module: "dashboard", nav: "map", params: { view: "map" } },
  { pattern: "/dashboard", module: "dashboard", nav: "stats", params: { view: "dashboard" } },
  { pattern: "/zones/:cameraId", module: "zones", nav: "config" },
  { pattern: "/admin/:section", module: "admin", nav: "config" },
  { pattern: "/admin", module: "admin", nav: "config" },
  { pattern: "/patrol/points", module: "patrol_points", nav: "patrol" },
  { pattern: "/patrol", module: "patrol", nav: "patrol" },
  { pattern: "/evaluation", module: "evaluation", nav: "evaluation" },
  { pattern: "/triage", module: "triage", nav: "triage" },
  { pattern: "/department", module: "department", nav: "department" },
  { pattern: "/settings/notifications", module: "notifications" },
];

const NAV = [
  { id: "live", hash: "#/wall", key: "nav.live" },
  { id: "tickets", hash: "#/tickets", key: "nav.tickets" },
  { id: "map", hash: "#/map", key: "nav.map", roles: ["admin", "operator", "manager", "grid_leader"] },
  { id: "stats", hash: "#/dashboard", key: "nav.stats", roles: ["admin", "operator", "manager"] },
  { id: "config", hash: "#/admin", key: "nav.config", roles: ["admin", "operator", "manager"] },
  { id: "patrol", hash: "#/patrol", key: "nav.patrol", roles: ["patroller", "grid_leader"] },
  { id: "patrol", hash: "#/patrol/points", key: "nav.patrol_points", roles: ["admin", "operator", "manager"] },
  { id: "evaluation", hash: "#/evaluation", key: "nav.evaluation" },
  { id: "triage", hash: "#/triage", key: "nav.triage", roles: ["admin", "operator"] },
  { id: "department", hash: "#/department", key: "nav.department", roles: ["department"] },
];

/** The home page of a role: patrollers work on tickets, everyone else starts at the wall. */
function homeOf(me) {
  if (me && me.role === "department") return "#/department";
  return me && me.role === "patroller" ? "#/tickets" : "#/wall";
}

function match(path) {
  for (const route of ROUTES) {
    const names = [];
    const re = new RegExp(
      "^" + route.pattern.replace(/:(\w+)/g, (_, name) => (names.push(name), "([^/]+)")) + "/?$",
    );
    const m = path.match(re);
    if (m) {
      const params = { ...(route.params || {}) };
      names.forEach((name, i) => (params[name] = decodeURIComponent(m[i + 1])));
      return { route, params };
    }
  }
  return null;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs = ""] = raw.split("?");
  return { path, query: Object.fromEntries(new URLSearchParams(qs)) };
}

class App {
  constructor(body) {
    this.body = body;
    this.me = null;
    this.unmount = null;
    this.serial = 0;
    this.api = new Api({ onUnauthorized: () => this.loggedOut() });
    this.header = h("header", { class: "topbar" });
    this.main = h("main", { id: "page", tabindex: "-1" });
    replace(body, h("a", { class: "skip", href: "#page", onclick: (e) => (e.preventDefault(), this.main.focus()) }, "跳到正文"), this.header, this.main);
    window.addEventListener("hashchange", () => this.render());
  }

  navigate(hash) {
    if (location.hash === hash) this.render();
    else location.hash = hash;
  }

  loggedOut() {
    this.me = null;
    const { path } = parseHash();
    if (path !== "/login") {
      sessionStorage.setItem("gp.after_login", location.hash || "");
      this.navigate("#/login");
    }
  }

  async loadMe() {
    try {
      this.me = await this.api.me();
    } catch (err) {
      this.me = null;
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
    }
    return this.me;
  }

  /** After a successful login: load the profile and go where the user was heading. */
  async loggedIn() {
    await this.loadMe();
    const next = sessionStorage.getItem("gp.after_login");
    sessionStorage.removeItem("gp.after_login");
    this.navigate(next && next !== "#/login" ? next : homeOf(this.me));
  }

  async logout() {
    try {
      await this.api.logout();
    } catch {
      /* the cookies are cleared by the server; a network error leaves nothing useful to do */
    }
    this.me = null;
    this.navigate("#/login");
  }

  renderTopbar(active) {
    const me = this.me;
    if (!me) {
      clear(this.header);
      this.header.hidden = true;
      return;
    }
    this.header.hidden = false;
    const items = NAV.filter((n) => !n.roles || n.roles.includes(me.role));
    const langSelect = h(
      "select",
      { "aria-label": t("user.language"), class: "lang", onchange: (e) => (setLang(e.target.value), this.render()) },
      h("option", { value: "zh-CN", selected: getLang() === "zh-CN" }, t("lang.zh")),
      h("option", { value: "en", selected: getLang() === "en" }, t("lang.en")),
    );
    replace(
      this.header,
      h("a", { class: "brand", href: homeOf(me) }, t("app.title")),
      h(
        "nav",
        { "aria-label": t("nav.main") },
        h("ul", {}, items.map((n) =>
          h("li", {}, h("a", { href: n.hash, class: n.id === active ? "active" : null, "aria-current": n.id === active ? "page" : null }, t(n.key))),
        )),
      ),
      h(
        "div",
        { class: "user", role: "group", "aria-label": t("user.menu") },
        h("span", { class: "who", title: me.username }, me.display_name || me.username, h("small", {}, " · ", label("role", me.role))),
        langSelect,
        h("a", { href: "#/settings/notifications", class: "button ghost" }, t("user.notifications")),
        h("a", { href: "#/password", class: "button ghost" }, t("user.password")),
        h("button", { type: "button", class: "ghost", id: "logout", onclick: () => this.logout() }, t("user.logout")),
      ),
    );
  }

  async render() {
    const serial = ++this.serial;
    const { path, query } = parseHash();
    if (this.unmount) {
      const done = this.unmount;
      this.unmount = null;
      try {
        await done();
      } catch (err) {
        console.error("unmount failed", err);
      }
    }
    if (path === "/" || path === "") {
      if (!this.me) await this.loadMe().catch(() => null);
      if (serial === this.serial) this.navigate(this.me ? homeOf(this.me) : "#/login");
      return;
    }
    const found = match(path);
    if (!this.me && !(found && found.route.public)) {
      try {
        await this.loadMe();
      } catch (err) {
        this.showError(err);
        return;
      }
      if (!this.me) {
        this.loggedOut();
        return;
      }
    }
    if (serial !== this.serial) return;
    this.renderTopbar(found ? found.route.nav : null);
    document.body.classList.toggle("bare", Boolean(found && found.route.chrome === false));
    const root = h("div", { class: "page" });
    replace(this.main, root);
    if (!found) {
      root.append(h("div", { class: "notice error", role: "alert" }, t("router.unknown", { hash: location.hash })));
      return;
    }
    const { route, params } = found;
    let module;
    try {
      module = await import(`./pages/${route.module}.js`);
    } catch (err) {
      console.error(err);
      root.append(
        h("div", { class: "notice error", role: "alert" }, t("router.missing", { module: `pages/${route.module}.js`, hash: location.hash })),
      );
      return;
    }
    if (serial !== this.serial) return;
    const mount = module[route.exportName || "mount"];
    if (typeof mount !== "function") {
      root.append(h("div", { class: "notice error", role: "alert" }, t("router.missing", { module: `pages/${route.module}.js`, hash: location.hash })));
      return;
    }
    const ctx = {
      api: this.api,
      me: this.me,
      t,
      label,
      navigate: (hash) => this.navigate(hash),
      params,
      query,
      fmtTime,
      fmtDuration,
      setTitle: (text) => (document.title = text ? `${text} · ${t("app.title")}` : t("app.title")),
      app: this,
    };
    ctx.setTitle("");
    try {
      const unmount = await mount(root, ctx);
      if (serial !== this.serial) {
        if (typeof unmount === "function") unmount();
        return;
      }
      this.unmount = typeof unmount === "function" ? unmount : null;
    } catch (err) {
      this.showError(err, root);
    }
  }

  showError(err, where = this.main) {
    console.error(err);
    const text = err instanceof ApiError ? err.message_for_user() : t("router.failed", { reason: String(err && err.message ? err.message : err) });
    where.append(h("div", { class: "notice error", role: "alert" }, text));
  }
}

export const app = new App(document.body);
app.render();
// the wall's video patrol tours are recorded by the patrol pages (pages/patrol.js)
import("./pages/patrol.js").then((m) => m.installVideoPatrolRecorder(app.api)).catch((err) => console.error("video patrol recorder", err));
