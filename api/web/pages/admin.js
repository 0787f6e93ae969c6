// Administration (系统配置): users and their grids (enable/disable), API tokens, cameras (enable, zones;
// import is the CLI's: it carries stream credentials), grants with expiry, and the audit log with
// filters and CSV export. Each section shows what the API answers this user; a refusal shows its reason.

import { h, replace, toast } from "../dom.js";
import { ApiError } from "../api.js";
import { tb, useStyles } from "../i18n_b.js";

const SECTIONS = [
  ["users", ["admin"]],
  ["cameras", ["admin", "operator"]],
  ["grants", ["admin", "manager"]],
  ["tokens", ["admin", "operator", "manager", "grid_leader", "patroller"]],
  ["audit", ["admin"]],
];
const ROLES = ["admin", "operator", "manager", "grid_leader", "patroller"];

export async function mount(root, ctx) {
  useStyles();
  ctx.setTitle(tb("admin.title"));
  const mine = SECTIONS.filter(([, roles]) => roles.includes(ctx.me.role)).map(([s]) => s);
  const section = ctx.params.section || mine[0] || "tokens";
  const body = h("div", { class: "admin-body" });
  replace(
    root,
    h("h1", {}, tb("admin.title")),
    h(
      "nav",
      { class: "tabs", "aria-label": tb("admin.sections") },
      h("ul", {}, mine.map((s) => h("li", {}, h("a", { href: `#/admin/${s}`, class: s === section ? "active" : null, "aria-current": s === section ? "page" : null }, tb(`admin.${s}`))))),
    ),
    body,
  );
  const render = { users, tokens, cameras, grants, audit }[section];
  if (!render) {
    body.append(h("div", { class: "notice error", role: "alert" }, ctx.t("router.unknown", { hash: location.hash })));
    return;
  }
  await render(body, ctx);
}

function failed(err, where) {
  const text = err instanceof ApiError ? err.message_for_user() : String(err);
  if (where) replace(where, h("div", { class: "notice error", role: "alert" }, text));
  else toast(text, { kind: "error", ms: 10000 });
}

async function act(ctx, fn, reload) {
  try {
    await fn();
    toast(tb("admin.done"), { kind: "ok" });
    await reload();
  } catch (err) {
    failed(err);
  }
}

function input(id, label, attrs = {}, help = null) {
  return h(
    "div",
    { class: "form-row" },
    h("label", { for: id }, label),
    h("input", { id, ...attrs, "aria-describedby": help ? `${id}-help` : null }),
    help ? h("small", { class: "hint", id: `${id}-help` }, help) : null,
  );
}

function selectRow(id, label, options, selected = "") {
  return h("div", { class: "form-row" }, h("label", { for: id }, label), h("select", { id }, options.map(([v, text]) => h("option", { value: v, selected: v === selected }, text))));
}

function grid(head, rows) {
  return h("table", { class: "table" }, h("thead", {}, h("tr", {}, head.map((x) => h("th", { scope: "col" }, x)))), h("tbody", {}, rows));
}

function value(root, id) {
  return root.querySelector(`#${id}`).value.trim();
}

