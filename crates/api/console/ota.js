// Over-the-air updates: a product's firmware (list, upload, delete) and its campaigns (list,
// start, follow, pause, resume, abort). The developer WebSocket does not carry OTA progress, so
// a campaign's counts are polled while its page is open. Observers see everything and change
// nothing.
import { call, roleFor, canManage, canSeeSecrets } from "./app.js";
import { h, fill, field, select, checkbox, table, when, notify, attempt, values, section } from "./ui.js";

const CAMPAIGN_POLL_MS = 2000;
const STATES = ["notified", "downloading", "downloaded", "verified", "applying", "succeeded", "failed", "timed_out"];

/** Every item of a paged list operation (at most `max`). */
async function everything(id, path, max = 1000) {
  const out = [];
  for (let page = 1; out.length < max; page += 1) {
    const r = await call(id, { path, query: { page, limit: 200 } });
    out.push(...r.data);
    if (!r.data.length || out.length >= r.meta.total) break;
  }
  return out;
}

/** The caller's products and the chosen one (the first when none is named). */
async function chosenProduct(pk) {
  const list = await everything("get_v1_products", {});
  const p = list.find((x) => x.product_key === pk) || list[0] || null;
  return { list, p };
}

/** The product picker that moves to `#/{page}/{product_key}`. */
function productSwitch(page, list, pk) {
  const pick = h("form", { class: "row" },
    select("Product", "product_key", list.map((p) => [p.product_key, `${p.name} (${p.product_key})`]), pk),
    h("button", { type: "submit", class: "secondary" }, "Show"));
  pick.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/${page}/${encodeURIComponent(values(pick).product_key)}`;
  });
  return pick;
}

const splitList = (s) => s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
const size = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const fwLabel = (f) => (f ? `${f.version} (${f.target}, sequence ${f.sequence})` : "deleted image");

// ---- firmware ----

export async function firmwarePage(root, [pk]) {
  const { list, p } = await chosenProduct(pk);
  if (!p) {
    fill(root, h("h1", {}, "Firmware"), h("p", { class: "muted" }, "No product yet."));
    return;
  }
  pk = p.product_key;
  const manage = canManage(p);
  const images = h("div", {});
  const reload = async () => {
    const all = await everything("get_v1_products_productkey_firmware", { product_key: pk });
    fill(images, table(`Firmware of ${pk}`, [
      ["Version", (f) => h("strong", {}, f.version)], ["Target", (f) => f.target], ["Sequence", (f) => f.sequence],
      ["Hardware", (f) => (f.hardware_versions.length ? f.hardware_versions.join(", ") : "any")],
      ["Size", (f) => size(f.size)], ["SHA-256", (f) => h("code", { title: f.sha256 }, `${f.sha256.slice(0, 16)}…`)],
      ["Notes", (f) => f.notes], ["Uploaded", (f) => when(f.created_at)],
      ["", (f) => (manage ? h("div", { class: "row" },
        h("a", { href: `#/campaigns/${encodeURIComponent(pk)}?firmware=${encodeURIComponent(f.firmware_id)}` }, `Roll out ${f.version}`),
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${f.target} ${f.version}`, onclick: () => attempt(async () => {
          if (!confirm(`Delete the ${f.target} firmware ${f.version}?`)) return;
          await call("delete_v1_products_productkey_firmware_firmwareid", { path: { product_key: pk, firmware_id: f.firmware_id } });
          notify(`Firmware ${f.version} deleted.`, "ok");
          await reload();
        }) }, "Delete")) : "")],
    ], all, "No firmware yet."));
  };
  const fileId = "firmware-file";
  const upload = h("form", { class: "card", id: "firmware-upload" }, h("h2", {}, "Upload firmware"),
    h("div", { class: "grid two" },
      select("Target", "target", [["module", "module"], ["mcu", "mcu"]], "module"),
      field("Version (semantic)", { name: "version", required: true, placeholder: "1.4.0", pattern: "[0-9]+\\.[0-9]+\\.[0-9]+.*", autocomplete: "off" }),
      field("Hardware versions (comma-separated; empty: any)", { name: "hardware_versions", placeholder: "B1, B2", autocomplete: "off" }),
      h("div", { class: "field" }, h("label", { for: fileId }, "Image file"), h("input", { id: fileId, type: "file", name: "file", required: true }))),
    field("Notes", { name: "notes", rows: 2, maxlength: 4096 }, "textarea"),
    h("button", { type: "submit" }, "Upload"));
  upload.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      const file = upload.querySelector("input[type=file]").files[0];
      if (!file) throw new Error("Choose an image file.");
      const v = values(upload);
      const form = new FormData();
      for (const k of ["target", "version", "hardware_versions", "notes"]) form.append(k, v[k]);
      form.append("file", file, "image.bin");
      const r = await call("post_v1_products_productkey_firmware", { path: { product_key: pk }, raw: form });
      notify(`Firmware ${r.version} (${r.target}) uploaded: sequence ${r.sequence}, ${size(r.size)}.`, "ok");
      upload.reset();
      await reload();
    });
  });
  const keyOut = h("div", { "aria-live": "polite" });
  const keyCard = section("OTA signing key",
    h("p", { class: "muted" }, "Devices verify every manifest with this Ed25519 public key: burn it into them."),
    h("button", { type: "button", class: "secondary", onclick: () => attempt(async () => {
      const k = await call("get_v1_products_productkey_ota_key", { path: { product_key: pk } });
      fill(keyOut, h("output", { class: "secret-value", "data-ota-key": "" }, k.ed25519));
    }) }, "Show the public key"), keyOut);
  fill(root, h("h1", {}, "Firmware"), productSwitch("firmware", list, pk),
    h("p", {}, h("code", {}, pk), ` · your role: ${roleFor(p)} · `, h("a", { href: `#/campaigns/${encodeURIComponent(pk)}` }, "Campaigns")),
    section(`Images of ${p.name}`, images),
    manage ? upload : h("p", { class: "muted" }, "Read-only for your role: owners and admins upload and delete firmware."),
    keyCard);
  await reload();
}

