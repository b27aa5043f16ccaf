"use strict";
// The live view: polls /api/state once a second and redraws what changed; actions are POSTs carrying the
// token in a header, each confirmed first. No library: the layout is Graphviz's SVG, the rest is tables.
const DATA = JSON.parse(document.getElementById("page-data").textContent);
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const HEADERS = {"X-Weblab-Token": TOKEN, "Content-Type": "application/json"};
const READ_ONLY = DATA.read_only;
const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const safeId = (s) => String(s).replace(/[^A-Za-z0-9_-]/g, "_");

function bits(bps) {
  if (bps === null || bps === undefined) return "–";
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let v = bps, i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}

function spark(history) {
  const w = 140, h = 24, n = Math.max(history.length, 2);
  const max = Math.max(8000, ...history);
  const pts = history.map((v, i) => `${(i * w / (n - 1)).toFixed(1)},${(h - 1 - v / max * (h - 3)).toFixed(1)}`);
  return `<svg class="spark" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none"><polyline points="${pts.join(" ")}"/></svg>`;
}

function setHTML(el, html) { if (el && el.__html !== html) { el.innerHTML = html; el.__html = html; } }
function badge(text, cls) { return `<span class="badge ${esc(cls ?? text)}">${esc(text)}</span>`; }
function when(t) { return new Date(t * 1000).toLocaleTimeString(); }

// --- the drawing ------------------------------------------------------------------------------------
const edges = {};
for (const link of DATA.drawing.links) {
  const g = document.getElementById(link.id);
  if (!g) continue;
  const label = g.querySelector("text");
  let rate = null;
  if (label) {
    rate = label.cloneNode(false);
    rate.setAttribute("class", "link-rate");
    rate.setAttribute("y", String(parseFloat(label.getAttribute("y")) + 11));
    g.appendChild(rate);
  }
  edges[link.key] = {g, path: g.querySelector("path"), rate};
}

function drawLinks(links) {
  for (const [key, e] of Object.entries(edges)) {
    const l = links?.[key];
    if (!l) continue;
    const bps = (l.out_bps ?? 0) + (l.in_bps ?? 0);
    const width = 1.6 + Math.min(8, Math.max(0, Math.log10(Math.max(bps, 1) / 1000)) * 1.6);
    const colour = bps < 10e3 ? "#8c959f" : bps < 1e6 ? "#0969da" : bps < 100e6 ? "#bf8700" : "#cf222e";
    if (e.path) { e.path.setAttribute("stroke-width", width.toFixed(1)); e.path.setAttribute("stroke", colour); }
    e.g.classList.toggle("down", l.up === false);
    if (e.rate) e.rate.textContent = l.up === false ? "DOWN" : (bps >= 1000 ? bits(bps) : "");
  }
}

function drawHosts(snap) {
  const dead = new Set((snap.services || []).filter((s) => !s.alive).map((s) => s.host));
  const holders = new Set(Object.values(snap.vrrp || {}).flat());
  for (const host of Object.keys(DATA.drawing.hosts)) {
    const g = document.getElementById("host-" + safeId(host));
    if (!g) continue;
    g.classList.toggle("dead", dead.has(host));
    g.classList.toggle("vip-holder", holders.has(host));
  }
}

// --- tables -----------------------------------------------------------------------------------------
const linkRows = {};
function buildLinks() {
  const body = $("#links tbody");
  for (const link of DATA.drawing.links) {
    const tr = document.createElement("tr");
    tr.dataset.link = link.key;
    tr.innerHTML = `<td><b>${esc(link.key)}</b></td><td>${esc(link.host)} (${esc(link.ip)}) ↔ ${esc(link.switch)}</td>` +
      `<td class="state"></td><td class="num out"></td><td class="num in"></td><td class="spark"></td>` +
      (READ_ONLY ? "" : `<td><button data-action="link" data-link="${esc(link.key)}" data-state="down" class="danger">down</button> ` +
                         `<button data-action="link" data-link="${esc(link.key)}" data-state="up">up</button></td>`);
    body.appendChild(tr);
    linkRows[link.key] = tr;
  }
}
function fillLinks(links) {
  for (const [key, tr] of Object.entries(linkRows)) {
    const l = links?.[key];
    if (!l) continue;
    setHTML($(".state", tr), l.up === null ? "?" : badge(l.up ? "up" : "down"));
    $(".out", tr).textContent = bits(l.out_bps);
    $(".in", tr).textContent = bits(l.in_bps);
    $(".spark", tr).innerHTML = spark(l.history || []);
  }
}

