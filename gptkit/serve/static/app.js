// gptkit's page: three views over the server's API (tokenizer, generation, runs). Plain JS, no dependencies.
"use strict";
const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;

// The message of a failed answer: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, else the HTTP status.
async function failure(r) {
  let data = null;
  try { data = JSON.parse(await r.text()); } catch { /* not JSON (a proxy's page, a plain-text 500) */ }
  const err = data && typeof data === "object" ? data.error : undefined;
  if (err && typeof err.message === "string" && err.message) return err.message;
  if (typeof err === "string" && err) return err;
  const detail = data && typeof data === "object" ? data.detail : undefined;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail) && detail.length) return detail.map((d) => (d && d.msg) || String(d)).join("; ");
  return `HTTP ${r.status}${r.statusText ? " " + r.statusText : ""}`;
}
async function api(path, body) {
  const init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const r = await fetch(path, init);
  if (!r.ok) throw new Error(await failure(r));
  try { return await r.json(); } catch { throw new Error(`the server's answer to ${path} is not JSON`); }
}
function say(el, text, isError) {  // a status line: its text, styled as an error or not
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

// -- tabs: click, or arrow keys along the tab list ------------------------------------------------------
const tabs = [...document.querySelectorAll('[role="tab"]')];
function select(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", on);
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
  tab.focus();
  if (tab.id === "tab-runs") loadRuns();
}
tabs.forEach((t, i) => {
  t.addEventListener("click", () => select(t));
  t.addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight") select(tabs[(i + 1) % tabs.length]);
    if (e.key === "ArrowLeft") select(tabs[(i + tabs.length - 1) % tabs.length]);
  });
});

// -- tokenizer ------------------------------------------------------------------------------------------
const COLORS = ["#fde2a7", "#c9e7c5", "#c7dcf5", "#f5c9d6", "#e0d2f5", "#c4ece8", "#f2d4c2"];
function visible(text) {  // whitespace made visible, the newline kept so lines still break
  return text.replace(/ /g, "\u00b7").replace(/\t/g, "\u2192").replace(/\n/g, "\u21b5\n");
}
const asked = {a: 0, b: 0};  // the latest request of each side: an older answer arriving late is dropped
async function renderTokens(side) {
  const name = $("tok-" + side).value, box = $("tokens-" + side), n = ++asked[side];
  if (!name) return;
  try {
    const r = await api("/api/tokenize", {text: $("tok-text").value, tokenizer: name});
    if (n !== asked[side]) return;
    say($("counts-" + side), `${r.count} tokens \u00b7 ${r.chars} characters \u00b7 ${r.bytes} bytes`);
    box.replaceChildren(...r.tokens.map((t, i) => {
      const s = document.createElement("span");
      s.className = "tok";
      s.tabIndex = 0;
      s.dataset.id = t.id;
      s.style.background = COLORS[i % COLORS.length];
      s.title = `id ${t.id} \u00b7 bytes ${t.start}\u2013${t.end}`;
      s.textContent = visible(t.text);
      const show = () => showMerges(name, t.id);
      s.addEventListener("click", show);
      s.addEventListener("keydown", (e) => { if (e.key === "Enter") show(); });
      return s;
    }));
  } catch (e) { if (n === asked[side]) { say($("counts-" + side), e.message, true); box.replaceChildren(); } }
}
function tree(node) {
  const li = document.createElement("li");
  li.textContent = `${node.id}  "${visible(node.text)}"`;
  if (node.parts.length) { const ul = document.createElement("ul"); node.parts.forEach((p) => ul.append(tree(p))); li.append(ul); }
  return li;
}
async function showMerges(name, id) {
  const box = $("merges");
  box.textContent = "\u2026";
  try {
    const r = await api(`/api/merges?tokenizer_name=${encodeURIComponent(name)}&id=${id}`);
    const ul = document.createElement("ul");
    ul.append(tree(r.tree));
    box.replaceChildren(Object.assign(document.createElement("p"), {textContent: `How ${name} built token ${id}:`}), ul);
  } catch (e) { box.textContent = e.message; }
}
let tokTimer;
$("tok-text").addEventListener("input", () => { clearTimeout(tokTimer); tokTimer = setTimeout(() => { renderTokens("a"); renderTokens("b"); }, 150); });
$("tok-a").addEventListener("change", () => renderTokens("a"));
$("tok-b").addEventListener("change", () => renderTokens("b"));

