// The workbench page: four views over the JSON API (/api/...), drawn with canvas and SVG. No libraries, no build.
// Layout and colours of the page chrome live in style.css; this file decides only what is drawn where.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, text = "") => {
  const node = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
};
const state = { run: null, att: null, layer: 0, head: 0, history: null };

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

// ---------------------------------------------------------------- colours and matrices

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function sequential(t) {  // t in [0, 1] -> viridis-like rgb
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
  return a.map((c, j) => Math.round(c + (b[j] - c) * f));
}
function diverging(t) {  // t in [-1, 1] -> blue, white, red
  const s = Math.min(1, Math.abs(t));
  return t < 0 ? [255 - 200 * s, 255 - 150 * s, 255] : [255, 255 - 180 * s, 255 - 200 * s].map(Math.round);
}
const tokenColour = (id) => `hsl(${(id * 137.508) % 360}, 70%, 86%)`;
const visible = (s) => s.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");

// Draw matrix m (rows x cols) into a canvas, one pixel block per cell; mask[i][j] false cells are grey.
// kind: "att" scales each row 0..its largest weight (a query's row sums to 1, so long rows would look black),
// "div" is blue-white-red around 0, "seq" min..max.
function drawMatrix(canvas, m, { kind = "seq", mask = null, row = -1, col = -1 } = {}) {
  const rows = m.length, cols = m[0].length, cell = Math.max(1, Math.floor(256 / Math.max(rows, cols)));
  canvas.width = cols * cell; canvas.height = rows * cell;
  const ctx = canvas.getContext("2d"), flat = m.flat().filter((v, k) => !mask || mask[Math.floor(k / cols)][k % cols]);
  const lo = Math.min(...flat), hi = Math.max(...flat), span = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
  const rowMax = m.map((r) => Math.max(...r) || 1);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
    const v = m[i][j];
    const rgb = mask && !mask[i][j] ? [215, 219, 226]
      : kind === "div" ? diverging(v / span)
      : kind === "att" ? sequential(v / rowMax[i]) : sequential((v - lo) / ((hi - lo) || 1));
    ctx.fillStyle = `rgb(${rgb.join(",")})`;
    ctx.fillRect(j * cell, i * cell, cell, cell);
  }
  ctx.strokeStyle = "#ff2d55"; ctx.lineWidth = Math.max(1, cell / 5);
  if (row >= 0) ctx.strokeRect(0, row * cell, cols * cell, cell);
  if (col >= 0) ctx.strokeRect(col * cell, 0, cell, rows * cell);
  canvas.dataset.cell = cell;
}

function cellAt(canvas, event) {  // (row, col) under the mouse
  const box = canvas.getBoundingClientRect(), cell = +canvas.dataset.cell;
  return [Math.floor((event.clientY - box.top) / box.height * canvas.height / cell),
    Math.floor((event.clientX - box.left) / box.width * canvas.width / cell)];
}

// A layer x head grid of attention maps; click picks a head.
function drawGrid(container, att, selected, onPick) {
  container.replaceChildren();
  container.style.setProperty("--heads", att[0].length);
  container.append(el("div", { class: "collabel" }));
  att[0].forEach((_, h) => container.append(el("div", { class: "collabel" }, `head ${h}`)));
  att.forEach((heads, l) => {
    container.append(el("div", { class: "rowlabel" }, `layer ${l}`));
    heads.forEach((m, h) => {
      const c = el("canvas", { class: "matrix", title: `layer ${l}, head ${h}`, "data-layer": l, "data-head": h });
      if (selected && selected[0] === l && selected[1] === h) c.classList.add("selected");
      drawMatrix(c, m, { kind: "att", mask: m.map((r, i) => r.map((_, j) => j <= i)) });  // causal: grey future
      if (onPick) c.addEventListener("click", () => onPick(l, h));
      container.append(c);
    });
  });
}

// ---------------------------------------------------------------- generate

let controller = null;

