// The patroller's phone page (#/patrol): today's tasks with the distance from where the patroller
// stands, a task opened on a small map, check-in with the browser's geolocation and a photo from the
// phone's camera, and a problem found at the point reported as a case (巡查上报). Works at 390×844.

import { ApiError, csrfToken, CSRF_HEADER, fileAsDataUrl } from "../api.js";
import { h, field, replace, select, toast } from "../dom.js";
import { tp } from "../i18n_patrol.js";

// no zoom or fade animations: there is no base map to animate, and Leaflet throws (_leaflet_pos) when a
// page leaves (map.remove()) in the middle of one
const STILL = { zoomAnimation: false, fadeAnimation: false, markerZoomAnimation: false };

const CATEGORIES = ["road_occupation", "fire_lane_blockage", "crowding", "other"];
const STATE_COLOUR = { pending: "#b26a00", done: "#2e7d32", missed: "#c62828" };

/** POST a multipart form with the session cookie and the CSRF header (the ticket client sends JSON only). */
export async function postForm(api, path, formData) {
  for (let attempt = 0; attempt < 2; attempt++) {
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        body: formData,
        headers: { [CSRF_HEADER]: csrfToken(), Accept: "application/json" },
        credentials: "same-origin",
      });
    } catch (err) {
      throw new ApiError(0, { error: "network", detail: String(err) });
    }
    if (response.status === 401 && attempt === 0 && (await api.refresh())) continue;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = { error: "http_error", detail: response.statusText };
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
  throw new ApiError(401, { error: "unauthorized", detail: "not authenticated" });
}

/** The browser's position as {lon, lat, acc}; rejects with a readable reason. */
export function locate() {
  return new Promise((resolve, reject) => {
    if (!navigator.geolocation) {
      reject(new Error(tp("patrol.geo_missing")));
      return;
    }
    navigator.geolocation.getCurrentPosition(
      (pos) => resolve({ lon: pos.coords.longitude, lat: pos.coords.latitude, acc: pos.coords.accuracy }),
      (err) => reject(new Error(tp("patrol.geo_denied", { reason: err.message || err.code }))),
      { enableHighAccuracy: true, timeout: 20000, maximumAge: 10000 },
    );
  });
}

function stateBadge(state) {
  return h(
    "span",
    { class: `patrol-state state-${state}`, style: { color: "#fff", background: STATE_COLOUR[state] || "#757575", padding: "1px 8px", borderRadius: "10px", fontSize: ".85rem" } },
    tp(`patrol.state.${state}`),
  );
}

function metres(d) {
  return d === null || d === undefined ? "—" : String(Math.round(d));
}

