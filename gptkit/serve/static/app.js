// gptkit's page: four views over the server's API (tokenizer, generation, chat, runs). Plain JS, no dependencies.
"use strict";
const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;  // the shown run's metrics, while the Runs tab shows
const LIST_MS = 3000;  // the run list and its counts
const HIDDEN_MS = 15000;  // both, while the browser tab is hidden
const SLOWEST_MS = 30000;  // the longest wait between polls after failures

// A failed answer as an Error: its message OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, else the HTTP
// status; its code OpenAI's error.code (e.g. "context_length_exceeded"), else null.
async function failure(r) {
  let data = null;
  try { data = JSON.parse(await r.text()); } catch { /* not JSON (a proxy's page, a plain-text 500) */ }
  const err = data && typeof data === "object" ? data.error : undefined;
  return Object.assign(new Error(failureMessage(r, data, err)), {code: err && typeof err.code === "string" ? err.code : null});
}
function failureMessage(r, data, err) {
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
  if (!r.ok) throw await failure(r);
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
  listAt = 0;  // a fresh list each time the Runs tab shows
  poll(true);  // starts the Runs tab's polling, or stops it
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
// The same fields (and rules) on the Generate and Chat tabs, made here for both: ids PREFIX-temperature ..., the
// message in PREFIX-error. An empty field is left out of the request (the server's default).
const FIELDS = [
  {id: "temperature", key: "temperature", name: "Temperature", rule: "a number from 0 to 2", empty: "the server's default",
    ok: (v) => v >= 0 && v <= 2, attrs: {min: 0, max: 2, step: 0.1, placeholder: "server default (1)",
      title: "0 to 2; 0 is greedy; empty: the server's default"}},
  {id: "topk", key: "top_k", name: "Top-k", rule: "a whole number of at least 1", empty: "off",
    ok: (v) => Number.isInteger(v) && v >= 1, attrs: {min: 1, step: 1, placeholder: "off",
      title: "a whole number of at least 1; empty: off"}},
  {id: "topp", key: "top_p", name: "Top-p", rule: "a number above 0 and at most 1", empty: "the server's default",
    ok: (v) => v > 0 && v <= 1, attrs: {min: 0.01, max: 1, step: 0.05, placeholder: "server default",
      title: "above 0, at most 1; empty: the server's default"}},
  {id: "max", key: "max_tokens", name: "Max tokens", rule: "a whole number of at least 1", empty: "the server's default",
    ok: (v) => Number.isInteger(v) && v >= 1, attrs: {min: 1, step: 1, placeholder: "server default",
      title: "a whole number of at least 1; empty: the server's default"}},
  {id: "seed", key: "seed", name: "Seed", rule: "a whole number of at least 0", empty: "a random seed",
    ok: (v) => Number.isSafeInteger(v) && v >= 0, attrs: {min: 0, step: 1, placeholder: "random",
      title: "a whole number of at least 0; empty: a random seed"}},
];
const START = {  // each tab's starting values (and the Chat tab's own word for an empty Max tokens)
  gen: {temperature: "1", topk: "", topp: "1", max: "200", seed: "1337"},
  chat: {temperature: "0.8", topk: "", topp: "1", max: "", seed: "",
    max_attrs: {placeholder: "rest of context", title: "a whole number of at least 1; empty: up to the end of the context"}},
};
for (const prefix of ["gen", "chat"]) {
  for (const f of FIELDS) {
    const input = Object.assign(document.createElement("input"), {id: `${prefix}-${f.id}`, type: "number"});
    for (const [k, v] of Object.entries({...f.attrs, ...(START[prefix][f.id + "_attrs"] || {})})) input.setAttribute(k, v);
    input.value = START[prefix][f.id];
    const label = document.createElement("label");
    label.append(`${f.name} `, input);
    $(prefix + "-controls").append(label);
  }
}
function readFields(prefix) {  // {body: the fields given, bad: the inputs flagged}
  const body = {}, bad = [], problems = [], error = prefix + "-error";
  for (const f of FIELDS) {
    const input = $(`${prefix}-${f.id}`), text = input.value.trim(), v = Number(text);
    const wrong = input.validity.badInput || (text !== "" && !(Number.isFinite(v) && f.ok(v)));
    if (wrong) {
      bad.push(input);
      problems.push(`${f.name} must be ${f.rule} (empty: ${f.empty}).`);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", error);
    } else {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
      if (text !== "") body[f.key] = v;
    }
  }
  $(error).textContent = problems.join(" ");
  return {body, bad};
}
for (const prefix of ["gen", "chat"]) {
  for (const f of FIELDS) {
    $(`${prefix}-${f.id}`).addEventListener("change", () => readFields(prefix));  // flagged once the field is left
    $(`${prefix}-${f.id}`).addEventListener("input", () => { if ($(prefix + "-error").textContent) readFields(prefix); });
  }
}
// POST `body` and hand each server-sent event (parsed JSON) to onEvent, until [DONE]; a failed answer or an error
// event throws with the server's message.
async function streamEvents(path, body, signal, onEvent) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body), signal});
  if (!r.ok) throw await failure(r);
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(0, cut).replace(/^data: /, "");
      buf = buf.slice(cut + 2);
      if (line === "[DONE]" || !line.trim()) continue;
      const ev = JSON.parse(line);
      if (ev.error) throw new Error(ev.error.message || "generation failed");
      onEvent(ev);
    }
  }
}

