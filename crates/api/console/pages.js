// The console's pages. Each renders into `root` from public API calls and returns, when it
// listens to live events or polls, the function that stops it.
import { call, me, roleFor, canManage, canSeeSecrets } from "./app.js";
import { h, fill, field, select, checkbox, table, when, notify, attempt, secretBox, values, onlineBadge, section, download } from "./ui.js";
import { lineChart, barChart } from "./chart.js";
import { live } from "./live.js";
import { checkModel, modelEditor, commandForm } from "./model.js";
import { firmwarePage, campaignsPage } from "./ota.js";

const POLL_MS = 5000;
/** While a live stream is open, counts that have no event (refusals) are read this often. */
const RESYNC_MS = 60000;
/** The overview's reads while its live stream is down. */
const FALLBACK_POLL_MS = 10000;
/** Live events arriving together cause one read of what they changed. */
const LIVE_COALESCE_MS = 500;
/** A search is sent once typing pauses this long. */
const SEARCH_DEBOUNCE_MS = 250;
/** Devices on one page of the list. */
const DEVICE_PAGE = 50;

/** Every page of a list operation (at most `max` items). */
async function all(id, opts = {}, max = 1000) {
  const out = [];
  for (let page = 1; out.length < max; page += 1) {
    const r = await call(id, { ...opts, query: { ...(opts.query || {}), page, limit: 200 } });
    out.push(...r.data);
    if (!r.data.length || out.length >= r.meta.total) break;
  }
  return out;
}

const products = () => all("get_v1_products");
const isOperator = () => me.kind === "operator";

function productPicker(list, value, label = "Product") {
  return select(label, "product_key", list.map((p) => [p.product_key, `${p.name} (${p.product_key})`]), value);
}

/** Enterprises the caller can pick: a developer's own; the operator types an id. */
function enterprisePicker(value) {
  if (isOperator()) return field("Enterprise id", { name: "enterprise_id", value: value || "", required: true, placeholder: "ent_…" });
  return select("Enterprise", "enterprise_id", me.enterprises.map((e) => [e.enterprise_id, `${e.name} (${e.role})`]), value);
}

// ---- fleet overview ----

function stat(label, value, id) {
  return h("div", { class: "stat" }, h("span", { class: "stat-value", id }, value), h("span", { class: "stat-label" }, label));
}

async function overview(root) {
  if (isOperator()) return operatorOverview(root);
  return developerOverview(root);
}

async function operatorOverview(root) {
  const cards = h("div", { class: "stats" });
  const chart = h("div", {});
  const refusals = h("div", {});
  fill(root, h("h1", {}, "Fleet overview"), cards,
    section("Reports per minute, last hour", chart), section("Refusals by limit, last hour", refusals));
  const draw = async () => {
    const a = await call("get_v1_admin_activity");
    const done = a.minutes.slice(0, -1);
    const lastFull = done.length ? done[done.length - 1].reports : 0;
    const byLimit = {};
    for (const m of a.minutes) for (const [k, v] of Object.entries(m.refusals)) byLimit[k] = (byLimit[k] || 0) + v;
    const refusedTotal = Object.values(byLimit).reduce((s, v) => s + v, 0);
    fill(cards, stat("devices online now", `${a.online} / ${a.devices}`, "stat-online"),
      stat(`messages in the last full minute (${a.minutes[a.minutes.length - 1].reports} so far in this one)`, lastFull, "stat-rate"),
      stat("refusals in the last hour", refusedTotal, "stat-refusals"));
    fill(chart, barChart("Reports stored per minute over the last hour", a.minutes.map((m) => ({ t: m.start, v: m.reports }))));
    fill(refusals, table("Refusals by limit", [["Limit", (r) => r[0]], ["Refused", (r) => r[1]]],
      Object.entries(byLimit).sort((x, y) => y[1] - x[1]), "No refusals in the last hour."));
  };
  await draw();
  // The operator's stream says when something changed: the counts are read again then, at most
  // once per LIVE_COALESCE_MS however busy the fleet. Refusals come with no event, so a slow
  // read keeps them current; while the stream is down, a faster one stands in for it.
  let soon = null;
  const off = live.on(() => {
    soon ??= setTimeout(() => {
      soon = null;
      attempt(draw);
    }, LIVE_COALESCE_MS);
  });
  let t = null;
  const poll = (connected) => {
    clearInterval(t);
    t = setInterval(() => attempt(draw), connected ? RESYNC_MS : FALLBACK_POLL_MS);
  };
  const offState = live.onState((connected) => {
    poll(connected);
    // Reopened: what changed while it was down is read at once.
    if (connected) attempt(draw);
  });
  poll(live.connected);
  return () => {
    off();
    offState();
    clearTimeout(soon);
    clearInterval(t);
  };
}

