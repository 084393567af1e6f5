// Live device events for a signed-in developer: one WebSocket to GET /v1/developers/ws for the
// whole session (the token in the query, the one way a browser can hand it to a WebSocket),
// reconnected with back-off, its messages handed to whichever pages listen. Operators have no
// browser-usable stream (GET /v1/admin/events takes the token in a header only), so their pages
// poll instead: `live.available` says which.

const listeners = new Set();
let socket = null;
let tokenOf = null;
let retry = 0;
let timer = null;
let stopped = true;

function setState(state) {
  const el = document.getElementById("live-state");
  if (el) {
    el.textContent = state;
    el.dataset.state = state;
  }
}

function connect() {
  if (stopped) return;
  const token = tokenOf && tokenOf();
  if (!token) return;
  const url = new URL("/v1/developers/ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("access_token", token);
  const ws = new WebSocket(url);
  socket = ws;
  setState("connecting");
  ws.addEventListener("open", () => {
    retry = 0;
    setState("live");
  });
  ws.addEventListener("message", (m) => {
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    for (const f of listeners) f(ev);
  });
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    socket = null;
    setState("reconnecting");
    // 4401 (token expired) reconnects too: the session refreshes its token on the next call.
    retry = Math.min(retry + 1, 6);
    timer = setTimeout(connect, 500 * 2 ** retry);
  });
}

export const live = {
  available: false,
  /** Start streaming for a developer session; `token` returns the current access token. */
  start(token) {
    this.available = true;
    stopped = false;
    tokenOf = token;
    connect();
  },
  /** Reconnect now (after a token refresh). */
  restart() {
    if (stopped) return;
    clearTimeout(timer);
    const old = socket;
    socket = null;
    if (old) old.close();
    connect();
  },
  stop() {
    stopped = true;
    this.available = false;
    clearTimeout(timer);
    if (socket) socket.close();
    socket = null;
    listeners.clear();
    setState("off");
  },
  /** Listen to every event; returns the function that stops listening. */
  on(f) {
    listeners.add(f);
    return () => listeners.delete(f);
  },
};