let controller = null;
async function generate() {
  const out = $("gen-out"), stats = $("gen-stats");
  const {body: fields, bad} = readFields("gen");
  if (bad.length) { bad[0].focus(); return; }
  out.textContent = "";
  say(stats, "");
  const body = {model: $("gen-model").value, prompt: $("gen-prompt").value, ...fields, stream: true,
    stream_options: {include_usage: true}};
  controller = new AbortController();
  $("gen-go").disabled = true; $("gen-stop").disabled = false;
  const meter = new Meter(stats);
  try {
    await streamEvents("/v1/completions", body, controller.signal, (ev) => {
      const choices = Array.isArray(ev.choices) ? ev.choices : [];
      for (const c of choices) if (c.text) { out.textContent += c.text; meter.chunks += 1; }
      meter.update(ev, choices);
    });
    meter.end();
  } catch (e) { meter.fail(e); }
  $("gen-go").disabled = false; $("gen-stop").disabled = true;
}
// The tokens/s line of a stream. A chunk's text may hold several tokens (or a token's bytes wait for the rest of a
// character), so the count while streaming is of chunks; the tokens come with usage, in the final chunk.
class Meter {
  constructor(el) { this.el = el; this.t0 = performance.now(); this.chunks = 0; this.tokens = null; this.finished = false; this.usage = null; }
  secs() { return (performance.now() - this.t0) / 1000; }
  rate(n) { return (n / this.secs()).toFixed(1); }
  pieces() { return `${this.chunks} chunk${this.chunks === 1 ? "" : "s"}`; }
  update(ev, choices) {
    if (ev.usage && typeof ev.usage.completion_tokens === "number") {
      this.tokens = ev.usage.completion_tokens;
      this.usage = ev.usage;
      this.finished = !choices.length;
    }
    if (this.finished) say(this.el, `${this.tokens} tokens in ${this.secs().toFixed(2)} s \u00b7 ${this.rate(this.tokens)} tokens/s`);
    else if (this.tokens !== null) say(this.el, `${this.tokens} tokens \u00b7 ${this.rate(this.tokens)} tokens/s`);
    else say(this.el, `${this.pieces()} \u00b7 ${this.secs().toFixed(1)} s`);
  }
  end() { if (!this.finished) say(this.el, `${this.pieces()} in ${this.secs().toFixed(2)} s`); }
  fail(e) {
    if (e.name === "AbortError") say(this.el, `stopped after ${this.tokens !== null ? this.tokens + " tokens" : this.pieces()} in ${this.secs().toFixed(2)} s`);
    else say(this.el, e.message, true);
  }
}
$("gen-go").addEventListener("click", generate);
$("gen-stop").addEventListener("click", () => controller && controller.abort());