function probBars(steps) {
  const box = $("#probs"); box.replaceChildren();
  for (const step of steps) {
    box.append(el("h2", {}, `drew ${JSON.stringify(step.label)} (${(step.p * 100).toFixed(1)}%) from`));
    const rows = step.top.some((t) => t.id === step.id) ? step.top : [...step.top, step];  // drawn outside the top 10
    const rowH = 20, svg = el("svg:svg", { viewBox: `0 0 320 ${rowH * rows.length}` });
    rows.forEach((t, i) => {
      const y = i * rowH, w = Math.max(1, t.p * 200);
      svg.append(el("svg:text", { x: 0, y: y + 14 }, (i === 10 ? "… " : "") + visible(t.label).slice(0, 10)));
      svg.append(el("svg:rect", { x: 90, y: y + 3, width: w, height: rowH - 6, "data-p": t.p, "data-id": t.id,
        class: t.id === step.id ? "bar chosen" : "bar" }));
      svg.append(el("svg:text", { x: 95 + w, y: y + 14 }, `${(t.p * 100).toFixed(1)}%`));
    });
    box.append(svg);
  }
  box.append(el("p", { class: "legend" }, "the ten likeliest next tokens, probability after temperature "
    + "(before top-k / top-p); dark bar = the token drawn"));
}

function addToken(out, pending, step) {
  pending.push(step);
  if (!step.text) return;  // a token ending inside a character waits for the rest of its bytes
  const span = el("span", { class: "tok" }, step.text), steps = pending.splice(0);
  span.addEventListener("mouseenter", () => {
    out.querySelectorAll(".tok.hovered").forEach((s) => s.classList.remove("hovered"));
    span.classList.add("hovered"); probBars(steps);
  });
  out.append(span);
}

function readSSE(buffer, onEvent) {  // parse complete "event: x\ndata: {...}\n\n" blocks; return the rest
  const blocks = buffer.split("\n\n"), rest = blocks.pop();
  for (const block of blocks) {
    const event = /^event: (.*)$/m.exec(block), data = /^data: (.*)$/m.exec(block);
    if (event && data) onEvent(event[1], JSON.parse(data[1]));
  }
  return rest;
}

function numberOrNull(id) { const v = $(id).value; return v === "" ? null : Number(v); }

