// 数字云图: a few large numbers, the map of grids coloured by open tickets, open and overdue tickets by
// grid and category, the trend per day (vendored Apache ECharts), time to accept and resolve per grid
// leader, the ranking with its formula, and the camera health summary. #/map shows the map alone.

import * as echarts from "/vendor/echarts/echarts.esm.min.js";
import { h, replace } from "../dom.js";
import { tb, useStyles } from "../i18n_b.js";
import { drawMap, legendAndList, mountMap } from "./map.js";

export async function mount(root, ctx) {
  if (ctx.params.view === "map") return mountMap(root, ctx);
  useStyles();
  ctx.setTitle(tb("dash.title"));
  // the ranking is the evaluation's (考核), the one computation the periodic reports use too
  const [summary, stats, collection, scores] = await Promise.all([
    ctx.api.get("/api/dashboard/summary"),
    ctx.api.get("/api/stats"),
    ctx.api.get("/api/dashboard/map"),
    ctx.api.get("/api/evaluation/scores?level=grid"),
  ]);
  const handled = stats.leaders.reduce((n, r) => n + r.assigned, 0);
  const onTime = handled ? stats.leaders.reduce((n, r) => n + r.on_time_rate * r.assigned, 0) / handled : null;
  const big = [
    ["dash.new_today", summary.new_today, null],
    ["dash.open", summary.open, null],
    ["dash.overdue", summary.overdue, summary.overdue ? "alarm" : null],
    ["dash.on_time", onTime === null ? "—" : `${Math.round(onTime * 100)}%`, null],
  ];
  const mapBox = h("div", { class: "map-small", id: "grid-map", role: "region", "aria-label": tb("map.label") });
  const trendBox = h("div", { class: "chart", id: "trend-chart", role: "img", "aria-label": tb("dash.trend_label") });
  replace(
    root,
    h("div", { class: "dash-head" }, h("h1", {}, tb("dash.title")), h("span", { class: "muted" }, tb("dash.window"))),
    h(
      "div",
      { class: "dash-top" },
      h("section", { class: "dash-map", "aria-labelledby": "map-h" }, h("h2", { id: "map-h" }, tb("map.title")), mapBox, legendAndList(collection)),
      h(
        "section",
        { class: "dash-numbers", "aria-label": tb("dash.title") },
        h("ul", { class: "big-numbers" }, big.map(([key, value, cls]) => h("li", { class: cls }, h("strong", {}, value), h("span", {}, tb(key))))),
        cameraHealth(summary.cameras),
      ),
    ),
    h(
      "div",
      { class: "dash-grid" },
      h("section", { "aria-labelledby": "trend-h" }, h("h2", { id: "trend-h" }, tb("dash.trend")), trendBox, trendTable(stats.by_day)),
      h("section", { "aria-labelledby": "bygrid-h" }, h("h2", { id: "bygrid-h" }, tb("dash.by_grid")), byGrid(summary.by_grid_category, ctx)),
      h("section", { "aria-labelledby": "leaders-h" }, h("h2", { id: "leaders-h" }, tb("dash.leaders")), leaders(stats.leaders, ctx)),
      h(
        "section",
        { "aria-labelledby": "rank-h" },
        h("h2", { id: "rank-h" }, tb("dash.ranking")),
        h("p", { class: "formula", id: "ranking-formula" }, tb("dash.formula", { formula: scores.formula })),
        ranking(scores.items),
        h("p", {}, h("a", { href: "#/evaluation" }, tb("dash.ranking_more"))),
      ),
    ),
  );
  const drawn = drawMap(mapBox, ctx, collection);
  const chart = echarts.init(trendBox, null, { renderer: "canvas" });
  const days = localDays(stats.since, stats.until, ctx);
  chart.setOption({
    animation: false,
    grid: { left: 40, right: 16, top: 16, bottom: 28 },
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: days.map((d) => d.slice(5)) },
    yAxis: { type: "value", minInterval: 1 },
    series: [{ name: tb("dash.trend"), type: "line", data: days.map((d) => stats.by_day[d] || 0), smooth: false, areaStyle: { opacity: 0.15 } }],
  });
  const onResize = () => chart.resize();
  window.addEventListener("resize", onResize);
  return () => {
    window.removeEventListener("resize", onResize);
    chart.dispose();
    drawn.destroy();
  };
}

