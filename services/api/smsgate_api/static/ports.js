// The port grid, grouped by agent, and a port's details with its actions.

import { api } from "./api.js";
import { $, clock, fill, h, notice } from "./dom.js";
import { byName, changed, putPort, store } from "./store.js";

export const STATUSES = ["ready", "busy", "parked", "disabled", "down"];
const cells = new Map(); // name -> {root, box, body}
const groups = new Map(); // agent -> {root, title, grid}
let openPort = null;

function filterBy(text) {
  $("#port-filter").value = $("#port-filter").value === text ? "" : text;
  changed();
}

/** The ports the filter lets through. */
function shownPorts() {
  const filter = $("#port-filter").value.trim().toLowerCase();
  return [...store.ports.values()].filter((s) => matches(s, filter));
}

export function setupPorts({ sendFrom }) {
  $("#port-filter").addEventListener("input", changed);
  $("#select-shown").addEventListener("click", () => {
    for (const state of shownPorts()) store.selected.add(state.port);
    changed();
  });
  $("#clear-selection").addEventListener("click", () => {
    store.selected.clear();
    changed();
  });
  $("#send-from-selected").addEventListener("click", () => sendFrom([...store.selected]));
  for (const button of document.querySelectorAll("[data-bulk]")) {
    button.addEventListener("click", () => bulk(button.dataset.bulk));
  }
  $("#port-dialog").addEventListener("close", () => {
    openPort = null;
  });
}

/** "-71 dBm" as 0..4 bars. */
function bars(dbm) {
  if (dbm === null || dbm === undefined) return 0;
  return dbm >= -75 ? 4 : dbm >= -85 ? 3 : dbm >= -95 ? 2 : dbm >= -105 ? 1 : 0;
}

function signal(dbm) {
  const level = bars(dbm);
  return h("span.signal", { title: dbm === null ? "no signal reading" : `${dbm} dBm`, dataset: { bars: level } },
    h("i"), h("i"), h("i"), h("i"),
    h("span", {}, dbm === null || dbm === undefined ? "–" : `${dbm} dBm`));
}

function cap(state) {
  return state.daily_cap === null || state.daily_cap === undefined ? "no cap" : `cap ${state.daily_cap}`;
}

function matches(state, filter) {
  if (!filter) return true;
  const text = `${state.port} ${state.operator ?? ""} ${state.status} ${state.agent} #${state.port_number ?? ""}`;
  return text.toLowerCase().includes(filter);
}

function cellFor(name) {
  let cell = cells.get(name);
  if (cell) return cell;
  const box = h("input", {
    type: "checkbox", "aria-label": `select ${name}`,
    onclick: (e) => e.stopPropagation(),
    onchange: () => {
      if (box.checked) store.selected.add(name);
      else store.selected.delete(name);
      changed();
    },
  });
  const body = h("div.body");
  const root = h("div.port", {
    tabIndex: 0, role: "button", dataset: { port: name },
    onclick: () => openDetails(name),
    onkeydown: (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        openDetails(name);
      }
    },
  }, box, body);
  cell = { root, box, body };
  cells.set(name, cell);
  return cell;
}

function drawCell(state) {
  const cell = cellFor(state.port);
  const selected = store.selected.has(state.port);
  if (cell.state === state && cell.selected === selected) return cell.root; // unchanged
  cell.state = state;
  cell.selected = selected;
  cell.root.dataset.status = state.status;
  cell.root.title = state.last_error ? `${state.port}: ${state.last_error}` : state.port;
  cell.box.checked = selected;
  fill(cell.body,
    h("div.line", {}, h("strong.name", {}, state.port), state.port_number !== null ? h("span.muted", {}, `#${state.port_number}`) : null),
    h("div.line", {}, h("span.state", {}, state.status), signal(state.signal)),
    h("div.line.muted", {}, state.operator || "no operator"),
    h("div.line.counts", {},
      h("span", { title: "parts sent today / daily cap" }, `today ${state.sent_today}`, h("small", {}, ` / ${cap(state)}`)),
      h("span", { title: "failed sends since the agent started" }, `failed ${state.failed}`),
      state.unknown ? h("span", { title: "sends whose outcome the modem never told (it may have sent them)" }, `unknown ${state.unknown}`) : null));
  return cell.root;
}