async function generate(event) {
  event.preventDefault();
  const out = $("#output"), status = $("#gen-status"), pending = [];
  const body = { prompt: $("#prompt").value, max_new_tokens: numberOrNull("#max-new-tokens") ?? 100,
    temperature: numberOrNull("#temperature") ?? 0.8, top_k: numberOrNull("#top-k"), top_p: numberOrNull("#top-p"),
    seed: numberOrNull("#seed") };
  out.replaceChildren(el("span", { class: "prompt" }, body.prompt));
  controller = new AbortController();
  $("#generate").disabled = true; $("#stop").disabled = false; status.textContent = "waiting for the model…";
  try {
    const res = await fetch("/api/generate", { method: "POST", signal: controller.signal,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error((await res.json()).error);
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buffer = "", count = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer = readSSE(buffer + decoder.decode(value, { stream: true }), (name, data) => {
        if (name === "token") { addToken(out, pending, data); status.textContent = `${++count} tokens`; }
        if (name === "done") {
          if (data.tail && pending.length) addToken(out, pending, { ...pending.pop(), text: data.tail });
          status.textContent = `${data.tokens} tokens in ${data.seconds} s · seed ${data.seed}`
            + (data.notes.length ? ` · ${data.notes.join("; ")}` : "");
        }
      });
    }
  } catch (err) {
    status.textContent = err.name === "AbortError" ? "stopped" : `error: ${err.message}`;
  } finally {
    $("#generate").disabled = false; $("#stop").disabled = true; controller = null;
  }
}

// ---------------------------------------------------------------- attention explorer

function tokenChips(container, tokens, ids, onHover) {
  container.replaceChildren();
  tokens.forEach((t, i) => {
    const chip = el("span", { class: "chip", "data-index": i }, visible(t));
    chip.style.background = tokenColour(ids ? ids[i] : i);
    chip.addEventListener("mouseenter", () => onHover(i));
    container.append(chip);
  });
}

function showRow(i) {
  const a = state.att, m = a.attention[state.layer][state.head];
  document.querySelectorAll("#att-tokens .chip").forEach((c, j) => c.classList.toggle("hovered", j === i));
  drawMatrix($("#att-big"), m, { kind: "att", mask: a.mask, row: i, col: i });
  const box = $("#att-row");
  box.replaceChildren(el("h2", {}, `${JSON.stringify(a.tokens[i])} attends to`));
  const top = Math.max(...m[i]);
  m[i].forEach((w, k) => {
    if (!a.mask[i][k]) return;
    const line = el("div", { class: "weight", "data-k": k, "data-weight": w });
    const fill = el("div", { class: "fill" }); fill.style.width = `${(100 * w / top).toFixed(1)}%`;
    line.append(el("span", {}, visible(a.tokens[k]).slice(0, 10)), fill, el("span", {}, w.toFixed(4)));
    box.append(line);
  });
  box.append(el("h2", {}, `attended to by (column ${i})`));
  const from = m.map((r, q) => [q, r[i]]).filter(([q]) => a.mask[q][i]).sort((x, y) => y[1] - x[1]).slice(0, 5);
  box.append(el("p", {}, from.map(([q, w]) => `${visible(a.tokens[q])} ${w.toFixed(3)}`).join(" · ")));
}

function pipeline(a) {
  const T = a.tokens.length, hd = a.q[0].length, box = $("#att-pipeline");
  const masked = a.scores.map((r, i) => r.map((v, j) => (a.mask[i][j] ? v : 0)));
  const stages = [["Q (T × d)", a.q, "div", null], ["K (T × d)", a.k, "div", null], ["V (T × d)", a.v, "div", null],
    [`QKᵀ / √${hd}`, a.scores, "div", null], ["mask (grey: the future)", a.mask.map((r) => r.map(Number)), "seq", null],
    ["scores + mask", masked, "div", a.mask], ["softmax: attention", a.attention[a.layer][a.head], "att", a.mask]];
  box.replaceChildren();
  for (const [title, m, kind, mask] of stages) {
    const c = el("canvas", { class: m[0].length === T ? "matrix" : "matrix tall", title });
    drawMatrix(c, m, { kind, mask });
    const fig = el("figure"); fig.append(c, el("figcaption", {}, title)); box.append(fig);
  }
}

async function explore() {
  const text = $("#att-text").value;
  if (!text) return;
  try {
    state.att = await api("/api/attention", { text, layer: state.layer, head: state.head });
  } catch (err) { $("#att-title").textContent = `error: ${err.message}`; return; }
  const a = state.att;
  tokenChips($("#att-tokens"), a.tokens, a.token_ids, showRow);
  drawGrid($("#att-grid"), a.attention, [state.layer, state.head], (l, h) => {
    state.layer = l; state.head = h; explore();
  });
  $("#att-title").textContent = `layer ${a.layer}, head ${a.head}` + (a.truncated ? " (text cut)" : "");
  showRow(a.tokens.length - 1);
  pipeline(a);
}

// ---------------------------------------------------------------- training replay

function lineChart(svg, run, step) {
  const W = 1000, H = 300, L = 50, R = 50, T = 12, B = 30;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.replaceChildren();
  const train = run.metrics.filter((r) => r.kind === "train" && r.loss !== undefined);
  const evals = run.metrics.filter((r) => r.kind === "eval" && r.val_loss !== undefined);
  const all = [...train.map((r) => r.loss), ...evals.map((r) => r.val_loss)];
  if (!all.length) { svg.append(el("svg:text", { x: 20, y: 30 }, "no metrics yet")); return; }
  const maxStep = Math.max(1, ...run.metrics.map((r) => r.step)), lo = Math.min(...all), hi = Math.max(...all);
  const x = (s) => L + (W - L - R) * s / maxStep, y = (v) => T + (H - T - B) * (1 - (v - lo) / ((hi - lo) || 1));
  const lrs = train.map((r) => r.lr).filter((v) => v !== undefined), lrMax = Math.max(...lrs, 1e-12);
  const yl = (v) => T + (H - T - B) * (1 - v / lrMax);
  const path = (pts) => pts.map(([a, b], i) => `${i ? "L" : "M"}${a.toFixed(1)},${b.toFixed(1)}`).join("");
  svg.append(el("svg:path", { class: "axis", d: `M${L},${T}V${H - B}H${W - R}V${T}` }));
  svg.append(el("svg:path", { class: "train", d: path(train.map((r) => [x(r.step), y(r.loss)])) }));
  svg.append(el("svg:path", { class: "val", d: path(evals.map((r) => [x(r.step), y(r.val_loss)])) }));
  if (lrs.length) svg.append(el("svg:path", { class: "lr", d: path(train.filter((r) => r.lr !== undefined)
    .map((r) => [x(r.step), yl(r.lr)])) }));
  for (const [v, label] of [[lo, lo.toFixed(2)], [hi, hi.toFixed(2)]]) {
    svg.append(el("svg:text", { x: 4, y: y(v) + 4 }, label));
  }
  svg.append(el("svg:text", { x: W - R + 4, y: T + 10 }, `lr ${lrMax.toExponential(1)}`));
  svg.append(el("svg:text", { x: L, y: H - 8 }, "step 0"));
  svg.append(el("svg:text", { x: W - R - 60, y: H - 8 }, `step ${maxStep}`));
  run.findings.forEach((f) => f.steps.filter((s) => s <= maxStep).forEach((s) => {
    const mark = el("svg:path", { class: `finding ${f.severity}`, d: `M${x(s)},${H - B - 12}l-6,10h12z` });
    mark.append(el("svg:title", {}, `${f.severity}: ${f.symptom} (${f.evidence})`));
    svg.append(mark);
  }));
  if (step !== null) svg.append(el("svg:line", { class: "now", x1: x(step), x2: x(step), y1: T, y2: H - B }));
}

function showSnapshot(index) {
  const h = state.history, snap = h.steps[index];
  if (!snap) return;
  $("#step-label").textContent = `step ${snap.step} (${index + 1} of ${h.steps.length})`;
  drawGrid($("#replay-grid"), snap.attention, null, null);
  lineChart($("#curve"), state.run, snap.step);
  const before = state.run.samples.filter((s) => s.step <= snap.step);
  const sample = before.length ? before[before.length - 1] : null;
  $("#replay-sample").textContent = sample ? `step ${sample.step}: ${sample.prompt}${sample.text}`
    : "no sample recorded by this step";
}

async function replay() {
  state.history = await api("/api/attention/history");
  const slider = $("#step-slider"), n = state.history.steps.length;
  slider.max = Math.max(0, n - 1); slider.value = slider.max;
  const list = $("#findings"); list.replaceChildren();
  for (const f of state.run.findings) list.append(el("li", {}, `${f.severity}: ${f.symptom}. ${f.evidence}. Fix: ${f.fix}`));
  if (!state.run.findings.length) list.append(el("li", {}, "no findings: the doctor is quiet about this run"));
  if (!n) { lineChart($("#curve"), state.run, null); $("#step-label").textContent = "no attention snapshots"; return; }
  showSnapshot(n - 1);
}

// ---------------------------------------------------------------- tokenizer playground

async function tokenize() {
  const data = await api("/api/tokenize", { text: $("#tok-text").value }), box = $("#tok-rows");
  box.replaceChildren();
  data.tokenizers.forEach((t) => {
    const row = el("div", { class: "row" }), chips = el("div", { class: "chips" });
    const facts = `${t.count} tokens · ${t.bytes_per_token ?? "–"} bytes/token` + (t.vocab_size ? ` · vocabulary ${t.vocab_size}` : "");
    const head = el("h3", {}, t.name); head.append(el("span", {}, facts));
    t.tokens.forEach((piece, i) => {
      const chip = el("span", { class: "chip" }, visible(piece)); chip.style.background = tokenColour(i * 7 + piece.length);
      chips.append(chip);
    });
    row.append(head, chips); box.append(row);
  });
}

// ---------------------------------------------------------------- wiring

const loaders = { attention: explore, training: replay, tokenizer: tokenize };
function show(view) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  document.querySelectorAll(".view").forEach((v) => v.classList.toggle("active", v.id === `view-${view}`));
  if (loaders[view]) loaders[view]();
}