async function developerOverview(root) {
  const devices = await all("get_v1_devices");
  const online = new Map(devices.map((d) => [d.did, d.online]));
  const minutes = new Map();
  const cards = h("div", { class: "stats" });
  const chart = h("div", {});
  const draw = () => {
    const n = [...online.values()].filter(Boolean).length;
    const now = Date.now();
    const cur = now - (now % 60000);
    const buckets = [];
    for (let t = cur - 59 * 60000; t <= cur; t += 60000) buckets.push({ t, v: minutes.get(t) || 0 });
    fill(cards, stat("devices online now", `${n} / ${online.size}`, "stat-online"),
      stat("messages this minute", minutes.get(cur) || 0, "stat-rate"),
      stat("refusals by limit", "operator view", "stat-refusals"));
    fill(chart, barChart("Reports per minute since this page opened", buckets));
  };
  fill(root, h("h1", {}, "Fleet overview"), cards,
    section("Reports per minute (live, since this page opened)", chart),
    h("p", { class: "muted" }, "Refusals by limit are server-wide: the operator's overview shows them."));
  draw();
  const off = live.on((ev) => {
    if (ev.kind === "presence") online.set(ev.did, ev.online);
    if (ev.kind === "registered" && !online.has(ev.did)) online.set(ev.did, false);
    if (ev.kind === "status") {
      const t = ev.ts - (ev.ts % 60000);
      minutes.set(t, (minutes.get(t) || 0) + 1);
    }
    draw();
  });
  const t = setInterval(draw, 10000);
  return () => {
    off();
    clearInterval(t);
  };
}

// ---- products ----

async function productsPage(root, [pk]) {
  if (pk) return productPage(root, pk);
  const list = await products();
  const editor = modelEditor([{ name: "power", type: "bool", writable: true }]);
  const owners = [["personal", "Personal"], ...me.enterprises.filter((e) => e.role !== "observer").map((e) => [e.enterprise_id, `${e.name} (${e.role})`])];
  const formArea = h("div", {});
  const jsonArea = h("textarea", { id: "product-json", name: "json", rows: 10, spellcheck: "false" });
  const result = h("div", { "aria-live": "polite" });
  const jsonBox = h("div", { hidden: true }, h("label", { for: "product-json" }, "Product as JSON (the body of POST /v1/products)"), jsonArea);
  const form = h("form", { class: "card" },
    h("h2", {}, "Create a product"),
    h("div", { class: "tabs", role: "group", "aria-label": "Create from" },
      h("button", { type: "button", class: "secondary", onclick: () => { formArea.hidden = false; jsonBox.hidden = true; } }, "Form"),
      h("button", { type: "button", class: "secondary", onclick: () => { jsonArea.value = JSON.stringify(bodyFromForm(), null, 2); formArea.hidden = true; jsonBox.hidden = false; } }, "JSON")),
    formArea, jsonBox);
  fill(formArea,
    field("Product name", { name: "name", required: true, value: "" }),
    isOperator() ? null : select("Owner", "owner", owners, "personal"),
    field("Report limit per minute", { name: "report_limit_per_min", type: "number", min: 1, value: 600 }),
    h("fieldset", {}, h("legend", {}, "Identity"),
      checkbox("Dynamic registration (one product secret)", "dynamic_registration", true),
      checkbox("Allowlist only", "allowlist", false),
      checkbox("Static password over TLS", "static_password", false)),
    h("h3", {}, "Data points"), editor.el);
  form.append(h("button", { type: "submit" }, "Create product"), result);
  function bodyFromForm() {
    const v = values(form);
    const body = {
      name: v.name,
      identity: { dynamic_registration: v.dynamic_registration, allowlist: v.allowlist, static_password: v.static_password },
      report_limit_per_min: Number(v.report_limit_per_min),
      datapoints: editor.points(),
    };
    if (v.owner && v.owner !== "personal") body.owner = { enterprise_id: v.owner };
    return body;
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      let body;
      if (!jsonBox.hidden) {
        try {
          body = JSON.parse(jsonArea.value);
        } catch (err) {
          throw new Error(`The JSON does not parse: ${err.message}`);
        }
      } else {
        body = bodyFromForm();
      }
      const problem = checkModel(body.datapoints || []);
      if (problem) throw new Error(`Data points: ${problem}`);
      const r = await call("post_v1_products", { body });
      notify(`Product ${r.product_key} created.`, "ok");
      fill(result, h("p", {}, "Created ", h("a", { href: `#/products/${r.product_key}` }, r.product_key)),
        r.product_secret ? secretBox("Product secret", r.product_secret) : null);
      fill(listBox, productTable(await products()));
    });
  });
  const listBox = h("div", {}, productTable(list));
  fill(root, h("h1", {}, "Products"), section("Your products", listBox), form);
}

function productTable(list) {
  return table("Products", [
    ["Name", (p) => h("a", { href: `#/products/${p.product_key}` }, p.name)],
    ["Key", (p) => h("code", {}, p.product_key)],
    ["Owner", (p) => p.enterprise_id || "personal"],
    ["Your role", (p) => roleFor(p)],
    ["Data points", (p) => p.datapoints.length],
    ["Created", (p) => when(p.created_at)],
  ], list, "No product yet: create one below.");
}