// ---- campaigns ----

/** The campaigns page: `#/campaigns/{pk}` lists and starts them, `#/campaigns/{pk}/{id}` follows one. */
export async function campaignsPage(root, [pkArg, idArg]) {
  // A link from the firmware list preselects its image: `#/campaigns/{pk}?firmware=fw_…`.
  const [pkPart, qs] = (pkArg || "").split("?");
  const preset = new URLSearchParams(qs || "").get("firmware");
  const { list, p } = await chosenProduct(pkPart);
  if (!p) {
    fill(root, h("h1", {}, "Campaigns"), h("p", { class: "muted" }, "No product yet."));
    return undefined;
  }
  if (idArg) return campaignView(root, p, idArg);
  const pk = p.product_key;
  const manage = canManage(p);
  const firmware = await everything("get_v1_products_productkey_firmware", { product_key: pk });
  const byId = new Map(firmware.map((f) => [f.firmware_id, f]));
  const rows = h("div", { "aria-live": "polite" });
  const reload = async () => {
    const r = await call("get_v1_products_productkey_campaigns", { path: { product_key: pk }, query: { limit: 50 } });
    fill(rows, table(`Campaigns of ${pk}`, [
      ["Campaign", (c) => h("a", { href: `#/campaigns/${encodeURIComponent(pk)}/${encodeURIComponent(c.campaign_id)}` }, c.campaign_id)],
      ["Firmware", (c) => fwLabel(byId.get(c.firmware_id))],
      ["State", (c) => h("span", { class: `state ${c.state}` }, c.state)],
      ["Stage", (c) => `${c.stage} of ${c.stages.length}`],
      ["Succeeded", (c) => `${c.counts.succeeded} / ${c.devices}`],
      ["Failed", (c) => c.counts.failed + c.counts.timed_out],
      ["Started", (c) => when(c.created_at)],
    ], r.data, "No campaign yet."));
  };
  const form = h("form", { class: "card", id: "campaign-create" }, h("h2", {}, "Start a campaign"),
    select("Firmware", "firmware_id", firmware.map((f) => [f.firmware_id, fwLabel(f)]), preset || (firmware[0] || {}).firmware_id),
    h("fieldset", {}, h("legend", {}, "Devices (empty: every device of the product)"),
      h("div", { class: "grid two" },
        field("Hardware versions (comma-separated)", { name: "hardware_versions", autocomplete: "off" }),
        field("Running versions (comma-separated)", { name: "from_versions", autocomplete: "off" })),
      field("Device ids (one per line)", { name: "dids", rows: 2, spellcheck: "false" }, "textarea")),
    h("div", { class: "grid two" },
      field("Stages (cumulative %, rising)", { name: "stages", value: "1, 10, 100", required: true, autocomplete: "off" }),
      field("Max failure % per stage", { name: "max_failure_percent", type: "number", min: 0, max: 100, value: 5, required: true }),
      field("Minimum devices per stage", { name: "min_devices_per_stage", type: "number", min: 0, max: 100000, value: 1, required: true }),
      field("Device timeout (seconds)", { name: "device_timeout_secs", type: "number", min: 1, max: 2592000, value: 3600, required: true })),
    canSeeSecrets(p) ? checkbox("Rollback to an older sequence (owners only)", "rollback", false) : null,
    h("button", { type: "submit", disabled: !firmware.length }, "Start campaign"),
    firmware.length ? null : h("p", { class: "muted" }, "Upload firmware first."));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      const v = values(form);
      const stages = splitList(v.stages).map(Number);
      if (!stages.length || stages.some((s) => !Number.isInteger(s))) throw new Error("Stages are whole percentages, e.g. 1, 10, 100.");
      const selector = {};
      if (v.hardware_versions.trim()) selector.hardware_versions = splitList(v.hardware_versions);
      if (v.from_versions.trim()) selector.from_versions = splitList(v.from_versions);
      if (v.dids.trim()) selector.dids = splitList(v.dids);
      const body = {
        firmware_id: v.firmware_id, selector, stages,
        max_failure_percent: Number(v.max_failure_percent),
        min_devices_per_stage: Number(v.min_devices_per_stage),
        device_timeout_secs: Number(v.device_timeout_secs),
      };
      if (v.rollback) body.rollback = true;
      const r = await call("post_v1_products_productkey_campaigns", { path: { product_key: pk }, body });
      location.hash = `#/campaigns/${encodeURIComponent(pk)}/${encodeURIComponent(r.campaign_id)}`;
    });
  });
  fill(root, h("h1", {}, "Campaigns"), productSwitch("campaigns", list, pk),
    h("p", {}, h("code", {}, pk), ` · your role: ${roleFor(p)} · `, h("a", { href: `#/firmware/${encodeURIComponent(pk)}` }, "Firmware")),
    section(`Campaigns of ${p.name}`, rows),
    manage ? form : h("p", { class: "muted" }, "Read-only for your role: owners and admins start and steer campaigns."));
  await reload();
  const t = setInterval(() => attempt(reload), CAMPAIGN_POLL_MS * 2);
  return () => clearInterval(t);
}

