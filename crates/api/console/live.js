// Live device events for the whole session: one WebSocket (a developer's to GET
// /v1/developers/ws, an operator's to GET /v1/admin/events) with the token in the query, the one
// way a browser can hand it to a WebSocket, reconnected with back-off; its messages are handed to
// whichever pages listen, and its state to those that poll while it is down.

const listeners = new Set();
const stateListeners = new Set();
let socket = null;
let tokenOf = null;
let path = null;
let retry = 0;
let timer = null;
let stopped = true;

function setState(state) {
  live.connected = state === "live";
  const el = document.getElementById("live-state");
  if (el) {
    el.textContent = state;
    el.dataset.state = state;
  }
  for (const f of stateListeners) f(live.connected);
}

function connect() {
  if (stopped) return;
  const token = tokenOf && tokenOf();
  if (!token) return;
  const url = new URL(path, location.href);
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
  /** A stream belongs to the session (it may be reconnecting). */
  available: false,
  /** The stream is open now. */
  connected: false,
  /** Start streaming from `streamPath`; `token` returns the session's current token. */
  start(token, streamPath) {
    this.available = true;
    stopped = false;
    tokenOf = token;
    path = streamPath;
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
    stateListeners.clear();
  },
  /** Listen to every event; returns the function that stops listening. */
  on(f) {
    listeners.add(f);
    return () => listeners.delete(f);
  },
  /** Be told `true` when the stream opens and `false` when it drops; returns the function that stops it. */
  onState(f) {
    stateListeners.add(f);
    return () => stateListeners.delete(f);
  },
};
