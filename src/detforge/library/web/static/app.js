// detforge library page: search, thumbnails, a photo with its boxes, duplicates, statistics.
// Plain JS, no external resources. Every request goes through api() so an API key, when the
// server asks for one, is sent as X-API-Key (images are fetched as blobs for the same reason).
"use strict";

const state = { offset: 0, limit: 60, key: sessionStorage.getItem("detforge-key") || "" };
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

async function api(path, asBlob) {
  const headers = state.key ? { "X-API-Key": state.key } : {};
  const res = await fetch(path, { headers });
  if (res.status === 401) {
    $("key-box").hidden = false;
    throw new Error("this library needs an API key");
  }
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${detail}`);
  }
  return asBlob ? res.blob() : res.json();
}

function showError(err) {
  const box = $("error");
  box.textContent = String(err.message || err);
  box.hidden = false;
  setTimeout(() => { box.hidden = true; }, 6000);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function loadImage(img, path) {
  try {
    const blob = await api(path, true);
    img.src = URL.createObjectURL(blob);
  } catch (e) { img.alt = "no preview"; }
}

function baseName(path) { return path.split(/[\\/]/).pop(); }

function params() {
  const p = new URLSearchParams();
  for (const id of ["q", "object", "tag", "after", "before", "camera", "min_sharpness", "kind"]) {
    const v = $(id).value.trim();
    if (v) p.set(id, v);
  }
  p.set("limit", state.limit);
  p.set("offset", state.offset);
  return p;
}

async function runSearch(append) {
  if (!append) { state.offset = 0; $("grid").replaceChildren(); }
  try {
    const res = await api(`/api/search?${params()}`);
    $("count").textContent = `${res.total} file${res.total === 1 ? "" : "s"}`;
    for (const r of res.records) $("grid").append(card(r));
    state.offset += res.records.length;
    $("more").hidden = state.offset >= res.total;
  } catch (e) { showError(e); }
}

function card(r) {
  const img = el("img", { alt: baseName(r.path), loading: "lazy" });
  loadImage(img, `/api/thumb/${r.id}`);
  const chips = el("div");
  for (const [label, n] of Object.entries(r.objects || {})) {
    chips.append(el("span", { class: "chip object", text: `${label} ${n}` }));
  }
  for (const t of (r.tags || []).slice(0, 3)) chips.append(el("span", { class: "chip tag", text: t }));
  const meta = el("div", { class: "meta" },
    el("div", { class: "name", text: baseName(r.path), title: r.path }),
    el("div", { text: (r.date || "").replace("T", " ") }), chips);
  if (r.kind === "video") meta.prepend(el("span", { class: "badge", text: "video" }));
  const node = el("div", { class: "card", "data-id": r.id, "data-path": r.path }, img, meta);
  node.addEventListener("click", () => openDetail(r.id));
  return node;
}

async function openDetail(id) {
  let d;
  try { d = await api(`/api/file/${id}`); } catch (e) { showError(e); return; }
  $("detail-title").textContent = d.path;
  const media = $("detail-media");
  media.replaceChildren();
  const c = d.content || {};
  const w = c.width || 1, h = c.height || 1;
  if (d.kind === "image") {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("id", "photo");
    const image = document.createElementNS(SVG, "image");
    image.setAttribute("width", w);
    image.setAttribute("height", h);
    svg.append(image);
    api(`/api/image/${id}`, true).then((b) => image.setAttribute("href", URL.createObjectURL(b)))
      .catch(showError);
    for (const det of d.detections.filter((x) => x.frame === -1)) {
      const [x1, y1, x2, y2] = det.xyxy;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("class", "box");
      rect.setAttribute("x", x1); rect.setAttribute("y", y1);
      rect.setAttribute("width", x2 - x1); rect.setAttribute("height", y2 - y1);
      rect.setAttribute("data-label", det.label);
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("class", "box-label");
      label.setAttribute("x", x1 + 2); label.setAttribute("y", Math.max(y1 - 3, 12));
      label.setAttribute("font-size", Math.max(4, h / 28));
      label.textContent = `${det.label} ${det.score.toFixed(2)}`;
      svg.append(rect, label);
    }
    media.append(svg);
  } else {
    const img = el("img", { alt: "first frame", class: "frame" });
    loadImage(img, `/api/thumb/${id}`);
    media.append(img, videoSummary(d));
  }
  $("detail-info").replaceChildren(infoTable(d));
  $("detail").hidden = false;
}

function videoSummary(d) {
  const s = d.video_summary;
  const box = el("div", { id: "video-summary" });
  if (!s) { box.append(el("p", { text: "not analysed with a detector" })); return box; }
  box.append(el("h3", { text: `Objects over time (${s.sampled_frames} sampled frames)` }));
  const rows = Object.entries(s.objects).map(([label, o]) => el("tr", {},
    el("td", { text: label }), el("td", { text: `${o.frames} frames` }),
    el("td", { text: `max ${o.max_count} at once` }),
    el("td", { text: `${o.first_t}s – ${o.last_t}s` }), el("td", { text: `${o.tracks} tracks` })));
  box.append(el("table", { class: "kv", id: "video-objects" }, ...rows));
  const n = s.timeline.length || 1;
  const max = Math.max(1, ...s.timeline.map((p) => Object.values(p.counts).reduce((a, b) => a + b, 0)));
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${n * 10} 60`);
  svg.setAttribute("class", "timeline");
  s.timeline.forEach((p, i) => {
    const total = Object.values(p.counts).reduce((a, b) => a + b, 0);
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", i * 10 + 1); r.setAttribute("width", 8);
    r.setAttribute("y", 60 - (total / max) * 58); r.setAttribute("height", (total / max) * 58);
    const tip = document.createElementNS(SVG, "title");
    tip.textContent = `${p.t}s: ${JSON.stringify(p.counts)}`;
    r.append(tip);
    svg.append(r);
  });
  box.append(svg);
  if (d.tracks.length) {
    box.append(el("h3", { text: "Tracks" }));
    box.append(el("table", { class: "kv" }, ...d.tracks.map((t) => el("tr", {},
      el("td", { text: `#${t.track_id} ${t.label}` }),
      el("td", { text: `${t.first_t}s – ${t.last_t}s, ${t.frames} frames` })))));
  }
  return box;
}

