// Messages (the send form and recent messages with their state) and inbound SMS.

import { api } from "./api.js";
import { $, clock, fill, h, notice } from "./dom.js";
import { byName, changed, putMessage, store } from "./store.js";
import { countSegments } from "./segments.js";

const SHOWN = 200; // rows drawn; the store keeps more for searching
let pinned = []; // ports chosen in the grid ("Send from these…")
let lookedUp = null; // {id, status | error} for an id not in the recent list

export function setupMessages() {
  const form = $("#send-form");
  form.text.addEventListener("input", renderCounter);
  form.addEventListener("submit", send);
  $("#message-search").addEventListener("input", () => {
    lookedUp = null;
    changed();
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

export function renderMessages() {
  renderPortChoice();
  const root = $("#message-list");
  const query = $("#message-search").value.trim().toLowerCase();
  let list = [...store.messages.values()].reverse();
  if (query) {
    list = list.filter((m) => [m.id, m.caller_id, m.to].some((v) => v && String(v).toLowerCase().includes(query)));
  }
  const problem = streamProblem("Message states");
  if (!list.length) {
    const extra = query && !lookedUp ? h("button", { type: "button", onclick: () => lookUp(query) }, `Look up message id “${query}”`) : null;
    fill(root, problem, lookedUp ? lookedUpView() : null, query
      ? notice("empty", "No recent message matches", "Only recent messages are listed here.")
      : problem ? null : notice("empty", "No messages yet", "Send one with the form, or through /sendsms or /api/v1/messages."), extra);
    return;
  }
  fill(root, problem, h("table.messages", {},
    h("thead", {}, h("tr", {}, ["Time", "Id", "To", "Port", "State", "Reason"].map((t) => h("th", {}, t)))),
    h("tbody", {}, list.slice(0, SHOWN).map((m) => h("tr", { dataset: { id: m.id, state: m.state } },
      h("td", {}, clock(m.time)),
      h("td.mono", { title: m.caller_id && m.caller_id !== m.id ? `caller id ${m.caller_id}` : "" }, m.id),
      h("td", {}, m.to ?? ""),
      h("td", {}, m.port ?? "any"),
      h("td", {}, h("span.badge", { dataset: { state: m.state } }, m.state)),
      h("td", {}, m.reason ?? ""))))),
    list.length > SHOWN ? h("p.muted", {}, `${list.length - SHOWN} older not shown; search to find them.`) : null);
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
    s.reason ? h("p.muted", {}, s.reason) : null);
}

export function renderInbound() {
  const root = $("#inbound-list");
  const query = $("#inbound-search").value.trim().toLowerCase();
  let list = store.inbound;
  if (query) list = list.filter((m) => `${m.sender} ${m.port} ${m.text}`.toLowerCase().includes(query));
  const problem = streamProblem("Inbound SMS");
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
