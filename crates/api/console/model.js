// The data-point model: checked here as the server checks it (rampart_proto::model::Model::new),
// so a form says what is wrong before it is sent; the server's answer stays the authority.
import { h, fill, uid } from "./ui.js";

export const TYPES = ["bool", "enum", "int", "float", "string", "binary"];
const MAX_POINTS = 255;
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** The first problem of a list of points, or null. */
export function checkModel(points) {
  if (!Array.isArray(points)) return "the model is a list of data points";
  if (points.length > MAX_POINTS) return `at most ${MAX_POINTS} data points`;
  const seen = new Set();
  for (const p of points) {
    if (typeof p !== "object" || p === null) return "each data point is an object";
    if (!NAME.test(p.name || "")) return `point name \`${p.name || ""}\` must be 1-64 of [A-Za-z0-9_], not starting with a digit`;
    if (seen.has(p.name)) return `duplicate point \`${p.name}\``;
    seen.add(p.name);
    if (!TYPES.includes(p.type)) return `\`${p.name}\`: type must be one of ${TYPES.join(", ")}`;
    const numeric = p.type === "int" || p.type === "float";
    if (!numeric && (p.min != null || p.max != null || p.step != null)) return `\`${p.name}\`: min/max/step only apply to int and float`;
    if (p.type !== "string" && p.type !== "binary" && p.max_len != null) return `\`${p.name}\`: max_len only applies to string and binary`;
    if (p.type !== "bool" && p.class != null) return `\`${p.name}\`: class (alert, fault) only applies to bool`;
    if (p.type !== "enum" && p.values != null) return `\`${p.name}\`: values only apply to enum`;
    if (numeric) {
      if (typeof p.min !== "number" || typeof p.max !== "number") return `\`${p.name}\`: int and float need min and max`;
      if (p.min > p.max) return `\`${p.name}\`: need finite min <= max`;
      if (p.step != null && !(p.step > 0)) return `\`${p.name}\`: step must be positive`;
      if (p.type === "int" && [p.min, p.max, p.step].some((v) => v != null && !Number.isInteger(v))) return `\`${p.name}\`: int bounds and step must be integers`;
    }
    if (p.type === "enum") {
      const v = p.values;
      if (!Array.isArray(v) || !v.length || v.length > 255) return `\`${p.name}\`: enum needs 1-255 values`;
      if (new Set(v).size !== v.length || v.some((s) => !s || s.length > 64)) return `\`${p.name}\`: enum values must be distinct, 1-64 bytes`;
    }
    if (p.class != null && !["alert", "fault"].includes(p.class)) return `\`${p.name}\`: class is alert or fault`;
  }
  return null;
}

function num(v) {
  if (v === "" || v === undefined) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : NaN;
}

/**
 * An editor of data points, one row each; `editor.points()` reads them back as the API's JSON.
 */
export function modelEditor(initial = []) {
  const rows = h("div", { class: "points" });
  const addRow = (p = { name: "", type: "bool" }) => {
    const typeId = uid();
    const row = h("fieldset", { class: "point" },
      h("legend", {}, "Data point"),
      h("div", { class: "field" }, h("label", { for: typeId + "n" }, "Point name"),
        h("input", { id: typeId + "n", name: "dp-name", value: p.name, required: true, pattern: "[A-Za-z_][A-Za-z0-9_]{0,63}" })),
      h("div", { class: "field" }, h("label", { for: typeId }, "Type"),
        h("select", { id: typeId, name: "dp-type" }, TYPES.map((t) => h("option", { value: t, selected: t === p.type }, t)))),
      h("div", { class: "field small" }, h("label", { for: typeId + "min" }, "Min"), h("input", { id: typeId + "min", name: "dp-min", inputmode: "decimal", value: p.min ?? "" })),
      h("div", { class: "field small" }, h("label", { for: typeId + "max" }, "Max"), h("input", { id: typeId + "max", name: "dp-max", inputmode: "decimal", value: p.max ?? "" })),
      h("div", { class: "field" }, h("label", { for: typeId + "v" }, "Enum values (comma-separated)"), h("input", { id: typeId + "v", name: "dp-values", value: (p.values || []).join(",") })),
      h("div", { class: "check" }, h("input", { type: "checkbox", id: typeId + "w", name: "dp-writable", checked: !!p.writable }), h("label", { for: typeId + "w" }, "Writable")),
      h("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "Remove"));
    rows.append(row);
  };
  initial.forEach(addRow);
  const el = h("div", { class: "model-editor" }, rows,
    h("button", { type: "button", class: "secondary", onclick: () => addRow() }, "Add data point"));
  return {
    el,
    points() {
      return [...rows.querySelectorAll("fieldset.point")].map((f) => {
        const get = (n) => f.querySelector(`[name=dp-${n}]`);
        const p = { name: get("name").value.trim(), type: get("type").value };
        const min = num(get("min").value);
        const max = num(get("max").value);
        if (min !== undefined) p.min = min;
        if (max !== undefined) p.max = max;
        const vals = get("values").value.split(",").map((s) => s.trim()).filter(Boolean);
        if (vals.length) p.values = vals;
        if (get("writable").checked) p.writable = true;
        return p;
      });
    },
    set(points) {
      fill(rows);
      points.forEach(addRow);
    },
  };
}

/** Inputs for the writable points of a model; `read()` gives the command's `set` object. */
export function commandForm(points) {
  const writable = points.filter((p) => p.writable);
  const inputs = writable.map((p) => {
    const id = uid();
    let input;
    if (p.type === "bool") {
      input = h("select", { id, name: p.name }, h("option", { value: "" }, "(unchanged)"),
        h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    } else if (p.type === "enum") {
      input = h("select", { id, name: p.name }, h("option", { value: "" }, "(unchanged)"),
        p.values.map((v) => h("option", { value: v }, v)));
    } else if (p.type === "int" || p.type === "float") {
      input = h("input", { id, name: p.name, type: "number", min: p.min, max: p.max, step: p.step ?? (p.type === "int" ? 1 : "any") });
    } else {
      input = h("input", { id, name: p.name, maxlength: p.max_len });
    }
    return { p, input, el: h("div", { class: "field" }, h("label", { for: id }, `${p.name} (${p.type})`), input) };
  });
  return {
    el: h("div", { class: "command-fields" }, inputs.map((i) => i.el)),
    empty: !writable.length,
    read() {
      const set = {};
      for (const { p, input } of inputs) {
        const v = input.value;
        if (v === "") continue;
        if (p.type === "bool") set[p.name] = v === "true";
        else if (p.type === "int" || p.type === "float") set[p.name] = Number(v);
        else set[p.name] = v;
      }
      return set;
    },
  };
}
