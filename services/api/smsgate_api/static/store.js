// The console's state, filled by the two event streams and a few requests.
// Views read it and re-render on `changed()`, at most once per animation frame.

export const MESSAGES_KEPT = 1000;
export const INBOUND_KEPT = 500;

export const store = {
  session: null, // {user, admin, ports, via, csrf}
  health: null, // {nats, queue, events_seq} from the console stream
  live: "connecting", // the console stream: connecting | open | reconnecting | error
  events: "waiting", // the event stream: waiting | connecting | open | reconnecting | error
  ports: new Map(), // name -> PortState
  portsLoaded: false,
  traffic: null, // per-minute series over the last hour
  messages: new Map(), // id -> {id, to, port, state, reason, time, text, caller_id}
  inbound: [], // newest first
  selected: new Set(), // port names ticked in the grid
  settings: null,
  settingsError: null,
};

const listeners = new Set();
let scheduled = false;

export function onChange(listener) {
  listeners.add(listener);
}

export function changed() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    for (const listener of listeners) listener();
  });
}

export function reset() {
  Object.assign(store, {
    session: null, health: null, live: "connecting", events: "waiting", portsLoaded: false,
    traffic: null, inbound: [], settings: null, settingsError: null,
  });
  store.ports.clear();
  store.messages.clear();
  store.selected.clear();
}

/** Take a port state unless we already hold a newer one. */
export function putPort(state) {
  const held = store.ports.get(state.port);
  if (held && Date.parse(held.updated) > Date.parse(state.updated)) return;
  store.ports.set(state.port, state);
}

/** Merge what we learned about a message; keep the newest MESSAGES_KEPT. */
export function putMessage(id, fields) {
  const held = store.messages.get(id);
  if (held) {
    Object.assign(held, fields);
  } else {
    store.messages.set(id, { id, state: "queued", ...fields });
    if (store.messages.size > MESSAGES_KEPT) {
      store.messages.delete(store.messages.keys().next().value);
    }
  }
}

export function putInbound(event) {
  if (store.inbound.some((m) => m.id === event.id)) return;
  store.inbound.unshift(event);
  if (store.inbound.length > INBOUND_KEPT) store.inbound.length = INBOUND_KEPT;
}

/** "lte-2" before "lte-10". */
export function byName(a, b) {
  return a.localeCompare(b, undefined, { numeric: true });
}