// --- users ---------------------------------------------------------------------------------------------
async function users(body, ctx) {
  const list = h("div", {});
  const reload = async () => {
    let rows;
    try {
      rows = await ctx.api.get("/api/admin/users");
    } catch (err) {
      failed(err, list);
      return;
    }
    replace(
      list,
      grid(
        [tb("admin.username"), tb("admin.display_name"), tb("admin.role"), tb("admin.grids"), tb("admin.enabled"), tb("admin.actions")],
        rows.map((u) => {
          const gridsId = `grids-${u.id}`;
          const gridsInput = h("input", { id: gridsId, value: u.grid_codes.join(", "), size: 14 });
          return h(
            "tr",
            {},
            h("td", {}, u.username),
            h("td", {}, u.display_name),
            h("td", {}, ctx.label("role", u.role)),
            h(
              "td",
              {},
              h("label", { for: gridsId, class: "sr-only" }, tb("admin.grids_of", { user: u.username })),
              gridsInput,
              h(
                "button",
                {
                  type: "button",
                  class: "small",
                  "aria-label": `${tb("admin.save_grids")}：${u.username}`,
                  onclick: () => act(ctx, () => ctx.api.put(`/api/admin/users/${u.id}/grids`, { grid_codes: splitCodes(gridsInput.value) }), reload),
                },
                tb("admin.save_grids"),
              ),
            ),
            h("td", { class: u.enabled ? "ok" : "muted" }, u.enabled ? tb("admin.enabled.yes") : tb("admin.enabled.no")),
            h(
              "td",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: u.enabled ? "small danger" : "small",
                  "aria-label": `${u.enabled ? tb("admin.disable") : tb("admin.enable")}：${u.username}`,
                  onclick: () => act(ctx, () => ctx.api.post(`/api/admin/users/${u.id}/${u.enabled ? "disable" : "enable"}`), reload),
                },
                u.enabled ? tb("admin.disable") : tb("admin.enable"),
              ),
            ),
          );
        }),
      ),
    );
  };
  const form = h(
    "form",
    { class: "inline-form", "aria-label": tb("admin.new_user") },
    h("h2", {}, tb("admin.new_user")),
    input("nu-username", tb("admin.username"), { required: true, autocomplete: "off" }),
    input("nu-display", tb("admin.display_name")),
    selectRow("nu-role", tb("admin.role"), ROLES.map((r) => [r, ctx.label("role", r)]), "grid_leader"),
    input("nu-grids", tb("admin.grids"), {}, tb("admin.grids_help")),
    input("nu-password", tb("admin.password"), { type: "password", required: true, autocomplete: "new-password", minlength: 8 }),
    h("button", { type: "submit", class: "primary" }, tb("admin.create")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(
      ctx,
      () =>
        ctx.api.post("/api/admin/users", {
          username: value(form, "nu-username"),
          display_name: value(form, "nu-display"),
          role: value(form, "nu-role"),
          grid_codes: splitCodes(value(form, "nu-grids")),
          password: form.querySelector("#nu-password").value,
        }),
      async () => (form.reset(), reload()),
    );
  });
  replace(body, list, form);
  await reload();
}

function splitCodes(text) {
  return text.split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
}

// --- API tokens ------------------------------------------------------------------------------------
async function tokens(body, ctx) {
  const list = h("div", {});
  const shown = h("div", { "aria-live": "polite" });
  const admin = ctx.me.role === "admin";
  const reload = async () => {
    let rows;
    try {
      rows = await ctx.api.get(admin ? "/api/admin/tokens" : "/api/tokens");
    } catch (err) {
      failed(err, list);
      return;
    }
    replace(
      list,
      h("h2", {}, admin ? tb("admin.all_tokens") : tb("admin.my_tokens")),
      grid(
        [tb("admin.token_name"), tb("admin.token_owner"), tb("admin.token_scopes"), tb("admin.token_expires"), tb("admin.last_used"), tb("admin.enabled"), tb("admin.actions")],
        rows.map((tk) =>
          h(
            "tr",
            {},
            h("td", {}, tk.name),
            h("td", {}, tk.user_id),
            h("td", {}, tk.scopes.join(" ")),
            h("td", {}, tk.expires_at ? ctx.fmtTime(tk.expires_at) : "—"),
            h("td", {}, tk.last_used_at ? ctx.fmtTime(tk.last_used_at) : "—"),
            h("td", {}, tk.revoked_at ? tb("admin.token_revoked") : tb("admin.token_active")),
            h(
              "td",
              {},
              tk.revoked_at
                ? ""
                : h(
                    "button",
                    {
                      type: "button",
                      class: "small danger",
                      "aria-label": tb("admin.token_revoke_label", { name: tk.name }),
                      onclick: () => act(ctx, () => ctx.api.delete(tk.user_id === ctx.me.id ? `/api/tokens/${tk.id}` : `/api/admin/tokens/${tk.id}`), reload),
                    },
                    tb("admin.token_revoke"),
                  ),
            ),
          ),
        ),
      ),
    );
  };
  const form = h(
    "form",
    { class: "inline-form", "aria-label": tb("admin.token_new") },
    h("h2", {}, tb("admin.token_new")),
    input("tk-name", tb("admin.token_name"), { required: true }),
    selectRow("tk-scopes", tb("admin.token_scopes"), [["api:read", "api:read"], ["api:read api:write", "api:read api:write"]]),
    input("tk-expires", tb("admin.token_expires"), { type: "datetime-local" }),
    h("button", { type: "submit", class: "primary" }, tb("admin.create")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const expires = value(form, "tk-expires");
    try {
      const made = await ctx.api.post("/api/tokens", {
        name: value(form, "tk-name"),
        scopes: value(form, "tk-scopes").split(" "),
        expires_at: expires ? new Date(expires).toISOString() : null,
      });
      replace(shown, h("div", { class: "notice ok" }, tb("admin.token_shown_once"), " ", h("code", {}, made.token)));
      form.reset();
      await reload();
    } catch (err) {
      failed(err);
    }
  });
  replace(body, shown, list, form);
  await reload();
}

