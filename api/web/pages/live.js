// 单画面预览: one camera at full rate over WS /api/cameras/{id}/live (fMP4 into Media Source Extensions,
// or JPEG frames when the browser cannot play the camera's codec), with its zones, open tickets and events.
// A camera the viewer may not see answers 404 and the page shows nothing about it.

import { h, replace, toast } from "../dom.js";
import { ApiError } from "../api.js";
import { t, label, fmtTime } from "../i18n.js";
import { reportFromFrame } from "./wall.js";

const CANDIDATES = [
  "avc1.640029", "avc1.64002A", "avc1.640033", "avc1.640028", "avc1.4D401F", "avc1.4D4029", "avc1.42E01E", "avc1.42001E",
  "hvc1.1.6.L153.B0", "hvc1.1.6.L120.90", "hvc1.2.4.L153.B0", "hev1.1.6.L153.B0",
];
const LIVE_LAG_S = 1.5; // behind the live edge by more than this: jump forward
const KEEP_S = 10; // seconds of video kept in the buffer

/** The codecs this browser's MSE can play, comma-separated, for the server to choose from. */
export function supportedCodecs() {
  if (!window.MediaSource) return "";
  return CANDIDATES.filter((c) => MediaSource.isTypeSupported(`video/mp4; codecs="${c}"`)).join(",");
}

/** Plays one camera's live view into `box`; `onStatus(text, kind)` reports progress. */
export class LivePlayer {
  constructor({ api, cameraId, stream, box, onStatus }) {
    Object.assign(this, { api, cameraId, stream, box, onStatus });
    this.closed = false;
    this.queue = [];
    this.mode = null;
    this.backoff = 1000;
    this.connect();
  }

  connect() {
    if (this.closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const qs = this.stream === "sub" ? "?stream=sub" : "";
    const ws = new WebSocket(`${proto}//${location.host}/api/cameras/${this.cameraId}/live${qs}`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.onStatus(t("live.connecting"));
    ws.onopen = () => ws.send(JSON.stringify({ type: "mse", value: supportedCodecs() }));
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return this.media(event.data);
      const msg = JSON.parse(event.data);
      if (msg.type === "mse") this.startMse(msg.value);
      else if (msg.type === "mjpeg") this.startJpeg();
      else if (msg.type === "error") this.onStatus(t("live.error", { reason: msg.value }), "error");
      else if (msg.type === "end") {
        this.ended = msg.reason;
        this.onStatus(t("live.ended", { reason: msg.detail || msg.reason }), "error");
      }
    };
    ws.onclose = async (event) => {
      if (this.closed) return;
      if (event.code === 4404 || event.code === 4403) return; // nothing to retry: not this viewer's camera
      if (event.code === 4401 || this.ended === "expired") {
        if (!(await this.api.refresh())) return this.api.onUnauthorized();
      }
      if (this.ended === "revoked" || this.ended === "access_changed") return;
      this.ended = null;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 15000);
    };
  }

  startMse(mime) {
    this.mode = "mse";
    this.queue = [];
    const video = h("video", { autoplay: true, muted: true, playsinline: true, "aria-label": t("live.title") });
    video.muted = true;
    const source = new MediaSource();
    video.src = URL.createObjectURL(source);
    replace(this.box, video);
    this.video = video;
    source.addEventListener("sourceopen", () => {
      URL.revokeObjectURL(video.src);
      try {
        this.buffer = source.addSourceBuffer(mime);
      } catch (err) {
        this.onStatus(t("live.error", { reason: String(err) }), "error");
        return;
      }
      this.buffer.mode = "segments";
      this.buffer.addEventListener("updateend", () => this.pump());
      this.pump();
    });
    video.addEventListener("playing", () => this.onStatus(t("live.mse"), "ok"));
  }

  startJpeg() {
    this.mode = "mjpeg";
    this.img = h("img", { alt: t("live.title") });
    replace(this.box, this.img);
    this.onStatus(t("live.mjpeg"), "ok");
  }

  media(data) {
    if (this.mode === "mjpeg") {
      const url = URL.createObjectURL(new Blob([data], { type: "image/jpeg" }));
      const old = this.img.src;
      this.img.src = url;
      if (old) URL.revokeObjectURL(old);
      this.backoff = 1000;
      return;
    }
    if (this.mode !== "mse") return;
    this.queue.push(data);
    if (this.queue.length > 200) this.queue.splice(0, this.queue.length - 200);
    this.pump();
  }

