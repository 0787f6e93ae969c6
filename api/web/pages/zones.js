// The zone editor (检测区域): the camera's snapshot large with the polygon tools above it, the zones and
// their rule parameters (units and a one-line explanation each) on the right, 预览 running the edited
// zones over a recorded clip or the live stream with the workers' pipeline, 保存 creating a new version.

import { h, replace, toast } from "../dom.js";
import { ApiError } from "../api.js";
import { tb, useStyles } from "../i18n_b.js";

const KINDS = ["fire_lane", "road", "crowd_area", "mask"];
const COLOURS = { fire_lane: "#e03131", road: "#f08c00", crowd_area: "#1971c2", mask: "#868e96" };
const COMMON = [
  ["dwell_s", "number", 10, { min: 0, step: 1 }],
  ["clear_s", "number", 5, { min: 0, step: 1 }],
  ["update_every_s", "number", 60, { min: 1, step: 1 }],
  ["min_score", "number", 0.3, { min: 0, max: 1, step: 0.05 }],
  ["min_area", "number", 0.0005, { min: 0, max: 1, step: 0.0001 }],
  ["classes", "list", "", {}],
];
// the parameters each kind's rule reads (models/grid/zonespec.py); unknown keys of a loaded zone are kept
const PARAMS = {
  fire_lane: [
    ...COMMON,
    ["min_object_m", "number", 0.5, { min: 0.05, max: 100, step: 0.1 }],
    ["lane_width_m", "number", 4, { min: 0.5, max: 100, step: 0.5 }],
    ["coverage", "number", null, { min: 0, max: 1, step: 0.01 }],
  ],
  road: [...COMMON, ["schedule", "list", "", {}]],
  crowd_area: [
    ...COMMON,
    ["min_people", "number", 5, { min: 1, step: 1 }],
    ["person_area", "number", 0.006, { min: 0.0001, max: 1, step: 0.001 }],
    ["area_m2", "number", null, { min: 0, step: 1 }],
    ["density_per_m2", "number", null, { min: 0, max: 20, step: 0.1 }],
  ],
  mask: [],
};
const GRAB_PX = 12;

