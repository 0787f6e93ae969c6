// Login (a cookie session that survives a reload; a clear message when throttled) and the password change.

import { h, field, replace } from "../dom.js";
import { ApiError } from "../api.js";

export async function mount(root, ctx) {
  const { t, api } = ctx;
  ctx.setTitle(t("login.title"));
  // already logged in (a reload of #/login): go home
  if (await api.me().then(() => true, () => false)) {
    ctx.app.loggedIn();
    return;
  }
  const message = h("p", { class: "form-error", role: "alert", id: "login-error" });
  const username = h("input", { name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", class: "primary" }, t("login.submit"));
  const form = h(
    "form",
    { class: "login-card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, t("app.title")),
    h("p", { class: "muted" }, t("login.title")),
    field(t("login.username"), username),
    field(t("login.password"), password),
    message,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    message.textContent = "";
    try {
      await api.login(username.value.trim(), password.value);
      await ctx.app.loggedIn();
    } catch (err) {
      password.value = "";
      if (err instanceof ApiError && err.status === 429) {
        message.textContent = t("login.throttled", { wait: ctx.fmtDuration(err.retryAfter || 60) });
      } else if (err instanceof ApiError && err.status === 401) {
        message.textContent = t("login.wrong");
      } else {
        message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
      }
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h("div", { class: "login-page" }, form));
}

/** #/password: change one's own password; the server answers with a fresh session for this browser. */
export async function mountPassword(root, ctx) {
  const { t, api } = ctx;
  ctx.setTitle(t("password.title"));
  const message = h("p", { class: "form-error", role: "alert" });
  const current = h("input", { type: "password", autocomplete: "current-password", required: true, name: "current" });
  const next = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: "8", name: "new" });
  const again = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: "8", name: "again" });
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "pw-title" },
    h("h1", { id: "pw-title" }, t("password.title")),
    field(t("password.current"), current),
    field(t("password.new"), next, "≥ 8"),
    field(t("password.repeat"), again),
    message,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("common.save")), h("a", { class: "button ghost", href: "#/" }, t("common.cancel"))),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.textContent = "";
    if (next.value !== again.value) {
      message.textContent = t("password.mismatch");
      return;
    }
    try {
      await api.post("/api/me/password", { current_password: current.value, new_password: next.value });
      message.classList.add("ok");
      message.textContent = t("password.done");
      form.reset();
    } catch (err) {
      message.classList.remove("ok");
      message.textContent = err instanceof ApiError ? err.message_for_user() : String(err);
    }
  });
  replace(root, form);
}
