// voicebank web page: plain JavaScript, no dependencies, talks to the same server's /v1 API.
"use strict";

// state.voices holds one page of the table only: the server pages and filters (a library may hold millions)
const state = { key: localStorage.getItem("voicebank-key") || "", voices: [], selected: null, upload: null,
                recorder: null, audioUrl: null, previewUrl: null, autoName: null, inspecting: 0,
                loaded: false, current: null, cursors: [null], pageIndex: 0, hasMore: false, nextAfter: null,
                total: null, listTicket: 0, mapSampled: false, mapTicket: 0 };
const PAGE_SIZE = 100;
const FILTER_TRIES = 4;  // a rare filter: requests per page before the page shows what it found
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function status(message, isError = false) {
  const s = $("status");
  s.textContent = message;
  s.className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers["Authorization"] = "Bearer " + state.key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { const body = await response.json(); message = body.error.message; } catch (e) { /* not JSON */ }
    const err = new Error(message);
    err.status = response.status;
    throw err;
  }
  return response;
}

const enc = (name) => encodeURIComponent(name);
const fmt = (x, digits = 1, unit = "") => (x === null || x === undefined) ? "–" : Number(x).toFixed(digits) + unit;

// --- voices table ------------------------------------------------------------------------------------

async function loadVoices() {
  // the current page of the table (its cursor kept), the count, the tags and the map
  $("voices-loading").hidden = false;
  $("voices-section").setAttribute("aria-busy", "true");
  try {
    if (!(await loadPage())) return;
    await loadCount();
    loadTags();
    await renderMap();
    status(state.total + " voices");
  } catch (e) {
    status(e.status === 401 ? "This server needs an API key: enter it above." : "Cannot list voices: " + e.message, true);
  } finally {
    $("voices-loading").hidden = true;
    $("voices-section").removeAttribute("aria-busy");
  }
}

function filterParams() {
  const params = {};
  const q = $("filter").value.trim(), tag = $("tag-filter").value;
  if (q) params.q = q;
  if (tag) params.tag = tag;
  return params;
}

async function loadPage() {
  // one page from the server, from this page's cursor; a page stopped at the server's scan limit (a rare
  // filter) goes on from its next_after, a few times, before showing what it found
  const ticket = ++state.listTicket;
  let after = state.cursors[state.pageIndex];
  const data = [];
  let page = null;
  for (let tries = 0; tries < FILTER_TRIES; tries++) {
    const q = new URLSearchParams(Object.assign({ limit: String(PAGE_SIZE - data.length) }, filterParams()));
    if (after) q.set("after", after);
    page = await (await api("/v1/audio/voices?" + q)).json();
    if (ticket !== state.listTicket) return false;  // a newer filter or page was asked for meanwhile
    data.push(...page.data);
    if (!page.has_more || data.length >= PAGE_SIZE) break;
    after = page.next_after;
  }
  state.voices = data;
  state.hasMore = page.has_more;
  state.nextAfter = page.next_after;
  state.loaded = true;
  renderVoices();
  return true;
}

async function loadCount() {
  const tag = $("tag-filter").value;
  const c = await (await api("/v1/audio/count" + (tag ? "?tag=" + enc(tag) : ""))).json();
  state.total = c.voices;
  renderVoices();
}

async function loadTags() {
  try {
    const tags = (await (await api("/v1/audio/tags")).json()).data;
    const select = $("tag-filter"), keep = select.value;
    select.replaceChildren(el("option", { value: "", text: "any tag" }),
                           ...tags.map((t) => el("option", { value: t, text: t })));
    if (keep && !tags.includes(keep)) select.append(el("option", { value: keep, text: keep }));
    select.value = keep;
  } catch (e) { /* the table still works without the tag list */ }
}

function filtersChanged() {
  state.cursors = [null];
  state.pageIndex = 0;
  loadPage().catch((e) => status("Cannot list voices: " + e.message, true));
}

