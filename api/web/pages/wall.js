// 视频墙: the viewer's cameras by grid (组织树), layouts 1/4/9/16/25, paging, full screen, live tiles over one
// WebSocket (/api/live/tiles), status and alarms, events from the ticket feed, the tour (轮巡/视频巡查) and
// "上报案件" from the current frame through the ticket intake (POST /api/tickets, source patrol).

import { h, clear, replace, field, select, toast } from "../dom.js";
import { ApiError, blobAsBase64, openTicketFeed } from "../api.js";
import { t, label, fmtTime, fmtDuration } from "../i18n.js";

const LAYOUTS = [1, 4, 9, 16, 25];
const STORE = "gp.wall";
const STATES = ["online", "reconnecting", "offline"];

// -- video patrol hook (issue 15 records tours): replace with setPatrolRecorder({...}) --------------------
const NO_RECORDER = {
  tourStarted(_info) {},
  pageShown(_info) {},
  caseReported(_info) {},
  tourStopped(_info) {},
};
let recorder = NO_RECORDER;

/** Install the recorder of video-patrol tours; each method gets one plain object and may be async. */
export function setPatrolRecorder(next) {
  recorder = { ...NO_RECORDER, ...(next || {}) };
}

function notify(method, info) {
  try {
    Promise.resolve(recorder[method](info)).catch((err) => console.error("patrol recorder", err));
  } catch (err) {
    console.error("patrol recorder", err);
  }
}

/** Every camera the viewer may see (the API filters), in name order. */
export async function loadCameras(api) {
  const out = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api.get("/api/cameras", { limit: 1000, offset });
    out.push(...page.items);
    if (out.length >= page.total || page.items.length === 0) return out;
  }
}

// -- the tiles WebSocket ---------------------------------------------------------------------------------

/** One WebSocket for every tile of the page; reconnects with backoff, refreshes the session on 4401. */
export class TileSocket {
  constructor({ api, onTile, onStatus, onError, onEnd }) {
    Object.assign(this, { api, onTile, onStatus, onError, onEnd });
    this.cameras = [];
    this.width = 320;
    this.closed = false;
    this.backoff = 1000;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/api/live/tiles`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 1000;
      this.send();
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") {
        const msg = JSON.parse(event.data);
        if (msg.type === "status") this.onStatus(msg);
        else if (msg.type === "error") this.onError(msg);
        else if (msg.type === "end") this.onEnd(msg);
        return;
      }
      const view = new DataView(event.data);
      if (view.byteLength < 13 || view.getUint8(0) !== 0x01) return;
      const cameraId = view.getUint32(1);
      const captureMs = Number(view.getBigUint64(5));
      this.onTile(cameraId, captureMs, new Blob([new Uint8Array(event.data, 13)], { type: "image/jpeg" }));
    };
    ws.onclose = async (event) => {
      if (this.closed) return;
      if (event.code === 4401 && !(await this.api.refresh())) {
        this.api.onUnauthorized();
        return;
      }
      if (event.code === 1013) this.onEnd({ reason: "unavailable" });
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 15000);
    };
  }

  subscribe(cameras, width) {
    this.cameras = cameras;
    this.width = width;
    this.send();
  }

  send() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "subscribe", cameras: this.cameras, width: this.width }));
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}

// -- raise a case from the current frame -----------------------------------------------------------------

/** Fetch a still of the camera (the snapshot route; else the frame the tile shows) as a Blob, or null. */
async function currentFrame(api, camera, tileBlob) {
  try {
    const blob = await api.request("GET", `/api/cameras/${camera.id}/snapshot.jpg`, { query: { width: 1280 } });
    if (blob instanceof Blob && blob.size > 0) return blob;
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
  }
  return tileBlob || null;
}

/** The 上报案件 dialog: category, description, the frame attached; POST /api/tickets (source patrol). */
export async function reportFromFrame({ api, camera, tileBlob = null, onDone = () => {} }) {
  const frame = await currentFrame(api, camera, tileBlob);
  const frameUrl = frame ? URL.createObjectURL(frame) : null;
  const message = h("p", { class: "form-error", role: "alert" });
  const category = select(
    ["road_occupation", "fire_lane_blockage", "crowding", "other"].map((c) => [c, label("category", c)]),
    { name: "category", required: true },
  );
  const now = fmtTime(new Date());
  const description = h("textarea", { name: "description", required: true, maxlength: "2000" }, `${t("source.patrol")}：${camera.name}（${camera.grid_name || ""}）${now}`);
  const submit = h("button", { type: "submit", class: "primary" }, t("common.submit"));
  const dialog = h(
    "dialog",
    { class: "report-dialog", "aria-labelledby": "report-title" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "report-title" }, t("wall.report_title", { camera: camera.name })),
      frameUrl ? h("img", { src: frameUrl, alt: t("tickets.evidence"), class: "report-frame" }) : h("p", { class: "muted" }, t("wall.no_frame")),
      h("dl", { class: "facts" },
        h("dt", {}, t("tickets.camera")), h("dd", {}, camera.name),
        h("dt", {}, t("tickets.grid")), h("dd", {}, camera.grid_name || t("common.none")),
        h("dt", {}, t("new.source")), h("dd", {}, label("source", "patrol")),
      ),
      field(t("new.category"), category),
      field(t("new.description"), description),
      message,
      h("div", { class: "actions" }, submit, h("button", { type: "button", value: "cancel", onclick: () => dialog.close() }, t("common.cancel"))),
    ),
  );
  document.body.append(dialog);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (frameUrl) URL.revokeObjectURL(frameUrl);
  });
  dialog.querySelector("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    if (camera.lon === null || camera.lat === null || camera.lon === undefined) {
      message.textContent = t("wall.no_location");
      return;
    }
    submit.disabled = true;
    try {
      const photos = frame ? [await blobAsBase64(frame)] : [];
      const ticket = await api.post("/api/tickets", {
        category: category.value,
        lon: camera.lon,
        lat: camera.lat,
        description: description.value.trim(),
        source: "patrol",
        photos,
      });
      toast(t("new.created", { code: `${ticket.case_code} #${ticket.id}` }), { kind: "ok" });
      dialog.close();
      onDone(ticket);
    } catch (err) {
      message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
    } finally {
      submit.disabled = false;
    }
  });
  dialog.showModal();
  return dialog;
}

