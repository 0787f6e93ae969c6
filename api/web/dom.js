// A small DOM helper: build elements from tag, attributes and children; no framework, no innerHTML of data.

/**
 * h("button", {class: "primary", onclick: fn, "aria-label": "保存"}, "保存")
 * Attributes: `class`, `style` (string or object), `dataset` (object), `on<event>` (listener),
 * boolean attributes (true sets, false/null/undefined skips), anything else via setAttribute.
 * Children: nodes, strings/numbers (text), arrays (flattened), null/undefined/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in el) el.value = value;
    else if (key === "checked" || key === "selected" || key === "disabled" || key === "hidden") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append children (see h) to an element. */
export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Remove every child of an element. */
export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replace the children of an element. */
export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

/** A labelled form field: <label>text <control></label> (screen readers read the label). */
export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), control, hint ? h("small", { class: "hint" }, hint) : null);
}

/** A <select> from [value, text] pairs; `selected` picks the current value. */
export function select(options, { selected = "", ...attrs } = {}) {
  return h("select", attrs, options.map(([value, text]) => h("option", { value, selected: String(value) === String(selected) }, text)));
}

/** A short notice at the top of the page (role=status for screen readers); goes away after `ms`. */
export function toast(text, { kind = "info", ms = 5000 } = {}) {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const item = h("div", { class: ["toast", `toast-${kind}`] }, text);
  box.append(item);
  setTimeout(() => item.remove(), ms);
  return item;
}