let filterTimer = null;
function filterTyped() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(filtersChanged, 250);
}

async function tagChosen() {
  filtersChanged();
  try { await loadCount(); await renderMap(); } catch (e) { status("Cannot list voices: " + e.message, true); }
}

function turnPage(step) {
  if (step > 0) {
    if (!state.hasMore) return;
    state.cursors[state.pageIndex + 1] = state.nextAfter;
  } else if (state.pageIndex === 0) return;
  state.pageIndex += step;
  loadPage().catch((e) => status("Cannot list voices: " + e.message, true));
}

function renderVoices() {
  const body = $("voices").querySelector("tbody");
  body.replaceChildren();
  for (const v of state.voices) {
    const ins = v.inspection || {};
    const tags = el("td");
    for (const t of v.tags) tags.append(el("span", { class: "tag", text: t }));
    const play = el("button", { class: "small play", type: "button", title: "Play the reference",
                                onclick: (ev) => { ev.stopPropagation(); openVoice(v.id, true); } }, "▶");
    if (!v.has_audio) play.disabled = true;
    const row = el("tr", { "data-id": v.id, onclick: () => openVoice(v.id, false) },
      el("td", { class: "name", text: v.id }), el("td", { text: v.mode }),
      el("td", { class: "num", text: fmt(v.duration, 1, " s") }),
      el("td", { class: "num col-opt", text: fmt(v.loudness_lufs, 1, " LUFS") }),
      el("td", { class: "num col-opt", text: fmt(ins.peak_dbfs, 1, " dB") }),
      el("td", { class: "num col-opt", text: fmt(ins.snr_db, 0, " dB") }), tags, el("td", {}, play));
    if (v.id === state.selected) row.classList.add("selected");
    body.append(row);
  }
  const filtering = Object.keys(filterParams()).length > 0;
  $("voice-count").textContent = state.total === null ? "" : "(" + state.total.toLocaleString("en") + ")";
  const empty = state.loaded && !filtering && state.pageIndex === 0 && !state.voices.length && !state.hasMore;
  $("voices-empty").hidden = !empty;
  $("voices").hidden = empty;
  $("voices-nomatch").hidden = !(state.loaded && filtering && !state.voices.length && !state.hasMore);
  $("pager").hidden = !state.loaded || (state.pageIndex === 0 && !state.hasMore);
  $("prev-page").disabled = state.pageIndex === 0;
  $("next-page").disabled = !state.hasMore;
  $("page-info").textContent = "page " + (state.pageIndex + 1) + (state.voices.length ? ": " +
    state.voices[0].id + " … " + state.voices[state.voices.length - 1].id : ": none yet") +
    (state.hasMore && state.voices.length < PAGE_SIZE ? " (searched up to " + state.nextAfter + "; Next searches on)" : "");
}

// --- voice pickers: names suggested by the server (a prefix of the name index), never a list of every voice ---

async function suggestNames(input, list, keep = () => true) {
  const prefix = input.value.trim();
  const q = new URLSearchParams({ limit: "20" });
  if (prefix) q.set("prefix", prefix);
  try {
    const page = await (await api("/v1/audio/voices?" + q)).json();
    if (input.value.trim() !== prefix) return;  // typed on meanwhile
    list.replaceChildren(...page.data.filter(keep).map((v) => el("option", { value: v.id })));
  } catch (e) { /* no suggestions */ }
}

// --- one voice ---------------------------------------------------------------------------------------