async function productPage(root, pk) {
  const p = await call("get_v1_products_productkey", { path: { product_key: pk } });
  const manage = canManage(p);
  const secrets = canSeeSecrets(p);
  const identity = h("form", { class: "card" }, h("h2", {}, "Identity options"),
    ["dynamic_registration", "allowlist", "static_password", "x509", "x509_jit", "allow_rsa1024", "secure_session"]
      .map((k) => checkbox(k.replaceAll("_", " "), k, !!p.identity[k], { disabled: !manage })),
    manage ? h("button", { type: "submit" }, "Save identity options") : h("p", { class: "muted" }, "Read-only for your role."));
  identity.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      await call("put_v1_products_productkey_identity", { path: { product_key: pk }, body: values(identity) });
      notify("Identity options saved.", "ok");
    });
  });
  const secretArea = h("div", {});
  const secretCard = section("Product secret",
    secrets ? h("div", { class: "row" },
      h("button", { type: "button", onclick: () => attempt(async () => {
        const s = await call("get_v1_products_productkey_secret", { path: { product_key: pk } });
        fill(secretArea, secretBox("Product secret", s.product_secret));
      }) }, "Reveal secret"),
      h("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
        if (!confirm("Rotate the product secret? Devices already registered keep working.")) return;
        const s = await call("post_v1_products_productkey_secret_rotate", { path: { product_key: pk } });
        fill(secretArea, secretBox("New product secret", s.product_secret));
      }) }, "Rotate secret"))
      : h("p", { class: "muted" }, "Only the product's owners and the operator see its secret."),
    secretArea);
  fill(root, h("h1", {}, p.name), h("p", {}, h("code", {}, p.product_key), ` · ${p.enterprise_id || "personal"} · your role: ${roleFor(p)}`),
    section("Data-point model", table("Data points", [
      ["Name", (d) => d.name], ["Type", (d) => d.type],
      ["Range / values", (d) => (d.values ? d.values.join(", ") : d.min !== undefined ? `${d.min} … ${d.max}` : "")],
      ["Writable", (d) => (d.writable ? "yes" : "no")], ["Class", (d) => d.class || ""],
    ], p.datapoints, "No data points.")),
    identity, secretCard,
    h("p", {}, h("a", { href: "#/devices" }, "Devices"), " · ",
      h("a", { href: `#/factory/${pk}` }, "Factory"), " · ", h("a", { href: `#/certificates/${pk}` }, "Certificates")));
}

// ---- devices ----

/** What the server can search for: ids are 1-64 printable ASCII characters. */
const SEARCHABLE = /^[\x21-\x7e]{0,64}$/;

