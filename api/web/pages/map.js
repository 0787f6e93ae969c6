// The grid map: grid polygons and cameras from GET /api/dashboard/map (GeoJSON), coloured by open
// tickets, drawn with the vendored Leaflet. No base map by default (closed networks have no tile
// server); the customer's intranet map is configured on the server (GRIDPATROL_MAP_TILES_URL, a
// WMTS/XYZ tile URL template whose origin the page's CSP then allows).

import * as L from "/vendor/leaflet/leaflet-src.esm.js";
import { h, replace } from "../dom.js";
import { tb, useStyles } from "../i18n_b.js";

// no zoom or fade animations: there is no base map to animate, and Leaflet throws (_leaflet_pos) when a
// page leaves (map.remove()) in the middle of one
const STILL = { zoomAnimation: false, fadeAnimation: false, markerZoomAnimation: false };

const STATUS_COLOUR = { online: "#2f9e44", reconnecting: "#f08c00", offline: "#868e96", disabled: "#495057" };

/** Fill colour of a grid by its open tickets (never colour alone: the popup and the list say the count). */
export function openColour(open) {
  if (!open) return "#2f9e44";
  return open >= 3 ? "#e03131" : "#f08c00";
}

/** Draw the map into `container`; returns {map, destroy}. `features` is the FeatureCollection. */
export function drawMap(container, ctx, collection, { onGrid } = {}) {
  useStyles("/vendor/leaflet/leaflet.css");
  const map = L.map(container, { attributionControl: false, zoomSnap: 0.25, keyboard: true, ...STILL });
  if (collection.tiles_url) L.tileLayer(collection.tiles_url, { maxZoom: 20 }).addTo(map);
  const grids = collection.features.filter((f) => f.properties.layer === "grid");
  const leaves = grids.filter((f) => f.properties.kind === "grid");
  const shown = leaves.length ? leaves : grids;
  const outline = grids.filter((f) => f.properties.kind !== "grid");
  const layer = L.geoJSON(
    { type: "FeatureCollection", features: [...outline, ...shown] },
    {
      style: (f) =>
        f.properties.kind === "grid" || !leaves.length
          ? { color: "#1c7ed6", weight: 1.5, fillColor: openColour(f.properties.open), fillOpacity: 0.45 }
          : { color: "#495057", weight: 2, dashArray: "6 4", fill: false },
      onEachFeature: (f, lyr) => {
        const p = f.properties;
        lyr.bindTooltip(tb("map.grid_popup", { name: p.name, code: p.code, open: p.open, overdue: p.overdue }));
        if (onGrid) lyr.on("click", () => onGrid(p));
      },
    },
  );
  // the view first: Leaflet cannot draw a vector layer on a map without one
  const bounds = layer.getBounds();
  if (bounds.isValid()) map.fitBounds(bounds, { padding: [16, 16] });
  else map.setView([32.1, 118.7], 12);
  layer.addTo(map);
  for (const f of collection.features.filter((x) => x.properties.layer === "camera")) {
    const [lon, lat] = f.geometry.coordinates;
    const p = f.properties;
    L.circleMarker([lat, lon], { radius: 6, color: "#fff", weight: 2, fillColor: STATUS_COLOUR[p.status] || "#868e96", fillOpacity: 1 })
      .bindTooltip(tb("map.camera_popup", { name: p.name, status: tb(`status.${p.status}`), open: p.open }))
      .on("click", () => ctx.navigate(`#/live/${p.id}`))
      .addTo(map);
  }
  return { map, destroy: () => map.remove() };
}

/** The legend and the list of grids with their counts (the colours never stand alone). */
export function legendAndList(collection) {
  const grids = collection.features.filter((f) => f.properties.layer === "grid" && f.properties.kind === "grid");
  return h(
    "div",
    { class: "map-side" },
    h(
      "ul",
      { class: "legend", "aria-label": tb("map.legend") },
      [
        [0, "map.legend.0"],
        [1, "map.legend.1"],
        [3, "map.legend.3"],
      ].map(([n, key]) => h("li", {}, h("span", { class: "swatch", style: { background: openColour(n) } }), tb(key))),
    ),
    h(
      "table",
      { class: "table compact", "aria-label": tb("map.list") },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, tb("dash.grid")), h("th", { scope: "col" }, tb("dash.open")), h("th", { scope: "col" }, tb("dash.overdue")))),
      h(
        "tbody",
        {},
        grids.map((f) =>
          h("tr", {}, h("td", {}, `${f.properties.name}（${f.properties.code}）`), h("td", {}, f.properties.open), h("td", { class: f.properties.overdue ? "overdue" : null }, f.properties.overdue)),
        ),
      ),
    ),
  );
}

/** #/map: the map large, the legend, the grid list and the base-map setting. */
export async function mountMap(root, ctx) {
  useStyles();
  ctx.setTitle(tb("map.title"));
  const collection = await ctx.api.get("/api/dashboard/map");
  const box = h("div", { class: "map-large", id: "grid-map", role: "region", "aria-label": tb("map.label") });
  replace(
    root,
    h("h1", {}, tb("map.title")),
    h("div", { class: "map-page" }, box, legendAndList(collection)),
    h("p", { class: "hint map-tiles" }, collection.tiles_url ? tb("map.tiles_on", { url: collection.tiles_url }) : tb("map.tiles_off")),
  );
  const drawn = drawMap(box, ctx, collection);
  return () => drawn.destroy();
}