async function openVoice(id, play) {
  state.selected = id;
  renderVoices();
  highlightMap();
  try {
    const v = await (await api("/v1/audio/voices/" + enc(id))).json();
    if (state.selected !== id) return;  // another voice was opened meanwhile
    $("detail").hidden = false;
    $("detail-name").textContent = v.id;
    const ins = v.inspection || {};
    const figures = [["mode", v.mode], ["variants", v.variants.join(", ")], ["duration", fmt(v.duration, 2, " s")],
      ["sample rate", v.sample_rate ? v.sample_rate + " Hz" : "–"], ["channels", v.channels ?? "–"],
      ["loudness", fmt(v.loudness_lufs, 1, " LUFS")], ["peak", fmt(ins.peak_dbfs, 1, " dBFS")],
      ["SNR", fmt(ins.snr_db, 1, " dB")], ["silence", fmt(ins.leading_silence, 2, " s") + " / " +
      fmt(ins.trailing_silence, 2, " s")], ["exaggeration", v.exaggeration ?? "–"], ["tags", v.tags.join(", ") || "–"],
      ["consent", v.consent || "–"], ["added", new Date(v.created_at * 1000).toISOString().slice(0, 16) + " by " +
      v.added_by]];
    $("detail-figures").replaceChildren(...figures.flatMap(([k, val]) => [el("dt", { text: k }),
                                                                          el("dd", { text: String(val) })]));
    renderFindings($("detail-findings"), ins.findings || []);
    state.current = v;
    $("rename-input").value = v.id;
    fillEditForm(v);
    await loadAudio(v, play);
    if (state.selected !== id) return;
    await loadNearest(v.id);
    if (state.mapSampled) renderMap(v.id);  // a sampled map may lack the voice: place it and its nearest
    $("detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
  } catch (e) {
    status("Cannot open " + id + ": " + e.message, true);
  }
}

async function loadAudio(v, play) {
  const player = $("player");
  if (state.audioUrl) { URL.revokeObjectURL(state.audioUrl); state.audioUrl = null; }
  player.removeAttribute("src");
  player.hidden = !v.has_audio;
  if (!v.has_audio) return;
  // fetched with the key (an <audio src> cannot send one), then played from memory
  const blob = await (await api("/v1/audio/voices/" + enc(v.id) + "/audio")).blob();
  if (state.selected !== v.id) return;
  state.audioUrl = URL.createObjectURL(blob);
  player.src = state.audioUrl;
  if (play) { try { await player.play(); } catch (e) { status("Press play to listen (" + e.message + ")"); } }
}

async function loadNearest(id) {
  const form = new FormData();
  form.append("name", id);
  form.append("k", "5");
  const list = $("nearest");
  const result = await (await api("/v1/audio/voices/search", { method: "POST", body: form })).json();
  if (state.selected !== id) return;
  list.replaceChildren();
  for (const m of result.data) {
    const link = el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); openVoice(m.id, false); } }, m.id);
    list.append(el("li", {}, link, " — score " + m.score.toFixed(2) + ", cosine " + m.speaker_cosine.toFixed(3)));
  }
  if (!result.data.length) list.append(el("li", { class: "muted", text: "no other voices" }));
}

function renderFindings(list, findings) {
  list.replaceChildren(...findings.map((f) => el("li", { class: f.level, text: f.level + ": " + f.message })));
}

async function renameVoice() {
  const to = $("rename-input").value.trim();
  if (!state.selected || !to || to === state.selected) return;
  try {
    await api("/v1/audio/voices/" + enc(state.selected), { method: "PATCH",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: to }) });
    status("Renamed " + state.selected + " to " + to);
    state.selected = to;
    await loadVoices();
    await openVoice(to, false);
  } catch (e) { status("Rename failed: " + e.message, true); }
}

function fillEditForm(v) {
  $("tags-input").value = v.tags.join(", ");
  $("consent-input").value = v.consent || "";
  $("exaggeration-input").value = v.exaggeration ?? "";
  // only an embedding-only voice has a base voice (the one whose reference it borrows): typed, with names
  // the server suggests
  $("base-label").hidden = v.mode !== "embedding";
  $("base-select").value = v.base || "";
  $("base-options").replaceChildren();
}