async function devicesPage(root, [did]) {
  if (did) return devicePage(root, did);
  // The list is searched and paged by the server (GET /v1/devices?q=): a prefix of the did or
  // the hardware id, any case, sent once typing pauses.
  const search = h("input", { id: "device-search", type: "search", placeholder: "did or hardware id", autocomplete: "off", spellcheck: "false" });
  const body = h("div", {});
  const count = h("span", { id: "device-count", class: "muted", role: "status" });
  const prev = h("button", { type: "button", class: "secondary" }, "Previous");
  const next = h("button", { type: "button", class: "secondary" }, "Next");
  let q = "";
  let pageNo = 1;
  let shown = { data: [], meta: { total: 0 } };
  let asked = 0;
  const draw = () => {
    const { data, meta } = shown;
    fill(body, table("Devices", [
      ["Device", (d) => h("a", { href: `#/devices/${d.did}` }, d.did)],
      ["Hardware id", (d) => d.hardware_id],
      ["Product", (d) => h("code", {}, d.product_key)],
      ["State", (d) => onlineBadge(d.online)],
      ["Last seen", (d) => when(d.last_seen)],
    ], data, q ? "No device matches." : "No device yet."));
    const first = (pageNo - 1) * DEVICE_PAGE;
    const what = q ? "matching" : "devices";
    count.textContent = data.length ? `${first + 1}–${first + data.length} of ${meta.total} ${what}` : `0 ${what}`;
    prev.disabled = pageNo <= 1;
    next.disabled = first + data.length >= meta.total;
  };
  const load = async () => {
    asked += 1;
    const mine = asked;
    if (!SEARCHABLE.test(q)) {
      // No did or hardware id holds such characters: nothing to ask the server.
      shown = { data: [], meta: { total: 0 } };
      draw();
      count.textContent = "Ids are printable ASCII without spaces, at most 64 characters.";
      return;
    }
    const r = await call("get_v1_devices", { query: { q, page: pageNo, limit: DEVICE_PAGE } });
    // An answer to an older search that came late is dropped.
    if (mine !== asked) return;
    shown = r;
    // The last page emptied under us (devices deleted): step back to one with devices.
    if (!r.data.length && pageNo > 1 && r.meta.total > 0) {
      pageNo = Math.ceil(r.meta.total / DEVICE_PAGE);
      return load();
    }
    draw();
  };
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      q = search.value.trim();
      pageNo = 1;
      attempt(load);
    }, SEARCH_DEBOUNCE_MS);
  });
  prev.addEventListener("click", () => {
    pageNo = Math.max(1, pageNo - 1);
    attempt(load);
  });
  next.addEventListener("click", () => {
    pageNo += 1;
    attempt(load);
  });
  const go = h("form", { class: "row", role: "search" }, h("label", { for: "device-search" }, "Search"), search,
    h("button", { type: "submit" }, "Open"));
  go.addEventListener("submit", (e) => {
    e.preventDefault();
    const typed = search.value.trim();
    if (!typed) return;
    const lower = typed.toLowerCase();
    const hit = shown.data.find((d) => d.did.toLowerCase() === lower || d.hardware_id.toLowerCase() === lower)
      || (shown.meta.total === 1 && typed.toLowerCase() === q.toLowerCase() ? shown.data[0] : null);
    location.hash = `#/devices/${hit ? hit.did : typed}`;
  });
  fill(root, h("h1", {}, "Devices"), go, body,
    h("nav", { class: "row pager", "aria-label": "Pages of devices" }, prev, count, next));
  await load();
  // Changes on this page are applied as they come; a new device (or one this page has room
  // for) reads the page again, at most once per LIVE_COALESCE_MS.
  let soon = null;
  const reload = () => {
    soon ??= setTimeout(() => {
      soon = null;
      attempt(load);
    }, LIVE_COALESCE_MS);
  };
  const off = live.on((ev) => {
    const d = shown.data.find((x) => x.did === ev.did);
    if (ev.kind === "presence" && d) {
      d.online = ev.online;
      d.last_seen = ev.ts;
      draw();
    } else if (ev.kind === "status" && d && !d.online) {
      // A device that reports is connected, whatever a list read during its connect said.
      d.online = true;
      d.last_seen = ev.ts;
      draw();
    } else if (ev.kind === "registered" || (ev.kind === "presence" && !d && shown.data.length < DEVICE_PAGE)) {
      reload();
    }
  });
  const t = live.available ? null : setInterval(() => attempt(load), POLL_MS);
  return () => {
    off();
    clearTimeout(typing);
    clearTimeout(soon);
    if (t) clearInterval(t);
  };
}

const CHARTABLE = ["int", "float", "bool"];

async function devicePage(root, did) {
  const d = await call("get_v1_devices_did", { path: { did } });
  let p = null;
  try {
    p = await call("get_v1_products_productkey", { path: { product_key: d.product_key } });
  } catch {
    p = { datapoints: [], enterprise_id: null };
  }
  const state = h("div", {});
  const badge = h("span", { id: "device-online" });
  const charts = new Map();
  const series = new Map();
  const drawState = () => {
    fill(badge, onlineBadge(d.online));
    fill(state, table("Latest values", [["Data point", (r) => r[0]], ["Value", (r) => h("output", { "data-point": r[0] }, JSON.stringify(r[1]))]],
      Object.entries(d.state || {}), "No report yet."));
  };
  const drawChart = (name) => {
    const box = charts.get(name);
    const pt = p.datapoints.find((x) => x.name === name);
    const bool = pt.type === "bool";
    fill(box, lineChart(`History of ${name}`, series.get(name) || [], { step: bool, min: bool ? 0 : pt.min, max: bool ? 1 : pt.max }));
  };
  const chartCards = p.datapoints.filter((x) => CHARTABLE.includes(x.type)).map((x) => {
    const box = h("div", { class: "chart-box", "data-chart": x.name });
    charts.set(x.name, box);
    return h("div", {}, h("h3", {}, x.name), box);
  });
  await Promise.all([...charts.keys()].map(async (name) => {
    const hist = await call("get_v1_devices_did_history", { path: { did }, query: { point: name, limit: 500 } });
    const pt = p.datapoints.find((x) => x.name === name);
    series.set(name, hist.data.map((r) => ({ t: r.ts, v: pt.type === "bool" ? Number(!!r.value) : Number(r.value) })).reverse());
  }));
  const cmd = commandForm(p.datapoints);
  const ackBox = h("div", { id: "ack", "aria-live": "polite" });
  const form = h("form", { class: "card" }, h("h2", {}, "Send a command"), cmd.el,
    cmd.empty ? h("p", { class: "muted" }, "The model has no writable data point.") : null,
    h("div", { class: "row" },
      h("button", { type: "submit", disabled: cmd.empty || !canManage(p) }, "Send"),
      h("button", { type: "button", class: "secondary", disabled: !canManage(p), onclick: () => send({ action: "reboot" }) }, "Reboot")),
    ackBox);
  const pending = new Set();
  const showAck = (id, status, message) => fill(ackBox, h("p", { class: `ack ${status}`, "data-command": id, "data-status": status },
    `Command ${id}: ${status}${message ? ` (${message})` : ""}`));
  const send = (body) => attempt(async () => {
    const r = await call("post_v1_devices_did_commands", { path: { did }, body });
    if (r.id) pending.add(r.id);
    showAck(r.id || "", r.status, r.message);
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const set = cmd.read();
    if (!Object.keys(set).length) return notify("Choose a value to set.", "error");
    send({ set });
  });
  fill(root, h("h1", {}, did, " ", badge),
    h("p", {}, `${d.hardware_id} · `, h("a", { href: `#/products/${d.product_key}` }, d.product_key), ` · last seen ${when(d.last_seen)}`),
    h("div", { class: "grid two" }, section("Latest values", state), form),
    section("History", chartCards.length ? h("div", { class: "grid two" }, chartCards) : h("p", { class: "muted" }, "No numeric or boolean data point.")));
  drawState();
  [...charts.keys()].forEach(drawChart);
  const off = live.on((ev) => {
    if (ev.did !== did) return;
    if (ev.kind === "presence") {
      d.online = ev.online;
      d.last_seen = ev.ts;
      drawState();
    } else if (ev.kind === "status") {
      d.state = { ...d.state, ...ev.values };
      for (const [k, v] of Object.entries(ev.values)) {
        if (!charts.has(k)) continue;
        const s = series.get(k) || [];
        s.push({ t: ev.ts, v: typeof v === "boolean" ? Number(v) : Number(v) });
        series.set(k, s.slice(-500));
        drawChart(k);
      }
      drawState();
    } else if (ev.kind === "ack") {
      showAck(ev.id, ev.status, ev.message);
    }
  });
  const t = live.available ? null : setInterval(() => attempt(async () => {
    Object.assign(d, await call("get_v1_devices_did", { path: { did } }));
    drawState();
  }), POLL_MS);
  return () => {
    off();
    if (t) clearInterval(t);
  };
}