// -- the page --------------------------------------------------------------------------------------------

function loadPrefs() {
  try {
    return { layout: 4, interval: 15, overlay: false, ...JSON.parse(localStorage.getItem(STORE) || "{}") };
  } catch {
    return { layout: 4, interval: 15, overlay: false };
  }
}

export async function mount(root, ctx) {
  const { api } = ctx;
  ctx.setTitle(t("nav.live"));
  const prefs = loadPrefs();
  const savePrefs = () => localStorage.setItem(STORE, JSON.stringify({ layout: prefs.layout, interval: prefs.interval, overlay: prefs.overlay }));
  const [cameras, grids] = await Promise.all([loadCameras(api), api.get("/api/grids")]);

  const byId = new Map(cameras.map((c) => [c.id, c]));
  const status = new Map(); // camera id → last status message
  const frames = new Map(); // camera id → {blob, url, captureMs}
  let list = cameras.slice(); // what the pages walk: every camera, or those of the picked tree node / search
  let page = 0;
  let tour = null;
  const timers = [];

  // tree (组织树) ----------------------------------------------------------------------------------------
  const search = h("input", { type: "search", placeholder: t("wall.search"), "aria-label": t("wall.search") });
  const treeBox = h("nav", { class: "tree", "aria-label": t("wall.tree") });
  const underCode = new Map(); // grid code → cameras in its subtree
  function collect(node) {
    const own = cameras.filter((c) => c.grid_code === node.code);
    const all = own.concat(...node.children.map(collect));
    underCode.set(node.code, all);
    return all;
  }
  grids.forEach(collect);

  function camButton(cam) {
    return h(
      "button",
      {
        type: "button", class: "cam", draggable: "true", dataset: { camera: cam.id },
        title: cam.name,
        onclick: () => showCamera(cam.id),
        ondblclick: () => ctx.navigate(`#/live/${cam.id}`),
        ondragstart: (e) => e.dataTransfer.setData("text/plain", String(cam.id)),
      },
      h("span", { class: ["dot", `st-${stateOf(cam.id)}`] }), cam.name,
    );
  }

  function renderTree() {
    const q = search.value.trim().toLowerCase();
    const match = (c) => !q || c.name.toLowerCase().includes(q);
    const branch = (node) => {
      const cams = (underCode.get(node.code) || []).filter(match);
      if (!cams.length) return null;
      const own = cameras.filter((c) => c.grid_code === node.code && match(c));
      return h(
        "li", {},
        h("button", { type: "button", class: "node cam", title: `${label("kind", node.kind)} ${node.code}`, onclick: () => pick(underCode.get(node.code)) },
          `${node.name}`, h("small", { class: "muted" }, ` (${cams.length})`)),
        h("ul", {}, node.children.map(branch), own.map((c) => h("li", {}, camButton(c)))),
      );
    };
    const orphans = cameras.filter((c) => !c.grid_code && match(c));
    replace(
      treeBox,
      h("ul", {}, grids.map(branch), orphans.length ? h("li", {}, h("span", { class: "node" }, "—"), h("ul", {}, orphans.map((c) => h("li", {}, camButton(c))))) : null),
    );
    if (!cameras.length) treeBox.append(h("p", { class: "muted" }, t("wall.no_cameras")));
  }
  search.addEventListener("input", () => {
    renderTree();
    const q = search.value.trim().toLowerCase();
    pick(q ? cameras.filter((c) => c.name.toLowerCase().includes(q)) : cameras);
  });

  function pick(cams) {
    list = cams.slice();
    page = 0;
    renderGrid();
  }

  function showCamera(id) {
    let i = list.findIndex((c) => c.id === id);
    if (i < 0) {
      list = cameras.slice();
      i = list.findIndex((c) => c.id === id);
    }
    page = Math.floor(i / prefs.layout);
    renderGrid();
    const tile = grid.querySelector(`[data-camera="${id}"]`);
    if (tile) tile.focus();
  }

  // split grid ----------------------------------------------------------------------------------------------
  const grid = h("div", { class: "wall-grid", role: "region", "aria-label": t("wall.layout") });
  const pageLabel = h("span", { "aria-live": "polite" });
  const pages = () => Math.max(1, Math.ceil(list.length / prefs.layout));
  const stateOf = (id) => (status.get(id) && status.get(id).state) || "unknown";

  function tileFor(cam) {
    const img = h("img", { alt: cam.name, hidden: true });
    const tile = h(
      "div",
      {
        class: "tile", tabindex: "0", role: "button", dataset: { camera: cam.id },
        "aria-label": `${cam.name}，${t("wall.open_live")}`, title: t("wall.open_live"),
        ondblclick: () => ctx.navigate(`#/live/${cam.id}`),
        onkeydown: (e) => e.key === "Enter" && ctx.navigate(`#/live/${cam.id}`),
      },
      img,
      h("div", { class: "msg" }, t("common.loading")),
      h("div", { class: "bar" },
        h("span", { class: "state" }, h("span", { class: "dot" }), h("span", { class: "word" }, t("camera.unknown"))),
        h("span", { class: "name" }, cam.name),
        h("span", { class: "badge red tickets", hidden: true }),
      ),
      h("div", { class: "foot" },
        h("span", { class: "age" }, ""),
        h("span", { class: "alarm-word", hidden: true }, t("wall.alarm")),
        h("button", { type: "button", class: "report", onclick: (e) => (e.stopPropagation(), report(cam)) }, t("wall.report")),
      ),
    );
    tile.addEventListener("dragover", (e) => e.preventDefault());
    tile.addEventListener("drop", (e) => {
      e.preventDefault();
      const id = Number(e.dataTransfer.getData("text/plain"));
      const slot = list.findIndex((c) => c.id === cam.id);
      if (byId.has(id) && slot >= 0) {
        list = list.filter((c) => c.id !== id);
        list.splice(Math.min(slot, list.length), 0, byId.get(id));
        renderGrid();
      }
    });
    paintTile(tile, cam.id);
    return tile;
  }

  function paintTile(tile, id) {
    const st = status.get(id) || {};
    const state = STATES.includes(st.state) ? st.state : "unknown";
    tile.querySelector(".state").className = `state st-${state}`;
    tile.querySelector(".word").textContent = t(`camera.${state}`);
    const badge = tile.querySelector(".tickets");
    badge.hidden = !st.open_tickets;
    badge.textContent = st.open_tickets ? t("wall.open_tickets", { n: st.open_tickets }) : "";
    tile.classList.toggle("alarm", Boolean(st.alarm));
    tile.querySelector(".alarm-word").hidden = !st.alarm;
    if (st.alarm && st.rules && st.rules.length) tile.querySelector(".alarm-word").textContent = `${t("wall.alarm")}：${st.rules.map((r) => label("category", r)).join("、")}`;
    const frame = frames.get(id);
    const img = tile.querySelector("img");
    const msg = tile.querySelector(".msg");
    if (prefs.overlay) {
      img.hidden = false;
      msg.hidden = true;
    } else if (frame) {
      if (img.src !== frame.url) img.src = frame.url;
      img.hidden = false;
      msg.hidden = true;
    } else if (st.state) {
      msg.hidden = false;
      msg.textContent = t("wall.no_frame");
    }
    const age = frame ? (Date.now() - frame.captureMs) / 1000 : st.frame_age_s;
    tile.querySelector(".age").textContent = age === null || age === undefined ? "" : t("wall.frame_age", { age: fmtDuration(age) });
  }

  function visible() {
    const start = page * prefs.layout;
    return list.slice(start, start + prefs.layout);
  }

  function renderGrid() {
    page = Math.min(page, pages() - 1);
    const n = Math.sqrt(prefs.layout);
    grid.style.gridTemplateColumns = `repeat(${n}, 1fr)`;
    grid.style.gridTemplateRows = `repeat(${n}, 1fr)`;
    const shown = visible();
    replace(grid, shown.map(tileFor));
    for (let i = shown.length; i < prefs.layout; i++) grid.append(h("div", { class: "tile empty", "aria-label": t("wall.empty_slot") }));
    pageLabel.textContent = t("wall.page", { page: page + 1, pages: pages() });
    layoutButtons.forEach((b) => b.classList.toggle("active", Number(b.dataset.n) === prefs.layout));
    treeBox.querySelectorAll("[data-camera]").forEach((b) => b.classList.toggle("shown", shown.some((c) => String(c.id) === b.dataset.camera)));
    const width = prefs.layout <= 1 ? 1280 : prefs.layout <= 4 ? 640 : 320;
    tiles.subscribe(shown.map((c) => c.id), width); // with the overlay on, the tiles still carry the status
    refreshOverlay();
    if (tour) notify("pageShown", { page: page + 1, pages: pages(), cameras: shown.map((c) => c.id), at: new Date().toISOString() });
  }

  function refreshOverlay() {
    if (!prefs.overlay) return;
    const width = prefs.layout <= 4 ? 640 : 320;
    for (const cam of visible()) {
      const img = grid.querySelector(`[data-camera="${cam.id}"] img`);
      if (img) img.src = `/api/cameras/${cam.id}/snapshot.jpg?width=${width}&overlay=zones,detections&t=${Date.now()}`;
    }
  }

  // tiles socket ------------------------------------------------------------------------------------------------
  const tiles = new TileSocket({
    api,
    onTile(id, captureMs, blob) {
      const old = frames.get(id);
      if (old) URL.revokeObjectURL(old.url);
      frames.set(id, { blob, url: URL.createObjectURL(blob), captureMs });
      const tile = grid.querySelector(`[data-camera="${id}"]`);
      if (tile) paintTile(tile, id);
    },
    onStatus(msg) {
      const before = status.get(msg.camera_id);
      status.set(msg.camera_id, msg);
      const tile = grid.querySelector(`[data-camera="${msg.camera_id}"]`);
      if (tile) paintTile(tile, msg.camera_id);
      const dot = treeBox.querySelector(`[data-camera="${msg.camera_id}"] .dot`);
      if (dot) dot.className = `dot st-${msg.state}`;
      if (msg.alarm && !(before && before.alarm)) {
        const cam = byId.get(msg.camera_id);
        addEvent({ text: `${cam ? cam.name : msg.camera_id} ${(msg.rules || []).map((r) => label("category", r)).join("、")}`, href: `#/live/${msg.camera_id}`, alarm: true });
      }
    },
    onError(msg) {
      const cam = byId.get(msg.camera_id);
      const tile = grid.querySelector(`[data-camera="${msg.camera_id}"]`);
      if (tile) {
        tile.querySelector(".msg").hidden = false;
        tile.querySelector(".msg").textContent = msg.detail || msg.error;
      } else if (msg.camera_id === null) {
        console.warn("tiles:", msg.detail);
      }
      if (cam && msg.error === "not_found") status.delete(msg.camera_id);
    },
    onEnd(msg) {
      toast(msg.reason === "unavailable" ? t("wall.tiles_unavailable") : t("wall.tiles_ended", { reason: msg.detail || msg.reason }), { kind: "error" });
    },
  });
  timers.push(setInterval(() => grid.querySelectorAll(".tile[data-camera]").forEach((el) => paintTile(el, Number(el.dataset.camera))), 1000));
  timers.push(setInterval(refreshOverlay, 2000));

  // tool bar: layouts, paging, overlay, tour, full screen --------------------------------------------------------
  const layoutButtons = LAYOUTS.map((n) =>
    h("button", { type: "button", dataset: { n }, "aria-label": `${t("wall.layout")} ${n}`, onclick: () => { prefs.layout = n; page = 0; savePrefs(); renderGrid(); } }, String(n)),
  );
  const interval = h("input", { type: "number", min: "5", max: "600", value: String(prefs.interval), "aria-label": t("wall.interval") });
  interval.addEventListener("change", () => {
    prefs.interval = Math.max(5, Math.min(600, Number(interval.value) || 15));
    interval.value = String(prefs.interval);
    savePrefs();
    if (tour) startTour();
  });
  const tourButton = h("button", { type: "button", id: "tour", "aria-pressed": "false", onclick: () => (tour ? stopTour() : startTour()) }, `${t("wall.tour")} ▶`);
  const overlayBox = h("input", { type: "checkbox", checked: prefs.overlay, id: "overlay" });
  overlayBox.addEventListener("change", () => {
    prefs.overlay = overlayBox.checked;
    savePrefs();
    renderGrid();
  });
  const center = h("section", { class: "wall-center", "aria-label": t("nav.live") }, grid);
  const bar = h(
    "div", { class: "wall-bar", role: "toolbar", "aria-label": t("wall.layout") },
    h("span", {}, t("wall.layout")), layoutButtons,
    h("button", { type: "button", "aria-label": t("wall.prev"), onclick: () => { page = (page - 1 + pages()) % pages(); renderGrid(); } }, "◀"),
    pageLabel,
    h("button", { type: "button", "aria-label": t("wall.next"), onclick: () => { page = (page + 1) % pages(); renderGrid(); } }, "▶"),
    h("label", { class: "inline" }, overlayBox, t("wall.overlay")),
    h("span", { class: "grow" }),
    tourButton,
    h("label", { class: "inline" }, t("wall.interval"), interval),
    h("button", { type: "button", onclick: () => (document.fullscreenElement ? document.exitFullscreen() : center.requestFullscreen()) }, t("wall.fullscreen")),
  );
  center.append(bar);

  function startTour() {
    stopTour(true);
    tour = setInterval(() => {
      page = (page + 1) % pages();
      renderGrid();
    }, prefs.interval * 1000);
    tourButton.classList.add("active");
    tourButton.setAttribute("aria-pressed", "true");
    tourButton.textContent = `${t("wall.tour_stop")} ■`;
    notify("tourStarted", { cameras: list.map((c) => c.id), layout: prefs.layout, interval_s: prefs.interval, at: new Date().toISOString() });
    notify("pageShown", { page: page + 1, pages: pages(), cameras: visible().map((c) => c.id), at: new Date().toISOString() });
  }
  function stopTour(restarting = false) {
    if (!tour) return;
    clearInterval(tour);
    tour = null;
    tourButton.classList.remove("active");
    tourButton.setAttribute("aria-pressed", "false");
    tourButton.textContent = `${t("wall.tour")} ▶`;
    if (!restarting) notify("tourStopped", { at: new Date().toISOString() });
  }

  function report(cam) {
    const frame = frames.get(cam.id);
    reportFromFrame({
      api, camera: cam, tileBlob: frame ? frame.blob : null,
      onDone: (ticket) => notify("caseReported", { camera: cam.id, ticket: ticket.id, during_tour: Boolean(tour), at: new Date().toISOString() }),
    });
  }

  // events (new tickets from the SSE feed, alarms from the tiles) ---------------------------------------------
  const eventList = h("ol", { "aria-live": "polite" }, h("li", { class: "muted empty" }, t("wall.no_events")));
  function addEvent({ text, href, alarm = false, at = new Date() }) {
    const empty = eventList.querySelector(".empty");
    if (empty) empty.remove();
    eventList.prepend(h("li", { class: alarm ? "alarm" : null }, h("a", { href }, h("time", {}, fmtTime(at)), alarm ? h("span", { class: "badge red" }, t("wall.alarm")) : null, " ", text)));
    while (eventList.children.length > 50) eventList.lastChild.remove();
  }
  const feed = openTicketFeed(api, {
    onTicket(n) {
      const cam = byId.get(n.camera_id);
      const what = n.event === "opened" ? t("action.open") : label("action", n.event);
      addEvent({ text: `${label("category", n.category)} · ${label("state", n.state)} · ${what}${cam ? ` · ${cam.name}` : ""} #${n.ticket_id}`, href: `#/tickets/${n.ticket_id}`, at: new Date(n.at) });
    },
  });

  replace(
    root,
    h("div", { class: "wall" },
      h("aside", { "aria-label": t("wall.tree") }, h("h2", {}, t("wall.tree")), search, treeBox),
      center,
      h("aside", { class: "events", "aria-label": t("wall.events") }, h("h2", {}, t("wall.events")), eventList),
    ),
  );
  renderTree();
  renderGrid();
  if (ctx.query.tour === "1") startTour();

  return () => {
    stopTour();
    timers.forEach(clearInterval);
    tiles.close();
    feed.close();
    for (const f of frames.values()) URL.revokeObjectURL(f.url);
  };
}