// -- generation -----------------------------------------------------------------------------------------
// Each number field: an empty one is left out of the request (the server's default); a wrong one is flagged here
// and nothing is sent. A number input reads "" both when empty and when what is typed is not a number (badInput).
const FIELDS = [
  {id: "gen-temperature", key: "temperature", name: "Temperature", rule: "a number from 0 to 2", empty: "the server's default",
    ok: (v) => v >= 0 && v <= 2},
  {id: "gen-topk", key: "top_k", name: "Top-k", rule: "a whole number of at least 1", empty: "off",
    ok: (v) => Number.isInteger(v) && v >= 1},
  {id: "gen-topp", key: "top_p", name: "Top-p", rule: "a number above 0 and at most 1", empty: "the server's default",
    ok: (v) => v > 0 && v <= 1},
  {id: "gen-max", key: "max_tokens", name: "Max tokens", rule: "a whole number of at least 1", empty: "the server's default",
    ok: (v) => Number.isInteger(v) && v >= 1},
  {id: "gen-seed", key: "seed", name: "Seed", rule: "a whole number of at least 0", empty: "a random seed",
    ok: (v) => Number.isSafeInteger(v) && v >= 0},
];
function readFields() {  // {body: the fields given, bad: the inputs flagged}
  const body = {}, bad = [], problems = [];
  for (const f of FIELDS) {
    const input = $(f.id), text = input.value.trim(), v = Number(text);
    const wrong = input.validity.badInput || (text !== "" && !(Number.isFinite(v) && f.ok(v)));
    if (wrong) {
      bad.push(input);
      problems.push(`${f.name} must be ${f.rule} (empty: ${f.empty}).`);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "gen-error");
    } else {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
      if (text !== "") body[f.key] = v;
    }
  }
  $("gen-error").textContent = problems.join(" ");
  return {body, bad};
}
for (const f of FIELDS) {
  $(f.id).addEventListener("change", readFields);  // flagged once the field is left
  $(f.id).addEventListener("input", () => { if ($("gen-error").textContent) readFields(); });  // and unflagged as it is fixed
}

let controller = null;
async function generate() {
  const out = $("gen-out"), stats = $("gen-stats");
  const {body: fields, bad} = readFields();
  if (bad.length) { bad[0].focus(); return; }
  out.textContent = "";
  say(stats, "");
  const body = {model: $("gen-model").value, prompt: $("gen-prompt").value, ...fields, stream: true,
    stream_options: {include_usage: true}};
  controller = new AbortController();
  $("gen-go").disabled = true; $("gen-stop").disabled = false;
  const t0 = performance.now(), secs = () => (performance.now() - t0) / 1000;
  // A chunk's text may hold several tokens (or a token's bytes wait for the rest of a character), so the count
  // while streaming is of chunks; the tokens come with usage, in the final chunk (or in each, if a server sends it).
  let chunks = 0, tokens = null, finished = false;
  const rate = (n) => (n / secs()).toFixed(1);
  try {
    const r = await fetch("/v1/completions", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(body), signal: controller.signal});
    if (!r.ok) throw new Error(await failure(r));
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut).replace(/^data: /, "");
        buf = buf.slice(cut + 2);
        if (line === "[DONE]" || !line.trim()) continue;
        const ev = JSON.parse(line);
        if (ev.error) throw new Error(ev.error.message || "generation failed");
        const choices = Array.isArray(ev.choices) ? ev.choices : [];
        for (const c of choices) if (c.text) { out.textContent += c.text; chunks += 1; }
        if (ev.usage && typeof ev.usage.completion_tokens === "number") {
          tokens = ev.usage.completion_tokens;
          finished = !choices.length;
        }
        if (finished) say(stats, `${tokens} tokens in ${secs().toFixed(2)} s \u00b7 ${rate(tokens)} tokens/s`);
        else if (tokens !== null) say(stats, `${tokens} tokens \u00b7 ${rate(tokens)} tokens/s`);
        else say(stats, `${chunks} chunks \u00b7 ${secs().toFixed(1)} s`);
      }
    }
    if (!finished) say(stats, `${chunks} chunks in ${secs().toFixed(2)} s`);
  } catch (e) {
    if (e.name === "AbortError") say(stats, `stopped after ${tokens !== null ? tokens + " tokens" : chunks + " chunks"} in ${secs().toFixed(2)} s`);
    else say(stats, e.message, true);
  }
  $("gen-go").disabled = false; $("gen-stop").disabled = true;
}
$("gen-go").addEventListener("click", generate);
$("gen-stop").addEventListener("click", () => controller && controller.abort());

