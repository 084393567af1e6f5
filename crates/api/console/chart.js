// Small SVG charts: a line over time, or bars. Drawn with SVG attributes only (no inline style,
// which the console's CSP refuses), sized by the viewBox so they fit any width.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

const W = 640;
const H = 200;
const PAD = { l: 44, r: 10, t: 10, b: 24 };

function axes(root, min, max, t0, t1) {
  const y = (v) => H - PAD.b - ((v - min) / (max - min || 1)) * (H - PAD.t - PAD.b);
  for (const v of [min, (min + max) / 2, max]) {
    root.append(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" });
    label.textContent = Number.isInteger(v) ? String(v) : v.toFixed(2);
    root.append(label);
  }
  for (const [t, anchor, x] of [[t0, "start", PAD.l], [t1, "end", W - PAD.r]]) {
    const label = svg("text", { x, y: H - 6, "text-anchor": anchor, class: "tick" });
    label.textContent = new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    root.append(label);
  }
  return y;
}

/**
 * A line chart of [{t, v}] (t in unix ms), oldest first. `title` names it for screen readers;
 * the last value is also given as text.
 */
export function lineChart(title, points, { min, max, step = false } = {}) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart", "aria-label": title });
  const t = svg("title");
  t.textContent = title;
  root.append(t);
  if (!points.length) {
    const none = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" });
    none.textContent = "no data yet";
    root.append(none);
    return root;
  }
  const vs = points.map((p) => p.v);
  const lo = min ?? Math.min(...vs);
  const hi = max ?? Math.max(...vs);
  const t0 = points[0].t;
  const t1 = Math.max(points[points.length - 1].t, t0 + 1);
  const y = axes(root, lo, hi === lo ? lo + 1 : hi, t0, t1);
  const x = (tt) => PAD.l + ((tt - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  let d = "";
  points.forEach((p, i) => {
    if (i === 0) d += `M${x(p.t)},${y(p.v)}`;
    else if (step) d += `H${x(p.t)}V${y(p.v)}`;
    else d += `L${x(p.t)},${y(p.v)}`;
  });
  root.append(svg("path", { d, class: "line" }));
  const last = points[points.length - 1];
  root.append(svg("circle", { cx: x(last.t), cy: y(last.v), r: 3, class: "dot" }));
  root.dataset.points = String(points.length);
  root.dataset.last = String(last.v);
  return root;
}

/** Bars of [{t, v}], one per bucket (a minute), oldest first. */
export function barChart(title, buckets) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "chart", "aria-label": title });
  const t = svg("title");
  t.textContent = title;
  root.append(t);
  if (!buckets.length) return root;
  const hi = Math.max(1, ...buckets.map((b) => b.v));
  const y = axes(root, 0, hi, buckets[0].t, buckets[buckets.length - 1].t);
  const bw = (W - PAD.l - PAD.r) / buckets.length;
  buckets.forEach((b, i) => {
    const top = y(b.v);
    root.append(svg("rect", {
      x: PAD.l + i * bw + 1, y: top, width: Math.max(1, bw - 2), height: H - PAD.b - top, class: "bar",
    }));
  });
  root.dataset.total = String(buckets.reduce((s, b) => s + b.v, 0));
  return root;
}
