// Requests to the API (session cookie or Basic, CSRF token on changes) and the two
// Server-Sent Event streams: the console stream (health, ports, traffic) and the
// event stream (results, reports, inbound SMS, port changes), replayed from a little
// before the newest event so the lists are not empty on load.

import { changed, putInbound, putMessage, putPort, store } from "./store.js";

export const REPLAY = 2000; // events replayed when the console opens

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onSessionLost = () => {};
export function whenSessionLost(callback) {
  onSessionLost = callback;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && store.session?.csrf) headers["X-CSRF-Token"] = store.session.csrf;
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The API cannot be reached.");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data?.message || data?.error || `${response.status} ${response.statusText}`;
    if (response.status === 401 && path !== "/api/v1/session") onSessionLost(message);
    throw new ApiError(response.status, data?.error || "http", message);
  }
  return data;
}

/** An EventSource that reopens after the server refused it (EventSource gives up then). */
class Stream {
  constructor(name, url, handlers) {
    this.name = name;
    this.url = url; // a function: the URL to (re)open
    this.handlers = handlers;
    this.source = null;
    this.retry = 1000;
    this.timer = null;
  }

  open() {
    this.close();
    store[this.name] = "connecting";
    const source = (this.source = new EventSource(this.url()));
    source.onopen = () => {
      store[this.name] = "open";
      this.retry = 1000;
      changed();
    };
    source.onerror = () => this.failed(source);
    for (const [kind, handle] of Object.entries(this.handlers)) {
      source.addEventListener(kind, (e) => {
        handle(JSON.parse(e.data), e);
        changed();
      });
    }
    changed();
  }

  async failed(source) {
    if (source !== this.source) return;
    if (source.readyState !== EventSource.CLOSED) {
      // The browser reconnects by itself; "reconnecting" once it had been open.
      store[this.name] = store[this.name] === "connecting" ? "connecting" : "reconnecting";
      changed();
      return;
    }
    store[this.name] = "error";
    changed();
    try {
      await api("/api/v1/session"); // refused because the session ended?
    } catch (error) {
      if (error.status === 401) {
        onSessionLost("Your session has ended. Log in again.");
        return;
      }
    }
    this.timer = setTimeout(() => this.open(), this.retry);
    this.retry = Math.min(this.retry * 2, 30000);
  }

  close() {
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }
}

let lastEventId = null;

const events = new Stream("events", () => {
  const since = lastEventId ?? Math.max(0, (store.health?.events_seq ?? 0) - REPLAY);
  return `/api/v1/events?since=${since}`;
}, {
  result(e, raw) {
    lastEventId = Number(raw.lastEventId);
    putMessage(e.id, {
      to: e.to, port: e.port, state: e.status, reason: e.reason, time: e.time,
      caller_id: e.caller_id, parts: e.parts?.length, user: e.user,
    });
  },
  report(e, raw) {
    lastEventId = Number(raw.lastEventId);
    if (e.state === "unmatched") return; // about no message of ours: no row to update
    putMessage(e.id, {
      to: e.to, port: e.port, caller_id: e.caller_id, reported: e.time,
      state: e.state === "delivered" ? "delivered" : "undelivered",
      reason: e.state === "delivered" ? null : e.reason || e.state,
    });
  },
  inbound(e, raw) {
    lastEventId = Number(raw.lastEventId);
    putInbound(e);
  },
  port(e, raw) {
    lastEventId = Number(raw.lastEventId);
    putPort(e.state);
  },
});

const live = new Stream("live", () => "/api/v1/console/stream", {
  health(h) {
    store.health = h;
    // The event stream starts once we know where the stream ends (NATS must be up).
    if (h.nats && h.events_seq !== null && store.events === "waiting") events.open();
  },
  ports(update) {
    if (update.full) store.ports.clear();
    for (const state of update.ports) putPort(state);
    for (const name of update.removed) store.ports.delete(name);
    store.portsLoaded = true;
  },
  traffic(series) {
    store.traffic = series;
  },
});

export function startStreams() {
  lastEventId = null;
  live.open();
}

export function stopStreams() {
  live.close();
  events.close();
}