function groupFor(agent) {
  let group = groups.get(agent);
  if (group) return group;
  const title = h("h3");
  const grid = h("div.grid");
  group = { root: h("section.agent", { dataset: { agent } }, title, grid), title, grid };
  groups.set(agent, group);
  return group;
}

function counts(states) {
  const by = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const state of states) by[state.status] = (by[state.status] ?? 0) + 1;
  return by;
}

export function renderPorts() {
  const all = [...store.ports.values()];
  const by = counts(all);
  const agents = new Set(all.map((s) => s.agent));
  fill($("#port-summary"),
    h("span.chip.total", {}, `${all.length} ports on ${agents.size} ${agents.size === 1 ? "agent" : "agents"}`),
    STATUSES.map((s) => h("button.chip", { type: "button", title: `show only ${s} ports`, dataset: { status: s }, onclick: () => filterBy(s) }, `${by[s]} ${s}`)));

  const selection = $("#port-selection");
  selection.hidden = store.selected.size === 0;
  $("#selection-count").textContent = `${store.selected.size} selected`;

  const root = $("#port-groups");
  if (!store.portsLoaded) {
    fill(root, store.live === "error" || store.live === "reconnecting"
      ? notice("error", "Cannot reach the API", "The live stream failed; retrying.")
      : notice("loading", "Loading ports…"));
    return;
  }
  if (all.length === 0) {
    fill(root, store.health && !store.health.nats
      ? notice("error", "Not connected to NATS", "The API cannot reach NATS, so it knows no ports. It keeps retrying.")
      : notice("empty", "No ports", "No modem agent has reported a port yet. Start one with `smsgate agent --config agent.toml`."));
    return;
  }
  const shown = shownPorts();
  if (shown.length === 0) {
    fill(root, notice("empty", "No port matches the filter"));
    return;
  }
  const byAgent = new Map();
  for (const state of shown) {
    if (!byAgent.has(state.agent)) byAgent.set(state.agent, []);
    byAgent.get(state.agent).push(state);
  }
  const sections = [];
  for (const agent of [...byAgent.keys()].sort(byName)) {
    const states = byAgent.get(agent).sort((a, b) => byName(a.port, b.port));
    const group = groupFor(agent);
    const c = counts(states);
    const allDown = states.every((s) => s.status === "down");
    fill(group.title, `agent ${agent}`, h("span.muted", {},
      ` · ${states.length} ports · ${c.ready} ready${allDown ? " · no heartbeat: is the agent running?" : ""}`));
    keep(group.grid, states.map(drawCell));
    sections.push(group.root);
  }
  keep(root, sections);
  for (const name of [...cells.keys()]) if (!store.ports.has(name)) cells.delete(name);
  if (openPort) renderDetails();
}

/** Put `children` in `parent`, touching the DOM only when they differ. */
function keep(parent, children) {
  const now = parent.children;
  if (now.length === children.length && children.every((child, i) => now[i] === child)) return;
  parent.replaceChildren(...children);
}

async function bulk(action) {
  const names = [...store.selected];
  const note = $("#bulk-result");
  note.textContent = `${action}: ${names.length} ports…`;
  const results = await Promise.allSettled(names.map((name) => portAction(name, action)));
  const failed = results.filter((r) => r.status === "rejected");
  note.textContent = failed.length
    ? `${action}: ${names.length - failed.length} done, ${failed.length} failed (${failed[0].reason.message})`
    : `${action}: done on ${names.length} ports`;
}

async function portAction(name, action) {
  const reply = await api(`/api/v1/ports/${encodeURIComponent(name)}/${action}`, { method: "POST" });
  if (reply?.state) putPort(reply.state);
  changed();
  return reply;
}

// --- details --------------------------------------------------------------------------------
// The dialog keeps its action area while open (so typing a USSD code survives updates) and
// redraws the facts and the recent lists as the port changes.

let parts = null; // {head, facts, actionNote, ussdNote, recent}