function fillHosts(snap) {
  const alive = {};
  for (const s of snap.services || []) alive[s.host + "/" + s.kind] = s.alive;
  const rows = DATA.drawing.order.map((host) => [host, DATA.drawing.hosts[host]]).map(([host, info]) => {
    const svcs = DATA.services.filter((s) => s.host === host).map((s) => {
      const up = alive[host + "/" + s.kind];
      const button = READ_ONLY || up === undefined ? "" : up
        ? `<button class="danger" data-action="service" data-host="${esc(host)}" data-kind="${esc(s.kind)}" data-do="kill">kill</button>`
        : `<button data-action="service" data-host="${esc(host)}" data-kind="${esc(s.kind)}" data-do="start">restore</button>`;
      return `<span class="svc" data-service="${esc(s.kind)}@${esc(host)}" data-alive="${up}"><span class="dot ${up === false ? "dead" : ""}"></span>${esc(s.kind)}${button}</span>`;
    }).join("");
    const vips = info.vips.length ? ` <small>VIP ${esc(info.vips.join(", "))}</small>` : "";
    return `<tr data-host="${esc(host)}"><td><b>${esc(host)}</b></td><td>${esc(info.role)}</td><td>${esc(info.ips.join(", "))}${vips}</td><td>${svcs || '<span class="none">none</span>'}</td></tr>`;
  });
  setHTML($("#hosts tbody"), rows.join(""));
}

function fillBackends(snap) {
  const lbs = snap.haproxy;
  if (lbs) {
    const parts = Object.entries(lbs).map(([lb, servers]) => {
      const rows = servers.map((s) => {
        if (s.error) return `<tr><td colspan="7" class="none">${esc(s.error)}</td></tr>`;
        const word = (s.status || "").split(" ")[0];
        const buttons = READ_ONLY ? "" :
          `<td><button data-action="lb" data-server="${esc(s.server)}" data-state="drain">drain</button> ` +
          `<button data-action="lb" data-server="${esc(s.server)}" data-state="ready">ready</button></td>`;
        return `<tr data-lb="${esc(lb)}" data-server="${esc(s.server)}"><td><b>${esc(s.server)}</b></td>` +
          `<td class="status" data-status="${esc(word)}">${badge(s.status, word)}</td><td class="num">${s.scur}</td>` +
          `<td class="num">${s.stot}</td><td class="num">${bits(s.bout * 8).replace("/s", "")}</td><td>${esc(s.check)}</td>${buttons}</tr>`;
      }).join("");
      return `<h3>HAProxy on ${esc(lb)}</h3><table class="backends"><thead><tr><th>server</th><th>status</th>` +
        `<th class="num">sessions</th><th class="num">total</th><th class="num">sent</th><th>last check</th>${READ_ONLY ? "" : "<th></th>"}</tr></thead><tbody>${rows}</tbody></table>`;
    });
    setHTML($("#backends"), parts.join(""));
  }
  const vrrp = snap.vrrp;
  if (vrrp && Object.keys(vrrp).length) {
    setHTML($("#vrrp"), Object.entries(vrrp).map(([vip, holders]) =>
      `<p data-vip="${esc(vip)}">VIP <b>${esc(vip)}</b> is held by <b class="holder">${esc(holders.join(", ") || "nobody")}</b>` +
      (holders.length > 1 ? " " + badge("split brain", "down") : "") + "</p>").join(""));
  }
}