// ---- access keys ----

async function keysPage(root, [ent]) {
  const pick = h("form", { class: "row" }, enterprisePicker(ent), h("button", { type: "submit" }, "Show keys"));
  pick.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/keys/${values(pick).enterprise_id}`;
  });
  if (!ent && !isOperator() && me.enterprises.length) ent = me.enterprises[0].enterprise_id;
  if (!ent) {
    fill(root, h("h1", {}, "Access keys"), pick, h("p", { class: "muted" }, "Access keys belong to an enterprise: choose one."));
    return;
  }
  const role = isOperator() ? "operator" : ((me.enterprises.find((e) => e.enterprise_id === ent) || {}).role || "observer");
  const readOnly = role === "observer";
  const list = h("div", {});
  const secret = h("div", { "aria-live": "polite" });
  const reload = async () => {
    const keys = await call("get_v1_enterprises_id_keys", { path: { id: ent } });
    fill(list, table("Access keys", [
      ["Key", (k) => h("code", {}, k.key_id)], ["Products", (k) => k.products.join(", ")],
      ["Scopes", (k) => k.scopes.join(", ")], ["Allowed IPs", (k) => k.allow_ips.join(", ")],
      ["State", (k) => (k.disabled ? "disabled" : "active")], ["Created", (k) => when(k.created_at)],
      ["", (k) => readOnly ? "" : h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", onclick: () => attempt(async () => {
          const r = await call("post_v1_enterprises_id_keys_keyid_rotate", { path: { id: ent, key_id: k.key_id }, body: { overlap_secs: 3600 } });
          fill(secret, secretBox(`New secret of ${r.key_id}`, r.secret));
          await reload();
        }) }, "Rotate"),
        h("button", { type: "button", class: "secondary", onclick: () => attempt(async () => {
          await call(k.disabled ? "post_v1_enterprises_id_keys_keyid_enable" : "post_v1_enterprises_id_keys_keyid_disable", { path: { id: ent, key_id: k.key_id } });
          await reload();
        }) }, k.disabled ? "Enable" : "Disable"),
        h("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
          if (!confirm(`Delete ${k.key_id}?`)) return;
          await call("delete_v1_enterprises_id_keys_keyid", { path: { id: ent, key_id: k.key_id } });
          await reload();
        }) }, "Delete"))],
    ], keys.data, "No access key yet."));
  };
  const entProducts = (await products()).filter((p) => p.enterprise_id === ent);
  const form = h("form", { class: "card" }, h("h2", {}, "Create an access key"),
    h("fieldset", {}, h("legend", {}, "Products"), entProducts.length
      ? entProducts.map((p) => checkbox(`${p.name} (${p.product_key})`, `p:${p.product_key}`, true))
      : h("p", { class: "muted" }, "The enterprise has no product yet.")),
    h("fieldset", {}, h("legend", {}, "Scopes"), checkbox("read", "s:read", true), checkbox("control", "s:control", false)),
    field("Allowed IPs or CIDRs (one per line)", { name: "allow_ips", rows: 3, required: true }, "textarea"),
    h("button", { type: "submit" }, "Create key"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      const v = values(form);
      const body = {
        products: Object.keys(v).filter((k) => k.startsWith("p:") && v[k]).map((k) => k.slice(2)),
        scopes: Object.keys(v).filter((k) => k.startsWith("s:") && v[k]).map((k) => k.slice(2)),
        allow_ips: v.allow_ips.split(/\s+/).filter(Boolean),
      };
      const r = await call("post_v1_enterprises_id_keys", { path: { id: ent }, body });
      fill(secret, secretBox(`Secret of ${r.key_id}`, r.secret));
      notify(`Access key ${r.key_id} created.`, "ok");
      await reload();
    });
  });
  fill(root, h("h1", {}, "Access keys"), pick, secret, section(`Keys of ${ent} (your role: ${role})`, list),
    readOnly ? h("p", { class: "muted" }, "Observers see the keys; owners and admins manage them.") : form);
  await reload();
}

// ---- audit ----

async function auditPage(root, [ent]) {
  const filters = h("form", { class: "card filters" }, h("h2", {}, "Filters"),
    isOperator() ? field("Enterprise (tenant)", { name: "tenant", placeholder: "all" }) : select("Enterprise", "enterprise_id",
      me.enterprises.map((e) => [e.enterprise_id, e.name]), ent || (me.enterprises[0] || {}).enterprise_id),
    field("Actor id", { name: "actor" }), field("Action", { name: "action", placeholder: "e.g. product.create" }),
    field("Target", { name: "target" }), field("From", { name: "from", type: "datetime-local" }),
    field("To", { name: "to", type: "datetime-local" }), h("button", { type: "submit" }, "Apply"));
  const list = h("div", {});
  const chain = h("div", { id: "chain-status" });
  const load = async () => {
    const v = values(filters);
    const query = { actor: v.actor, action: v.action, target: v.target };
    if (v.from) query.from = new Date(v.from).getTime();
    if (v.to) query.to = new Date(v.to).getTime();
    let r;
    if (isOperator()) r = await call("get_v1_admin_audit", { query: { ...query, tenant: v.tenant, limit: 100 } });
    else if (v.enterprise_id) r = await call("get_v1_enterprises_id_audit", { path: { id: v.enterprise_id }, query: { ...query, limit: 100 } });
    else r = { data: [], meta: { total: 0 } };
    fill(list, h("p", { class: "muted" }, `${r.meta.total} matching entries (newest first, up to 100 shown).`),
      table("Audit entries", [
        ["Time", (e) => when(e.ts)], ["Actor", (e) => `${e.actor_kind}:${e.actor_id}`], ["Action", (e) => e.action],
        ["Target", (e) => e.target || ""], ["Outcome", (e) => e.outcome], ["Source", (e) => e.source_ip || ""],
      ], r.data, "No entry matches."));
  };
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(load);
  });
  const verify = async () => {
    const s = await call("get_v1_admin_audit_verify");
    fill(chain, s.intact
      ? h("p", { class: "notice ok", "data-intact": "true" }, `Chain intact: ${s.entries} entries verified${s.unchained ? `, ${s.unchained} older entries not verifiable` : ""}.`)
      : h("p", { class: "notice error", "data-intact": "false" }, `Chain broken at entry ${s.first_bad.id}: ${s.first_bad.reason}`));
  };
  fill(root, h("h1", {}, "Audit log"),
    isOperator() ? section("Hash chain", chain, h("button", { type: "button", class: "secondary", onclick: () => attempt(verify) }, "Verify again"))
      : h("p", { class: "muted" }, "The operator verifies the log's hash chain; you see your enterprises' entries (owners only)."),
    filters, list);
  if (isOperator()) await verify();
  await load();
}

// ---- factory ----

async function factoryPage(root, [pk]) {
  const list = await products();
  const mine = list.filter(canSeeSecrets);
  pk = pk || (mine[0] || list[0] || {}).product_key;
  const batchOut = h("div", { "aria-live": "polite" });
  const batch = h("form", { class: "card" }, h("h2", {}, "Issue a factory batch"), productPicker(mine, pk),
    field("Devices", { name: "count", type: "number", min: 1, max: 10000, value: 10, required: true }),
    h("button", { type: "submit", disabled: !mine.length }, "Issue batch"));
  batch.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      const v = values(batch);
      const r = await call("post_v1_products_productkey_factory_batches", { path: { product_key: v.product_key }, body: { count: Number(v.count) } });
      const csv = ["serial,device_secret", ...r.identities.map((i) => `${i.serial},${i.device_secret}`)].join("\n") + "\n";
      fill(batchOut, h("p", {}, `Batch ${r.batch_id}: ${r.identities.length} identities.`),
        h("div", { class: "row" }, h("button", { type: "button", onclick: () => download(`${r.batch_id}.csv`, csv) }, "Download CSV")),
        h("p", { class: "warn" }, "The device secrets are shown once: download the CSV now."),
        table("Identities", [["Serial", (i) => i.serial], ["Device secret", (i) => h("code", {}, i.device_secret)]], r.identities.slice(0, 20)));
    });
  });
  const managed = list.filter(canManage);
  const fileId = "allowlist-file";
  const upload = h("form", { class: "card" }, h("h2", {}, "Upload an allowlist"), productPicker(managed, pk),
    h("div", { class: "field" }, h("label", { for: fileId }, "File (one hardware id per line, or CSV)"), h("input", { id: fileId, type: "file", name: "file", accept: ".csv,.txt,text/csv,text/plain", required: true })),
    h("button", { type: "submit", disabled: !managed.length }, "Upload"));
  upload.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      const file = upload.querySelector("input[type=file]").files[0];
      if (!file) throw new Error("Choose a file.");
      const type = file.name.endsWith(".csv") ? "text/csv" : "text/plain";
      const r = await call("post_v1_products_productkey_allowlist_file", { path: { product_key: values(upload).product_key }, raw: await file.arrayBuffer(), contentType: type });
      notify(`Allowlist: ${r.added} added of ${r.submitted} submitted (sha256 ${r.sha256.slice(0, 12)}…).`, "ok");
    });
  });
  fill(root, h("h1", {}, "Factory"), batch, batchOut, upload);
}

// ---- members ----

async function membersPage(root, [ent]) {
  if (!ent && !isOperator() && me.enterprises.length) ent = me.enterprises[0].enterprise_id;
  const pick = h("form", { class: "row" }, enterprisePicker(ent), h("button", { type: "submit" }, "Show members"));
  pick.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/members/${values(pick).enterprise_id}`;
  });
  const create = isOperator() ? null : h("form", { class: "card" }, h("h2", {}, "Create an enterprise"),
    field("Name", { name: "name", required: true }), h("button", { type: "submit" }, "Create"));
  if (create) {
    create.addEventListener("submit", (e) => {
      e.preventDefault();
      attempt(async () => {
        const r = await call("post_v1_enterprises", { body: { name: values(create).name } });
        const d = await call("get_v1_developers_me");
        me.enterprises = d.enterprises || [];
        location.hash = `#/members/${r.enterprise_id}`;
      });
    });
  }
  if (!ent) {
    fill(root, h("h1", {}, "Members and roles"), pick, create);
    return;
  }
  const myRole = isOperator() ? "operator" : ((me.enterprises.find((e) => e.enterprise_id === ent) || {}).role || "observer");
  const owner = myRole === "owner" || myRole === "operator";
  const list = h("div", {});
  const reload = async () => {
    const m = await call("get_v1_enterprises_id_members", { path: { id: ent } });
    fill(list, table("Members", [
      ["E-mail", (x) => x.email],
      ["Role", (x) => {
        if (!owner) return x.role;
        const s = select(`Role of ${x.email}`, "role", [["owner", "owner"], ["admin", "admin"], ["observer", "observer"]], x.role);
        s.querySelector("select").addEventListener("change", (e) => attempt(async () => {
          await call("put_v1_enterprises_id_members_developerid", { path: { id: ent, developer_id: x.developer_id }, body: { role: e.target.value } });
          notify(`${x.email} is now ${e.target.value}.`, "ok");
          await reload();
        }));
        return s;
      }],
      ["Since", (x) => when(x.created_at)],
      ["", (x) => (owner ? h("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
        if (!confirm(`Remove ${x.email}?`)) return;
        await call("delete_v1_enterprises_id_members_developerid", { path: { id: ent, developer_id: x.developer_id } });
        await reload();
      }) }, "Remove") : "")],
    ], m.data));
  };
  const invite = owner ? h("form", { class: "card" }, h("h2", {}, "Invite"),
    field("E-mail", { name: "email", type: "email", required: true }),
    select("Role", "role", [["admin", "admin"], ["observer", "observer"], ["owner", "owner"]], "admin"),
    h("button", { type: "submit" }, "Send invitation")) : null;
  if (invite) {
    invite.addEventListener("submit", (e) => {
      e.preventDefault();
      attempt(async () => {
        const r = await call("post_v1_enterprises_id_invites", { path: { id: ent }, body: values(invite) });
        notify(`Invitation ${r.invite_id} sent.`, "ok");
      });
    });
  }
  fill(root, h("h1", {}, "Members and roles"), pick, section(`Members of ${ent} (your role: ${myRole})`, list), invite, create);
  await reload();
}

