// 工单: the desk (list with filters that updates live over SSE | detail with evidence first, facts, deadlines,
// escalation, the history as a timeline, and the actions the viewer's role may take) and the new-case form.
// On a phone: the list, then the detail full-screen with the action buttons fixed at the bottom.

import { h, append, clear, replace, field, select, toast } from "../dom.js";
import { ApiError, fileAsDataUrl, openTicketFeed } from "../api.js";
import { t, label, fmtTime, fmtDuration } from "../i18n.js";
import { loadCameras } from "./wall.js";
import { to } from "../i18n_org.js";

const LINKAGE_KINDS = ["law_enforcement", "market", "fire_rescue", "police", "transport", "environment", "other"];

const STATES = ["open", "dispatched", "accepted", "rejected", "resolved", "verified", "closed", "reopened"];
const CATEGORIES = ["road_occupation", "fire_lane_blockage", "crowding", "other"];
const SOURCES = ["camera", "patrol", "hotline_12345", "police_110", "api"];
const WAITING_ACCEPT = ["open", "dispatched", "rejected", "reopened"];
const WAITING_RESOLVE = [...WAITING_ACCEPT, "accepted"];
const CENTRE = ["admin", "operator"];
const SUPERVISORS = ["admin", "operator", "manager"];
const HANDLERS = ["admin", "manager", "grid_leader"];
/** The ticket state machine as the server applies it (models/tickets/desk.py MOVES): from, who. */
const MOVES = {
  dispatch: { from: ["open", "rejected", "reopened"], roles: SUPERVISORS },
  accept: { from: ["dispatched", "reopened"], roles: HANDLERS },
  reject: { from: ["dispatched", "reopened"], roles: HANDLERS, note: true },
  resolve: { from: ["accepted"], roles: HANDLERS, photos: true },
  verify: { from: ["resolved"], roles: SUPERVISORS },
  close: { from: ["verified"], roles: SUPERVISORS },
  dismiss: { from: WAITING_RESOLVE, roles: CENTRE, note: true, danger: true },
  reopen: { from: ["resolved", "verified", "closed"], roles: SUPERVISORS, note: true },
};
const MAX_PHOTOS = 4;

/** The moves this viewer's role may make from the ticket's state (the server still decides). */
export function actionsFor(role, state) {
  return Object.entries(MOVES).filter(([, m]) => m.roles.includes(role) && m.from.includes(state)).map(([a]) => a);
}

/** Seconds past the deadline that applies now (accept or resolve), or 0 when not late. */
export function lateBy(ticket, now = Date.now()) {
  const deadline = WAITING_ACCEPT.includes(ticket.state) ? ticket.accept_by : WAITING_RESOLVE.includes(ticket.state) ? ticket.resolve_by : null;
  if (!deadline) return 0;
  return Math.max(0, (now - new Date(deadline).getTime()) / 1000);
}

// the filters outlive a visit to the detail (module state, this tab only)
const filters = { state: "", category: "", grid: "", source: "", overdue: false };

function stateBadge(state) {
  const colour = { closed: "grey", verified: "green", resolved: "green", rejected: "amber", reopened: "amber" }[state] || "";
  return h("span", { class: ["badge", colour] }, label("state", state));
}

function overdueBadge(ticket) {
  const late = ticket.overdue ? lateBy(ticket) : 0;
  return ticket.overdue ? h("span", { class: "badge red overdue-badge" }, t("tickets.overdue_by", { d: fmtDuration(late) })) : null;
}

async function filesAsPhotos(input) {
  const files = Array.from(input.files || []).slice(0, MAX_PHOTOS);
  return Promise.all(files.map(fileAsDataUrl));
}

function photoInput(name) {
  return h("input", { type: "file", name, accept: "image/jpeg,image/png", capture: "environment", multiple: true });
}

export async function mount(root, ctx) {
  if (ctx.params.mode === "new") return mountNew(root, ctx);
  return mountDesk(root, ctx);
}

// -- the desk ----------------------------------------------------------------------------------------------