// --- cameras ---------------------------------------------------------------------------------------
// 分析码流: which stream the worker analyses; auto is the sub-stream when the camera has one.
function streamPicker(ctx, c, reload) {
  const options = ["auto", "sub", "main"].map((v) =>
    h(
      "option",
      { value: v, selected: v === c.analysis_stream, disabled: v === "sub" && !c.has_sub_stream },
      v === "auto" ? tb("admin.stream_auto", { analysed: tb(`admin.stream_${c.analysed_stream}`) }) : tb(`admin.stream_${v}`),
    ),
  );
  const select = h("select", { class: "small", "aria-label": tb("admin.camera_stream_label", { name: c.name }) }, options);
  select.value = c.analysis_stream;
  select.addEventListener("change", () => act(ctx, () => ctx.api.patch(`/api/cameras/${c.id}`, { analysis_stream: select.value }), reload));
  return h("span", { class: "stream-pick" }, select, c.has_sub_stream ? null : h("small", { class: "hint" }, tb("admin.stream_no_sub")));
}

async function cameras(body, ctx) {
  const list = h("div", {});
  const reload = async () => {
    let page;
    try {
      page = await ctx.api.get("/api/cameras", { limit: 1000 });
    } catch (err) {
      failed(err, list);
      return;
    }
    replace(
      list,
      grid(
        [tb("admin.camera_name"), tb("admin.camera_grid"), tb("admin.camera_status"), tb("admin.camera_stream"), tb("admin.camera_zones"), tb("admin.actions")],
        page.items.map((c) => {
          const action = c.enabled ? tb("admin.disable") : tb("admin.enable");
          return h(
            "tr",
            {},
            h("td", {}, c.name),
            h("td", {}, c.grid_name ? `${c.grid_name}（${c.grid_code}）` : "—"),
            h("td", {}, c.enabled ? tb(`status.${c.status}`) : tb("status.disabled")),
            h("td", {}, streamPicker(ctx, c, reload)),
            h("td", {}, h("a", { href: `#/zones/${c.id}`, "aria-label": tb("admin.camera_edit_zones", { name: c.name }) }, tb("zones.title"))),
            h(
              "td",
              {},
              h(
                "button",
                {
                  type: "button",
                  class: c.enabled ? "small danger" : "small",
                  "aria-label": tb("admin.camera_toggle", { action, name: c.name }),
                  onclick: () => act(ctx, () => ctx.api.patch(`/api/cameras/${c.id}`, { enabled: !c.enabled }), reload),
                },
                action,
              ),
            ),
          );
        }),
      ),
    );
  };
  const file = h("input", { id: "ci-file", type: "file", accept: ".csv,.yaml,.yml,text/csv", "aria-describedby": "ci-help" });
  const text = h("textarea", { id: "ci-text", rows: 5, placeholder: "name,url,sub_url,lon,lat,grid\ncam-1,rtsp://…/main,rtsp://…/sub,118.70,32.10,G1" });
  const format = h("select", { id: "ci-format" }, h("option", { value: "csv" }, "CSV"), h("option", { value: "yaml" }, "YAML"));
  const result = h("div", { "aria-live": "polite" });
  file.addEventListener("change", async () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return;
    text.value = await chosen.text();
    format.value = /\.ya?ml$/i.test(chosen.name) ? "yaml" : "csv";
  });
  const form = h(
    "form",
    { class: "inline-form", "aria-label": tb("admin.camera_import_title") },
    h("h2", {}, tb("admin.camera_import_title")),
    h("div", { class: "form-row" }, h("label", { for: "ci-file" }, tb("admin.camera_import_file")), file),
    h("div", { class: "form-row" }, h("label", { for: "ci-format" }, tb("admin.camera_import_format")), format),
    h("div", { class: "form-row wide" }, h("label", { for: "ci-text" }, tb("admin.camera_import_text")), text),
    h("button", { type: "submit", class: "primary" }, tb("admin.camera_import_submit")),
    h("small", { class: "hint", id: "ci-help" }, tb("admin.camera_import")),
    result,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const report = await ctx.api.post("/api/cameras/import", { text: text.value, format: format.value });
      text.value = ""; // the stream URLs carry passwords: do not leave them on the screen
      file.value = "";
      replace(
        result,
        h("p", { class: "notice ok", role: "status" }, tb("admin.camera_imported", { created: report.created, updated: report.updated })),
        report.outside.length ? h("p", { class: "notice warn" }, tb("admin.camera_outside", { names: report.outside.join("、") })) : null,
      );
      await reload();
    } catch (err) {
      failed(err, result);
    }
  });
  replace(body, list, form);
  await reload();
}