export async function mount(root, ctx) {
  ctx.setTitle(tp("patrol.title"));
  let position = null;
  let page = null;
  let openId = null;
  let mapHandle = null;
  const status = h("p", { class: "muted", id: "patrol-position", role: "status" }, tp("patrol.no_position"));
  const body = h("div", { id: "patrol-body" });
  const locateButton = h("button", { type: "button", class: "primary", id: "patrol-locate", onclick: () => refreshPosition() }, tp("patrol.locate"));
  replace(
    root,
    h(
      "section",
      { class: "patrol-page", style: { maxWidth: "640px", margin: "0 auto", padding: "12px" }, "aria-labelledby": "patrol-h" },
      h("h1", { id: "patrol-h" }, tp("patrol.title")),
      h("div", { class: "actions", style: { alignItems: "center" } }, locateButton),
      status,
      body,
    ),
  );

  async function refreshPosition() {
    locateButton.disabled = true;
    status.textContent = tp("patrol.locating");
    try {
      position = await locate();
      status.textContent = tp("patrol.position", { lon: position.lon.toFixed(6), lat: position.lat.toFixed(6), acc: Math.round(position.acc) });
    } catch (err) {
      status.textContent = String(err.message || err);
    } finally {
      locateButton.disabled = false;
    }
    await load();
  }

  async function load() {
    try {
      page = await ctx.api.get("/api/patrol/tasks/today", position ? { lon: position.lon, lat: position.lat } : null);
    } catch (err) {
      replace(body, h("div", { class: "notice error", role: "alert" }, err instanceof ApiError ? err.message_for_user() : String(err)));
      return;
    }
    render();
  }

  function render() {
    if (mapHandle) {
      mapHandle.remove();
      mapHandle = null;
    }
    const task = openId && page.items.find((x) => x.id === openId);
    if (task) replace(body, detail(task));
    else replace(body, list());
  }

  function list() {
    if (!page.items.length) return h("p", { class: "notice" }, tp("patrol.none"));
    return h(
      "div",
      {},
      h("p", { class: "muted" }, tp("patrol.day", { day: page.day, n: page.items.length })),
      h(
        "ul",
        { class: "patrol-tasks", style: { listStyle: "none", padding: 0, margin: 0 } },
        page.items.map((x) =>
          h(
            "li",
            { class: "card patrol-task", dataset: { taskId: String(x.id) }, style: { marginBottom: "8px", padding: "12px" } },
            h("div", { style: { display: "flex", justifyContent: "space-between", gap: "8px", alignItems: "center" } },
              h("strong", {}, x.point.name), stateBadge(x.state)),
            h("div", { class: "muted" }, tp("patrol.window", { w: x.window }), " · ", x.point.grid_name),
            h("div", { class: "patrol-distance" }, x.distance_m === null ? tp("patrol.no_position") : tp("patrol.distance", { d: metres(x.distance_m) })),
            h("div", { class: "actions" }, h("button", { type: "button", onclick: () => ((openId = x.id), render()), "aria-label": `${tp("patrol.open")} ${x.point.name}` }, tp("patrol.open"))),
          ),
        ),
      ),
    );
  }

  function detail(task) {
    const p = task.point;
    const mapBox = h("div", { class: "patrol-map", style: { height: "220px", margin: "8px 0", display: "none" }, "aria-label": tp("patrol.map") });
    const showMap = h("button", { type: "button", onclick: () => drawMap(mapBox, task) }, tp("patrol.map"));
    const out = h(
      "article",
      { class: "card patrol-detail", "aria-labelledby": "task-h" },
      h("div", { class: "actions" }, h("button", { type: "button", class: "ghost", onclick: () => ((openId = null), load()) }, "← ", tp("patrol.back"))),
      h("h2", { id: "task-h" }, p.name, " ", stateBadge(task.state)),
      h("p", {}, tp("patrol.window", { w: task.window }), " · ", tp("patrol.radius", { r: Math.round(p.radius_m) })),
      h("p", { class: "patrol-distance" }, task.distance_m === null ? tp("patrol.no_position") : tp("patrol.distance", { d: metres(task.distance_m) })),
      p.checklist ? h("p", {}, h("strong", {}, tp("patrol.checklist"), "："), p.checklist) : null,
      showMap,
      mapBox,
      task.ticket_ids.length ? h("p", { class: "muted" }, tp("patrol.cases", { ids: task.ticket_ids.map((i) => `#${i}`).join("、") })) : null,
    );
    if (task.checkin) {
      out.append(
        h("p", { class: "notice", id: "checkin-done" }, tp("patrol.checkin_at", {
          time: ctx.fmtTime(task.checkin.at), d: metres(task.checkin.distance_m), acc: metres(task.checkin.accuracy_m),
        })),
      );
    } else if (task.state === "pending") {
      out.append(checkInForm(task));
    }
    out.append(reportForm(task));
    return out;
  }

  function checkInForm(task) {
    const photo = h("input", { type: "file", accept: "image/*", capture: "environment", name: "photo", id: "checkin-photo", required: true });
    const note = h("textarea", { name: "note", rows: 2 });
    const message = h("p", { class: "form-error", role: "alert", id: "checkin-message" });
    const submit = h("button", { type: "submit", class: "primary", id: "checkin-submit" }, tp("patrol.checkin"));
    return h(
      "form",
      {
        class: "checkin-form",
        "aria-label": tp("patrol.checkin"),
        onsubmit: async (e) => {
          e.preventDefault();
          message.textContent = "";
          if (!position) {
            message.textContent = tp("patrol.need_position");
            return;
          }
          if (!photo.files.length) {
            message.textContent = tp("patrol.need_photo");
            return;
          }
          const form = new FormData();
          form.append("lon", String(position.lon));
          form.append("lat", String(position.lat));
          form.append("accuracy_m", String(position.acc));
          form.append("note", note.value);
          form.append("photo", photo.files[0]);
          submit.disabled = true;
          try {
            const done = await postForm(ctx.api, `/api/patrol/tasks/${task.id}/checkin`, form);
            toast(tp("patrol.checked_in", { time: ctx.fmtTime(done.checkin.at), d: metres(done.checkin.distance_m) }), { kind: "ok" });
            page.items = page.items.map((x) => (x.id === done.id ? done : x));
            render();
          } catch (err) {
            message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
          } finally {
            submit.disabled = false;
          }
        },
      },
      h("h3", {}, tp("patrol.checkin")),
      field(tp("patrol.photo"), photo, tp("patrol.photo_hint")),
      field(tp("patrol.note"), note),
      message,
      h("div", { class: "actions", style: { position: "sticky", bottom: "0", background: "#fff", padding: "8px 0" } }, submit),
    );
  }

  function reportForm(task) {
    const category = select(CATEGORIES.map((c) => [c, tp(`category.${c}`)]), { name: "category" });
    const description = h("textarea", { name: "description", required: true, rows: 3 });
    const photo = h("input", { type: "file", accept: "image/*", capture: "environment", name: "case-photo" });
    const message = h("p", { class: "form-error", role: "alert" });
    return h(
      "details",
      { class: "report-case", style: { marginTop: "12px" } },
      h("summary", {}, tp("patrol.report")),
      h(
        "form",
        {
          onsubmit: async (e) => {
            e.preventDefault();
            message.textContent = "";
            try {
              const photos = photo.files.length ? [await fileAsDataUrl(photo.files[0])] : [];
              const at = position || {};
              const made = await ctx.api.post(`/api/patrol/tasks/${task.id}/cases`, {
                category: category.value, description: description.value, lon: at.lon ?? null, lat: at.lat ?? null, photos,
              });
              toast(tp("patrol.reported", { id: made.ticket_id }), { kind: "ok" });
              task.ticket_ids = [...task.ticket_ids, made.ticket_id];
              render();
            } catch (err) {
              message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
            }
          },
        },
        field(tp("patrol.category"), category),
        field(tp("patrol.description"), description),
        field(tp("patrol.photo"), photo),
        message,
        h("div", { class: "actions" }, h("button", { type: "submit" }, tp("patrol.report"))),
      ),
    );
  }

  async function drawMap(box, task) {
    box.style.display = "block";
    const p = task.point;
    try {
      const L = await import("/vendor/leaflet/leaflet-src.esm.js");
      if (!document.querySelector('link[href="/vendor/leaflet/leaflet.css"]')) {
        document.head.append(Object.assign(document.createElement("link"), { rel: "stylesheet", href: "/vendor/leaflet/leaflet.css" }));
      }
      if (mapHandle) mapHandle.remove();
      mapHandle = L.map(box, { attributionControl: false, ...STILL });
      const circle = L.circle([p.lat, p.lon], { radius: p.radius_m, color: "#0b5cad" }).addTo(mapHandle).bindTooltip(p.name);
      const bounds = circle.getBounds();
      if (position) {
        L.circleMarker([position.lat, position.lon], { radius: 6, color: "#fff", weight: 2, fillColor: "#c62828", fillOpacity: 1 }).addTo(mapHandle);
        bounds.extend([position.lat, position.lon]);
      }
      mapHandle.fitBounds(bounds, { padding: [20, 20] });
    } catch {
      box.textContent = `${p.lon}, ${p.lat}`;
    }
  }

  await load();
  return () => {
    if (mapHandle) mapHandle.remove();
  };
}

