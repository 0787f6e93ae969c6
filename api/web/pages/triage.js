// The centre's triage desk (统一受理、分流交办): cases from 12345, 110, patrol and video waiting for dispatch,
// longest wait first; one action sends a case to a grid (its leader leads) and/or departments (协办);
// likely duplicates (same place and problem) merge into one ticket that keeps both sources; grid
// leaders' linkage requests (请求联动) are answered here.

import { h, replace, field, toast } from "../dom.js";
import { to } from "../i18n_org.js";

export async function mount(root, ctx) {
  ctx.setTitle(to("triage.title"));
  const [departments, grids] = await Promise.all([
    ctx.api.get("/api/departments"),
    ctx.api.get("/api/grids").catch(() => []),
  ]);
  const flat = (nodes) => nodes.flatMap((n) => [n, ...flat(n.children || [])]);
  const gridList = flat(Array.isArray(grids) ? grids : grids.items || []).filter((g) => g.kind === "grid");
  const list = h("div", { class: "triage-list" });
  const requests = h("section", { "aria-label": to("triage.requests") });
  const summary = h("p", { class: "triage-summary", role: "status" });
  replace(root, h("h1", {}, to("triage.title")), summary, list, h("h2", {}, to("triage.requests")), requests);

  function deptChoices(name) {
    return h(
      "fieldset",
      { class: "dept-choices" },
      h("legend", {}, to("triage.departments")),
      departments.map((d) =>
        h("label", { class: "check" }, h("input", { type: "checkbox", name, value: d.code }), ` ${d.name}（${to("kind." + d.kind)}）`),
      ),
    );
  }

  function card(item) {
    const gridSelect = h(
      "select",
      { name: "grid" },
      h("option", { value: "" }, to("triage.no_grid")),
      gridList.map((g) => h("option", { value: g.code, selected: g.code === item.grid }, `${g.name}（${g.code}）`)),
    );
    const note = h("input", { type: "text", name: "note", maxlength: 2000 });
    const depts = deptChoices(`dept-${item.id}`);
    const form = h(
      "form",
      {
        class: "triage-form",
        onsubmit: async (e) => {
          e.preventDefault();
          const chosen = [...depts.querySelectorAll("input:checked")].map((i) => i.value);
          try {
            await ctx.api.post(`/api/triage/${item.id}/dispatch`, { grid: gridSelect.value || null, departments: chosen, note: note.value });
            toast(to("triage.dispatched", { id: item.id }), { kind: "ok" });
            await load();
          } catch (err) {
            toast(err.message_for_user ? err.message_for_user() : String(err), { kind: "error" });
          }
        },
      },
      field(to("triage.grid"), gridSelect),
      depts,
      field(to("triage.note"), note),
      h("button", { type: "submit", class: "primary" }, to("triage.dispatch")),
    );
    const dups = item.duplicates.length
      ? h(
          "p",
          { class: "dups" },
          to("triage.duplicates"),
          item.duplicates.map((id) =>
            h("button", {
              type: "button",
              class: "ghost",
              onclick: async () => {
                try {
                  await ctx.api.post(`/api/triage/${id}/merge`, { duplicate_id: item.id });
                  toast(to("triage.merged", { id }), { kind: "ok" });
                  await load();
                } catch (err) {
                  toast(err.message_for_user ? err.message_for_user() : String(err), { kind: "error" });
                }
              },
            }, to("triage.merge", { id })),
          ),
        )
      : null;
    return h(
      "article",
      { class: "triage-card", "data-ticket": item.id, style: { border: "1px solid #c8ced6", borderRadius: "8px", padding: "12px", marginBottom: "12px" } },
      h("h3", {}, `#${item.id} ${ctx.label("category", item.category)}`),
      h("p", {}, item.description),
      h("dl", {},
        h("dt", {}, to("triage.source")), h("dd", {}, item.sources.map((s) => ctx.label("source", s)).join(" + ")),
        h("dt", {}, to("triage.place")), h("dd", {}, item.grid_name || "-"),
        h("dt", {}, to("triage.waited")), h("dd", { class: "waited" }, ctx.fmtDuration(item.waiting_s)),
      ),
      dups,
      form,
    );
  }

  function requestRow(r) {
    const pick = h("select", { "aria-label": to("triage.departments") }, departments.filter((d) => d.kind === r.kind || r.kind === "other").map((d) => h("option", { value: d.code }, d.name)));
    return h(
      "div",
      { class: "request" },
      `#${r.ticket_id} · ${to("kind." + r.kind)} · ${r.requested_by || ""} ${r.reason}`,
      pick,
      h("button", {
        type: "button",
        onclick: async () => {
          try {
            await ctx.api.post(`/api/linkage-requests/${r.id}/answer`, { department: pick.value || null });
            toast(to("triage.answered"), { kind: "ok" });
            await load();
          } catch (err) {
            toast(err.message_for_user ? err.message_for_user() : String(err), { kind: "error" });
          }
        },
      }, to("triage.answer")),
    );
  }

  async function load() {
    const q = await ctx.api.get("/api/triage");
    summary.textContent = to("triage.waiting", { n: q.waiting, wait: ctx.fmtDuration(q.longest_wait_s) });
    replace(list, q.items.length ? q.items.map(card) : h("p", {}, to("triage.none")));
    replace(requests, q.pending_requests.length ? q.pending_requests.map(requestRow) : h("p", {}, to("triage.no_requests")));
  }

  await load();
  const timer = setInterval(() => load().catch(() => {}), 30000);
  return () => clearInterval(timer);
}
