// The console's shell: the session (a developer's token pair or an operator's admin token, kept
// in sessionStorage so closing the tab ends it), calls to the API by operationId, the hash
// router, and the sign-in page.
import { operations } from "./api.js";
import { h, fill, field, notify, attempt, values } from "./ui.js";
import { live } from "./live.js";
import { pages } from "./pages.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (${status} ${code})`);
    this.status = status;
    this.code = code;
  }
}

const KEY = "rampart.console.session";

export const session = {
  load() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY)) || null;
    } catch {
      return null;
    }
  },
  save(s) {
    if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
    else sessionStorage.removeItem(KEY);
  },
  current: null,
};

let refreshing = null;

async function refresh() {
  const s = session.current;
  if (!s || s.kind !== "developer" || !s.refresh) return false;
  refreshing ??= (async () => {
    try {
      const pair = await call("post_v1_developers_token_refresh", { body: { refresh_token: s.refresh }, anonymous: true });
      s.token = pair.access_token;
      s.refresh = pair.refresh_token;
      session.save(s);
      live.restart();
      return true;
    } catch {
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/**
 * Call an operation of /openapi.json by its operationId (see api.js): path parameters, query
 * parameters and the body are checked against the operation before anything is sent.
 */
export async function call(id, { path = {}, query = {}, body, raw, contentType, anonymous = false } = {}, retried = false) {
  const op = operations[id];
  if (!op) throw new Error(`unknown operation ${id}`);
  const url = op.path.replace(/\{(\w+)\}/g, (_, k) => {
    if (path[k] === undefined || path[k] === "") throw new Error(`${id}: missing path parameter ${k}`);
    return encodeURIComponent(path[k]);
  });
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (!op.query.includes(k)) throw new Error(`${id}: no query parameter ${k}`);
    if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
  }
  const headers = {};
  const s = session.current;
  if (s && !anonymous) headers.Authorization = `Bearer ${s.token}`;
  let payload;
  if (raw !== undefined) {
    payload = raw;
    // FormData carries its own multipart type (with the boundary) when none is given.
    if (contentType) headers["Content-Type"] = contentType;
  } else if (body !== undefined) {
    if (op.body !== "application/json") throw new Error(`${id} takes no JSON body`);
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const q = qs.toString();
  const resp = await fetch(q ? `${url}?${q}` : url, { method: op.method, headers, body: payload, credentials: "omit", cache: "no-store" });
  if (resp.status === 401 && !retried && !anonymous && s && s.kind === "developer" && (await refresh())) {
    return call(id, { path, query, body, raw, contentType }, true);
  }
  const text = await resp.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  if (!resp.ok) {
    const e = (json && json.error) || {};
    if (resp.status === 401 && !anonymous && s) {
      signOut("Your session ended: sign in again.");
    }
    throw new ApiError(resp.status, e.code || "ERROR", e.message || resp.statusText);
  }
  return json;
}

/** Who is signed in, for the pages: kind, email, and each enterprise's role. */
export const me = { kind: null, email: null, enterprises: [] };

/** The caller's role toward a product: operator, owner (personal or enterprise owner), admin, observer. */
export function roleFor(product) {
  if (me.kind === "operator") return "operator";
  if (!product || !product.enterprise_id) return "owner";
  const e = me.enterprises.find((x) => x.enterprise_id === product.enterprise_id);
  return e ? e.role : "observer";
}

/** May the caller change things of this product (not an observer)? */
export const canManage = (product) => roleFor(product) !== "observer";
/** May the caller see this product's secrets (operator or owner)? */
export const canSeeSecrets = (product) => ["operator", "owner"].includes(roleFor(product));

function signOut(message) {
  const s = session.current;
  if (s && s.kind === "developer") call("post_v1_developers_logout", {}).catch(() => {});
  session.current = null;
  session.save(null);
  live.stop();
  location.hash = "#/signin";
  render();
  if (message) notify(message, "info");
}

async function loadMe() {
  const s = session.current;
  me.kind = s.kind;
  if (s.kind === "developer") {
    const d = await call("get_v1_developers_me");
    me.email = d.email;
    me.enterprises = d.enterprises || [];
    me.totp = d.totp_enabled;
    live.start(() => session.current && session.current.token, "/v1/developers/ws");
  } else {
    // An admin token proves itself by a call only an operator may make.
    await call("get_v1_admin_tokens");
    me.email = "operator";
    me.enterprises = [];
    live.start(() => session.current && session.current.token, "/v1/admin/events");
  }
}

function signInPage(root) {
  const dev = h("form", { class: "card", "aria-labelledby": "dev-h" },
    h("h2", { id: "dev-h" }, "Developer"),
    field("E-mail", { name: "email", type: "email", autocomplete: "username", required: true }),
    field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    field("Authenticator code (when TOTP is on)", { name: "totp", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}" }),
    h("button", { type: "submit" }, "Sign in"));
  dev.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(async () => {
      const v = values(dev);
      const body = { email: v.email, password: v.password };
      if (v.totp) body.totp = v.totp;
      try {
        const pair = await call("post_v1_developers_login", { body, anonymous: true });
        await start({ kind: "developer", token: pair.access_token, refresh: pair.refresh_token });
      } catch (err) {
        if (err.code === "TOTP_REQUIRED" && !v.totp) {
          dev.querySelector("[name=totp]").focus();
          notify("Enter the 6-digit code from your authenticator app.", "info");
          return;
        }
        throw err;
      }
    });
  });
  const op = h("form", { class: "card", "aria-labelledby": "op-h" },
    h("h2", { id: "op-h" }, "Operator"),
    field("Admin token", { name: "token", type: "password", autocomplete: "off", required: true }),
    h("p", { class: "muted" }, "The bootstrap token or a named admin token (Account, Admin tokens)."),
    h("button", { type: "submit" }, "Sign in"));
  op.addEventListener("submit", (e) => {
    e.preventDefault();
    attempt(() => start({ kind: "operator", token: values(op).token.trim() }));
  });
  fill(root, h("h1", {}, "Sign in to Rampart"), h("div", { class: "grid two" }, dev, op));
}

async function start(s) {
  session.current = s;
  try {
    await loadMe();
  } catch (e) {
    session.current = null;
    live.stop();
    throw e;
  }
  session.save(s);
  location.hash = "#/overview";
  render();
}

const NAV = [
  ["overview", "Overview"], ["products", "Products"], ["devices", "Devices"], ["keys", "Access keys"],
  ["audit", "Audit log"], ["factory", "Factory"], ["firmware", "Firmware"], ["campaigns", "Campaigns"], ["members", "Members"],
  ["certificates", "Certificates"],
  ["account", "Account"],
];

let cleanup = null;
let generation = 0;

async function render() {
  // Each render draws into a view of its own: a slower render that finishes after a newer one
  // (a hash change during a load) writes into a detached view and stops what it started.
  generation += 1;
  const mine = generation;
  const main = document.getElementById("main");
  const root = h("div", { class: "view" });
  main.replaceChildren(root);
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const [name, ...args] = (location.hash.replace(/^#\/?/, "") || "overview").split("/").map(decodeURIComponent);
  if (!session.current) {
    fill(nav);
    fill(who);
    signInPage(root);
    return;
  }
  fill(nav, NAV.map(([k, t]) => h("a", { href: `#/${k}`, "aria-current": k === name ? "page" : false }, t)));
  fill(who, h("span", {}, `${me.email} (${me.kind})`),
    h("button", { type: "button", class: "secondary", onclick: () => signOut() }, "Sign out"));
  const page = pages[name] || pages.overview;
  fill(root, h("p", { class: "muted" }, "Loading…"));
  document.getElementById("notice").replaceChildren();
  try {
    const r = await page(root, args);
    if (typeof r === "function") {
      if (mine === generation) cleanup = r;
      else r();
    }
  } catch (e) {
    if (mine !== generation) return;
    fill(root, h("h1", {}, "Something went wrong"));
    notify(e.message || String(e), "error");
  }
  if (mine === generation) main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", render);

(async () => {
  const saved = session.load();
  if (saved) {
    session.current = saved;
    try {
      await loadMe();
    } catch {
      session.current = null;
      session.save(null);
    }
  }
  render();
})();
