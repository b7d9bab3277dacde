// The console: log in, open the streams, show one view at a time (chosen by the URL hash).

import { api, startStreams, stopStreams, whenSessionLost } from "./api.js";
import { $ } from "./dom.js";
import { renderInbound, renderMessages, sendFrom, setupMessages } from "./messages.js";
import { renderPorts, setupPorts } from "./ports.js";
import { renderSettings } from "./settings.js";
import { changed, onChange, reset, store } from "./store.js";
import { renderTraffic } from "./traffic.js";

const VIEWS = {
  ports: renderPorts,
  traffic: renderTraffic,
  messages: renderMessages,
  inbound: renderInbound,
  settings: renderSettings,
};

function currentView() {
  const name = location.hash.slice(1);
  return name in VIEWS ? name : "ports";
}

function render() {
  if (!store.session) return;
  const view = currentView();
  for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.view !== view;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === view);
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  renderHeader();
  VIEWS[view]();
}

function renderHeader() {
  const connection = $("#connection");
  const health = store.health;
  let state = "ok";
  let text = "live";
  let banner = "";
  if (store.live === "error" || store.live === "reconnecting") {
    [state, text, banner] = ["error", "offline", "The console lost its connection to the API. Reconnecting…"];
  } else if (store.live === "connecting") {
    [state, text] = ["connecting", "connecting"];
  } else if (health && !health.nats) {
    [state, text, banner] = ["error", "NATS down", "The API is not connected to NATS: ports, traffic and messages are not current. It keeps retrying."];
  } else if (store.events === "error" || store.events === "reconnecting") {
    [state, text, banner] = ["warn", "events lost", "The event stream failed: new messages and inbound SMS are not shown until it is back."];
  } else if (store.portsLoaded && store.ports.size === 0) {
    banner = "No modem agent has reported a port yet.";
    state = "warn";
  }
  connection.dataset.state = state;
  connection.textContent = text;
  const el = $("#banner");
  el.hidden = !banner;
  el.textContent = banner;
}

function showLogin(message) {
  stopStreams();
  reset();
  $("#nav").hidden = true;
  $("#status").hidden = true;
  $("#banner").hidden = true;
  for (const section of document.querySelectorAll(".view")) section.hidden = true;
  $("#login").hidden = false;
  const error = $("#login-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("#login-form").username.focus();
}

function start(session) {
  store.session = session;
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#status").hidden = false;
  $("#whoami").textContent = session.user;
  $("#logout").hidden = session.via !== "session";
  startStreams();
  changed();
}

async function logIn(event) {
  event.preventDefault();
  const form = event.target;
  const error = $("#login-error");
  try {
    const session = await api("/api/v1/session", {
      method: "POST",
      body: { username: form.username.value, password: form.password.value },
    });
    form.password.value = "";
    error.hidden = true;
    start(session);
  } catch (e) {
    error.hidden = false;
    error.textContent = e.status === 401 ? "Wrong user name or password." : e.message;
  }
}

async function basicLogIn() {
  try {
    start(await api("/api/v1/session?challenge=1"));
  } catch (e) {
    showLogin(e.status === 401 ? "The browser's login was cancelled or wrong." : e.message);
  }
}

async function logOut() {
  try {
    await api("/api/v1/session", { method: "DELETE" });
  } finally {
    showLogin("");
  }
}

async function boot() {
  $("#login-form").addEventListener("submit", logIn);
  $("#logout").addEventListener("click", logOut);
  $("#basic-login").addEventListener("click", basicLogIn);
  window.addEventListener("hashchange", render);
  setupPorts({ sendFrom });
  setupMessages();
  onChange(render);
  whenSessionLost((message) => showLogin(message || "Your session has ended. Log in again."));
  try {
    start(await api("/api/v1/session"));
  } catch (error) {
    showLogin(error.status === 401 ? "" : error.message);
  }
}

boot();