// --- grants ----------------------------------------------------------------------------------------
async function grants(body, ctx) {
  const list = h("div", {});
  const reload = async () => {
    let rows;
    try {
      rows = await ctx.api.get("/api/grants");
    } catch (err) {
      failed(err, list);
      return;
    }
    replace(
      list,
      grid(
        [tb("admin.grant_camera"), tb("admin.grant_grantee"), tb("admin.grant_from"), tb("admin.grant_ends"), tb("admin.grant_reason"), tb("admin.enabled"), tb("admin.actions")],
        rows.map((g) =>
          h(
            "tr",
            {},
            h("td", {}, g.camera_name),
            h("td", {}, g.grantee),
            h("td", {}, ctx.fmtTime(g.starts_at)),
            h("td", {}, ctx.fmtTime(g.ends_at)),
            h("td", {}, g.reason),
            h("td", { class: g.active ? "ok" : "muted" }, g.active ? tb("admin.grant_active") : tb("admin.grant_inactive")),
            h(
              "td",
              {},
              g.active
                ? h(
                    "button",
                    {
                      type: "button",
                      class: "small danger",
                      "aria-label": tb("admin.grant_revoke_label", { grantee: g.grantee, camera: g.camera_name }),
                      onclick: () => act(ctx, () => ctx.api.delete(`/api/grants/${g.id}`), reload),
                    },
                    tb("admin.grant_revoke"),
                  )
                : "",
            ),
          ),
        ),
      ),
    );
  };
  let cams = [];
  try {
    cams = (await ctx.api.get("/api/cameras", { limit: 1000 })).items;
  } catch {
    cams = [];
  }
  const form = h(
    "form",
    { class: "inline-form", "aria-label": tb("admin.grant_new") },
    h("h2", {}, tb("admin.grant_new")),
    selectRow("gr-camera", tb("admin.grant_camera"), cams.map((c) => [String(c.id), c.name])),
    input("gr-grantee", tb("admin.grant_grantee"), { required: true }),
    input("gr-ends", tb("admin.grant_ends"), { type: "datetime-local", required: true }),
    input("gr-reason", tb("admin.grant_reason")),
    h("button", { type: "submit", class: "primary" }, tb("admin.create")),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    act(
      ctx,
      () =>
        ctx.api.post("/api/grants", {
          camera_id: Number(value(form, "gr-camera")),
          grantee: value(form, "gr-grantee"),
          ends_at: new Date(value(form, "gr-ends")).toISOString(),
          reason: value(form, "gr-reason"),
        }),
      async () => (form.reset(), reload()),
    );
  });
  replace(body, list, form);
  await reload();
}