  pump() {
    const b = this.buffer;
    if (!b || b.updating || !this.queue.length) return;
    const video = this.video;
    try {
      if (b.buffered.length) {
        const start = b.buffered.start(0);
        const end = b.buffered.end(b.buffered.length - 1);
        if (end - start > KEEP_S * 2 && video.currentTime - start > KEEP_S) {
          b.remove(start, video.currentTime - KEEP_S); // keep the buffer short
          return;
        }
        if (end - video.currentTime > LIVE_LAG_S) video.currentTime = end - 0.2; // jump to the live edge
      }
      b.appendBuffer(this.queue.shift());
      this.backoff = 1000;
      if (video.paused) video.play().catch(() => {});
    } catch (err) {
      console.warn("live view append", err);
    }
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
    if (this.img && this.img.src) URL.revokeObjectURL(this.img.src);
  }
}

export async function mount(root, ctx) {
  const { api, params, me } = ctx;
  const id = Number(params.cameraId);
  let camera;
  try {
    camera = await api.get(`/api/cameras/${encodeURIComponent(params.cameraId)}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 422)) {
      replace(root, h("div", { class: "notice error", role: "alert" }, t("error.not_found"), " ", h("a", { href: "#/wall" }, t("common.back"))));
      return;
    }
    throw err;
  }
  ctx.setTitle(`${camera.name} · ${t("live.title")}`);
  let stream = "main";
  const box = h("div", { class: "player-box", style: { width: "100%", height: "100%", display: "flex", alignItems: "center", justifyContent: "center" } });
  const state = h("span", { class: "badge grey mode", role: "status" }, t("live.connecting"));
  const onStatus = (text, kind) => {
    state.textContent = text;
    state.className = `badge mode ${kind === "error" ? "red" : kind === "ok" ? "green" : "grey"}`;
  };
  let player = new LivePlayer({ api, cameraId: id, stream, box, onStatus });
  const streamSelect = h(
    "select",
    { "aria-label": `${t("live.main")}/${t("live.sub")}`, onchange: (e) => { stream = e.target.value; player.close(); player = new LivePlayer({ api, cameraId: id, stream, box, onStatus }); } },
    h("option", { value: "main" }, t("live.main")),
    h("option", { value: "sub" }, t("live.sub")),
  );

  const ticketsList = h("ul", {}, h("li", { class: "muted" }, t("common.loading")));
  const eventsList = h("ul", {}, h("li", { class: "muted" }, t("common.loading")));
  const zonesList = h("ul", {}, h("li", { class: "muted" }, t("common.loading")));
  const side = h(
    "aside", { "aria-label": camera.name },
    h("h1", {}, camera.name),
    h("p", { class: "muted" }, [camera.grid_name, camera.grid_code].filter(Boolean).join(" · ")),
    h("div", { class: "actions" },
      streamSelect,
      h("button", { type: "button", class: "primary", onclick: () => reportFromFrame({ api, camera }) }, t("wall.report")),
      h("a", { class: "button", href: `/api/cameras/${id}/snapshot.jpg?overlay=zones,detections`, target: "_blank", rel: "noopener" }, t("wall.snapshot")),
      ["admin", "operator"].includes(me.role) ? h("a", { class: "button", href: `#/zones/${id}` }, t("live.zones")) : null,
      h("a", { class: "button ghost", href: "#/wall" }, t("common.back")),
    ),
    h("h2", {}, t("live.tickets")), ticketsList,
    h("h2", {}, t("live.zones")), zonesList,
    h("h2", {}, t("live.events")), eventsList,
  );
  replace(root, h("div", { class: "live" }, h("section", { class: "player", "aria-label": t("live.title") }, box, state), side));

  const ticketItem = (tk) =>
    h("li", {}, h("a", { href: `#/tickets/${tk.id}` }, `${label("category", tk.category)} · ${label("state", tk.state)}`), " ", h("small", { class: "muted" }, fmtTime(tk.opened_at)), tk.overdue ? h("span", { class: "badge red" }, t("tickets.overdue_by", { d: "" }).trim()) : null);
  const [open, recent, zones] = await Promise.allSettled([
    api.get("/api/tickets", { camera_id: id, state: ["open", "dispatched", "accepted", "rejected", "reopened", "resolved"], limit: 20 }),
    api.get("/api/tickets", { camera_id: id, limit: 10 }),
    api.get(`/api/cameras/${id}/zones`),
  ]);
  replace(ticketsList, open.status === "fulfilled" && open.value.items.length ? open.value.items.map(ticketItem) : h("li", { class: "muted" }, t("common.none")));
  replace(eventsList, recent.status === "fulfilled" && recent.value.items.length ? recent.value.items.map(ticketItem) : h("li", { class: "muted" }, t("common.none")));
  const zoneItems = zones.status === "fulfilled" ? zones.value.zones || [] : [];
  replace(zonesList, zoneItems.length ? zoneItems.map((z) => h("li", {}, `${z.name}（${label("zonekind", z.kind)}）`)) : h("li", { class: "muted" }, t("common.none")));
  if (open.status === "rejected") toast(open.reason.message_for_user ? open.reason.message_for_user() : String(open.reason), { kind: "error" });

  return () => player.close();
}