function debounce(fn, ms) { let t; return () => { clearTimeout(t); t = setTimeout(fn, ms); }; }

async function start() {
  state.run = await api("/api/run");
  const m = state.run.model, s = state.run.summary;
  $("#run-name").textContent = state.run.name;
  $("#run-facts").textContent = `${m.n_layer} layers × ${m.n_head} heads, width ${m.n_embd}, context ${m.block_size}, `
    + `vocabulary ${m.vocab_size}, ${m.params.toLocaleString()} parameters`
    + (s.final_val_bpb ? ` · val ${s.final_val_bpb.toFixed(3)} bits/byte after ${s.steps} steps` : "");
  const probe = (await api("/api/attention/history")).probe.text;
  $("#att-text").value = probe || "ROMEO:\nBut soft, what light through yonder window breaks?";
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  $("#gen-form").addEventListener("submit", generate);
  $("#stop").addEventListener("click", () => controller && controller.abort());
  $("#att-text").addEventListener("input", debounce(explore, 300));
  $("#tok-text").addEventListener("input", debounce(tokenize, 200));
  $("#step-slider").addEventListener("input", (e) => showSnapshot(+e.target.value));
  $("#att-big").addEventListener("mousemove", (e) => {
    const [row] = cellAt($("#att-big"), e);
    if (state.att && row >= 0 && row < state.att.tokens.length) showRow(row);
  });
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