/** The video patrol recorder of the wall's tour (视频巡查): a tour record, the seconds each shown camera
 * was on screen (heartbeats), the cases raised during it. Installed into pages/wall.js by the shell. */
export function videoPatrolRecorder(api) {
  let tourId = null;
  let starting = null;
  let shown = [];
  let since = 0;
  let tickets = [];
  let timer = null;
  const flush = async () => {
    if (!tourId || !shown.length) return;
    const now = Date.now();
    const seconds = Math.min(120, (now - since) / 1000);
    since = now;
    if (seconds <= 0) return;
    await Promise.all(
      shown.map((id) => api.post(`/api/video-patrols/${tourId}/heartbeat`, { camera_id: id, seconds }).catch(() => null)),
    );
  };
  return {
    async tourStarted() {
      tickets = [];
      starting = api.post("/api/video-patrols").then((r) => (tourId = r.id));
      await starting;
      timer = setInterval(() => flush(), 30000);
    },
    async pageShown(info) {
      if (starting) await starting.catch(() => null);
      await flush();
      shown = info.cameras || [];
      since = Date.now();
    },
    caseReported(info) {
      if (info.during_tour && info.ticket) tickets.push(info.ticket);
    },
    async tourStopped() {
      clearInterval(timer);
      if (starting) await starting.catch(() => null);
      await flush();
      if (tourId) await api.post(`/api/video-patrols/${tourId}/end`, { ticket_ids: tickets }).catch(() => null);
      tourId = null;
      starting = null;
      shown = [];
    },
  };
}

/** Hook the recorder into the wall page (the same module instance the router mounts). */
export async function installVideoPatrolRecorder(api) {
  const wall = await import("./wall.js");
  if (typeof wall.setPatrolRecorder === "function") wall.setPatrolRecorder(videoPatrolRecorder(api));
}
