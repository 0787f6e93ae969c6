// Patrol points (#/patrol/points) for operators and managers: the points of their area on a map (the
// vendored Leaflet, no base map unless one is configured), a click picks the place, a form sets the
// radius, what to check, how often and the check-in window. Anyone else sees the list read-only.

import { ApiError } from "../api.js";
import { h, field, replace, select, toast } from "../dom.js";
import { tp } from "../i18n_patrol.js";

// no zoom or fade animations: there is no base map to animate, and Leaflet throws (_leaflet_pos) when a
// page leaves (map.remove()) in the middle of one
const STILL = { zoomAnimation: false, fadeAnimation: false, markerZoomAnimation: false };

const EMPTY = { name: "", lon: "", lat: "", radius_m: 50, checklist: "", frequency: "daily", weekdays: [], window_start: "08:00", window_end: "18:00", enabled: true };

export async function mount(root, ctx) {
  ctx.setTitle(tp("points.title"));
  const mayManage = ["admin", "operator", "manager"].includes(ctx.me.role);
  let points = [];
  let editing = null;
  let map = null;
  let L = null;
  let layer = null;
  let pick = null;
  const mapBox = h("div", { id: "points-map", style: { height: "360px", border: "1px solid #d8dee6" }, "aria-label": tp("points.map_hint") });
  const listBox = h("div", { id: "points-list" });
  const formBox = h("div", { id: "points-form" });
  replace(
    root,
    h(
      "section",
      { style: { padding: "12px", display: "grid", gap: "12px", gridTemplateColumns: "minmax(0, 2fr) minmax(280px, 1fr)" }, "aria-labelledby": "points-h" },
      h("div", {}, h("h1", { id: "points-h" }, tp("points.title")), h("p", { class: "muted" }, tp("points.map_hint")), mapBox, h("h2", {}, tp("points.list")), listBox),
      h("div", {}, formBox),
    ),
  );

  async function load() {
    points = await ctx.api.get("/api/patrol/points");
    renderList();
    drawPoints();
  }

  function renderList() {
    if (!points.length) {
      replace(listBox, h("p", { class: "muted" }, tp("points.none")));
      return;
    }
    replace(
      listBox,
      h(
        "table",
        { class: "table" },
        h("thead", {}, h("tr", {}, [tp("points.name"), tp("points.grid"), tp("points.frequency"), tp("patrol.window", { w: "" }), tp("points.radius"), ""].map((x) => h("th", {}, x)))),
        h(
          "tbody",
          {},
          points.map((p) =>
            h(
              "tr",
              { dataset: { pointId: String(p.id) } },
              h("td", {}, p.name, p.enabled ? "" : ` (${ctx.t("common.no")}${tp("points.enabled")})`),
              h("td", {}, `${p.grid_name}（${p.grid_code}）`),
              h("td", {}, p.frequency === "weekly" ? `${tp("points.frequency.weekly")} ${p.weekdays.map((d) => tp(`weekday.${d}`)).join("、")}` : tp("points.frequency.daily")),
              h("td", {}, `${p.window_start}–${p.window_end}`),
              h("td", {}, String(Math.round(p.radius_m))),
              h("td", {}, p.may_edit ? h("button", { type: "button", onclick: () => edit(p) }, tp("points.edit")) : null),
            ),
          ),
        ),
      ),
    );
  }

  async function ensureMap() {
    if (map) return;
    try {
      L = await import("/vendor/leaflet/leaflet-src.esm.js");
    } catch {
      mapBox.textContent = tp("points.map_hint");
      return;
    }
    if (!document.querySelector('link[href="/vendor/leaflet/leaflet.css"]')) {
      document.head.append(Object.assign(document.createElement("link"), { rel: "stylesheet", href: "/vendor/leaflet/leaflet.css" }));
    }
    map = L.map(mapBox, { attributionControl: false, ...STILL });
    map.setView([32.1, 118.7], 13);
    try {
      const tiles = localStorage.getItem("gp.map.tiles") || "";
      if (/^https?:\/\/.+\{z\}.*\{x\}.*\{y\}/.test(tiles)) L.tileLayer(tiles, { maxZoom: 20 }).addTo(map);
    } catch {
      /* no storage: no base map */
    }
    try {
      const grids = await ctx.api.get("/api/dashboard/map");
      const polygons = (grids.features || []).filter((f) => f.properties.layer === "grid" && f.properties.kind === "grid");
      const g = L.geoJSON({ type: "FeatureCollection", features: polygons }, { style: { color: "#495057", weight: 1, fillOpacity: 0.05 } }).addTo(map);
      if (g.getBounds().isValid()) map.fitBounds(g.getBounds(), { padding: [12, 12] });
    } catch {
      /* the grid outlines are a convenience */
    }
    map.on("click", (e) => {
      if (!editing) return;
      editing.lon = Number(e.latlng.lng.toFixed(6));
      editing.lat = Number(e.latlng.lat.toFixed(6));
      renderForm();
      showPick();
    });
  }

  function drawPoints() {
    if (!map) return;
    if (layer) layer.remove();
    layer = L.layerGroup(points.map((p) => L.circle([p.lat, p.lon], { radius: p.radius_m, color: p.enabled ? "#0b5cad" : "#757575" }).bindTooltip(p.name))).addTo(map);
    if (points.length && !editing) map.fitBounds(L.featureGroup(layer.getLayers()).getBounds(), { padding: [24, 24], maxZoom: 17 });
  }

  function showPick() {
    if (!map || !editing || editing.lon === "" || editing.lat === "") return;
    if (pick) pick.remove();
    pick = L.circle([editing.lat, editing.lon], { radius: Number(editing.radius_m) || 50, color: "#c62828" }).addTo(map);
  }

  function edit(p) {
    editing = p ? { ...p, weekdays: [...p.weekdays] } : { ...EMPTY, weekdays: [] };
    renderForm();
    showPick();
  }

  function renderForm() {
    if (!mayManage) {
      replace(formBox);
      return;
    }
    if (!editing) {
      replace(formBox, h("button", { type: "button", class: "primary", id: "point-new", onclick: () => edit(null) }, tp("points.new")));
      return;
    }
    const e = editing;
    const input = (key, attrs = {}) =>
      h("input", { name: key, value: e[key] === "" ? "" : String(e[key]), oninput: (ev) => (e[key] = ev.target.value), ...attrs });
    const weekdays = h(
      "fieldset",
      { style: { border: "none", padding: 0 } },
      h("legend", {}, tp("points.weekdays")),
      [0, 1, 2, 3, 4, 5, 6].map((d) =>
        h("label", { class: "inline", style: { marginRight: "6px" } },
          h("input", { type: "checkbox", checked: e.weekdays.includes(d), onchange: (ev) => (e.weekdays = ev.target.checked ? [...e.weekdays, d] : e.weekdays.filter((x) => x !== d)) }),
          tp(`weekday.${d}`)),
      ),
    );
    const message = h("p", { class: "form-error", role: "alert" });
    replace(
      formBox,
      h(
        "form",
        {
          class: "card",
          "aria-labelledby": "point-form-h",
          onsubmit: async (ev) => {
            ev.preventDefault();
            const body = {
              name: e.name, lon: Number(e.lon), lat: Number(e.lat), radius_m: Number(e.radius_m), checklist: e.checklist,
              frequency: e.frequency, weekdays: e.frequency === "weekly" ? e.weekdays : [], window_start: e.window_start,
              window_end: e.window_end, enabled: Boolean(e.enabled),
            };
            try {
              const saved = e.id ? await ctx.api.put(`/api/patrol/points/${e.id}`, body) : await ctx.api.post("/api/patrol/points", body);
              toast(tp("points.saved", { name: saved.name }), { kind: "ok" });
              editing = null;
              if (pick) pick.remove();
              renderForm();
              await load();
            } catch (err) {
              message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
            }
          },
        },
        h("h2", { id: "point-form-h" }, e.id ? tp("points.edit") : tp("points.new")),
        field(tp("points.name"), input("name", { required: true, maxlength: 200 })),
        field(tp("points.lon"), input("lon", { required: true, inputmode: "decimal" })),
        field(tp("points.lat"), input("lat", { required: true, inputmode: "decimal" })),
        field(tp("points.radius"), input("radius_m", { type: "number", min: 1, max: 5000 })),
        field(tp("points.checklist"), h("textarea", { name: "checklist", oninput: (ev) => (e.checklist = ev.target.value) }, e.checklist)),
        field(tp("points.frequency"), select([["daily", tp("points.frequency.daily")], ["weekly", tp("points.frequency.weekly")]], {
          selected: e.frequency, name: "frequency", onchange: (ev) => ((e.frequency = ev.target.value), renderForm()),
        })),
        e.frequency === "weekly" ? weekdays : null,
        field(tp("points.window_start"), input("window_start", { pattern: "[0-2][0-9]:[0-5][0-9]" })),
        field(tp("points.window_end"), input("window_end", { pattern: "[0-2][0-9]:[0-5][0-9]" })),
        h("label", { class: "inline" }, h("input", { type: "checkbox", checked: e.enabled, onchange: (ev) => (e.enabled = ev.target.checked) }), tp("points.enabled")),
        message,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "submit", class: "primary" }, ctx.t("common.save")),
          h("button", { type: "button", onclick: () => ((editing = null), pick && pick.remove(), renderForm()) }, ctx.t("common.cancel")),
          e.id
            ? h("button", {
                type: "button",
                class: "danger",
                onclick: async () => {
                  if (!window.confirm(tp("points.confirm_delete", { name: e.name }))) return;
                  try {
                    await ctx.api.delete(`/api/patrol/points/${e.id}`);
                    toast(tp("points.deleted"), { kind: "ok" });
                    editing = null;
                    renderForm();
                    await load();
                  } catch (err) {
                    message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
                  }
                },
              }, tp("points.delete"))
            : null,
        ),
      ),
    );
  }

  await ensureMap();
  renderForm();
  await load();
  return () => {
    if (map) map.remove();
  };
}