// -- chat -----------------------------------------------------------------------------------------------
// The conversation lives in the page (kept while it is open): the system prompt, then user and assistant turns.
// Each turn posts the whole conversation to /v1/chat/completions and streams the reply into its bubble.
let history = [], chatController = null;
const contexts = {};  // model id -> its context length (GET /v1/models), for the token count
function bubble(role, text) {
  const div = document.createElement("div"), who = document.createElement("span"), body = document.createElement("div");
  div.className = "msg " + role;
  who.className = "who";
  who.textContent = role === "user" ? "you" : role;
  body.className = "text";
  body.textContent = text;  // model output and typed text are text, never HTML
  div.append(who, body);
  $("chat-log").append(div);
  div.scrollIntoView({block: "end"});
  return body;
}
function newChat() {
  if (chatController) chatController.abort();
  history = [];
  $("chat-log").replaceChildren();
  say($("chat-stats"), "");
  say($("chat-context"), "");
  say($("chat-error"), "");
  $("chat-input").focus();
}
async function sendChat() {
  const input = $("chat-input"), text = input.value.trim();
  if (!text || chatController) return;
  const {body: fields, bad} = readFields("chat");
  if (bad.length) { bad[0].focus(); return; }
  const system = $("chat-system").value.trim(), model = $("chat-model").value;
  const turn = {role: "user", content: text};
  const mine = bubble("user", text);
  input.value = "";
  const reply = bubble("assistant", "");
  reply.parentElement.classList.add("pending");
  chatController = new AbortController();
  $("chat-send").disabled = true; $("chat-stop").disabled = false;
  const meter = new Meter($("chat-stats"));
  let answer = "", ok = false, left = 0;  // left: earlier messages left out to fit the context
  const onEvent = (ev) => {
    const choices = Array.isArray(ev.choices) ? ev.choices : [];
    for (const c of choices) {
      const piece = c.delta && typeof c.delta.content === "string" ? c.delta.content : "";
      if (piece) { answer += piece; reply.textContent = answer; meter.chunks += 1; }
    }
    meter.update(ev, choices);
  };
  try {
    for (;;) {  // past the model's context, the oldest exchanges are left out (the page keeps showing them)
      const messages = [...(system ? [{role: "system", content: system}] : []), ...history.slice(left), turn];
      try {
        await streamEvents("/v1/chat/completions", {model, messages, ...fields, stream: true,
          stream_options: {include_usage: true}}, chatController.signal, onEvent);
        break;
      } catch (e) {
        if (e.code !== "context_length_exceeded" || left >= history.length) throw e;
        left += 2;
      }
    }
    meter.end();
    ok = true;
  } catch (e) {
    ok = e.name === "AbortError";
    if (ok) meter.fail(e);  // "stopped after ..."
    else { say($("chat-stats"), ""); say($("chat-error"), e.message, true); }  // the server's message, once
  }
  reply.parentElement.classList.remove("pending");
  if (ok && answer) history.push(turn, {role: "assistant", content: answer});
  else {  // nothing came back: the turn is taken back, its text returned to the box
    mine.parentElement.remove(); reply.parentElement.remove();
    if (!input.value) input.value = text;
  }
  if (meter.usage) {
    const used = meter.usage.prompt_tokens + meter.usage.completion_tokens, of = contexts[model];
    const out = left ? ` (the oldest ${left / 2} exchange${left > 2 ? "s" : ""} left out to fit)` : "";
    say($("chat-context"), `conversation: ${used} tokens${of ? ` of ${of}` : ""}${out}`);
  }
  chatController = null;
  $("chat-send").disabled = false; $("chat-stop").disabled = true;
}
$("chat-send").addEventListener("click", sendChat);
$("chat-stop").addEventListener("click", () => chatController && chatController.abort());
$("chat-new").addEventListener("click", newChat);
$("chat-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendChat(); }  // Shift+Enter: a new line
});
$("chat-model").addEventListener("change", newChat);