export async function mount(root, ctx) {
  useStyles();
  const cameraId = Number(ctx.params.cameraId);
  ctx.setTitle(tb("zones.title"));
  const [camera, doc, clips] = await Promise.all([
    ctx.api.get(`/api/cameras/${cameraId}`),
    ctx.api.get(`/api/cameras/${cameraId}/zones`),
    ctx.api.get("/api/zones/clips").catch(() => []),
  ]);
  const state = {
    zones: doc.zones.map((z) => ({ ...z, closed: true })),
    version: doc.version,
    author: doc.author,
    savedAt: doc.saved_at,
    current: doc.zones.length ? 0 : -1,
    tool: "add",
    drag: null,
    preview: null,
    shownEvent: null,
  };
  let snapshotUrl = null;
  let image = null;

  // --- the picture: snapshot (or a blank canvas with the message when the API answers 503) ---------
  const canvas = h("canvas", { class: "ze-canvas", tabindex: "0", role: "img", "aria-label": tb("zones.canvas", { tool: tb(`zones.tool.${state.tool}`) }) });
  const stage = h("div", { class: "ze-stage" }, canvas);
  const snapshotNote = h("p", { class: "ze-note", role: "status" });
  try {
    const blob = await ctx.api.get(`/api/cameras/${cameraId}/snapshot.jpg`);
    if (blob instanceof Blob && blob.size > 0) {
      snapshotUrl = URL.createObjectURL(blob);
      image = await loadImage(snapshotUrl);
    }
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
  }
  if (!image) snapshotNote.textContent = tb("zones.snapshot_missing");
  const aspect = image ? image.naturalWidth / image.naturalHeight : 16 / 9;

  // --- tools above the picture ----------------------------------------------------------------------
  const toolButtons = ["add", "move", "delete"].map((tool) =>
    h("button", { type: "button", class: "tool", "aria-pressed": String(tool === state.tool), title: tb(`zones.tool.${tool}_help`), onclick: () => setTool(tool), dataset: { tool } }, tb(`zones.tool.${tool}`)),
  );
  const closeButton = h("button", { type: "button", class: "tool", title: tb("zones.tool.close_help"), onclick: () => closeCurrent() }, tb("zones.tool.close"));
  const toolbar = h(
    "div",
    { class: "ze-tools", role: "toolbar", "aria-label": tb("zones.tools") },
    toolButtons,
    closeButton,
    h("span", { class: "sep" }),
    h("button", { type: "button", onclick: () => addZone() }, tb("zones.new")),
    h("button", { type: "button", class: "danger", onclick: () => removeZone() }, tb("zones.remove")),
  );

  // --- right side: zone list, parameters, save, versions, preview --------------------------------------
  const zoneList = h("ul", { class: "ze-list", "aria-label": tb("zones.list") });
  const form = h("div", { class: "ze-form" });
  const versionLine = h("p", { class: "ze-version" });
  const saveButton = h("button", { type: "button", class: "primary", id: "zones-save", onclick: () => save() }, tb("zones.save"));
  const versionsBox = h("div", { class: "ze-versions" });
  const sourceSelect = h(
    "select",
    { id: "preview-source" },
    clips.map((c) => h("option", { value: `clip:${c.name}` }, tb("zones.source.clip", { name: c.name }))),
    h("option", { value: "recent:10" }, tb("zones.source.recent", { s: 10 })),
  );
  const previewButton = h("button", { type: "button", id: "zones-preview", onclick: () => runPreview() }, tb("zones.preview"));
  const previewOut = h("div", { class: "ze-preview-out", "aria-live": "polite" });

  replace(
    root,
    h("div", { class: "ze-head" }, h("h1", {}, tb("zones.title")), h("span", { class: "ze-camera" }, `${tb("zones.camera")}：${camera.name}`, camera.grid_name ? ` · ${camera.grid_name}` : "")),
    h(
      "div",
      { class: "ze" },
      h("section", { class: "ze-left", "aria-label": tb("zones.title") }, toolbar, stage, snapshotNote),
      h(
        "aside",
        { class: "ze-right" },
        h("h2", {}, tb("zones.list")),
        zoneList,
        form,
        h("div", { class: "ze-save" }, saveButton, versionLine),
        h("h2", {}, tb("zones.preview_title")),
        h("div", { class: "ze-preview" }, h("label", { for: "preview-source" }, tb("zones.preview_source")), sourceSelect, previewButton),
        previewOut,
        h("h2", {}, tb("zones.versions")),
        versionsBox,
      ),
    ),
  );

  // --- drawing ----------------------------------------------------------------------------------------
  const ctx2d = canvas.getContext("2d");
  function size() {
    const width = Math.max(320, stage.clientWidth || 800);
    const height = Math.round(width / aspect);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    return [width, height];
  }
  function draw() {
    const [w, hgt] = size();
    ctx2d.clearRect(0, 0, w, hgt);
    if (image) ctx2d.drawImage(image, 0, 0, w, hgt);
    else {
      ctx2d.fillStyle = "#2b2f36";
      ctx2d.fillRect(0, 0, w, hgt);
    }
    state.zones.forEach((z, i) => {
      const pts = z.polygon.map(([x, y]) => [x * w, y * hgt]);
      if (!pts.length) return;
      ctx2d.beginPath();
      pts.forEach(([x, y], k) => (k ? ctx2d.lineTo(x, y) : ctx2d.moveTo(x, y)));
      if (z.closed) ctx2d.closePath();
      ctx2d.lineWidth = i === state.current ? 3 : 2;
      ctx2d.strokeStyle = COLOURS[z.kind] || "#fff";
      if (z.closed) {
        ctx2d.fillStyle = (COLOURS[z.kind] || "#ffffff") + "33";
        ctx2d.fill();
      }
      ctx2d.stroke();
      if (i === state.current) {
        for (const [x, y] of pts) {
          ctx2d.fillStyle = "#fff";
          ctx2d.fillRect(x - 4, y - 4, 8, 8);
          ctx2d.strokeRect(x - 4, y - 4, 8, 8);
        }
      }
      ctx2d.fillStyle = "#fff";
      ctx2d.font = "14px sans-serif";
      ctx2d.fillText(`${z.name} · ${tb(`kind.${z.kind}`)}`, pts[0][0] + 6, pts[0][1] - 6);
    });
    const ev = state.shownEvent;
    if (ev) {
      ctx2d.lineWidth = 3;
      ctx2d.strokeStyle = "#ff2d55";
      ctx2d.font = "13px sans-serif";
      for (const b of ev.boxes) {
        const [x1, y1, x2, y2] = b.xyxy_norm;
        ctx2d.strokeRect(x1 * w, y1 * hgt, (x2 - x1) * w, (y2 - y1) * hgt);
        ctx2d.fillStyle = "#ff2d55";
        ctx2d.fillText(`${b.label} ${ctx.fmtDuration(ev.t)}`, x1 * w + 2, y1 * hgt - 4);
      }
    }
  }
  function pointer(event) {
    const rect = canvas.getBoundingClientRect();
    return [clamp((event.clientX - rect.left) / rect.width), clamp((event.clientY - rect.top) / rect.height)];
  }
  function nearest(pt) {
    const z = state.zones[state.current];
    if (!z) return -1;
    const [w, hgt] = size();
    let best = -1;
    let bestD = GRAB_PX;
    z.polygon.forEach(([x, y], i) => {
      const d = Math.hypot((x - pt[0]) * w, (y - pt[1]) * hgt);
      if (d <= bestD) [best, bestD] = [i, d];
    });
    return best;
  }
  canvas.addEventListener("pointerdown", (event) => {
    const pt = pointer(event);
    if (state.current < 0) addZone();
    const z = state.zones[state.current];
    if (state.tool === "add") {
      if (z.closed && z.polygon.length >= 3) insertVertex(z, pt);
      else z.polygon.push(pt);
    } else if (state.tool === "move") {
      const i = nearest(pt);
      if (i >= 0) {
        state.drag = i;
        canvas.setPointerCapture(event.pointerId);
      }
    } else if (state.tool === "delete") {
      const i = nearest(pt);
      if (i >= 0) z.polygon.splice(i, 1);
      if (z.polygon.length < 3) z.closed = false;
    }
    changed();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (state.drag === null) return;
    state.zones[state.current].polygon[state.drag] = pointer(event);
    draw();
  });
  canvas.addEventListener("pointerup", () => {
    if (state.drag !== null) {
      state.drag = null;
      changed();
    }
  });
  const onResize = () => draw();
  window.addEventListener("resize", onResize);

  function setTool(tool) {
    state.tool = tool;
    toolButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tool === tool)));
    canvas.setAttribute("aria-label", tb("zones.canvas", { tool: tb(`zones.tool.${tool}`) }));
  }
  function addZone() {
    const n = state.zones.length + 1;
    state.zones.push({ name: tb("zones.unnamed", { n }), kind: "fire_lane", polygon: [], dwell_s: 10, closed: false });
    state.current = state.zones.length - 1;
    setTool("add");
    changed();
  }
  function removeZone() {
    if (state.current < 0) return;
    state.zones.splice(state.current, 1);
    state.current = state.zones.length ? 0 : -1;
    changed();
  }
  function closeCurrent() {
    const z = state.zones[state.current];
    if (z && z.polygon.length >= 3) z.closed = true;
    else if (z) toast(tb("zones.unclosed", { name: z.name }), { kind: "error" });
    changed();
  }

  // --- the zone list and the parameters of the current zone --------------------------------------------
  function renderList() {
    if (!state.zones.length) {
      replace(zoneList, h("li", { class: "muted" }, tb("zones.none")));
      return;
    }
    replace(
      zoneList,
      state.zones.map((z, i) =>
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: ["ze-zone", i === state.current ? "current" : null], "aria-pressed": String(i === state.current), onclick: () => ((state.current = i), changed()) },
            h("span", { class: "swatch", style: { background: COLOURS[z.kind] } }),
            `${z.name} · ${tb(`kind.${z.kind}`)}`,
            z.closed ? "" : ` （${tb("zones.open_polygon")}）`,
          ),
        ),
      ),
    );
  }
  function renderForm() {
    const z = state.zones[state.current];
    if (!z) {
      replace(form);
      return;
    }
    const name = h("input", { id: "zone-name", value: z.name, maxlength: 80, required: true, oninput: (e) => ((z.name = e.target.value), renderList(), draw()) });
    const kind = h(
      "select",
      { id: "zone-kind", onchange: (e) => ((z.kind = e.target.value), changed()) },
      KINDS.map((k) => h("option", { value: k, selected: k === z.kind }, tb(`kind.${k}`))),
    );
    const vertices = h("textarea", {
      id: "zone-vertices",
      rows: 4,
      "aria-describedby": "zone-vertices-help",
      onchange: (e) => {
        const pts = parseVertices(e.target.value);
        if (pts) {
          z.polygon = pts;
          z.closed = pts.length >= 3;
          changed();
        }
      },
    });
    vertices.value = z.polygon.map(([x, y]) => `${x.toFixed(4)}, ${y.toFixed(4)}`).join("\n");
    const params = (PARAMS[z.kind] || []).map(([key, type, def, limits]) => paramField(z, key, type, def, limits));
    replace(
      form,
      row("zone-name", tb("zones.name"), name),
      row("zone-kind", tb("zones.kind"), kind),
      row("zone-vertices", tb("zones.vertices"), vertices, tb("zones.vertices_help"), "zone-vertices-help"),
      params.length ? h("fieldset", { class: "ze-params" }, h("legend", {}, tb("zones.params")), params) : null,
    );
  }
  function paramField(z, key, type, def, limits) {
    const id = `p-${key}`;
    const value = z[key];
    const input =
      type === "list"
        ? h("input", { id, value: Array.isArray(value) ? value.join(", ") : "", placeholder: def === "" ? "" : String(def) })
        : h("input", { id, type: "number", inputmode: "decimal", value: value ?? "", placeholder: def === null ? "" : tb("zones.default", { value: def }), ...limits });
    input.setAttribute("aria-describedby", `${id}-help`);
    input.addEventListener("change", (e) => {
      const raw = e.target.value.trim();
      if (raw === "") delete z[key];
      else if (type === "list") z[key] = raw.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
      else z[key] = Number(raw);
    });
    return row(id, `${tb(`p.${key}`)}（${tb(`p.${key}.unit`)}）`, input, tb(`p.${key}.help`), `${id}-help`);
  }

  // --- save, versions, restore -----------------------------------------------------------------------
  function documentOrNull() {
    const open = state.zones.find((z) => !z.closed || z.polygon.length < 3);
    if (open) {
      toast(tb("zones.unclosed", { name: open.name }), { kind: "error", ms: 8000 });
      return null;
    }
    return { camera_id: cameraId, version: state.version, zones: state.zones.map(({ closed, ...z }) => z) };
  }
  async function save() {
    const body = documentOrNull();
    if (!body) return;
    try {
      const saved = await ctx.api.put(`/api/cameras/${cameraId}/zones`, body);
      adopt(saved);
      toast(tb("zones.saved", { version: saved.version }), { kind: "ok" });
      await loadVersions();
    } catch (err) {
      showError(err);
    }
  }
  function adopt(saved) {
    state.zones = saved.zones.map((z) => ({ ...z, closed: true }));
    state.version = saved.version;
    state.author = saved.author;
    state.savedAt = saved.saved_at;
    state.current = state.zones.length ? Math.min(Math.max(state.current, 0), state.zones.length - 1) : -1;
    changed();
  }
  function renderVersion() {
    versionLine.textContent = state.version
      ? tb("zones.version", { version: state.version, author: state.author || "—", time: ctx.fmtTime(state.savedAt) })
      : tb("zones.version_none");
  }
  async function loadVersions() {
    const versions = await ctx.api.get(`/api/cameras/${cameraId}/zones/versions`);
    if (!versions.length) {
      replace(versionsBox, h("p", { class: "muted" }, tb("zones.version_none")));
      return;
    }
    replace(
      versionsBox,
      h(
        "table",
        { class: "table compact" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "#"), h("th", { scope: "col" }, tb("admin.audit_user")), h("th", { scope: "col" }, tb("admin.audit_at")), h("th", { scope: "col" }, tb("zones.list")), h("th", { scope: "col" }, tb("admin.actions")))),
        h(
          "tbody",
          {},
          versions.map((v) =>
            h(
              "tr",
              {},
              h("td", {}, v.version),
              h("td", {}, v.author || "—"),
              h("td", {}, ctx.fmtTime(v.saved_at)),
              h("td", {}, v.document.zones.map((z) => z.name).join("、")),
              h("td", {}, v.version === state.version ? "" : h("button", { type: "button", class: "small", "aria-label": tb("zones.restore_label", { version: v.version }), onclick: () => restore(v.version) }, tb("zones.restore"))),
            ),
          ),
        ),
      ),
    );
  }
  async function restore(version) {
    try {
      const saved = await ctx.api.post(`/api/cameras/${cameraId}/zones/restore`, { version, based_on: state.version });
      adopt(saved);
      toast(tb("zones.restored", { from: version, version: saved.version }), { kind: "ok" });
      await loadVersions();
    } catch (err) {
      showError(err);
    }
  }

  // --- preview -------------------------------------------------------------------------------------
  async function runPreview() {
    const body = documentOrNull();
    if (!body) return;
    const [kind, arg] = splitOnce(sourceSelect.value, ":");
    const source = kind === "clip" ? { kind, clip: arg } : { kind, seconds: Number(arg) };
    previewButton.disabled = true;
    replace(previewOut, h("p", { role: "status" }, tb("zones.preview_running")));
    try {
      state.preview = await ctx.api.post(`/api/cameras/${cameraId}/zones/preview`, { document: { zones: body.zones }, source, fps: 2 });
      state.shownEvent = state.preview.events.find((e) => e.boxes.length) || null;
      if (!image && state.shownEvent && state.shownEvent.image) {
        image = await loadImage(state.shownEvent.image); // no snapshot: the previewed frame shows the scene
        if (image) snapshotNote.textContent = tb("zones.backdrop_preview");
      }
      renderPreview();
      draw();
    } catch (err) {
      replace(previewOut);
      showError(err, previewOut);
    } finally {
      previewButton.disabled = false;
    }
  }
  function renderPreview() {
    const p = state.preview;
    const summary = tb("zones.preview_done", { frames: p.frames, duration: ctx.fmtDuration(p.duration_s), backend: p.backend, cpu: p.cpu_s, n: p.events.length });
    const items = p.events.map((e, i) =>
      h(
        "li",
        { class: ["ze-event", `ev-${e.type}`] },
        h(
          "button",
          { type: "button", "aria-label": `${tb("zones.event_show")}：${eventText(e)}`, "aria-pressed": String(state.shownEvent === e), disabled: !e.boxes.length, onclick: () => ((state.shownEvent = e), renderPreview(), draw()), dataset: { index: i } },
          eventText(e),
        ),
        detailText(e),
      ),
    );
    const shown = state.shownEvent && state.shownEvent.image ? h("figure", {}, h("img", { src: state.shownEvent.image, alt: `${tb("zones.evidence")}：${eventText(state.shownEvent)}` }), h("figcaption", {}, tb("zones.evidence"))) : null;
    replace(
      previewOut,
      h("p", { class: "ze-summary" }, summary),
      p.truncated ? h("p", { class: "notice warn" }, tb("zones.preview_truncated")) : null,
      p.events.length ? h("ol", { class: "ze-events" }, items) : h("p", { class: "muted" }, tb("zones.preview_none")),
      shown,
    );
  }
  function eventText(e) {
    return `${ctx.fmtDuration(e.t)} ${tb(`event.${e.type}`)} · ${tb(`rule.${e.rule}`)} · ${e.zone}`;
  }
  function detailText(e) {
    const parts = [];
    if (e.details.count !== undefined) parts.push(`${tb("p.min_people")} ${e.details.count}`);
    if (e.details.widest_m !== undefined) parts.push(tb("zones.widest", { m: e.details.widest_m }));
    if (e.details.coverage !== undefined) parts.push(tb("zones.covered", { pct: Math.round(e.details.coverage * 100) }));
    if (e.boxes.length) parts.push(`${e.boxes.length} ×  ${[...new Set(e.boxes.map((b) => b.label))].join(", ")}`);
    return parts.length ? h("small", {}, ` ${parts.join(" · ")}`) : null;
  }

  function showError(err, where = null) {
    const text = err instanceof ApiError ? err.message_for_user() : String(err);
    if (where) where.append(h("div", { class: "notice error", role: "alert" }, text));
    else toast(text, { kind: "error", ms: 10000 });
  }
  function changed() {
    renderList();
    renderForm();
    renderVersion();
    draw();
  }

  changed();
  await loadVersions();
  requestAnimationFrame(draw);
  return () => {
    window.removeEventListener("resize", onResize);
    if (snapshotUrl) URL.revokeObjectURL(snapshotUrl);
  };
}

