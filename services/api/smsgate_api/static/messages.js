// Messages (the send form and recent messages with their state) and inbound SMS.
// Both lists start from the message history (/api/v1/messages, /api/v1/inbox) and are
// kept current by the event stream; a search also asks the history.

import { api } from "./api.js";
import { $, clock, fill, h, notice } from "./dom.js";
import { byName, changed, putInbound, putMessage, store } from "./store.js";
import { countSegments } from "./segments.js";

const SHOWN = 200; // rows drawn; the store keeps more for searching
let pinned = []; // ports chosen in the grid ("Send from these…")
let lookedUp = null; // {id, status | error}: a message looked up, with its timeline
const history = { user: null, messages: "idle", inbound: "idle", messagesError: null, inboundError: null };
const RANK = { queued: 0, sending: 1, sent: 2, failed: 2, unknown: 2 }; // anything else is a report: 3
let searchTimer = null;

export function setupMessages() {
  const form = $("#send-form");
  form.text.addEventListener("input", renderCounter);
  form.addEventListener("submit", send);
  $("#message-search").addEventListener("input", () => {
    lookedUp = null;
    changed();
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadMessages($("#message-search").value.trim()), 300);
  });
  $("#inbound-search").addEventListener("input", changed);
  renderCounter();
}

/** Preselect ports for the send form (from the grid's selection). */
export function sendFrom(ports) {
  pinned = ports;
  renderPortChoice();
  $("#send-port").value = ports.length ? "pinned" : "";
  location.hash = "#messages";
}

function renderCounter() {
  const text = $("#send-form").text.value;
  const s = countSegments(text);
  const el = $("#segments");
  el.classList.toggle("error", Boolean(s.error));
  if (s.error) {
    el.textContent = s.error;
    return;
  }
  const alphabet = s.alphabet === "gsm7" ? "GSM-7" : "UCS-2";
  const unit = s.alphabet === "gsm7" ? "septets" : "UTF-16 units";
  el.dataset.parts = s.parts;
  el.dataset.alphabet = s.alphabet;
  el.textContent = `${[...text].length} characters · ${alphabet} · ${s.parts} ${s.parts === 1 ? "part" : "parts"} · ${s.left} ${unit} left in this part`;
}

export function renderPortChoice() {
  const select = $("#send-port");
  const current = select.value;
  const names = [...store.ports.keys()].sort(byName);
  const options = [h("option", { value: "" }, "Any ready port")];
  if (pinned.length) options.push(h("option", { value: "pinned" }, `Selected ports (${pinned.join(", ")})`));
  for (const name of names) options.push(h("option", { value: name }, name));
  const same = select.options.length === options.length &&
    options.every((o, i) => select.options[i].value === o.value && select.options[i].textContent === o.textContent);
  if (same) return;
  select.replaceChildren(...options);
  select.value = [...select.options].some((o) => o.value === current) ? current : "";
}

async function send(event) {
  event.preventDefault();
  const form = event.target;
  const result = $("#send-result");
  const to = form.to.value.split(/[\s,;]+/).filter(Boolean);
  const text = form.text.value;
  const choice = form.port.value;
  result.className = "";
  if (!to.length || !text) {
    result.className = "error";
    result.textContent = "Give at least one recipient and a text.";
    return;
  }
  const body = { to, text };
  if (choice === "pinned") body.port = pinned;
  else if (choice) body.port = choice;
  form.querySelector("button[type=submit]").disabled = true;
  result.textContent = "Sending…";
  try {
    const reply = await api("/api/v1/messages", { method: "POST", body });
    for (const m of reply.messages) {
      const held = store.messages.get(m.id);
      putMessage(m.id, {
        to: m.to, port: held?.port ?? m.port, time: held?.time ?? m.time, caller_id: m.caller_id,
        state: held?.state ?? m.state, reason: held?.reason ?? m.reason, text,
      });
    }
    result.className = "ok";
    result.textContent = `Queued ${reply.messages.length} ${reply.messages.length === 1 ? "message" : "messages"}: ${reply.messages.map((m) => m.id).join(", ")}`;
    form.text.value = "";
    renderCounter();
    changed();
  } catch (error) {
    result.className = "error";
    result.textContent = `Not sent: ${error.message}`;
  } finally {
    form.querySelector("button[type=submit]").disabled = false;
  }
}

function streamProblem(what) {
  if (store.health && !store.health.nats) {
    return notice("error", "Not connected to NATS", `${what} come from the event stream; the API keeps retrying.`);
  }
  if (store.events === "error" || store.events === "reconnecting") return notice("error", "The event stream failed", "Retrying; new events will appear when it is back.");
  return null;
}

const rank = (state) => RANK[state] ?? 3;
const newestFirst = (a, b) => (Date.parse(b.time) || 0) - (Date.parse(a.time) || 0);

/** Recent messages from the history (or those matching a search), merged into the store. */
async function loadMessages(query = "") {
  const params = new URLSearchParams({ direction: "out", limit: String(SHOWN) });
  if (/^\+?[\d\s-]{3,}$/.test(query)) params.set("number", query);
  else if (query) params.set("q", query);
  history.messages = "loading";
  try {
    const page = await api(`/api/v1/messages?${params}`);
    for (const m of [...page.messages].reverse()) {
      const held = store.messages.get(m.id);
      putMessage(m.id, {
        to: m.number, port: m.port ?? held?.port, time: m.created, caller_id: m.caller_id, text: m.text,
        state: held && rank(held.state) > rank(m.state) ? held.state : m.state,
        reason: held?.reason ?? m.reason ?? m.report_reason,
      });
    }
    history.messagesError = null;
  } catch (error) {
    history.messagesError = error.message;
  }
  history.messages = "loaded";
  changed();
}