async function mountDesk(root, ctx) {
  const { api, me } = ctx;
  const currentId = ctx.params.id ? Number(ctx.params.id) : null;
  ctx.setTitle(t("tickets.title"));
  const grids = await api.get("/api/grids").catch(() => []);
  const gridOptions = [];
  const walk = (node, depth) => {
    gridOptions.push([node.code, `${"　".repeat(depth)}${node.name}`, node.kind]);
    node.children.forEach((c) => walk(c, depth + 1));
  };
  grids.forEach((g) => walk(g, 0));

  const rows = h("ul", { class: "rows", "aria-label": t("tickets.title") });
  const total = h("span", {});
  const liveWord = h("span", { class: "live-word", role: "status" });
  const detail = h("section", { class: "detail", "aria-label": t("tickets.facts"), tabindex: "-1" });
  const desk = h("div", { class: ["desk", currentId ? "has-detail" : null] });

  const filterBar = h(
    "div",
    { class: "filters", role: "search" },
    select([["", `${t("tickets.filter.state")}：${t("common.all")}`], ...STATES.map((s) => [s, label("state", s)])], { selected: filters.state, "aria-label": t("tickets.filter.state"), name: "state", onchange: (e) => setFilter("state", e.target.value) }),
    select([["", `${t("tickets.filter.category")}：${t("common.all")}`], ...CATEGORIES.map((c) => [c, label("category", c)])], { selected: filters.category, "aria-label": t("tickets.filter.category"), name: "category", onchange: (e) => setFilter("category", e.target.value) }),
    select([["", `${t("tickets.filter.grid")}：${t("common.all")}`], ...gridOptions.map(([code, name]) => [code, name])], { selected: filters.grid, "aria-label": t("tickets.filter.grid"), name: "grid", onchange: (e) => setFilter("grid", e.target.value) }),
    select([["", `${t("tickets.filter.source")}：${t("common.all")}`], ...SOURCES.map((s) => [s, label("source", s)])], { selected: filters.source, "aria-label": t("tickets.filter.source"), name: "source", onchange: (e) => setFilter("source", e.target.value) }),
    h("label", { class: "inline" }, h("input", { type: "checkbox", name: "overdue", checked: filters.overdue, onchange: (e) => setFilter("overdue", e.target.checked) }), t("tickets.filter.overdue")),
    h("a", { class: "button primary", href: "#/tickets/new" }, t("tickets.new")),
  );

  function setFilter(key, value) {
    filters[key] = value;
    loadList();
  }

  let listSerial = 0;
  async function loadList(flashId = null) {
    const serial = ++listSerial;
    const page = await api.get("/api/tickets", {
      state: filters.state || null, category: filters.category || null, grid: filters.grid || null,
      source: filters.source || null, overdue: filters.overdue ? "true" : null, limit: 100,
    });
    if (serial !== listSerial) return;
    const items = page.items;
    total.textContent = t("tickets.total", { n: page.total });
    replace(rows, items.length ? items.map((tk) => row(tk, tk.id === flashId)) : h("li", { class: "muted", style: { padding: "12px" } }, t("tickets.empty")));
  }

  function row(tk, flash) {
    const late = tk.overdue ? lateBy(tk) : 0;
    return h(
      "li",
      { class: [tk.id === currentId ? "current" : null, flash ? "flash" : null], dataset: { ticket: tk.id } },
      h("a", { href: `#/tickets/${tk.id}`, "aria-current": tk.id === currentId ? "true" : null },
        h("span", { class: "title" }, `${label("category", tk.category)} · ${tk.camera_name || tk.grid_name || ""}`),
        stateBadge(tk.state),
        h("span", { class: "meta" },
          `#${tk.id} ${tk.case_code} · ${label("source", tk.source)} · ${fmtTime(tk.opened_at)}`,
          tk.overdue ? h("span", { class: "overdue" }, ` · ${t("tickets.overdue_by", { d: fmtDuration(late) })}`) : null,
        ),
      ),
    );
  }

  // the detail ----------------------------------------------------------------------------------------------
  let shown = null;
  async function loadDetail() {
    if (!currentId) {
      replace(detail, h("p", { class: "muted" }, t("tickets.select")));
      return;
    }
    try {
      shown = await api.get(`/api/tickets/${currentId}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        replace(detail, h("a", { class: "button back", href: "#/tickets" }, "← ", t("tickets.back")), h("div", { class: "notice error", role: "alert" }, t("error.not_found")));
        return;
      }
      throw err;
    }
    renderDetail(shown);
  }

  function renderDetail(tk) {
    const keep = detail.querySelector("textarea[name=note]");
    const note = keep ? keep.value : "";
    ctx.setTitle(`${label("category", tk.category)} #${tk.id}`);
    const evidence = [tk.evidence_url, ...tk.occurrences.map((o) => o.evidence_url)].filter((u, i, all) => u && all.indexOf(u) === i);
    const photos = tk.photo_urls.filter((u) => !evidence.includes(u));
    // event clips, oldest first; a clip already playing keeps playing through a live refresh
    const playing = new Map([...detail.querySelectorAll("video[data-clip]")].map((v) => [v.dataset.clip, v]));
    const clips = tk.occurrences.filter((o) => o.clip).reverse().map((o) =>
      h("figure", { class: "clip", "data-clip-state": o.clip },
        o.clip === "ready"
          ? playing.get(o.clip_url) || h("video", { src: o.clip_url, controls: true, preload: "metadata", playsinline: true, "data-clip": o.clip_url, "aria-label": `${t("tickets.clip")} ${fmtTime(o.at)}` })
          : h("p", { class: "muted" }, t(o.clip === "pending" ? "tickets.clip_pending" : "tickets.clip_unavailable")),
        h("figcaption", { class: "muted" }, `${t("tickets.clip")} · ${fmtTime(o.at)}`)));
    const dl = (pairs) => h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const late = lateBy(tk);
    replace(
      detail,
      h("a", { class: "button back", href: "#/tickets" }, "← ", t("tickets.back")),
      h("div", { class: "ticket-head" },
        h("h1", {}, `${label("category", tk.category)} #${tk.id}`), stateBadge(tk.state), overdueBadge(tk),
        tk.escalation_level ? h("span", { class: "badge amber" }, `${t("tickets.escalation")}：${t(`tickets.escalation.${tk.escalation_level}`)}`) : null,
      ),
      h("h2", {}, t("tickets.evidence")),
      evidence.length
        ? h("div", { class: "evidence" },
            h("a", { href: evidence[0], target: "_blank", rel: "noopener" }, h("img", { src: evidence[0], alt: `${t("tickets.evidence")} #${tk.id}`, class: "main-evidence" })),
            evidence.length > 1 ? h("div", { class: "thumbs" }, evidence.slice(1).map((u) => h("a", { href: u, target: "_blank", rel: "noopener" }, h("img", { src: u, alt: t("tickets.evidence") })))) : null)
        : h("p", { class: "muted" }, t("common.none")),
      clips.length ? [h("h3", {}, t("tickets.clip")), h("div", { class: "evidence clips" }, clips)] : null,
      photos.length ? [h("h3", {}, t("tickets.photos")), h("div", { class: "evidence thumbs" }, photos.map((u) => h("a", { href: u, target: "_blank", rel: "noopener" }, h("img", { src: u, alt: t("tickets.photos") }))))] : null,
      h("h2", {}, t("tickets.facts")),
      dl([
        [t("tickets.case_code"), tk.case_code],
        [t("tickets.filter.source"), label("source", tk.source)],
        [t("tickets.camera"), tk.camera_id ? h("a", { href: `#/live/${tk.camera_id}` }, tk.camera_name || `#${tk.camera_id}`) : null],
        [t("tickets.grid"), tk.grid_name ? `${tk.grid_name}（${tk.grid_code}）` : null],
        [t("tickets.zone"), tk.zone],
        [t("tickets.assignee"), tk.assignee],
        [t("tickets.opened"), fmtTime(tk.opened_at)],
        [t("tickets.accept_by"), tk.accept_by ? h("span", { class: tk.overdue && WAITING_ACCEPT.includes(tk.state) ? "overdue" : null }, fmtTime(tk.accept_by), tk.overdue && WAITING_ACCEPT.includes(tk.state) ? ` · ${t("tickets.overdue_by", { d: fmtDuration(late) })}` : "") : null],
        [t("tickets.resolve_by"), tk.resolve_by ? h("span", { class: tk.overdue && tk.state === "accepted" ? "overdue" : null }, fmtTime(tk.resolve_by), tk.overdue && tk.state === "accepted" ? ` · ${t("tickets.overdue_by", { d: fmtDuration(late) })}` : "") : null],
        [t("tickets.escalation"), t(`tickets.escalation.${tk.escalation_level}`)],
        [t("tickets.occurrences"), String(tk.occurrence_count)],
        [t("tickets.condition_active"), tk.camera_id ? (tk.condition_active ? t("common.yes") : t("common.no")) : null],
        [t("tickets.location"), tk.lon !== null && tk.lon !== undefined ? `${tk.lon.toFixed(6)}, ${tk.lat.toFixed(6)}` : null],
        [t("tickets.description"), tk.description],
      ]),
      linkageSection(tk),
      h("h2", {}, t("tickets.history")),
      h("ol", { class: "timeline" }, tk.history.map((step) =>
        h("li", {},
          h("span", { class: "who" }, step.actor || t("tickets.system")), " ",
          label("action", step.action), step.from_state ? ` · ${label("state", step.from_state)} → ${label("state", step.to_state)}` : ` · ${label("state", step.to_state)}`,
          h("time", { datetime: step.at }, fmtTime(step.at)),
          step.note ? h("p", { class: "note" }, step.note) : null,
          step.photo_urls.length ? h("div", {}, step.photo_urls.map((u) => h("a", { href: u, target: "_blank", rel: "noopener" }, h("img", { src: u, alt: t("tickets.photos") })))) : null,
        ),
      )),
      actionsBar(tk, note),
    );
  }

  // 联动协办: the lead, each department part with its state and deadline, linkage requests, merged sources;
  // a grid leader may ask for a department (请求联动) while the ticket is in hand
  function linkageSection(tk) {
    const box = h("section", { class: "linkage", "aria-labelledby": `linkage-h-${tk.id}` }, h("h2", { id: `linkage-h-${tk.id}` }, to("link.title")));
    api.get(`/api/tickets/${tk.id}/linkage`).then((lk) => {
      const parts = lk.parts.map((p) =>
        h("li", { class: p.overdue ? "overdue" : null },
          `${p.department_name} · ${to(`part.state.${p.state}`)} · ${t("tickets.resolve_by")} ${fmtTime(p.resolve_by)}`,
          p.overdue ? ` · ${to("dept.overdue")}` : "", p.note ? h("p", { class: "note" }, p.note) : null));
      const requests = lk.requests.filter((r) => !r.part_id).map((r) =>
        h("li", {}, to("link.req_state", { kind: to(`kind.${r.kind}`), state: r.answered_at ? label("action", "linkage_declined") : to("link.pending") })));
      const items = [...parts, ...requests];
      let form = null;
      if (me.role === "grid_leader" && ["dispatched", "accepted", "reopened"].includes(tk.state)) {
        const kind = select(LINKAGE_KINDS.map((k) => [k, to(`kind.${k}`)]), { name: "linkage-kind" });
        const reason = h("input", { type: "text", name: "linkage-reason", maxlength: "2000" });
        const message = h("p", { class: "form-error", role: "alert" });
        const ask = h("button", { type: "button", onclick: async () => {
          ask.disabled = true;
          message.textContent = "";
          try {
            await api.post(`/api/tickets/${tk.id}/linkage`, { kind: kind.value, reason: reason.value.trim() });
            toast(to("link.requested"), { kind: "ok" });
            loadDetail();
          } catch (err) {
            message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
            ask.disabled = false;
          }
        } }, to("link.request"));
        form = h("div", { class: "row linkage-request" }, field(to("link.kind"), kind), field(to("link.reason"), reason), ask, message);
      }
      append(box, [
        lk.lead ? h("p", {}, to("link.lead", { lead: lk.lead }), lk.lead_done ? to("link.lead_done") : "") : null,
        items.length ? h("ul", { class: "parts" }, items) : h("p", { class: "muted" }, to("link.none")),
        lk.sources.length > 1 ? h("p", {}, to("link.sources", { list: lk.sources.map((s) => label("source", s)).join("、") })) : null,
        form,
      ]);
    }).catch(() => append(box, [h("p", { class: "muted" }, to("link.none"))]));
    return box;
  }

  function actionsBar(tk, note) {
    const allowed = actionsFor(me.role, tk.state);
    if (!allowed.length) return h("p", { class: "muted ticket-actions-none" }, t("tickets.no_actions"));
    const message = h("p", { class: "form-error", role: "alert" });
    const noteBox = h("textarea", { name: "note", maxlength: "2000", rows: "2" }, note);
    const photos = photoInput("photos");
    const dispatchGrid = allowed.includes("dispatch")
      ? select([["", "—"], ...gridOptions.filter(([, , kind]) => kind === "grid").map(([code, name]) => [code, name.trim()])], { name: "dispatch-grid", "aria-label": `${label("action", "dispatch")} → ${t("tickets.grid")}` })
      : null;
    const buttons = allowed.map((action) =>
      h("button", { type: "button", class: MOVES[action].danger ? "danger" : "primary", dataset: { action }, onclick: () => act(action) }, label("action", action)),
    );
    async function act(action) {
      message.textContent = "";
      buttons.forEach((b) => (b.disabled = true));
      try {
        const body = { action, note: noteBox.value.trim(), photos: await filesAsPhotos(photos) };
        if (action === "dispatch" && dispatchGrid && dispatchGrid.value) body.grid = dispatchGrid.value;
        shown = await api.post(`/api/tickets/${tk.id}/transitions`, body);
        noteBox.value = "";
        toast(t("tickets.moved", { action: label("action", action) }), { kind: "ok" });
        renderDetail(shown);
        loadList();
      } catch (err) {
        message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
        buttons.forEach((b) => (b.disabled = false));
      }
    }
    return h(
      "div", { class: "ticket-actions", role: "group", "aria-label": t("tickets.history") },
      h("div", { class: "compose" },
        field(t("tickets.note"), noteBox),
        field(t("tickets.action_photos"), photos),
        dispatchGrid ? field(`${label("action", "dispatch")} → ${t("tickets.grid")}`, dispatchGrid) : null,
      ),
      message,
      buttons,
    );
  }

  replace(
    root,
    h("div", { class: "desk-wrap", style: { height: "100%" } },
      replace(desk,
        h("section", { class: "list", "aria-label": t("tickets.title") }, filterBar, h("div", { class: "list-head" }, total, liveWord), rows),
        detail,
      ),
    ),
  );
  await Promise.all([loadList(), loadDetail()]);

  let pending = null;
  const feed = openTicketFeed(api, {
    onTicket(n) {
      clearTimeout(pending);
      pending = setTimeout(() => {
        loadList(n.ticket_id).catch((err) => console.error(err));
        if (n.ticket_id === currentId) loadDetail().catch((err) => console.error(err));
      }, 300);
    },
    onScope: () => loadList(),
    onState(on) {
      liveWord.textContent = on ? `● ${t("tickets.live_on")}` : t("tickets.live_off");
      liveWord.className = on ? "live-word ok" : "live-word off";
    },
  });
  // overdue durations grow: repaint the list every half minute
  const timer = setInterval(() => loadList().catch(() => {}), 30000);
  return () => {
    feed.close();
    clearTimeout(pending);
    clearInterval(timer);
  };
}

// -- a new case --------------------------------------------------------------------------------------------

async function mountNew(root, ctx) {
  const { api, me } = ctx;
  ctx.setTitle(t("new.title"));
  const cameras = (await loadCameras(api).catch(() => [])).filter((c) => c.lon !== null && c.lat !== null);
  const message = h("p", { class: "form-error", role: "alert" });
  const category = select(CATEGORIES.map((c) => [c, label("category", c)]), { name: "category", required: true });
  // a source other than patrol is the centre's (or an intake token's): the API refuses it to others
  const sources = CENTRE.includes(me.role) ? ["patrol", "hotline_12345", "police_110", "api"] : ["patrol"];
  const source = select(sources.map((s) => [s, label("source", s)]), { name: "source" });
  const lon = h("input", { name: "lon", type: "number", step: "0.000001", min: "-180", max: "180", required: true, inputmode: "decimal" });
  const lat = h("input", { name: "lat", type: "number", step: "0.000001", min: "-90", max: "90", required: true, inputmode: "decimal" });
  const camera = select([["", "—"], ...cameras.map((c) => [c.id, `${c.name}${c.grid_name ? `（${c.grid_name}）` : ""}`])], { name: "camera" });
  camera.addEventListener("change", () => {
    const cam = cameras.find((c) => String(c.id) === camera.value);
    if (cam) {
      lon.value = cam.lon.toFixed(6);
      lat.value = cam.lat.toFixed(6);
    }
  });
  const description = h("textarea", { name: "description", required: true, maxlength: "2000", rows: "4" });
  const photos = photoInput("photos");
  const submit = h("button", { type: "submit", class: "primary" }, t("common.submit"));
  const form = h(
    "form", { class: "card new-case", "aria-labelledby": "new-title" },
    h("h1", { id: "new-title" }, t("new.title")),
    h("div", { class: "row" }, field(t("new.category"), category), field(t("new.source"), source)),
    field(t("new.pick_camera"), camera),
    h("div", { class: "row" }, field(t("new.lon"), lon), field(t("new.lat"), lat)),
    field(t("new.description"), description),
    field(t("new.photos"), photos),
    message,
    h("div", { class: "actions" }, submit, h("a", { class: "button ghost", href: "#/tickets" }, t("common.cancel"))),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    submit.disabled = true;
    try {
      const ticket = await api.post("/api/tickets", {
        category: category.value, source: source.value, lon: Number(lon.value), lat: Number(lat.value),
        description: description.value.trim(), photos: await filesAsPhotos(photos),
      });
      toast(t("new.created", { code: `${ticket.case_code} #${ticket.id}` }), { kind: "ok" });
      ctx.navigate(`#/tickets/${ticket.id}`);
    } catch (err) {
      message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
      submit.disabled = false;
    }
  });
  replace(root, form);
}