async function saveEdit(ev) {
  ev.preventDefault();
  const v = state.current;
  if (!v || v.id !== state.selected) return;
  const patch = {};
  const tags = $("tags-input").value.split(",").map((t) => t.trim()).filter(Boolean);
  if (tags.join("\n") !== v.tags.join("\n")) patch.tags = tags;
  const consent = $("consent-input").value.trim();
  if (consent !== (v.consent || "")) patch.consent = consent;
  const ex = $("exaggeration-input").value.trim();
  if (ex !== "" && Number(ex) !== v.exaggeration) patch.exaggeration = Number(ex);
  const base = $("base-select").value;
  if (v.mode === "embedding" && base && base !== v.base) patch.base = base;
  if (!Object.keys(patch).length) { status("Nothing to change"); return; }
  try {
    await api("/v1/audio/voices/" + enc(v.id), { method: "PATCH",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(patch) });
    await loadVoices();
    await openVoice(v.id, false);
    status("Saved " + Object.keys(patch).join(", ") + " of " + v.id);  // after the list's own "N voices"
  } catch (e) { status("Saving failed: " + e.message, true); }
}

async function downloadConditionals(format) {
  const id = state.selected;
  if (!id) return;
  status("Preparing the conditionals of " + id + "…");
  try {
    // fetched with the key (a plain link cannot send one), then saved from memory through a blob link
    const blob = await (await api("/v1/audio/voices/" + enc(id) + "/conditionals?format=" + format)).blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: id + "." + format, hidden: "" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status("Downloaded " + id + "." + format + " (" + (blob.size / 1024).toFixed(0) + " KiB)");
  } catch (e) { status("Download failed: " + e.message, true); }
}

async function deleteVoice() {
  const id = state.selected;
  if (!id || !confirm("Delete voice " + id + "?")) return;
  try {
    await api("/v1/audio/voices/" + enc(id), { method: "DELETE" });
    status("Deleted " + id);
    state.selected = null;
    $("detail").hidden = true;
    await loadVoices();
  } catch (e) { status("Delete failed: " + e.message, true); }
}

// --- adding: a file or the microphone, inspected before saving ----------------------------------------

function resetAddForm() {
  // a new input (a file chosen, a recording started) starts the form over: nothing of the previous one stays
  state.upload = null;
  state.inspecting = (state.inspecting || 0) + 1;  // a verdict still on its way belongs to the old input
  $("add-button").disabled = true;
  $("verdict").hidden = true;
  $("verdict-text").textContent = "";
  $("verdict-text").className = "";
  $("verdict-findings").replaceChildren();
  $("add-force").checked = false;
  const preview = $("preview");
  preview.pause();
  preview.hidden = true;
  preview.removeAttribute("src");
  preview.load();
  if (state.previewUrl) { URL.revokeObjectURL(state.previewUrl); state.previewUrl = null; }
  // a name the page filled in from the previous input goes; one the user typed stays
  if ($("add-name").value === state.autoName) $("add-name").value = "";
  state.autoName = null;
}

async function chooseUpload(blob, filename) {
  resetAddForm();
  const ticket = state.inspecting;
  $("verdict").hidden = false;
  $("verdict-text").textContent = "Inspecting " + filename + "…";
  const preview = $("preview");
  state.previewUrl = URL.createObjectURL(blob);
  // the player shows only once the browser can play the audio: never a dead 0:00 player
  preview.onloadedmetadata = () => { if (state.inspecting === ticket) preview.hidden = !(preview.duration > 0); };
  preview.onerror = () => { preview.hidden = true; };
  preview.src = state.previewUrl;
  if (!$("add-name").value) {
    state.autoName = filename.replace(/\.[^.]+$/, "");
    $("add-name").value = state.autoName;
  }
  const form = new FormData();
  form.append("audio_sample", blob, filename);
  try {
    const result = await (await api("/v1/inspect", { method: "POST", body: form })).json();
    if (state.inspecting !== ticket) return;  // another input came meanwhile
    const ins = result.inspection;
    const warnings = ins.findings.filter((f) => f.level === "warning").length;
    $("verdict-text").textContent = (result.usable ? (warnings ? "Usable, with warnings" : "Good reference") :
      "Unusable reference") + ": " + fmt(ins.duration, 1, " s") + ", " + ins.sample_rate + " Hz, loudness " +
      fmt(ins.loudness_lufs, 1, " LUFS") + ", SNR " + fmt(ins.snr_db, 0, " dB");
    $("verdict-text").className = result.usable ? "verdict-ok" : "verdict-bad";
    renderFindings($("verdict-findings"), ins.findings);
    $("add-button").disabled = !result.usable;
    if (result.usable) state.upload = { blob, filename };
    status(filename + " inspected: " + (result.usable ? "usable" : "unusable"), !result.usable);
  } catch (e) {
    if (state.inspecting !== ticket) return;
    $("verdict-text").textContent = "Cannot use this audio: " + e.message;
    $("verdict-text").className = "verdict-bad";
    $("verdict-findings").replaceChildren();
    preview.hidden = true;
    status("Cannot use " + filename + ": " + e.message, true);
  }
}

