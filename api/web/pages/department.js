// A department's work list (协办任务), phone-first: each part with its ticket, deadline and state, and
// the buttons of the next step (受理 / 退回 / 处置完成 with a note and a photo from the phone's camera).

import { h, replace, field, toast } from "../dom.js";
import { fileAsDataUrl } from "../api.js";
import { to } from "../i18n_org.js";

// cards readable on a phone without a stylesheet of their own (the shell's style.css styles the rest)
const CARD = { border: "1px solid #c8ced6", borderRadius: "8px", padding: "12px", margin: "0 8px 12px", background: "#fff" };

export async function mount(root, ctx) {
  ctx.setTitle(to("dept.title"));
  const list = h("div", { class: "dept-list" });
  replace(root, h("h1", {}, to("dept.title")), list);

  async function act(part, action, form) {
    const body = { action, note: "", photos: [] };
    if (form) {
      body.note = form.querySelector("textarea").value;
      const file = form.querySelector("input[type=file]").files[0];
      if (file) body.photos = [await fileAsDataUrl(file)];
    }
    try {
      await ctx.api.post(`/api/parts/${part.id}/actions`, body);
      toast(to("dept.done"), { kind: "ok" });
      await load();
    } catch (err) {
      toast(err.message_for_user ? err.message_for_user() : String(err), { kind: "error" });
    }
  }

  function card(p) {
    const form = h(
      "form",
      { class: "part-form", onsubmit: (e) => (e.preventDefault(), act(p, "resolve", e.target)) },
      field(to("dept.note"), h("textarea", { name: "note", rows: 3, maxlength: 2000 })),
      field(to("dept.photo"), h("input", { type: "file", name: "photo", accept: "image/*", capture: "environment" })),
      h("button", { type: "submit", class: "primary" }, to("dept.resolve")),
    );
    const buttons = [];
    if (p.state === "dispatched") {
      buttons.push(h("button", { type: "button", class: "primary", onclick: () => act(p, "accept") }, to("dept.accept")));
      buttons.push(
        h("button", {
          type: "button",
          class: "ghost",
          onclick: () => {
            const note = prompt(to("dept.reject"));
            if (note) ctx.api.post(`/api/parts/${p.id}/actions`, { action: "reject", note }).then(load, (err) => toast(err.message_for_user(), { kind: "error" }));
          },
        }, to("dept.reject")),
      );
    }
    return h(
      "article",
      { class: ["part-card", p.overdue ? "overdue" : null], "data-part": p.id, style: CARD },
      h("h2", {}, `#${p.ticket_id} ${ctx.label("category", p.category)}`),
      h("p", { class: "state" }, to(`part.state.${p.state}`), p.overdue ? h("strong", { class: "overdue" }, ` · ${to("dept.overdue")}`) : null),
      h("p", {}, p.description),
      h("p", {}, `${p.grid_name || ""} · ${to("dept.deadline", { at: ctx.fmtTime(p.resolve_by) })}`),
      p.reason ? h("p", { class: "hint" }, p.reason) : null,
      h("p", {}, h("a", { href: `#/tickets/${p.ticket_id}` }, to("dept.ticket"))),
      h("div", { class: "actions" }, buttons),
      p.state === "accepted" ? form : null,
    );
  }

  async function load() {
    const parts = await ctx.api.get("/api/parts");
    replace(list, parts.length ? parts.map(card) : h("p", {}, to("dept.none")));
  }

  await load();
}
