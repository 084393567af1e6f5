// DOM helpers shared by the pages. Text is always set as text (never parsed as HTML), so nothing
// an API answer holds can become markup.

/** Build an element: h("button", {class: "x", onclick: f}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let seq = 0;
/** A unique id for label/input pairs. */
export function uid(prefix = "f") {
  seq += 1;
  return `${prefix}-${seq}`;
}

/** A labelled input: field("Name", {name: "name", required: true}). */
export function field(label, attrs = {}, tag = "input") {
  const id = attrs.id || uid();
  const input = h(tag, { ...attrs, id });
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

/** A labelled select with [value, text] options. */
export function select(label, name, options, value) {
  const id = uid();
  const s = h("select", { id, name },
    options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  return h("div", { class: "field" }, h("label", { for: id }, label), s);
}

/** A labelled checkbox. */
export function checkbox(label, name, checked, attrs = {}) {
  const id = uid();
  return h("div", { class: "check" },
    h("input", { type: "checkbox", id, name, checked, ...attrs }), h("label", { for: id }, label));
}

/** A table: columns are [header, row => cell]. */
export function table(caption, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: "sr-only" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([t]) => h("th", { scope: "col" }, t || h("span", { class: "sr-only" }, "Actions"))))),
      h("tbody", {}, rows.map((r) => h("tr", {}, columns.map(([, f]) => h("td", {}, f(r))))))));
}

/** Local time of a unix-ms timestamp. */
export function when(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** A message in the page's live region (errors stay until dismissed by the next message). */
export function notify(text, kind = "info") {
  const box = document.getElementById("notice");
  if (!box) return;
  fill(box, h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text));
}

/** Run an async action from a form or button; report its error instead of throwing. */
export async function attempt(f) {
  try {
    return await f();
  } catch (e) {
    notify(e.message || String(e), "error");
    return undefined;
  }
}

/**
 * A secret shown once: the value, a copy button, and the warning that it will not be shown
 * again. The value lives only in this element; navigating away drops it.
 */
export function secretBox(label, value) {
  const out = h("output", { class: "secret-value" }, value);
  const status = h("span", { class: "muted", role: "status" });
  const copy = h("button", {
    type: "button",
    class: "secondary",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(value);
        status.textContent = "Copied.";
      } catch {
        const r = document.createRange();
        r.selectNodeContents(out);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        status.textContent = "Selected: press Ctrl+C to copy.";
      }
    },
  }, "Copy");
  return h("div", { class: "secret", "data-secret": label },
    h("strong", {}, label), out,
    h("div", { class: "row" }, copy, status),
    h("p", { class: "warn" }, "Shown once: it cannot be shown again. Store it now."));
}

/** Form values as an object (checkboxes as booleans). */
export function values(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === "checkbox") out[el.name] = el.checked;
    else out[el.name] = el.value;
  }
  return out;
}

/** A status dot with words (colour alone never carries the meaning). */
export function onlineBadge(online) {
  return h("span", { class: online ? "badge on" : "badge off" }, online ? "online" : "offline");
}

/** A section with a heading. */
export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), children);
}

/** Download text as a file. */
export function download(name, text, type = "text/csv") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, class: "sr-only" }, name);
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