async function saveVoice(ev) {
  ev.preventDefault();
  if (!state.upload) return;
  const form = new FormData();
  form.append("audio_sample", state.upload.blob, state.upload.filename);
  form.append("name", $("add-name").value.trim());
  form.append("consent", $("add-consent").value.trim());
  form.append("mode", $("add-mode").value);
  form.append("force", $("add-force").checked ? "true" : "false");
  for (const t of $("add-tags").value.split(",").map((x) => x.trim()).filter(Boolean)) form.append("tags", t);
  $("add-button").disabled = true;
  status("Saving…");
  try {
    const v = await (await api("/v1/audio/voices", { method: "POST", body: form })).json();
    status("Added " + v.id + (v.warnings.length ? " (" + v.warnings.join("; ") + ")" : ""));
    resetAddForm();
    $("add-form").reset();
    $("file-input").value = "";
    await loadVoices();
    await openVoice(v.id, false);
  } catch (e) {
    status("Adding failed: " + e.message, true);
    $("add-button").disabled = false;
  }
}

function wavFromBuffer(buffer) {
  // mono 16-bit PCM WAV of an AudioBuffer (channels averaged)
  const n = buffer.length, rate = buffer.sampleRate, channels = buffer.numberOfChannels;
  const mono = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    const data = buffer.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += data[i] / channels;
  }
  const out = new DataView(new ArrayBuffer(44 + 2 * n));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); out.setUint32(4, 36 + 2 * n, true); text(8, "WAVE"); text(12, "fmt ");
  out.setUint32(16, 16, true); out.setUint16(20, 1, true); out.setUint16(22, 1, true);
  out.setUint32(24, rate, true); out.setUint32(28, rate * 2, true); out.setUint16(32, 2, true);
  out.setUint16(34, 16, true); text(36, "data"); out.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    out.setInt16(44 + 2 * i, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([out], { type: "audio/wav" });
}

async function toggleRecording() {
  const button = $("record-button");
  if (state.recorder) { state.recorder.stop(); return; }
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    status("This browser cannot record audio here (it needs HTTPS or localhost).", true);
    return;
  }
  let stream;
  resetAddForm();
  $("file-input").value = "";  // the recording replaces any chosen file
  try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
  catch (e) { status("No microphone: " + e.message, true); return; }
  const chunks = [];
  const recorder = new MediaRecorder(stream);
  state.recorder = recorder;
  const started = Date.now();
  const timer = setInterval(() => { $("record-time").textContent = ((Date.now() - started) / 1000).toFixed(1) + " s"; },
                            200);
  recorder.ondataavailable = (ev) => { if (ev.data.size) chunks.push(ev.data); };
  recorder.onstop = async () => {
    clearInterval(timer);
    stream.getTracks().forEach((t) => t.stop());
    state.recorder = null;
    button.textContent = "● Record";
    status("Recorded " + ((Date.now() - started) / 1000).toFixed(1) + " s; inspecting…");
    try {
      // the server decodes WAV/FLAC/MP3/OGG: the browser's recording (WebM/Opus) becomes a WAV here
      const recorded = new Blob(chunks, { type: recorder.mimeType });
      const ctx = new AudioContext();
      const buffer = await ctx.decodeAudioData(await recorded.arrayBuffer());
      await ctx.close();
      await chooseUpload(wavFromBuffer(buffer), "recording.wav");
    } catch (e) {
      resetAddForm();
      status("Cannot decode the recording: " + e.message, true);
    }
  };
  recorder.start(250);
  button.textContent = "■ Stop";
  status("Recording… speak for 5-10 s, then press Stop");
}