function stat(label, value, key) {
  return h("div", { class: "stat" }, h("span", { class: "stat-value", id: `count-${key}`, "data-count": value }, String(value)),
    h("span", { class: "stat-label" }, label));
}

async function campaignView(root, p, id) {
  const pk = p.product_key;
  const manage = canManage(p);
  const path = { product_key: pk, campaign_id: id };
  const head = h("div", {});
  const counts = h("div", { class: "stats", id: "campaign-counts" });
  const actions = h("div", { class: "row" });
  const devices = h("div", {});
  let fw = null;
  let c = await call("get_v1_products_productkey_campaigns_campaignid", { path });
  try {
    fw = (await everything("get_v1_products_productkey_firmware", { product_key: pk })).find((f) => f.firmware_id === c.firmware_id) || null;
  } catch {
    fw = null;
  }
  const act = (verb, op, label, cls) => h("button", {
    type: "button", class: cls, disabled: !allowed(verb),
    onclick: () => attempt(async () => {
      if (verb === "abort" && !confirm("Abort this campaign for good? Devices not updated yet are not told any more.")) return;
      c = await call(op, { path });
      notify(`Campaign ${c.state}.`, "ok");
      draw();
    }),
  }, label);
  const allowed = (verb) => manage && ((verb === "pause" && c.state === "running") || (verb === "resume" && c.state === "paused")
    || (verb === "abort" && (c.state === "running" || c.state === "paused")));
  const draw = () => {
    fill(head,
      h("p", {}, "State: ", h("strong", { id: "campaign-state", "data-state": c.state }, c.state),
        ` · stage ${c.stage} of ${c.stages.length} (${c.stages.join("%, ")}%) · ${c.devices} devices · firmware ${fwLabel(fw)}`,
        c.rollback ? " · rollback" : ""),
      c.reason ? h("p", { class: "warn", id: "campaign-reason" }, c.reason) : null,
      h("p", { class: "muted" }, `Failure threshold ${c.max_failure_percent}% per stage, device timeout ${c.device_timeout_secs} s, updated ${when(c.updated_at)}.`));
    fill(counts, STATES.map((s) => stat(s.replace("_", " "), c.counts[s] || 0, s)));
    fill(actions, manage
      ? [act("pause", "post_v1_products_productkey_campaigns_campaignid_pause", "Pause", "secondary"),
        act("resume", "post_v1_products_productkey_campaigns_campaignid_resume", "Resume", "secondary"),
        act("abort", "post_v1_products_productkey_campaigns_campaignid_abort", "Abort", "danger")]
      : h("p", { class: "muted" }, "Read-only for your role."));
  };
  const drawDevices = async () => {
    const r = await call("get_v1_products_productkey_campaigns_campaignid_devices", { path, query: { limit: 100 } });
    fill(devices, table("Devices of the campaign", [
      ["Device", (d) => h("a", { href: `#/devices/${encodeURIComponent(d.did)}` }, d.did)], ["Stage", (d) => d.stage],
      ["State", (d) => d.state], ["Bytes", (d) => d.bytes], ["Reason", (d) => d.reason || ""],
      ["Deadline", (d) => when(d.deadline_at)],
    ], r.data, "No device."), r.meta.total > r.data.length ? h("p", { class: "muted" }, `First ${r.data.length} of ${r.meta.total}.`) : null);
  };
  fill(root, h("h1", {}, `Campaign ${id}`),
    h("p", {}, h("a", { href: `#/campaigns/${encodeURIComponent(pk)}` }, `All campaigns of ${p.name}`)),
    section("Progress", head, counts, actions), section("Devices", devices));
  draw();
  await drawDevices();
  // Counts move as devices report: polled while the page is open, finished campaigns included
  // (a late report can still count).
  const t = setInterval(() => attempt(async () => {
    c = await call("get_v1_products_productkey_campaigns_campaignid", { path });
    draw();
    await drawDevices();
  }), CAMPAIGN_POLL_MS);
  return () => clearInterval(t);
}
