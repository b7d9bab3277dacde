// Settings: what this API process runs with, read-only (change them in the TOML file).

import { api } from "./api.js";
import { $, fill, h, notice } from "./dom.js";
import { changed, store } from "./store.js";

let loading = false;

export async function loadSettings() {
  if (loading) return;
  loading = true;
  try {
    store.settings = await api("/api/v1/settings");
    store.settingsError = null;
  } catch (error) {
    store.settingsError = error.message;
  } finally {
    loading = false;
    changed();
  }
}

const yes = (on) => h("span.switch", { dataset: { on: on ? "yes" : "no" } }, on ? "on" : "off");

function table(rows) {
  return h("table.facts", {}, h("tbody", {}, rows.map(([label, value]) => h("tr", {}, h("th", {}, label), h("td", {}, value)))));
}

export function renderSettings() {
  const root = $("#settings");
  if (store.settingsError) {
    fill(root, notice("error", "Cannot load the settings", store.settingsError),
      h("button", { type: "button", onclick: loadSettings }, "Try again"));
    return;
  }
  const s = store.settings;
  if (!s) {
    fill(root, notice("loading", "Loading settings…"));
    loadSettings();
    return;
  }
  const cb = s.callback;
  fill(root,
    h("p.muted", {}, "Read-only: these come from this API process's configuration file. Change them there and restart."),
    h("div.settings", {},
      h("section.card", { dataset: { section: "http-to-sms" } }, h("h2", {}, "HTTP to SMS"), table([
        ["Enabled", yes(s.http_to_sms.enabled)],
        ["Default report", s.http_to_sms.default_report],
        ["Recipients per request", s.http_to_sms.max_recipients],
        ["Parts per message", s.http_to_sms.max_parts],
        ["Longest wait (timeout)", `${s.http_to_sms.max_timeout} s`],
        ["Pinned job waits for its port", `${s.http_to_sms.port_wait} s`],
      ])),
      h("section.card", { dataset: { section: "cors" } }, h("h2", {}, "CORS"), table([
        ["Enabled", yes(s.cors.enabled)],
        ["Origins", s.cors.origins.join(", ") || "–"],
      ])),
      h("section.card", { dataset: { section: "sms-to-http" } }, h("h2", {}, "SMS to HTTP (callbacks)"),
        cb.configured ? null : h("p.muted", {}, "No callback receiver in this process's configuration (the callback service may run elsewhere with its own)."),
        table([
          ["URL", cb.url ?? "–"],
          ["Inbound SMS", yes(cb.inbound)],
          ["Send results (AsyncSMS Result)", yes(cb.results)],
          ["Delivery reports", yes(cb.reports)],
          ["Field names", Object.entries(cb.params).map(([k, v]) => `${k}→${v}`).join(", ")],
          ["Fixed parameters", cb.extra.join(", ") || "–"],
          ["Signed (HMAC)", yes(cb.signed)],
          ["Time zone", cb.time_zone],
        ]),
        cb.webhooks.length ? h("div", {}, h("h3", {}, "Webhooks"), h("table.list", {},
          h("thead", {}, h("tr", {}, ["Name", "URL", "Format", "Events", "Ports", "Signed"].map((t) => h("th", {}, t)))),
          h("tbody", {}, cb.webhooks.map((w) => h("tr", {},
            h("td", {}, w.name), h("td.mono", {}, w.url), h("td", {}, w.format), h("td", {}, w.events.join(", ")),
            h("td", {}, w.ports.join(", ")), h("td", {}, yes(w.signed))))))) : null),
      h("section.card", { dataset: { section: "users" } }, h("h2", {}, "Users and their ports"),
        h("table.list", {},
          h("thead", {}, h("tr", {}, ["User", "Ports", "Admin", "Delivery reports", "API token"].map((t) => h("th", {}, t)))),
          h("tbody", {}, s.users.map((u) => h("tr", { dataset: { user: u.name } },
            h("td", {}, u.name), h("td", {}, u.ports.join(", ")), h("td", {}, yes(u.admin)),
            h("td", {}, yes(u.delivery_report)), h("td", {}, u.token ? "set" : "none"))))),
        s.users_hidden ? h("p.muted", {}, `${s.users_hidden} more ${s.users_hidden === 1 ? "user" : "users"}: only admins see every user.`) : null)));
}