function infoTable(d) {
  const c = d.content || {};
  const rows = [["date", (d.date || "").replace("T", " ")], ["size", `${d.size} bytes`],
    ["pixels", c.width ? `${c.width} × ${c.height}` : ""],
    ["camera", [c.camera_make, c.camera_model].filter(Boolean).join(" ")], ["lens", c.lens],
    ["GPS", c.gps_lat != null ? `${c.gps_lat.toFixed(5)}, ${c.gps_lon.toFixed(5)}` : ""],
    ["sharpness", c.sharpness], ["exposure", c.exposure], ["noise", c.noise],
    ["duration", c.duration_s != null ? `${c.duration_s} s at ${c.fps} fps (${c.codec || "?"})` : ""],
    ["objects", d.detections.filter((x) => x.frame === -1).map((x) => x.label).join(", ")],
    ["tags", d.tags.map((t) => `${t.tag} ${t.score.toFixed(2)}`).join(", ")],
    ["copies", d.copies.map((x) => x.path).join("\n")], ["content hash", d.hash]];
  return el("table", { class: "kv" }, ...rows.filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: String(v) }))));
}

async function loadDuplicates() {
  try {
    const groups = await api(`/api/duplicates?threshold=${$("threshold").value || 6}`);
    $("dup-count").textContent = `${groups.length} group${groups.length === 1 ? "" : "s"}`;
    $("dup-groups").replaceChildren(...groups.map((g) => {
      const members = g.members.map((m) => {
        const img = el("img", { alt: baseName(m.path) });
        loadImage(img, `/api/thumb/${m.id}`);
        const node = el("div", { class: `member${m.path === g.keep ? " keep" : ""}` }, img,
          el("div", { text: `${m.path === g.keep ? "keep: " : ""}${m.path}` }));
        node.addEventListener("click", () => openDetail(m.id));
        return node;
      });
      return el("div", { class: "group", "data-kind": g.kind },
        el("div", { text: `${g.kind} duplicates, ${g.members.length} files` }),
        el("div", { class: "members" }, ...members));
    }));
  } catch (e) { showError(e); }
}

async function loadStats() {
  try { $("stats-text").textContent = JSON.stringify(await api("/api/stats"), null, 2); }
  catch (e) { showError(e); }
}

function show(view) {
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t.dataset.view === view);
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== view;
  $("search-form").hidden = view !== "photos";
  if (view === "duplicates") loadDuplicates();
  if (view === "stats") loadStats();
}

$("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch(false); });
$("more").addEventListener("click", () => runSearch(true));
$("close").addEventListener("click", () => { $("detail").hidden = true; });
$("detail").addEventListener("click", (e) => { if (e.target.id === "detail") $("detail").hidden = true; });
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("detail").hidden = true; });
$("dup-refresh").addEventListener("click", loadDuplicates);
$("key-save").addEventListener("click", () => {
  state.key = $("api-key").value;
  sessionStorage.setItem("detforge-key", state.key);
  $("key-box").hidden = true;
  runSearch(false);
});
for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => show(t.dataset.view));
runSearch(false);