// --- compare and map ---------------------------------------------------------------------------------

async function compareVoices() {
  const a = $("compare-a").value, b = $("compare-b").value;
  if (!a || !b) return;
  try {
    const c = await (await api("/v1/audio/voices/compare", { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ a, b }) })).json();
    $("compare-result").textContent = a + " vs " + b + ": " +
      (c.score === null ? "" : "score " + c.score.toFixed(2) + ", ") + "speaker cosine " + c.speaker_cosine.toFixed(3) +
      (c.xvector_cosine === null ? "" : ", x-vector cosine " + c.xvector_cosine.toFixed(3)) + " — " +
      (c.same_speaker ? "probably the same speaker" : "different speakers") + " (threshold " + c.threshold + ")";
  } catch (e) { $("compare-result").textContent = "Cannot compare: " + e.message; }
}

const MAP = { r: 7, near: 14, ns: "http://www.w3.org/2000/svg", small: 300, cell: 12, dot: 3, listed: 50 };

function svgEl(tag, attrs = {}, text = null) {
  const node = document.createElementNS(MAP.ns, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function groupPoints(pts) {
  // points closer on screen than two radii would overprint, and the lower one could not be clicked: they
  // become one group (single linkage, so a chain of near points is one group), drawn at their mean
  const parent = pts.map((_, i) => i);
  const find = (i) => (parent[i] === i ? i : (parent[i] = find(parent[i])));
  for (let i = 0; i < pts.length; i++) {
    for (let j = i + 1; j < pts.length; j++) {
      if (Math.hypot(pts[i].sx - pts[j].sx, pts[i].sy - pts[j].sy) < MAP.near) parent[find(i)] = find(j);
    }
  }
  const groups = new Map();
  pts.forEach((p, i) => { const root = find(i); if (!groups.has(root)) groups.set(root, []); groups.get(root).push(p); });
  return [...groups.values()].map((members) => {
    members.sort((a, b) => a.id.localeCompare(b.id));
    return { members, x: members.reduce((t, p) => t + p.sx, 0) / members.length,
             y: members.reduce((t, p) => t + p.sy, 0) / members.length,
             r: members.length > 1 ? MAP.r + 3 : MAP.r };
  });
}

function gridPoints(pts) {
  // a large sample: points in one cell of a grid become one group (linear time, unlike groupPoints' pairs),
  // drawn at their mean, as a dot that grows with the voices it holds
  const cells = new Map();
  for (const p of pts) {
    const key = Math.floor(p.sx / MAP.cell) + "," + Math.floor(p.sy / MAP.cell);
    if (!cells.has(key)) cells.set(key, []);
    cells.get(key).push(p);
  }
  return [...cells.values()].map((members) => {
    members.sort((a, b) => a.id.localeCompare(b.id));
    return { members, x: members.reduce((t, p) => t + p.sx, 0) / members.length,
             y: members.reduce((t, p) => t + p.sy, 0) / members.length,
             r: Math.min(MAP.cell / 2, MAP.dot + Math.log2(members.length)) };
  });
}

function placeLabels(svg, nodes) {
  // each label goes right, left, above or below its point, wherever it overlaps no other label and no point;
  // a label with no free place is left out (the point still names its voices on hover and opens on click)
  const boxes = nodes.map((n) => ({ x: n.x - n.r, y: n.y - n.r, w: 2 * n.r, h: 2 * n.r }));
  const hit = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  const [width, height] = [600, 380];
  for (const n of [...nodes].sort((a, b) => a.y - b.y || a.x - b.x)) {
    const label = svgEl("text", { class: "label" }, n.members.length > 1 ?
      n.members[0].id + " +" + (n.members.length - 1) : n.members[0].id);
    svg.append(label);
    const w = label.getComputedTextLength() || 6 * label.textContent.length, h = 12;
    const spots = [[n.x + n.r + 2, n.y - h / 2], [n.x - n.r - 2 - w, n.y - h / 2],
                   [n.x - w / 2, n.y - n.r - 2 - h], [n.x - w / 2, n.y + n.r + 2]];
    const spot = spots.map(([x, y]) => ({ x, y, w, h }))
      .find((b) => b.x >= 0 && b.y >= 0 && b.x + w <= width && b.y + h <= height && !boxes.some((o) => hit(b, o)));
    if (!spot) { label.remove(); continue; }
    boxes.push(spot);
    label.setAttribute("x", spot.x);
    label.setAttribute("y", spot.y + h - 2);
  }
}

function showMapGroup(ids) {
  const box = $("map-group");
  const shown = ids.slice(0, MAP.listed);
  box.replaceChildren(el("span", { class: "muted", text: ids.length + " voices at this point: " }),
    ...shown.map((id) => el("button", { type: "button", class: "small ghost-link", "data-id": id,
                                        onclick: () => openVoice(id, false) }, id)),
    ...(ids.length > shown.length ? [el("span", { class: "muted", text: "and " + (ids.length - shown.length) +
                                                   " more" })] : []),
    el("button", { type: "button", class: "small ghost", "aria-label": "Close", onclick: () => { box.hidden = true; } },
       "✕"));
  box.hidden = false;
}

async function renderMap(around = null) {
  // the server sends at most a sample of the voices (every voice of a small library), and with `around` a
  // voice and its nearest on the same plane
  const ticket = ++state.mapTicket;
  const q = new URLSearchParams();
  const tag = $("tag-filter").value;
  if (tag) q.set("tag", tag);
  if (around) { q.set("around", around); q.set("k", "10"); }
  let map;
  try { map = await (await api("/v1/audio/map?" + q)).json(); } catch (e) { return; }
  if (ticket !== state.mapTicket) return;
  const svg = $("map");
  svg.replaceChildren();
  $("map-group").hidden = true;
  const pts = map.data;
  state.mapSampled = map.sampled;
  $("map-empty").hidden = pts.length > 0;
  svg.toggleAttribute("hidden", !pts.length);  // an <svg> has no .hidden property
  $("map-note").hidden = !map.sampled;
  $("map-note").textContent = map.sampled ? "An even sample of " + map.sample_size.toLocaleString("en") +
    " voices" + (state.total ? " of " + state.total.toLocaleString("en") : "") +
    (around ? ", with " + around + " and its nearest voices (outlined)" : "") +
    "; open a voice to place it and its nearest voices on the map." : "";
  if (!pts.length) return;
  const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  for (const p of pts) {
    p.sx = 40 + (x1 > x0 ? (p.x - x0) / (x1 - x0) : 0.5) * 480;
    p.sy = 360 - (y1 > y0 ? (p.y - y0) / (y1 - y0) : 0.5) * 320;
  }
  const large = pts.length > MAP.small;
  const marked = (n) => n.members.some((p) => p.role === "focus" || p.role === "near");
  // the sample first, the voice asked about and its nearest last (drawn on top, each a point of its own)
  const nodes = large ? [...gridPoints(pts.filter((p) => p.role === "sample")),
                         ...pts.filter((p) => p.role !== "sample").map((p) => ({ members: [p], x: p.sx, y: p.sy,
                                                                                 r: MAP.dot + 2 }))]
    : groupPoints(pts);
  for (const n of nodes) {
    const ids = n.members.map((p) => p.id);
    const single = ids.length === 1;
    const c = svgEl("circle", { cx: n.x, cy: n.y, r: n.r, tabindex: "0", role: "button" });
    if (single) c.setAttribute("data-id", ids[0]);
    else { c.setAttribute("class", "group"); c.setAttribute("data-ids", JSON.stringify(ids)); }
    for (const role of ["focus", "near"]) if (n.members.some((p) => p.role === role)) c.classList.add(role);
    const listed = n.members.slice(0, 20).map((p) => p.id + (p.tags.length ? " [" + p.tags.join(", ") + "]" : ""));
    if (n.members.length > listed.length) listed.push("… and " + (n.members.length - listed.length) + " more");
    c.append(svgEl("title", {}, listed.join("\n")));
    c.setAttribute("aria-label", single ? "voice " + ids[0] : ids.length + " voices: " + ids.slice(0, 20).join(", "));
    const open = () => (single ? openVoice(ids[0], false) : showMapGroup(ids));
    c.addEventListener("click", open);
    c.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); open(); } });
    svg.append(c);
    if (!single && !large) svg.append(svgEl("text", { class: "count", x: n.x, y: n.y + 4, "text-anchor": "middle" },
                                            ids.length));
  }
  // labels: every point of a small map; of a large one only the voice asked about and its nearest
  placeLabels(svg, large ? nodes.filter(marked) : nodes);
  svg.append(svgEl("text", { x: 8, y: 392 }, "PC1 " + (100 * map.explained_variance[0]).toFixed(0) + "% · PC2 " +
    (100 * map.explained_variance[1]).toFixed(0) + "% of the variance" + (map.sampled ? " (of the sample)" : "")));
  highlightMap();
}

