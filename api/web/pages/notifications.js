// 消息通知: the user's own channels (WeCom / DingTalk group robots, e-mail, SMS), what they receive, quiet
// hours, a test send and their latest deliveries. Secrets are write-only: the server answers only whether
// one is set (****abcd); an empty secret field keeps the stored one.

import { h, replace, field, select, toast } from "../dom.js";
import { tn } from "../i18n_notify.js";

const SECRET_FIELDS = { wecom: ["key"], dingtalk: ["access_token", "sign_secret"], email: [], sms: [] };

export async function mount(root, ctx) {
  ctx.setTitle(tn("notify.title"));
  let data = await ctx.api.get("/api/me/notifications");

  function channelRow(c, i) {
    const inputs = {};
    const parts = [
      h("strong", {}, data.channel_kinds[c.kind] || c.kind),
      field(tn("notify.label"), (inputs.label = h("input", { name: `label-${i}`, value: c.label || "", maxlength: 100 }))),
    ];
    if (c.kind === "email" || c.kind === "sms") {
      inputs.address = h("input", { name: `address-${i}`, value: c.address || "", type: c.kind === "email" ? "email" : "tel", required: true });
      parts.push(field(tn(`notify.address.${c.kind}`), inputs.address));
    }
    for (const name of SECRET_FIELDS[c.kind]) {
      const hint = c.secrets && c.secrets[name];
      inputs[name] = h("input", { name: `${name}-${i}`, type: "password", autocomplete: "off", value: "" });
      parts.push(field(tn(`notify.${name}`), inputs[name], hint ? tn("notify.secret_set", { hint }) : null));
    }
    inputs.enabled = h("input", { type: "checkbox", name: `enabled-${i}`, checked: c.enabled !== false });
    parts.push(h("label", { class: "check" }, inputs.enabled, " ", tn("notify.enabled")));
    parts.push(h("button", { type: "button", class: "ghost", onclick: () => (data.channels.splice(i, 1), render()) }, tn("notify.remove")));
    c._inputs = inputs;
    return h("fieldset", { class: "notify-channel", "data-kind": c.kind }, parts);
  }

  function collect(kindBoxes, quiet) {
    return {
      version: data.version,
      kinds: kindBoxes.filter((b) => b.checked).map((b) => b.value),
      quiet_start: quiet.start.value || null,
      quiet_end: quiet.end.value || null,
      timezone: quiet.tz.value || "Asia/Shanghai",
      urgent_in_quiet: quiet.urgent.checked,
      channels: data.channels.map((c) => {
        const out = { kind: c.kind, label: c._inputs.label.value, enabled: c._inputs.enabled.checked };
        if (c.id) out.id = c.id;
        if (c._inputs.address) out.address = c._inputs.address.value;
        for (const name of SECRET_FIELDS[c.kind]) if (c._inputs[name].value) out[name] = c._inputs[name].value;
        return out;
      }),
    };
  }

  function recentTable() {
    if (!data.recent.length) return h("p", {}, tn("notify.none"));
    const kindName = Object.fromEntries(data.available_kinds.map((k) => [k.kind, k.name]));
    return h(
      "table",
      { class: "notify-recent" },
      h("thead", {}, h("tr", {}, ["time", "kind", "channel", "state", "error"].map((c) => h("th", {}, tn(`notify.col.${c}`))))),
      h("tbody", {}, data.recent.map((d) =>
        h("tr", { "data-state": d.state },
          h("td", {}, ctx.fmtTime(d.created_at)),
          h("td", {}, (kindName[d.kind] || tn(`notify.kind.${d.kind}`)) + (d.ticket_id ? ` #${d.ticket_id}` : "")),
          h("td", {}, data.channel_kinds[d.channel_kind] || d.channel_kind),
          h("td", { class: d.state === "failed" ? "overdue" : null }, tn(`notify.state.${d.state}`)),
          h("td", {}, d.last_error || ""),
        ),
      )),
    );
  }

  function render() {
    const kindBoxes = data.available_kinds.map((k) => h("input", { type: "checkbox", name: "kinds", value: k.kind, checked: data.kinds.includes(k.kind) }));
    const quiet = {
      start: h("input", { name: "quiet_start", style: { maxWidth: "8em" }, value: data.quiet_start || "", placeholder: "22:00", pattern: "[0-2][0-9]:[0-5][0-9]", size: 5 }),
      end: h("input", { name: "quiet_end", style: { maxWidth: "8em" }, value: data.quiet_end || "", placeholder: "07:00", pattern: "[0-2][0-9]:[0-5][0-9]", size: 5 }),
      tz: h("input", { name: "timezone", value: data.timezone || "Asia/Shanghai" }),
      urgent: h("input", { type: "checkbox", name: "urgent_in_quiet", checked: data.urgent_in_quiet }),
    };
    const addKind = select(Object.entries(data.channel_kinds), { "aria-label": tn("notify.add"), name: "add_kind" });
    const form = h(
      "form",
      {
        class: "notify-form",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            data = await ctx.api.put("/api/me/notifications", collect(kindBoxes, quiet));
            toast(tn("notify.saved"), { kind: "ok" });
            render();
          } catch (err) {
            toast(err.message_for_user ? err.message_for_user() : String(err), { kind: "error" });
          }
        },
      },
      h("fieldset", {}, h("legend", {}, tn("notify.kinds")),
        data.available_kinds.map((k, i) => h("label", { class: "check", style: { display: "block", margin: "4px 0" } }, kindBoxes[i], " ", k.name, k.urgent ? h("small", {}, ` · ${tn("notify.urgent")}`) : null))),
      h("fieldset", {}, h("legend", {}, tn("notify.quiet")),
        h("p", { class: "hint" }, tn("notify.quiet_hint")),
        field(tn("notify.quiet_start"), quiet.start), field(tn("notify.quiet_end"), quiet.end), field(tn("notify.timezone"), quiet.tz),
        h("label", { class: "check" }, quiet.urgent, " ", tn("notify.urgent_in_quiet"))),
      h("fieldset", {}, h("legend", {}, tn("notify.channels")),
        data.channels.length ? data.channels.map(channelRow) : h("p", {}, tn("notify.no_channels")),
        h("div", { class: "actions" }, addKind,
          h("button", { type: "button", onclick: () => (data.channels.push({ kind: addKind.value, label: "", address: "", enabled: true, secrets: {} }), render()) }, tn("notify.add")))),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, tn("notify.save")),
        h("button", {
          type: "button",
          onclick: async () => {
            try {
              await ctx.api.post("/api/me/notifications/test", {});
              toast(tn("notify.tested"), { kind: "ok" });
              data = await ctx.api.get("/api/me/notifications");
              render();
            } catch (err) {
              toast(err.message_for_user ? err.message_for_user() : String(err), { kind: "error" });
            }
          },
        }, tn("notify.test"))),
    );
    replace(root, h("h1", {}, tn("notify.title")), h("p", { class: "hint" }, tn("notify.intro")), form, h("h2", {}, tn("notify.recent")), recentTable());
  }

  render();
  if (ctx.me && ctx.me.role === "admin") await renderAdmin();

  // the administrators' view: every user's deliveries per state, the failed ones with their error and 重新发送
  async function renderAdmin() {
    const box = h("section", { class: "notify-admin", "aria-label": tn("notify.admin") });
    root.append(box);
    async function load(state) {
      const got = await ctx.api.get("/api/notifications/deliveries", { state, limit: 100 });
      const counts = Object.entries(got.counts).map(([s, n]) => `${tn(`notify.state.${s}`)} ${n}`).join(" · ");
      const rows = got.items.map((d) =>
        h("tr", { "data-delivery": d.id, "data-state": d.state },
          h("td", {}, ctx.fmtTime(d.created_at)),
          h("td", {}, d.username),
          h("td", {}, (tn(`notify.kind.${d.kind}`) || d.kind) + (d.ticket_id ? ` #${d.ticket_id}` : "")),
          h("td", {}, d.channel_kind),
          h("td", { class: d.state === "failed" ? "overdue" : null }, tn(`notify.state.${d.state}`), ` (${d.attempts})`),
          h("td", {}, d.last_error || ""),
          h("td", {}, d.state === "failed"
            ? h("button", { type: "button", onclick: async () => {
                try {
                  await ctx.api.post(`/api/notifications/deliveries/${d.id}/retry`, {});
                  toast(tn("notify.retried"), { kind: "ok" });
                  await load(state);
                } catch (err) {
                  toast(err.message_for_user ? err.message_for_user() : String(err), { kind: "error" });
                }
              } }, tn("notify.retry"))
            : null),
        ),
      );
      const filter = select([["failed", tn("notify.state.failed")], ["held", tn("notify.state.held")], ["pending", tn("notify.state.pending")], ["sent", tn("notify.state.sent")]],
        { selected: state, "aria-label": tn("notify.col.state"), onchange: (e) => load(e.target.value) });
      replace(box, h("h2", {}, tn("notify.admin")), h("p", {}, counts), filter,
        rows.length
          ? h("table", { class: "notify-deliveries" },
              h("thead", {}, h("tr", {}, ["time", "user", "kind", "channel", "state", "error", "action"].map((c) => h("th", {}, tn(`notify.col.${c}`))))),
              h("tbody", {}, rows)) : h("p", {}, tn("notify.none")));
    }
    await load("failed");
  }
}
