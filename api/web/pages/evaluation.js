// The evaluation page (#/evaluation, 考核排名): scores of grids, streets or people over chosen days with
// every component, a click on a figure drills down to the tickets, tasks, callbacks or video views
// behind it; the reports (weekly, monthly, on demand) with their spreadsheet and printable page.

import { ApiError } from "../api.js";
import { h, field, replace, select, toast } from "../dom.js";
import { tp } from "../i18n_patrol.js";

const CELL = { border: "1px solid #d8dee6", padding: "4px 6px", textAlign: "right" };
const LEFT = { ...CELL, textAlign: "left" };

function localDay(offsetDays = 0) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date(Date.now() + offsetDays * 86400000));
  return parts;
}

function percent(share) {
  return share === null || share === undefined ? null : `${(share * 100).toFixed(1)}%`;
}

function errorText(err) {
  return err instanceof ApiError ? err.message_for_user() : String(err);
}

export async function mount(root, ctx) {
  ctx.setTitle(tp("eval.title"));
  const state = {
    level: ctx.query.level || (["grid_leader", "patroller"].includes(ctx.me.role) ? "person" : "grid"),
    first: ctx.query.first_day || localDay(-6),
    last: ctx.query.last_day || localDay(0),
  };
  const level = select(["grid", "street", "person"].map((x) => [x, tp(`eval.level.${x}`)]), { selected: state.level, name: "level" });
  const first = h("input", { type: "date", name: "first_day", value: state.first });
  const last = h("input", { type: "date", name: "last_day", value: state.last });
  const table = h("div", { id: "eval-table", style: { overflowX: "auto" } });
  const drill = h("div", { id: "eval-drill", "aria-live": "polite" });
  const reports = h("div", { id: "eval-reports" });
  const formula = h("p", { class: "muted", id: "eval-formula" });
  replace(
    root,
    h(
      "section",
      { style: { padding: "12px" }, "aria-labelledby": "eval-h" },
      h("h1", { id: "eval-h" }, tp("eval.title")),
      h(
        "form",
        {
          class: "inline",
          style: { flexWrap: "wrap", gap: "12px", alignItems: "flex-end" },
          onsubmit: (e) => {
            e.preventDefault();
            Object.assign(state, { level: level.value, first: first.value, last: last.value });
            loadScores();
          },
        },
        field(tp("eval.level"), level),
        field(tp("eval.first_day"), first),
        field(tp("eval.last_day"), last),
        h("button", { type: "submit", class: "primary", style: { marginBottom: "10px" } }, tp("eval.show")),
      ),
      formula,
      table,
      drill,
      h("h2", {}, tp("eval.reports")),
      reports,
    ),
  );

  async function loadScores() {
    replace(drill);
    let page;
    try {
      page = await ctx.api.get("/api/evaluation/scores", { level: state.level, first_day: state.first, last_day: state.last });
    } catch (err) {
      replace(table, h("div", { class: "notice error", role: "alert" }, errorText(err)));
      return;
    }
    const comps = page.items.length ? page.items[0].components : [];
    formula.textContent = tp("eval.formula", { formula: page.formula });
    replace(
      table,
      h(
        "table",
        { style: { borderCollapse: "collapse", width: "100%", background: "#fff" } },
        h("thead", {}, h("tr", {},
          [tp("eval.rank"), tp("eval.name"), tp("eval.total")].map((x) => h("th", { style: LEFT }, x)),
          comps.map((c) => h("th", { style: CELL }, `${c.label}（${c.weight}）`)))),
        h(
          "tbody",
          {},
          page.items.map((s) =>
            h(
              "tr",
              { dataset: { code: s.code } },
              h("td", { style: LEFT }, String(s.rank)),
              h("td", { style: LEFT }, `${s.name}（${s.code}）`),
              h("td", { style: { ...CELL, fontWeight: "700" } }, s.total === null ? tp("eval.no_data") : s.total.toFixed(2)),
              s.components.map((c) =>
                h("td", { style: CELL },
                  c.share === null
                    ? h("span", { class: "muted" }, "—")
                    : h("button", {
                        type: "button",
                        class: "ghost",
                        title: `${c.numerator} / ${c.denominator}`,
                        "aria-label": `${s.name} ${c.label} ${percent(c.share)}`,
                        onclick: () => showDrill(s, c),
                      }, percent(c.share))),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function showDrill(score, component, rows) {
    let out;
    try {
      out = await ctx.api.get("/api/evaluation/drilldown", {
        level: state.level, subject_id: score.subject_id, component: component.name, rows, first_day: state.first, last_day: state.last,
      });
    } catch (err) {
      replace(drill, h("div", { class: "notice error", role: "alert" }, errorText(err)));
      return;
    }
    const kinds = Object.keys(out.component.rows);
    const chooser = kinds.length > 1
      ? field(tp("eval.drill_rows"), select(kinds.map((k) => [k, k]), { selected: rows || kinds[0], onchange: (e) => showDrill(score, component, e.target.value) }))
      : null;
    const cols = out.items.length ? Object.keys(out.items[0]) : [];
    replace(
      drill,
      h(
        "div",
        { class: "card", style: { marginTop: "12px" } },
        h("h2", {}, tp("eval.drill", { name: score.name, component: component.label })),
        h("p", { class: "muted" }, `${component.numerator} / ${component.denominator} = ${percent(component.share)}`),
        chooser,
        out.items.length
          ? h("table", { style: { borderCollapse: "collapse", width: "100%" } },
              h("thead", {}, h("tr", {}, cols.map((c) => h("th", { style: LEFT }, c)))),
              h("tbody", {}, out.items.map((row) => h("tr", {}, cols.map((c) => {
                const v = row[c];
                const text = typeof v === "string" && /^\d{4}-\d\d-\d\dT/.test(v) ? ctx.fmtTime(v) : v === null ? "" : String(v);
                return h("td", { style: LEFT }, c === "ticket_id" ? h("a", { href: `#/tickets/${v}` }, `#${v}`) : text);
              })))))
          : h("p", { class: "muted" }, tp("eval.drill_none")),
      ),
    );
  }

  async function loadReports() {
    if (!["admin", "operator", "manager"].includes(ctx.me.role)) {
      replace(reports, h("p", { class: "muted" }, tp("eval.reports_forbidden")));
      return;
    }
    let list;
    try {
      list = await ctx.api.get("/api/evaluation/reports");
    } catch (err) {
      replace(reports, h("div", { class: "notice error", role: "alert" }, errorText(err)));
      return;
    }
    const period = select(["weekly", "monthly", "custom"].map((x) => [x, tp(`eval.period.${x}`)]), { name: "period" });
    const message = h("p", { class: "form-error", role: "alert" });
    replace(
      reports,
      h(
        "form",
        {
          class: "inline",
          style: { gap: "12px", alignItems: "flex-end" },
          onsubmit: async (e) => {
            e.preventDefault();
            try {
              const made = await ctx.api.post("/api/evaluation/reports", {
                period: period.value, first_day: period.value === "custom" ? state.first : state.last, last_day: period.value === "custom" ? state.last : null,
              });
              toast(tp("eval.generated", { title: made.title }), { kind: "ok" });
              await loadReports();
            } catch (err) {
              message.textContent = errorText(err);
            }
          },
        },
        field(tp("eval.generate"), period),
        h("button", { type: "submit", style: { marginBottom: "10px" } }, tp("eval.generate")),
      ),
      message,
      list.length
        ? h("ul", { id: "report-list" }, list.map((r) =>
            h("li", { dataset: { reportId: String(r.id) } },
              `${r.title} · ${ctx.fmtTime(r.generated_at)}${r.scheduled ? ` · ${tp("eval.scheduled")}` : ""} · `,
              h("a", { href: r.xlsx_url, download: `report-${r.id}.xlsx` }, tp("eval.download_xlsx")),
              " · ",
              h("a", { href: r.html_url, target: "_blank", rel: "noopener" }, tp("eval.open_html")))))
        : h("p", { class: "muted" }, tp("eval.no_reports")),
    );
  }

  await Promise.all([loadScores(), loadReports()]);
}