function row(id, text, control, help, helpId) {
  return h("div", { class: "ze-row" }, h("label", { for: id }, text), control, help ? h("small", { class: "hint", id: helpId }, help) : null);
}

function clamp(v) {
  return Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
}

function splitOnce(text, sep) {
  const i = text.indexOf(sep);
  return i < 0 ? [text, ""] : [text.slice(0, i), text.slice(i + 1)];
}

function parseVertices(text) {
  const pts = [];
  for (const line of text.split(/\n/)) {
    if (!line.trim()) continue;
    const m = line.split(/[,，\s]+/).filter(Boolean).map(Number);
    if (m.length !== 2 || m.some((v) => Number.isNaN(v))) return null;
    pts.push([clamp(m[0]), clamp(m[1])]);
  }
  return pts;
}

/** Insert a vertex into the edge of a closed polygon nearest to the point. */
function insertVertex(zone, pt) {
  const pts = zone.polygon;
  let best = 0;
  let bestD = Infinity;
  for (let i = 0; i < pts.length; i++) {
    const a = pts[i];
    const b = pts[(i + 1) % pts.length];
    const d = segmentDistance(pt, a, b);
    if (d < bestD) [best, bestD] = [i, d];
  }
  pts.splice(best + 1, 0, pt);
}

function segmentDistance(p, a, b) {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const len = dx * dx + dy * dy || 1e-12;
  const u = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len));
  return Math.hypot(a[0] + u * dx - p[0], a[1] + u * dy - p[1]);
}

function loadImage(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => resolve(null);
    img.src = url;
  });
}