// -- runs -----------------------------------------------------------------------------------------------
let currentRun = null, runTimer = null;
async function loadRuns() {
  const r = await api("/api/runs");
  $("run-list").replaceChildren(...r.runs.map((run) => {
    const li = document.createElement("li"), b = document.createElement("button");
    b.textContent = `${run.name} (${run.records})`;
    b.dataset.run = run.name;
    b.addEventListener("click", () => openRun(run.name));
    li.append(b);
    return li;
  }));
  if (!currentRun && r.runs.length) openRun(r.runs[0].name);
}
async function openRun(name) {
  currentRun = name;
  for (const b of document.querySelectorAll("#run-list button")) b.setAttribute("aria-current", b.dataset.run === name);
  $("run-name").textContent = name;
  $("run-sample-out").textContent = "";
  await refreshRun();
  clearInterval(runTimer);
  runTimer = setInterval(refreshRun, POLL_MS);  // live: a training run appends to metrics.jsonl
}
async function refreshRun() {
  if (!currentRun) return;
  const r = await api("/api/runs/" + currentRun.split("/").map(encodeURIComponent).join("/"));
  $("run-config").textContent = JSON.stringify(r.config, null, 2);
  drawChart(r.metrics, $("run-x").value);
}
$("run-x").addEventListener("change", refreshRun);
function drawChart(records, xKey) {
  const svg = $("chart"), W = 640, H = 320, L = 50, R = 15, T = 15, B = 35;
  const pts = records.filter((m) => m[xKey] !== undefined);
  const ys = pts.flatMap((m) => [m.train_loss, m.val_loss]).filter((v) => typeof v === "number");
  svg.replaceChildren();
  svg.dataset.points = pts.length;
  if (!pts.length) return;
  const x0 = Math.min(...pts.map((m) => m[xKey])), x1 = Math.max(...pts.map((m) => m[xKey])) || 1;
  const pad = (Math.max(...ys) - Math.min(...ys)) * 0.05 || 0.05;
  const y0 = Math.min(...ys) - pad, y1 = Math.max(...ys) + pad;
  const sx = (v) => L + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (W - L - R);
  const sy = (v) => T + (y1 === y0 ? 0.5 : (y1 - v) / (y1 - y0)) * (H - T - B);
  const el = (tag, attrs, text) => { const e = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; svg.append(e); return e; };
  for (let i = 0; i <= 4; i++) {
    const v = y0 + (y1 - y0) * i / 4, y = sy(v);
    el("line", {x1: L, x2: W - R, y1: y, y2: y, class: "grid"});
    el("text", {x: L - 6, y: y + 4, "text-anchor": "end", class: "tick"}, v.toFixed(2));
  }
  el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"});
  el("text", {x: L, y: H - 12, class: "tick"}, String(x0));
  el("text", {x: W - R, y: H - 12, "text-anchor": "end", class: "tick"}, `${x1} ${xKey === "step" ? "steps" : "tokens"}`);
  for (const kind of ["train", "val"]) {
    const key = kind + "_loss", ok = pts.filter((m) => typeof m[key] === "number");
    el("polyline", {class: "line-" + kind, points: ok.map((m) => `${sx(m[xKey])},${sy(m[key])}`).join(" ")});
    for (const m of ok) {
      const c = el("circle", {cx: sx(m[xKey]), cy: sy(m[key]), r: 3, class: "pt-" + kind, "data-step": m.step, "data-loss": m[key]});
      const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
      t.textContent = `step ${m.step}: ${kind} ${m[key].toFixed(4)}`;
      c.append(t);
    }
  }
}
$("run-sample").addEventListener("click", async () => {
  if (!currentRun) return;
  $("run-sample-out").textContent = "\u2026";
  try {
    const r = await api("/v1/completions", {model: currentRun, prompt: "\n", max_tokens: 200, temperature: 0.8, top_k: 200, seed: 1337});
    say($("run-sample-out"), r.choices[0].text);
  } catch (e) { say($("run-sample-out"), e.message, true); }
});

// -- start ----------------------------------------------------------------------------------------------
(async () => {
  let toks, models;
  try {
    [toks, models] = await Promise.all([api("/api/tokenizers"), api("/v1/models")]);
  } catch (e) { say($("counts-a"), `The server did not answer: ${e.message}`, true); return; }
  for (const [id, pick] of [["tok-a", "gpt2"], ["tok-b", "cl100k_base"]]) {
    $(id).replaceChildren(...toks.tokenizers.map((t) => new Option(t, t, t === pick, t === pick)));
  }
  $("gen-model").replaceChildren(...models.data.map((m) => new Option(m.id, m.id)));
  renderTokens("a"); renderTokens("b");
})();