function fillDb(snap) {
  if (snap.db) {
    const rows = snap.db.map((d) => `<tr data-db="${esc(d.host)}"><td><b>${esc(d.host)}</b></td><td>${badge(d.role)}</td>` +
      `<td>${d.primary ? "from " + esc(d.primary) : ""}</td><td>${d.io ? "IO " + esc(d.io) + ", SQL " + esc(d.sql) : ""}</td>` +
      `<td class="num">${d.lag === undefined ? "" : d.lag === null ? "lag ?" : "lag " + esc(d.lag) + " s"}</td><td class="none">${esc(d.error || "")}</td></tr>`);
    setHTML($("#db"), `<table><tbody>${rows.join("")}</tbody></table>`);
  }
  if (snap.alerts) {
    const firing = snap.alerts;
    setHTML($("#alerts"), firing.length ? "<ul>" + firing.map((a) =>
      `<li>${badge(a.state)} <b>${esc(a.name)}</b> ${esc(Object.entries(a.labels).map(([k, v]) => k + "=" + v).join(" "))}</li>`).join("") + "</ul>"
      : '<p class="none">no alert firing</p>');
  }
}

function fillFirewall(snap) {
  const fw = snap.firewall;
  if (!fw) return;
  setHTML($("#fw-state"), badge(fw.on ? "ON" : "OFF"));
  const rows = fw.rules.map((r) => `<tr data-rule="${esc(r.id)}"><td>${esc(r.id)}</td><td>${esc(r.action)}</td><td>${esc(r.src)}</td><td>${esc(r.dst)}</td>` +
    `<td>${esc(r.proto)}</td><td class="num">${esc(r.port ?? "")}</td><td class="num">${r.packets ?? 0}</td><td class="num">${r.bytes ?? 0}</td>` +
    (READ_ONLY ? "" : `<td><button data-action="firewall" data-do="remove" data-id="${esc(r.id)}">remove</button></td>`) + "</tr>");
  const d = fw.default_deny || {};
  rows.push(`<tr><td><i>default</i></td><td>deny</td><td>any</td><td>any</td><td>any</td><td></td><td class="num">${d.packets ?? 0}</td><td class="num">${d.bytes ?? 0}</td>${READ_ONLY ? "" : "<td></td>"}</tr>`);
  setHTML($("#rules tbody"), rows.join(""));
  const arp = fw.arp_inspection;
  setHTML($("#arp-inspection"), !arp ? "" : `ARP inspection ${badge(arp.on ? "ON" : "OFF")}: ${arp.dropped} spoofed ARP dropped` +
    (arp.ports.length ? " &mdash; " + arp.ports.map((p) => `${esc(p.switch || "s" + p.dpid)} port ${p.port} (${esc(p.host || "?")}): ${p.packets}`).join(", ") : ""));
}

function fillSniff(s) {
  if (!s) return;
  $("#sniff-state").textContent = s.link ? `${s.running ? "watching" : "stopped"} ${s.link} on ${s.host}:${s.intf}${s.grep ? " for " + JSON.stringify(s.grep) : ""}` : "";
  const out = $("#sniff-out"), text = s.lines.join("\n");
  if (out.textContent !== text) { out.textContent = text; out.scrollTop = out.scrollHeight; }
}

function fillProgress(p) {
  $("#progress-panel").hidden = !p;
  if (!p) return;
  setHTML($("#verdicts"), p.verdicts.map((v) => `<span class="verdict">${badge(v.verdict, v.verdict === "supported" ? "UP" : v.verdict === "refuted" ? "DOWN" : "DRAIN")} ${esc(v.claim)} ${esc(v.slug)}</span>`).join(""));
  $("#progress").textContent = p.lines.map((l) => `${l.elapsed.toFixed(1).padStart(7)}s ${l.context} ${l.message}`).join("\n");
}