function highlightMap() {
  for (const c of $("map").querySelectorAll("circle")) {
    const ids = c.hasAttribute("data-ids") ? JSON.parse(c.getAttribute("data-ids")) : [c.getAttribute("data-id")];
    c.classList.toggle("selected", ids.includes(state.selected));
  }
  for (const b of $("map-group").querySelectorAll("button[data-id]")) {
    b.classList.toggle("selected", b.getAttribute("data-id") === state.selected);
  }
}

// --- wiring ------------------------------------------------------------------------------------------

$("api-key").value = state.key;
$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.key = $("api-key").value.trim();
  localStorage.setItem("voicebank-key", state.key);
  loadVoices();
});
$("filter").addEventListener("input", filterTyped);
$("tag-filter").addEventListener("change", tagChosen);
$("prev-page").addEventListener("click", () => turnPage(-1));
$("next-page").addEventListener("click", () => turnPage(1));
$("compare-a").addEventListener("input", (ev) => suggestNames(ev.target, $("compare-options")));
$("compare-b").addEventListener("input", (ev) => suggestNames(ev.target, $("compare-options")));
$("base-select").addEventListener("input", (ev) => suggestNames(ev.target, $("base-options"),
  (v) => v.mode !== "embedding" && v.id !== state.selected));
$("detail-close").addEventListener("click", () => { $("detail").hidden = true; state.selected = null; renderVoices(); });
$("rename-button").addEventListener("click", renameVoice);
$("edit-form").addEventListener("submit", saveEdit);
$("download-safetensors").addEventListener("click", () => downloadConditionals("safetensors"));
$("download-pt").addEventListener("click", () => downloadConditionals("pt"));
$("delete-button").addEventListener("click", deleteVoice);
$("file-input").addEventListener("change", (ev) => {
  const f = ev.target.files[0];
  if (f) chooseUpload(f, f.name);
});
$("record-button").addEventListener("click", toggleRecording);
$("add-form").addEventListener("submit", saveVoice);
$("compare-button").addEventListener("click", compareVoices);
loadVoices();