/** Every local calendar day of the window (days without tickets count 0), oldest first. */
function localDays(since, until, ctx) {
  const days = [];
  for (let at = Date.parse(since); at < Date.parse(until) + 86_400_000; at += 86_400_000) {
    const day = ctx.fmtTime(at).slice(0, 10);
    if (!days.includes(day) && at <= Date.parse(until)) days.push(day);
  }
  const last = ctx.fmtTime(until).slice(0, 10);
  if (!days.includes(last)) days.push(last);
  return days;
}

function cameraHealth(cameras) {
  const order = ["online", "reconnecting", "offline", "unknown", "disabled"];
  const keys = [...order.filter((k) => k in cameras.by_status), ...Object.keys(cameras.by_status).filter((k) => !order.includes(k))];
  return h(
    "div",
    { class: "camera-health", role: "group", "aria-label": tb("dash.cameras") },
    h("h2", {}, `${tb("dash.cameras")}（${cameras.total}）`),
    h("ul", {}, keys.map((k) => h("li", { class: `st-${k}` }, h("span", { class: "dot", "aria-hidden": "true" }), `${tb(`status.${k}`)} ${cameras.by_status[k]}`))),
  );
}

function table(head, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, tb(empty || "dash.empty"));
  return h("table", { class: "table compact" }, h("thead", {}, h("tr", {}, head.map((x) => h("th", { scope: "col" }, x)))), h("tbody", {}, rows));
}

function trendTable(byDay) {
  // the chart's numbers as text for screen readers and for copying
  const days = Object.keys(byDay).slice(-7);
  return h("details", {}, h("summary", {}, tb("dash.trend")), table(["日期", "工单"], days.map((d) => h("tr", {}, h("td", {}, d), h("td", {}, byDay[d])))));
}

function byGrid(cells, ctx) {
  return table(
    [tb("dash.grid"), tb("dash.category"), tb("dash.open"), tb("dash.overdue")],
    cells.map((c) =>
      h(
        "tr",
        {},
        h("td", {}, c.grid_name ? `${c.grid_name}（${c.grid_code}）` : tb("dash.no_grid")),
        h("td", {}, ctx.label("category", c.category)),
        h("td", {}, c.open),
        h("td", { class: c.overdue ? "overdue" : null }, c.overdue ? `${c.overdue} ⚠` : "0"),
      ),
    ),
  );
}

function dur(ctx, s) {
  return s === null || s === undefined ? "—" : ctx.fmtDuration(s);
}

function leaders(rows, ctx) {
  return table(
    [tb("dash.leader"), tb("dash.assigned"), tb("dash.resolved"), `${tb("dash.avg_accept")}${tb("dash.median_note")}`, `${tb("dash.avg_resolve")}${tb("dash.median_note")}`, tb("dash.overdue")],
    rows.map((r) =>
      h("tr", {}, h("td", {}, r.display_name || r.username), h("td", {}, r.assigned), h("td", {}, r.resolved), h("td", {}, dur(ctx, r.median_accept_s)), h("td", {}, dur(ctx, r.median_resolve_s)), h("td", {}, r.overdue)),
    ),
  );
}

function share(score, name) {
  const c = score.components.find((x) => x.name === name);
  return c && c.share !== null ? `${Math.round(c.share * 100)}%` : "—";
}

function ranking(rows) {
  return table(
    [tb("dash.rank"), tb("dash.grid"), tb("dash.on_time"), tb("dash.score")],
    rows.slice(0, 10).map((r) =>
      h(
        "tr",
        {},
        h("td", {}, r.rank),
        h("td", {}, r.name),
        h("td", {}, share(r, "on_time_resolve")),
        h("td", {}, h("strong", {}, r.total === null ? "—" : r.total.toFixed(1))),
      ),
    ),
  );
}