// -- runs -----------------------------------------------------------------------------------------------
// While the Runs tab shows, one poll at a time: the shown run's metrics every POLL_MS and the run list every LIST_MS,
// each next poll scheduled once the last one answered (a slow server never has requests piling up), slower while the
// browser tab is hidden, none while another tab shows.
let currentRun = null, listAt = 0, pollTimer = null, polling = false, pollAgain = false, failures = 0, drawn = "";
const compared = new Set();  // runs ticked to be drawn beside the one shown
const runsShown = () => !$("view-runs").hidden;
function poll(now) {  // now: poll at once (or as soon as the poll in flight answers); else after the usual wait
  clearTimeout(pollTimer);
  pollTimer = null;
  if (!runsShown()) return;
  if (polling) { pollAgain = pollAgain || now; return; }
  if (!now) {
    const wait = Math.min(SLOWEST_MS, (document.hidden ? HIDDEN_MS : POLL_MS) * 2 ** failures);
    pollTimer = setTimeout(() => poll(true), wait);
    return;
  }
  polling = true;
  pollOnce().then(() => { failures = 0; say($("runs-status"), ""); },
                  (e) => { failures = Math.min(failures + 1, 5); say($("runs-status"), `${e.message} (trying again)`, true); })
    .finally(() => { polling = false; const again = pollAgain; pollAgain = false; poll(again); });
}
document.addEventListener("visibilitychange", () => poll(!document.hidden));
async function pollOnce() {
  const wait = document.hidden ? HIDDEN_MS : LIST_MS;
  if (Date.now() - listAt >= wait) await loadRuns();  // (listAt is 0 when the Runs tab has just been shown)
  if (currentRun && runsShown()) await refreshRun();
}
function shellWord(s) { return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`; }
function showEmpty(root) {  // no runs: what to do, in place of the list, chart and Sample button
  const box = $("runs-empty"), code = (t) => Object.assign(document.createElement("code"), {textContent: t});
  const head = Object.assign(document.createElement("p"), {textContent: "No runs yet: train one with"});
  const out = root ? shellWord(root.replace(/\/+$/, "") + "/NAME") : "RUNS/NAME";
  const cmd = Object.assign(document.createElement("pre"), {className: "cmd"});  // its own line: never broken at "--"
  cmd.append(code(`gptkit train --out_dir=${out}`));
  const more = Object.assign(document.createElement("p"), {className: "hint"});
  if (!root) {
    more.append("RUNS is the folder this server watches: ", code("gptkit serve --runs RUNS"),
                " (by default runs, in the folder it was started from). ");
  }
  more.append("A run shows up here by itself once it has started.");
  box.replaceChildren(head, cmd, more);
  box.hidden = false;
  $("runs-main").hidden = true;
}
async function loadRuns() {
  const r = await api("/api/runs");
  listAt = Date.now();
  const runs = Array.isArray(r.runs) ? r.runs : [];
  if (!runs.length) { currentRun = null; drawn = ""; showEmpty(typeof r.runs_dir === "string" ? r.runs_dir : null); return; }
  $("runs-empty").hidden = true;
  $("runs-main").hidden = false;
  const list = $("run-list"), have = [...list.querySelectorAll("button")].map((b) => b.dataset.run);
  if (have.join("\n") !== runs.map((run) => run.name).join("\n")) {  // rebuilt only when the runs change, keeping focus
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.run : null;
    list.replaceChildren(...runs.map((run) => {
      const li = document.createElement("li"), b = document.createElement("button"), box = document.createElement("input");
      box.type = "checkbox";
      box.checked = compared.has(run.name);
      box.setAttribute("aria-label", `compare ${run.name}`);
      box.addEventListener("change", () => {
        if (box.checked) compared.add(run.name); else compared.delete(run.name);
        drawn = ""; poll(true);
      });
      b.dataset.run = run.name;
      b.addEventListener("click", () => openRun(run.name, true));
      li.append(box, b);
      return li;
    }));
    for (const name of [...compared]) if (!runs.some((run) => run.name === name)) compared.delete(name);  // gone
    const again = [...list.querySelectorAll("button")].find((b) => b.dataset.run === focused);
    if (again) again.focus();
  }
  runs.forEach((run, i) => {
    const b = list.querySelectorAll("button")[i], text = `${run.name} (${run.records})`;
    if (b.textContent !== text) b.textContent = text;
    b.title = `${run.records} evaluation${run.records === 1 ? "" : "s"} in metrics.jsonl`;
  });
  if (!runs.some((run) => run.name === currentRun)) openRun(runs[0].name, false);
  else markCurrent();
}
function markCurrent() {
  for (const b of document.querySelectorAll("#run-list button")) b.setAttribute("aria-current", b.dataset.run === currentRun);
}
function openRun(name, now) {
  currentRun = name;
  drawn = "";
  markCurrent();
  $("run-name").textContent = name;
  $("run-sample-out").textContent = "";
  if (now) poll(true);
}
async function refreshRun() {
  const name = currentRun, others = [...compared].filter((n) => n !== name);
  const fetched = [];
  for (const n of [name, ...others]) {  // one request at a time, the shown run first
    fetched.push(await api("/api/runs/" + n.split("/").map(encodeURIComponent).join("/")));
    if (name !== currentRun) return;  // another run was picked meanwhile: the next poll draws that one
  }
  const r = fetched[0];
  const config = JSON.stringify(r.config, null, 2);
  if ($("run-config").textContent !== config) $("run-config").textContent = config;
  const xKey = $("run-x").value, logY = $("run-logy").checked;
  const series = fetched.map((run, i) => ({name: run.name, color: PALETTE[i % PALETTE.length], summary: run.summary || {},
    records: Array.isArray(run.metrics) ? run.metrics : []}));
  const key = JSON.stringify([xKey, logY, series.map((x) => [x.name, x.records.length, x.records[x.records.length - 1]])]);
  if (key === drawn) return;  // unchanged: no redraw (a tooltip being read stays)
  drawn = key;
  const none = !series[0].records.length && series.length === 1;
  $("chart-empty").hidden = !none;
  $("chart-box").hidden = none;
  if (none) $("chart-empty").textContent = `No evaluations yet: ${name} writes a point at each evaluation ` +
    "(metrics.jsonl), and the chart fills in as it trains.";
  drawChart(series, xKey, logY);
  showSummaries(series);
}
$("run-x").addEventListener("change", () => { drawn = ""; poll(true); });
$("run-logy").addEventListener("change", () => { drawn = ""; poll(true); });
const PALETTE = ["#2f5fd0", "#d0542f", "#2a9d4b", "#8e44ad", "#c69200", "#138496", "#d63384", "#5c636a"];
const X_TITLES = {step: "step", tokens: "tokens", elapsed_s: "seconds"};

// Numbers on the chart: 0, 950, 1.5k, 102.4k, 2.5M, 1B.
function compact(v) {
  const a = Math.abs(v);
  for (const [unit, suffix] of [[1e9, "B"], [1e6, "M"], [1e3, "k"]]) {
    if (a >= unit) return `${Number((v / unit).toFixed(2))}${suffix}`;
  }
  return String(Number(v.toFixed(2)));
}
function ticks(lo, hi, count, whole) {  // about `count` round values (1, 2 or 5 times a power of ten apart) in [lo, hi]
  if (!(hi > lo)) return {values: [lo], step: 1};
  const raw = (hi - lo) / count, mag = 10 ** Math.floor(Math.log10(raw)), n = raw / mag;
  let step = (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag;
  if (whole) step = Math.max(1, Math.round(step));
  const values = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) values.push(Number(v.toPrecision(12)));
  return {values, step};
}
function svgEl(svg, tag, attrs, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  svg.append(e);
  return e;
}
// One run: train loss blue, val loss orange, as always. Several: a colour per run, val solid and train dashed.
// Log scale: the losses' log10 on a linear axis, ticked at round losses.
function drawChart(series, xKey, logY) {
  const svg = $("chart"), W = 640, H = 320, L = 68, R = 20, T = 15, B = 52, one = series.length === 1;
  const f = (v) => (logY ? Math.log10(v) : v), ok = (v) => typeof v === "number" && (!logY || v > 0);
  const runs = series.map((s) => ({...s, pts: s.records.filter((m) => typeof m[xKey] === "number")}));
  const all = runs.flatMap((s) => s.pts), ys = all.flatMap((m) => [m.train_loss, m.val_loss]).filter(ok).map(f);
  svg.replaceChildren();
  svg.dataset.points = runs[0].pts.length;
  svg.dataset.runs = runs.filter((s) => s.pts.length).length;
  legend(runs, one);
  if (!all.length || !ys.length) return;
  const x0 = Math.min(...all.map((m) => m[xKey])), x1 = Math.max(...all.map((m) => m[xKey]));
  const pad = (Math.max(...ys) - Math.min(...ys)) * 0.05 || 0.05;
  const y0 = Math.min(...ys) - pad, y1 = Math.max(...ys) + pad;
  const sx = (v) => L + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (W - L - R);
  const sy = (v) => T + (y1 === y0 ? 0.5 : (y1 - f(v)) / (y1 - y0)) * (H - T - B);
  const el = (tag, attrs, text) => svgEl(svg, tag, attrs, text);
  const yt = ticks(y0, y1, 5, false), decimals = Math.max(0, -Math.floor(Math.log10(yt.step)));
  for (const v of yt.values) {
    const y = T + (y1 === y0 ? 0.5 : (y1 - v) / (y1 - y0)) * (H - T - B);
    el("line", {x1: L, x2: W - R, y1: y, y2: y, class: "grid"});
    el("text", {x: L - 6, y, "text-anchor": "end", "dominant-baseline": "middle", class: "tick y-tick"},
      logY ? String(Number((10 ** v).toPrecision(3))) : v.toFixed(decimals));
  }
  for (const v of ticks(x0, x1, 5, xKey !== "elapsed_s").values) {
    const x = sx(v);
    el("line", {x1: x, x2: x, y1: T, y2: H - B, class: "grid"});
    el("line", {x1: x, x2: x, y1: H - B, y2: H - B + 4, class: "axis"});
    el("text", {x, y: H - B + 6, "text-anchor": "middle", "dominant-baseline": "hanging", class: "tick x-tick"}, compact(v));
  }
  el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis"});
  el("line", {x1: L, x2: L, y1: T, y2: H - B, class: "axis"});
  el("text", {x: L + (W - L - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis-title x-title"}, X_TITLES[xKey]);
  el("text", {x: 0, y: 0, "text-anchor": "middle", "dominant-baseline": "hanging", class: "axis-title y-title",
    transform: `translate(4 ${T + (H - T - B) / 2}) rotate(-90)`}, logY ? "loss (log scale)" : "loss");
  runs.forEach((s, i) => {
    for (const kind of ["train", "val"]) {
      const key = kind + "_loss", pts = s.pts.filter((m) => ok(m[key]));
      const color = one ? null : s.color;
      const line = el("polyline", {class: `line-${kind}${!one && kind === "train" ? " dashed" : ""}`, "data-run": s.name,
        points: pts.map((m) => `${sx(m[xKey])},${sy(m[key])}`).join(" ")});
      if (color) line.style.stroke = color;
      for (const m of pts) {
        const c = el("circle", {cx: sx(m[xKey]), cy: sy(m[key]), r: i ? 2.5 : 3, class: i ? "pt-other" : "pt-" + kind,
          "data-step": m.step, "data-loss": m[key], "data-run": s.name});
        if (color) c.style.fill = color;
        const t = document.createElementNS("http://www.w3.org/2000/svg", "title");
        t.textContent = `${s.name}, step ${m.step}${typeof m.tokens === "number" ? ` (${compact(m.tokens)} tokens)` : ""}: ${kind} loss ${m[key].toFixed(4)}`;
        c.append(t);
      }
    }
  });
  const guide = el("line", {x1: 0, x2: 0, y1: T, y2: H - B, class: "guide", visibility: "hidden"});
  svg.onpointermove = (e) => {  // the values under the pointer: each run's evaluation nearest in x
    const box = svg.getBoundingClientRect(), px = (e.clientX - box.left) * (W / box.width);
    if (px < L || px > W - R) { svg.onpointerleave(); return; }
    const xv = x0 + ((px - L) / (W - L - R)) * (x1 - x0);
    const parts = [];
    for (const s of runs) {
      if (!s.pts.length) continue;
      const m = s.pts.reduce((a, b) => (Math.abs(b[xKey] - xv) < Math.abs(a[xKey] - xv) ? b : a));
      const v = (k) => (typeof m[k] === "number" ? m[k].toFixed(4) : "\u2013");
      parts.push(`${s.name} step ${m.step}: val ${v("val_loss")}, train ${v("train_loss")}`);
    }
    guide.setAttribute("x1", px); guide.setAttribute("x2", px); guide.setAttribute("visibility", "visible");
    $("chart-readout").textContent = parts.join(" \u00b7 ");
  };
  svg.onpointerleave = () => { guide.setAttribute("visibility", "hidden"); $("chart-readout").textContent = ""; };
}
function legend(runs, one) {
  const box = $("chart-legend"), sw = (cls, color) => {
    const e = Object.assign(document.createElement("span"), {className: "sw " + cls});
    if (color) e.style.background = color;
    return e;
  };
  if (one) { box.replaceChildren(sw("train"), " train loss ", sw("val"), " val loss"); return; }
  box.replaceChildren(...runs.flatMap((s) => [sw("", s.color), ` ${s.name} `]), " (solid: val loss; dashed: train loss)");
}
function showSummaries(series) {  // a line per run shown: size, tokens, time, best val, what it was finetuned from
  $("run-summaries").replaceChildren(...series.map((s) => {
    const u = s.summary, li = document.createElement("li"), parts = [];
    const swatch = Object.assign(document.createElement("span"), {className: "sw"});
    swatch.style.background = s.color;
    if (typeof u.parameters === "number") parts.push(`${compact(u.parameters)} parameters`);
    if (typeof u.tokens === "number") parts.push(`${compact(u.tokens)} tokens`);
    if (typeof u.elapsed_s === "number") parts.push(`${u.elapsed_s.toFixed(1)} s`);
    if (typeof u.best_val === "number") parts.push(`best val ${u.best_val.toFixed(4)} at step ${u.best_step}`);
    if (u.init_from) parts.push(`finetuned from ${u.init_from}`);
    li.append(swatch, ` ${s.name}: ${parts.join(" \u00b7 ") || "no evaluation yet"}`);
    return li;
  }));
}
$("run-sample").addEventListener("click", async () => {
  if (!currentRun) return;
  const out = $("run-sample-out");
  say(out, "\u2026");
  try {
    const r = await api("/v1/completions", {model: currentRun, prompt: "\n", max_tokens: 200, temperature: 0.8, top_k: 200, seed: 1337});
    say(out, r.choices[0].text);
  } catch (e) { say(out, e.message, true); }
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
  // chat models first (the server marks them), each with its context length when known
  const chatFirst = [...models.data].sort((a, b) => (b.chat === true) - (a.chat === true));
  $("chat-model").replaceChildren(...chatFirst.map((m) => new Option(m.chat === false ? `${m.id} (base model)` : m.id, m.id)));
  for (const m of models.data) if (typeof m.context_length === "number") contexts[m.id] = m.context_length;
  if (!models.data.length) {
    $("gen-go").disabled = true;
    $("chat-send").disabled = true;
    say($("gen-stats"), "No models to generate with: see the Runs tab for how to train one.");
    say($("chat-stats"), "No models to chat with: see the Runs tab for how to train one.");
  }
  renderTokens("a"); renderTokens("b");
})();