// ---- certificates ----

async function certificatesPage(root, [pk]) {
  const list = await products();
  pk = pk || (list[0] || {}).product_key;
  if (!pk) {
    fill(root, h("h1", {}, "Certificates"), h("p", { class: "muted" }, "No product yet."));
    return;
  }
  const p = list.find((x) => x.product_key === pk) || { product_key: pk };
  const secrets = canSeeSecrets(p);
  const pick = h("form", { class: "row" }, productPicker(list, pk), h("button", { type: "submit" }, "Show"));
  pick.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/certificates/${values(pick).product_key}`;
  });
  const cas = h("div", {});
  const reload = async () => {
    const r = await call("get_v1_products_productkey_ca_certificates", { path: { product_key: pk } });
    fill(cas, table("CA certificates", [
      ["Subject", (c) => c.subject], ["SHA-256", (c) => h("code", {}, c.sha256.slice(0, 16) + "…")],
      ["Expires", (c) => when(c.not_after)],
      ["", (c) => (secrets ? h("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
        if (!confirm(`Delete the CA ${c.subject}? Its devices are refused from their next connection.`)) return;
        await call("delete_v1_products_productkey_ca_certificates_caid", { path: { product_key: pk, ca_id: c.ca_id } });
        await reload();
      }) }, "Delete") : "")],
    ], r.data, "No CA yet."));
  };
  const pemForm = (title, id, label, submit) => {
    const f = h("form", { class: "card" }, h("h2", {}, title), field(label, { name: "pem", rows: 6, required: true, spellcheck: "false" }, "textarea"),
      h("button", { type: "submit", disabled: !secrets }, title));
    f.addEventListener("submit", (e) => {
      e.preventDefault();
      attempt(async () => {
        await submit(values(f).pem);
        f.reset();
        await reload();
      });
    });
    return f;
  };
  fill(root, h("h1", {}, "Certificates"), pick, section(`CAs trusted by ${pk}`, cas),
    pemForm("Add a CA", "ca", "CA certificate (PEM)", async (pem) => {
      const r = await call("post_v1_products_productkey_ca_certificates", { path: { product_key: pk }, body: { pem } });
      notify(`CA ${r.subject} added.`, "ok");
    }),
    pemForm("Upload a CRL", "crl", "Certificate revocation list (PEM)", async (pem) => {
      const r = await call("post_v1_products_productkey_crl", { path: { product_key: pk }, body: { pem } });
      notify(`CRL ${r.crl_number}: ${r.revoked} revoked, ${r.closed_sessions} sessions closed.`, "ok");
    }));
  await reload();
}

// ---- account ----

async function accountPage(root) {
  if (isOperator()) {
    const list = h("div", {});
    const out = h("div", { "aria-live": "polite" });
    const reload = async () => {
      const r = await call("get_v1_admin_tokens");
      fill(list, table("Admin tokens", [["Name", (t) => t.name], ["Ends in", (t) => t.hint], ["Made by", (t) => t.created_by],
        ["Created", (t) => when(t.created_at)],
        ["", (t) => h("button", { type: "button", class: "danger", onclick: () => attempt(async () => {
          if (!confirm(`Revoke ${t.name}?`)) return;
          await call("delete_v1_admin_tokens_id", { path: { id: t.id } });
          await reload();
        }) }, "Revoke")]], r.data, "No named admin token."));
    };
    const form = h("form", { class: "card" }, h("h2", {}, "Create an admin token"), field("Name", { name: "name", required: true }),
      h("button", { type: "submit" }, "Create"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      attempt(async () => {
        const r = await call("post_v1_admin_tokens", { body: { name: values(form).name } });
        fill(out, secretBox(`Admin token ${r.name}`, r.token));
        await reload();
      });
    });
    fill(root, h("h1", {}, "Account"), section("Admin tokens", list), form, out);
    await reload();
    return;
  }
  const out = h("div", { "aria-live": "polite" });
  const totp = h("div", {});
  if (me.totp) {
    fill(totp, h("p", {}, "TOTP is on: signing in needs a code from your authenticator app."));
  } else {
    fill(totp, h("p", {}, "TOTP is off."), h("button", { type: "button", onclick: () => attempt(async () => {
      const r = await call("post_v1_developers_me_totp");
      const confirmForm = h("form", { class: "row" }, field("Code from the app", { name: "code", inputmode: "numeric", required: true }),
        h("button", { type: "submit" }, "Turn TOTP on"));
      confirmForm.addEventListener("submit", (e) => {
        e.preventDefault();
        attempt(async () => {
          const c = await call("post_v1_developers_me_totp_confirm", { body: { code: values(confirmForm).code } });
          me.totp = true;
          fill(out, secretBox("Recovery codes", c.recovery_codes.join("\n")));
          fill(totp, h("p", {}, "TOTP is on."));
        });
      });
      fill(out, secretBox("TOTP secret", r.secret), h("p", { class: "muted" }, r.otpauth_uri), confirmForm);
    }) }, "Set up TOTP"));
  }
  fill(root, h("h1", {}, "Account"), section(me.email, totp, out));
}

export const pages = {
  overview,
  products: productsPage,
  devices: devicesPage,
  keys: keysPage,
  audit: auditPage,
  factory: factoryPage,
  firmware: firmwarePage,
  campaigns: campaignsPage,
  members: membersPage,
  certificates: certificatesPage,
  account: accountPage,
};