async function loadInbound() {
  history.inbound = "loading";
  try {
    const page = await api(`/api/v1/inbox?limit=${SHOWN}`);
    for (const m of [...page.messages].reverse()) {
      putInbound({
        id: m.id, sender: m.number, port: m.port, text: m.text, time: m.created,
        smsc_time: m.smsc_time, parts: m.parts ?? 1, complete: m.complete ?? true,
      });
    }
    history.inboundError = null;
  } catch (error) {
    history.inboundError = error.message;
  }
  history.inbound = "loaded";
  changed();
}

/** Load the history again for whoever is logged in now. */
function freshFor(session) {
  if (history.user === session?.user) return;
  Object.assign(history, { user: session?.user, messages: "idle", inbound: "idle" });
}

function historyProblem(error) {
  return error ? notice("error", "The message history is not available", `${error} Only messages seen live are shown.`) : null;
}

export function renderMessages() {
  renderPortChoice();
  freshFor(store.session);
  if (history.messages === "idle") loadMessages();
  const root = $("#message-list");
  const query = $("#message-search").value.trim().toLowerCase();
  let list = [...store.messages.values()].sort(newestFirst);
  if (query) {
    list = list.filter((m) => [m.id, m.caller_id, m.to, m.text].some((v) => v && String(v).toLowerCase().includes(query)));
  }
  const problem = streamProblem("Message states") ?? historyProblem(history.messagesError);
  if (!list.length) {
    const extra = query && !lookedUp ? h("button", { type: "button", onclick: () => lookUp(query) }, `Look up message id “${query}”`) : null;
    fill(root, problem, lookedUp ? lookedUpView() : null, query
      ? notice("empty", "No recent message matches", "Only recent messages are listed here.")
      : problem ? null : notice("empty", "No messages yet", "Send one with the form, or through /sendsms or /api/v1/messages."), extra);
    return;
  }
  fill(root, problem, h("table.messages", {},
    h("thead", {}, h("tr", {}, ["Time", "Id", "To", "Port", "State", "Reason"].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.slice(0, SHOWN).map((m) => h("tr", { dataset: { id: m.id, state: m.state }, title: "Show its timeline", onclick: () => lookUp(m.id) },
      h("td", {}, clock(m.time)),
      h("td.mono", { title: m.caller_id && m.caller_id !== m.id ? `caller id ${m.caller_id}` : "" }, m.id),
      h("td", {}, m.to ?? ""),
      h("td", {}, m.port ?? "any"),
      h("td", {}, h("span.badge", { dataset: { state: m.state } }, m.state)),
      h("td", {}, m.reason ?? ""))))),
    list.length > SHOWN ? h("p.muted", {}, `${list.length - SHOWN} older not shown; search to find them.`) : null,
    lookedUp ? lookedUpView() : null);
}

async function lookUp(id) {
  try {
    lookedUp = { id, status: await api(`/api/v1/messages/${encodeURIComponent(id)}`) };
  } catch (error) {
    lookedUp = { id, error: error.message };
  }
  changed();
}

function lookedUpView() {
  if (lookedUp.error) return notice("error", `Message ${lookedUp.id}`, lookedUp.error);
  const s = lookedUp.status;
  return h("div.card.lookup", {},
    h("h3", {}, `Message ${s.id}`),
    h("p", {}, h("span.badge", { dataset: { state: s.state } }, s.state), ` to ${s.to} on ${s.port ?? "any port"}, ${clock(s.updated)}`),
    s.text ? h("p.text", {}, s.text) : null,
    s.reason ? h("p.muted", {}, s.reason) : null,
    (s.timeline ?? []).length ? h("ol.timeline", {}, s.timeline.map((t) => h("li", { dataset: { step: t.step } },
      `${clock(t.time)} ${t.step}`,
      t.part ? ` · part ${t.part}` : "",
      t.reference !== undefined && t.reference !== null ? ` · TP-MR ${t.reference}` : "",
      t.port ? ` · ${t.port}` : "",
      t.reason ? ` · ${t.reason}` : ""))) : null);
}

export function renderInbound() {
  freshFor(store.session);
  if (history.inbound === "idle") loadInbound();
  const root = $("#inbound-list");
  const query = $("#inbound-search").value.trim().toLowerCase();
  let list = [...store.inbound].sort(newestFirst);
  if (query) list = list.filter((m) => `${m.sender} ${m.port} ${m.text}`.toLowerCase().includes(query));
  const problem = streamProblem("Inbound SMS") ?? historyProblem(history.inboundError);
  if (!list.length) {
    fill(root, problem, query
      ? notice("empty", "No inbound SMS matches")
      : problem ? null : notice("empty", "No inbound SMS yet", "SMS received on any port appear here, long ones already joined."));
    return;
  }
  fill(root, problem, h("table.inbound", {},
    h("thead", {}, h("tr", {}, ["Received", "Port", "From", "Text", "Parts"].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.slice(0, SHOWN).map((m) => h("tr", { dataset: { id: m.id, port: m.port } },
      h("td", { title: `SMSC time ${m.smsc_time}` }, clock(m.time)),
      h("td", {}, m.port),
      h("td", {}, m.sender),
      h("td.text", {}, m.text),
      h("td", {}, m.complete ? String(m.parts) : `${m.parts} (incomplete)`))))));
}