export function openDetails(name) {
  openPort = name;
  const actionNote = h("p.note", { role: "status" });
  const ussdNote = h("p.note", { role: "status" });
  parts = { head: h("header.dialog-head"), facts: h("div.facts"), actionNote, ussdNote, recent: h("div") };
  fill($("#port-details"),
    parts.head,
    h("div.columns", {},
      parts.facts,
      h("div.actions", {},
        h("h3", {}, "Actions"),
        h("div.buttons", {}, ["disable", "enable", "drain"].map((action) =>
          h("button", { type: "button", dataset: { action }, onclick: () => detailAction(name, action) },
            action[0].toUpperCase() + action.slice(1)))),
        actionNote,
        h("h3", {}, "USSD balance check"),
        h("form.ussd", { onsubmit: (e) => ussd(e, name) },
          h("input", { name: "code", value: "*100#", "aria-label": "USSD code", required: true }),
          h("button", { type: "submit" }, "Check")),
        ussdNote)),
    parts.recent);
  renderDetails();
  const dialog = $("#port-dialog");
  if (!dialog.open) dialog.showModal();
}

function row(label, value) {
  return h("tr", {}, h("th", {}, label), h("td", {}, value === null || value === undefined || value === "" ? "–" : value));
}

function say(el, text, error = false) {
  el.textContent = text;
  el.classList.toggle("error", error);
}

function renderDetails() {
  const state = store.ports.get(openPort);
  fill(parts.head,
    h("h2", { id: "port-dialog-title" }, openPort, state?.port_number != null ? h("span.muted", {}, ` #${state.port_number}`) : null),
    state ? h("span.badge", { dataset: { status: state.status } }, state.status) : null,
    h("button.link.close", { type: "button", "aria-label": "close", onclick: () => $("#port-dialog").close() }, "✕"));
  if (!state) {
    fill(parts.facts, notice("empty", `Port ${openPort} is gone`, "Its agent no longer reports it."));
    return;
  }
  fill(parts.facts, h("table", {}, h("tbody", {},
    row("Agent", state.agent), row("Device", state.device), row("IMSI", state.imsi),
    row("ICCID", state.iccid), row("IMEI", state.imei), row("Operator", state.operator),
    row("Signal", state.signal === null ? null : `${state.signal} dBm`), row("Registration", state.registration),
    row("Sent today", `${state.sent_today} (${cap(state)})`),
    row("Sent / failed / outcome unknown / received", `${state.sent} / ${state.failed} / ${state.unknown ?? 0} / ${state.received}`),
    row("Queue", state.queue), row("Last error", state.last_error), row("Last change", clock(state.updated)))));
  const recent = [...store.messages.values()].filter((m) => m.port === state.port).slice(-8).reverse();
  const inbound = store.inbound.filter((m) => m.port === state.port).slice(0, 5);
  fill(parts.recent,
    h("h3", {}, "Recent messages on this port"),
    recent.length
      ? h("ul.recent", {}, recent.map((m) => h("li", {}, h("span.badge", { dataset: { state: m.state } }, m.state), ` ${m.to ?? ""} `, h("span.muted", {}, `${clock(m.time)} ${m.reason ?? ""}`))))
      : h("p.muted", {}, "None seen since the console opened."),
    h("h3", {}, "Recent inbound"),
    inbound.length
      ? h("ul.recent", {}, inbound.map((m) => h("li", {}, h("strong", {}, m.sender), ` ${m.text} `, h("span.muted", {}, clock(m.time)))))
      : h("p.muted", {}, "None seen since the console opened."));
}

async function detailAction(port, action) {
  const note = parts.actionNote;
  say(note, `${action}…`);
  try {
    await portAction(port, action);
    say(note, `${action}: done`);
  } catch (error) {
    say(note, `${action} failed: ${error.message}`, true);
  }
}

async function ussd(event, port) {
  event.preventDefault();
  const note = parts.ussdNote;
  const code = new FormData(event.target).get("code");
  say(note, `Asking ${code}…`);
  try {
    const reply = await api("/api/v1/ussd", { method: "POST", body: { port, code } });
    say(note, reply.text ?? "(no answer text)");
  } catch (error) {
    say(note, `USSD failed: ${error.message}`, true);
  }
}