// --- audit log -------------------------------------------------------------------------------------
async function audit(body, ctx) {
  const out = h("div", {});
  const csv = h("a", { class: "button", href: "/api/audit.csv", download: "gridpatrol-audit.csv" }, tb("admin.audit_csv"));
  let offset = 0;
  const limit = 50;
  const form = h(
    "form",
    { class: "filters", "aria-label": tb("admin.audit_filter") },
    input("au-user", tb("admin.audit_user")),
    selectRow("au-action", tb("admin.audit_action"), [["", tb("common.any")], ...["view", "deny", "change", "login", "login_failed"].map((a) => [a, a])]),
    selectRow("au-channel", tb("admin.audit_channel"), [["", tb("common.any")], ...["api", "snapshot", "wall", "evidence", "gateway", "sse"].map((a) => [a, a])]),
    input("au-object", tb("admin.audit_object")),
    input("au-since", tb("admin.audit_since"), { type: "datetime-local" }),
    input("au-until", tb("admin.audit_until"), { type: "datetime-local" }),
    h("button", { type: "submit", class: "primary" }, tb("admin.audit_filter")),
    csv,
  );
  const query = () => {
    const at = (id) => (value(form, id) ? new Date(value(form, id)).toISOString() : null);
    return { user: value(form, "au-user"), action: value(form, "au-action"), channel: value(form, "au-channel"), object_type: value(form, "au-object"), since: at("au-since"), until: at("au-until") };
  };
  const reload = async () => {
    const q = query();
    const params = new URLSearchParams(Object.entries(q).filter(([, v]) => v));
    csv.href = `/api/audit.csv${params.toString() ? `?${params}` : ""}`;
    let page;
    try {
      page = await ctx.api.get("/api/audit", { ...q, limit, offset });
    } catch (err) {
      failed(err, out);
      return;
    }
    replace(
      out,
      h("p", { class: "muted" }, tb("admin.audit_total", { n: page.total })),
      grid(
        [tb("admin.audit_at"), tb("admin.audit_user"), tb("admin.audit_action"), tb("admin.audit_channel"), tb("admin.audit_object"), tb("admin.audit_detail"), tb("admin.audit_addr")],
        page.items.map((r) =>
          h(
            "tr",
            { class: r.action === "deny" ? "deny" : null },
            h("td", {}, ctx.fmtTime(r.at)),
            h("td", {}, r.username || "—"),
            h("td", {}, r.action),
            h("td", {}, r.channel),
            h("td", {}, `${r.object_type} ${r.object_id}`),
            h("td", { class: "detail" }, Object.keys(r.detail || {}).length ? JSON.stringify(r.detail) : ""),
            h("td", {}, r.remote_addr || ""),
          ),
        ),
      ),
      h(
        "div",
        { class: "pager" },
        h("button", { type: "button", disabled: offset === 0, onclick: () => ((offset = Math.max(0, offset - limit)), reload()) }, tb("admin.prev")),
        h("button", { type: "button", disabled: offset + limit >= page.total, onclick: () => ((offset += limit), reload()) }, tb("admin.next")),
      ),
    );
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    offset = 0;
    reload();
  });
  replace(body, form, out);
  await reload();
}