function fillTimeline(events) {
  setHTML($("#timeline"), events.slice().reverse().map((e) =>
    `<li class="${esc(e.kind)}${e.ok ? "" : " failed"}"><time>${when(e.t)}</time>${esc(e.text)}</li>`).join(""));
}

function render(snap) {
  drawLinks(snap.links); drawHosts(snap); fillLinks(snap.links); fillHosts(snap); fillBackends(snap);
  fillDb(snap); fillFirewall(snap); fillSniff(snap.sniff); fillProgress(snap.progress); fillTimeline(snap.timeline || []);
  const errors = Object.entries(snap.errors || {}).map(([k, v]) => `${k}: ${v}`);
  const banner = $("#banner");
  banner.hidden = snap.lab_alive && !errors.length;
  banner.textContent = !snap.lab_alive ? "The lab has stopped: what is shown is its last state." : "Not read this time: " + errors.join("; ");
  $("#updated").textContent = "updated " + when(snap.t);
  window.weblabState = snap;  // for tests and the curious: the newest reading
  document.body.dataset.updates = String((+document.body.dataset.updates || 0) + 1);
}

// --- polling and actions ------------------------------------------------------------------------------
async function poll() {
  try {
    const r = await fetch("api/state", {headers: HEADERS, cache: "no-store"});
    if (!r.ok) { $("#updated").textContent = `the view answered ${r.status}`; return; }
    const snap = await r.json();
    if (snap.run_id !== DATA.run_id) { location.reload(); return; }  // a weblab run moved on to its next lab
    render(snap);
  } catch (e) {
    $("#updated").textContent = "the view does not answer (stopped, or moving to the next lab of a run)";
  }
}

function confirmThen(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text + "?";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
    dialog.returnValue = "";
    dialog.showModal();
  });
}

function describe(req) {
  if (req.action === "service") return `${req.do === "start" ? "restore (start)" : req.do} ${req.kind} on ${req.host}`;
  if (req.action === "link") return `take link ${req.link} ${req.state}`;
  if (req.action === "lb") return `${req.state} server ${req.server} on every load balancer`;
  if (req.action === "firewall") return req.do === "remove" ? `remove firewall rule ${req.id}` : `firewall ${req.do}${req.rule ? " " + req.rule : ""}`;
  return JSON.stringify(req);
}

function showError(text) {
  const el = $("#error");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { el.hidden = true; }, 8000);
}

async function act(req) {
  if (!(await confirmThen(describe(req)))) return;
  const r = await fetch("api/action", {method: "POST", headers: HEADERS, body: JSON.stringify(req)});
  const reply = await r.json().catch(() => ({ok: false, error: `HTTP ${r.status}`}));
  if (!reply.ok) showError(reply.error);
  poll();
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-action]");
  if (!b || READ_ONLY) return;
  ev.preventDefault();
  const req = {...b.dataset};
  act(req);
});

async function sniff(body) {
  const r = await fetch("api/sniff", {method: "POST", headers: HEADERS, body: JSON.stringify(body)});
  const reply = await r.json().catch(() => ({ok: false, error: `HTTP ${r.status}`}));
  if (!reply.ok) showError(reply.error); else fillSniff(reply);
}

function init() {
  buildLinks();
  const select = $("#sniff-link");
  for (const key of DATA.sniff_links) select.add(new Option(key, key));
  const preferred = ["lb-back", "lb1-back", "client-link"].find((k) => DATA.sniff_links.includes(k));
  if (preferred) select.value = preferred;
  $("#sniff-start").addEventListener("click", () => sniff({do: "start", link: select.value, filter: $("#sniff-filter").value}));
  $("#sniff-stop").addEventListener("click", () => sniff({do: "stop"}));
  const rule = (verb) => () => act({action: "firewall", do: verb, rule: $("#fw-rule").value});
  $("#fw-allow")?.addEventListener("click", rule("allow"));
  $("#fw-deny")?.addEventListener("click", rule("deny"));
  poll();
  setInterval(poll, 1000);
}
init();
