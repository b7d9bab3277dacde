// Traffic: the last minute and the last hour in numbers, and a per-minute chart (SVG).

import { $, fill, h, notice } from "./dom.js";
import { store } from "./store.js";

const SERIES = [
  { key: "sent", label: "sent" },
  { key: "failed", label: "failed" },
  { key: "unknown", label: "outcome unknown" },
  { key: "received", label: "received" },
  { key: "delivered", label: "delivered" },
  { key: "undelivered", label: "not delivered" },
];
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  for (const child of children) el.append(child);
  return el;
}

const sum = (list) => list.reduce((a, b) => a + b, 0);

function kpi(label, value, detail, key) {
  return h("div.kpi", { dataset: { kpi: key } }, h("span.value", {}, value), h("span.label", {}, label), detail ? h("span.muted", {}, detail) : null);
}

export function renderTraffic() {
  const t = store.traffic;
  const health = store.health;
  const kpis = $("#traffic-kpis");
  const chart = $("#traffic-chart");
  if (health && !health.nats) {
    fill(kpis);
    fill(chart, notice("error", "Not connected to NATS", "Traffic is read from the event stream; the API keeps retrying."));
    return;
  }
  if (!t) {
    fill(kpis);
    fill(chart, store.live === "error" || store.live === "reconnecting" ? notice("error", "Cannot reach the API", "Retrying.") : notice("loading", "Loading traffic…"));
    return;
  }
  const now = t.minutes - 1; // still running
  const reports = sum(t.delivered) + sum(t.undelivered);
  const rate = reports ? `${Math.round((100 * sum(t.delivered)) / reports)}%` : "–";
  const queue = health?.queue ?? null;
  const recent = (key) => `${t[key][now - 1]} the minute before · ${sum(t[key])} in the last hour`;
  fill(kpis,
    kpi("sent this minute", t.sent[now], recent("sent"), "sent"),
    kpi("failed this minute", t.failed[now], recent("failed"), "failed"),
    kpi("outcome unknown", t.unknown[now], recent("unknown"), "unknown"),
    kpi("received this minute", t.received[now], recent("received"), "received"),
    kpi("queue depth", queue === null ? "–" : queue, "jobs waiting for a port", "queue"),
    kpi("delivered", rate, `${sum(t.delivered)} of ${reports} delivery reports in the last hour`, "delivery"));
  const total = SERIES.reduce((n, s) => n + sum(t[s.key]), 0);
  if (!t.loaded && total === 0) {
    fill(chart, notice("loading", "Reading the last hour of events…"));
    return;
  }
  if (total === 0) {
    fill(chart, notice("empty", "No traffic in the last hour", "Sent, failed and received SMS and delivery reports appear here per minute."));
    return;
  }
  fill(chart, drawChart(t), legend());
}

function legend() {
  return h("div.legend", {}, SERIES.map((s) => h("span", { dataset: { series: s.key } }, h("i"), s.label)));
}

// Per minute: a bar of sent (failed, then outcome unknown, stacked on top), a bar of
// received beside it, and the delivery reports as lines.
function drawChart(t) {
  const width = 720;
  const height = 220;
  const pad = { left: 36, right: 8, top: 10, bottom: 24 };
  const outbound = t.sent.map((v, i) => v + t.failed[i] + t.unknown[i]);
  const max = Math.max(2, ...outbound, ...t.received, ...t.delivered, ...t.undelivered);
  const top = niceCeil(max);
  const slot = (width - pad.left - pad.right) / t.minutes;
  const bar = Math.max(1, slot * 0.4);
  const x = (i) => pad.left + i * slot;
  const y = (v) => height - pad.bottom - (v * (height - pad.top - pad.bottom)) / top;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": "messages per minute over the last hour" });
  for (const v of [0, top / 2, top]) {
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: pad.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, String(v)));
  }
  for (const [i, label, anchor] of [[0, "−60 min", "start"], [30, "−30 min", "middle"], [t.minutes, "now", "end"]]) {
    root.append(svg("text", { x: x(i), y: height - 6, class: "axis", "text-anchor": anchor }, label));
  }
  const rect = (key, i, left, from, count) => count > 0 && root.append(svg("rect", {
    class: `series ${key}`, x: left.toFixed(1), width: bar.toFixed(1),
    y: y(from + count).toFixed(1), height: (y(from) - y(from + count)).toFixed(1),
  }, svg("title", {}, `${count} ${key}, ${t.minutes - 1 - i} min ago`)));
  for (let i = 0; i < t.minutes; i++) {
    rect("sent", i, x(i) + slot * 0.1, 0, t.sent[i]);
    rect("failed", i, x(i) + slot * 0.1, t.sent[i], t.failed[i]);
    rect("unknown", i, x(i) + slot * 0.1, t.sent[i] + t.failed[i], t.unknown[i]);
    rect("received", i, x(i) + slot * 0.5, 0, t.received[i]);
  }
  for (const key of ["delivered", "undelivered"]) {
    const points = t[key].map((v, i) => `${(x(i) + slot / 2).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("polyline", { points, class: `series line ${key}` }));
  }
  return root;
}

function niceCeil(value) {
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}
