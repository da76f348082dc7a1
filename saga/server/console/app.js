// The kafka-saga console: a page over the server's own HTTP API, nothing to build.
// Hash routes: #/ overview, #/sagas list, #/sagas/<id> one saga, #/timers, #/dlq[/<id>].
"use strict";

const STATUSES = ["RUNNING", "WAITING", "COMPENSATING", "PARKED", "COMPLETED",
                  "COMPENSATED", "FAILED", "CANCELLED"];
const REFRESH_MS = 2000;
let refresher = null;
let charts = [];

// ---- small helpers ---------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// One path segment of an API URL: "/", "%", "?", "#", spaces and non-ASCII escaped, so
// the server, which decodes each segment once, reads the id that was meant. (An id "."
// or ".." cannot be sent: browsers resolve such a segment, even escaped, before
// sending; the API refuses to start them.)
const seg = (text) => encodeURIComponent(String(text));

// A server started with SAGA_API_*_TOKENS refuses callers without a bearer token: the
// console asks for one once, keeps it in this browser's localStorage, and asks again
// when the server refuses it (401) or it cannot act (403).
const TOKEN_KEY = "kafka-saga.api-token";

// The answer's body, and the next page's URL when the server sends a Link rel=next
// (histories and dead letters come a page at a time).
async function apiPage(path, options = {}, asked = false) {
  const method = (options.method || "GET").toUpperCase();
  // A route that acts takes a JSON body, {} at least (the server refuses anything else,
  // which is what keeps a form on another site from acting through this browser).
  const acting = !["GET", "HEAD"].includes(method);
  const headers = acting ? {"content-type": "application/json"} : {};
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, {...options, method, headers,
                                      body: acting ? (options.body || "{}") : undefined});
  if ((response.status === 401 || response.status === 403) && !asked) {
    // The overview sends several requests at once: once one of them got a token, the
    // others retry with it rather than ask again.
    const since = localStorage.getItem(TOKEN_KEY);
    if (since && since !== token) return apiPage(path, options, true);
    const what = response.status === 401 ? "This server needs an API token"
      : "This needs a token with the operate role";
    const given = window.prompt(`${what} (SAGA_API_READ_TOKENS or SAGA_API_OPERATE_TOKENS):`);
    if (given) {
      localStorage.setItem(TOKEN_KEY, given.trim());
      return apiPage(path, options, true);
    }
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || `${response.status} ${response.statusText}`);
    error.hint = body.hint;
    error.code = body.code;
    error.status = response.status;
    throw error;
  }
  const link = /<([^>]*)>\s*;\s*rel="?next"?/.exec(response.headers.get("link") || "");
  return {body, next: link ? link[1] : null};
}

async function api(path, options = {}) {
  return (await apiPage(path, options)).body;
}

function toast(message, ok = false) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = ok ? "toast ok" : "toast";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

function failed(error) {
  toast(error.hint ? `${error.message} — ${error.hint}` : error.message);
}

const clock = (ms) => ms ? new Date(ms).toLocaleString() : "—";
const short = (ms) => ms ? new Date(ms).toLocaleTimeString() : "—";
const ago = (ms) => {
  if (!ms) return "—";
  const s = (Date.now() - ms) / 1000;
  if (Math.abs(s) < 90) return `${s >= 0 ? "" : "in "}${Math.abs(s).toFixed(0)} s${s >= 0 ? " ago" : ""}`;
  if (Math.abs(s) < 5400) return `${s >= 0 ? "" : "in "}${Math.abs(s / 60).toFixed(0)} min${s >= 0 ? " ago" : ""}`;
  return clock(ms);
};
const duration = (ms) => ms === null || ms === undefined ? "—"
  : ms < 1000 ? `${ms} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s`
  : `${(ms / 60000).toFixed(1)} min`;
const badge = (status) => el("span", {class: `status ${status || ""}`,
                                       "data-testid": "status"}, status || "—");
const json = (value) => el("pre", {}, JSON.stringify(value, null, 2));
const sagaLink = (id) => `#/sagas/${seg(id)}`;

// A modal that asks before anything is sent: resolves to the fields' values, or null.
function ask({title, text = "", fields = [], ok = "OK", danger = false}) {
  const dialog = document.getElementById("dialog");
  document.getElementById("dialog-title").textContent = title;
  document.getElementById("dialog-text").textContent = text;
  const holder = document.getElementById("dialog-fields");
  holder.replaceChildren(...fields.map((f) => el("label", {}, f.label,
    f.multiline
      ? el("textarea", {name: f.name, "data-testid": `field-${f.name}`}, f.value || "")
      : el("input", {name: f.name, value: f.value || "", "data-testid": `field-${f.name}`}))));
  const button = document.getElementById("dialog-ok");
  button.textContent = ok;
  button.className = danger ? "danger" : "";
  return new Promise((resolve) => {
    dialog.onclose = () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      const values = {};
      for (const f of fields) values[f.name] = holder.querySelector(`[name="${f.name}"]`).value;
      resolve(values);
    };
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// ---- the router --------------------------------------------------------------------------
function route() {
  clearInterval(refresher);
  charts.forEach((chart) => chart.destroy());
  charts = [];
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
  const view = document.getElementById("view");
  let page = "overview";
  if (parts[0] === "sagas" && parts.length > 1) { page = "sagas"; showSaga(view, parts.slice(1).join("/")); }
  else if (parts[0] === "sagas") { page = "sagas"; showList(view, params); }
  else if (parts[0] === "timers") { page = "timers"; showTimers(view); }
  else if (parts[0] === "dlq") { page = "dlq"; showDeadLetters(view, parts[1]); }
  else showOverview(view);
  document.querySelectorAll("nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.nav === page));
}

function every(ms, work) {
  work();
  refresher = setInterval(work, ms);
}

async function health() {
  const box = document.getElementById("health");
  try {
    const ready = await api("/readyz").catch((error) => ({ready: false, hint: error.message}));
    box.textContent = ready.ready ? "index caught up" : `index catching up (${ready.hint || ""})`;
    box.className = ready.ready ? "health" : "health bad";
  } catch (error) {
    box.textContent = "server unreachable";
    box.className = "health bad";
  }
}

// ---- overview ----------------------------------------------------------------------------
function showOverview(view) {
  const cards = el("div", {class: "cards", "data-testid": "counts"});
  const throughput = el("div", {class: "panel"}, el("h2", {}, "Sagas per second, last 15 minutes"));
  const latency = el("div", {class: "panel"}, el("h2", {}, "Step latency (issue to reply), ms"));
  const durations = el("div", {class: "panel"});
  view.replaceChildren(el("h1", {}, "Overview"), cards,
                       el("div", {class: "charts"}, throughput, latency), durations);
  let drawn = false;
  every(REFRESH_MS * 2, async () => {
    try {
      const [stats, timers, recent] = await Promise.all([
        api("/api/stats"), api("/api/timers?limit=1"), api("/api/stats/recent")]);
      cards.replaceChildren(
        ...STATUSES.map((s) => el("a", {class: "card", href: `#/sagas?status=${s}`},
          el("div", {class: "n"}, stats.counts[s] || 0), el("div", {class: "l"}, s))),
        el("a", {class: "card", href: "#/dlq"}, el("div", {class: "n", "data-testid": "dlq-size"},
          stats.dead_letters), el("div", {class: "l"}, "dead letters")),
        el("a", {class: "card", href: "#/timers"}, el("div", {class: "n"}, timers.pending),
          el("div", {class: "l"}, `timers pending · ${timers.overdue} overdue`)));
      const x = recent.map((b) => b.at_ms / 1000);
      const perSecond = (key) => recent.map((b) => b[key] / 10);
      const series = [x, perSecond("started"), perSecond("ended")];
      const steps = [x, recent.map((b) => b.step_p50_ms), recent.map((b) => b.step_p99_ms)];
      if (!drawn && window.uPlot) {
        const width = Math.max(320, throughput.clientWidth - 32);
        charts.push(new uPlot({width, height: 200, series: [{},
          {label: "started", stroke: "#2563eb"}, {label: "ended", stroke: "#15803d"}]},
          series, throughput));
        charts.push(new uPlot({width, height: 200, series: [{},
          {label: "p50", stroke: "#0369a1", spanGaps: true, points: {show: true, size: 4}}, {label: "p99", stroke: "#c2410c", spanGaps: true, points: {show: true, size: 4}}]},
          steps, latency));
        drawn = true;
      } else if (charts.length === 2) {
        charts[0].setData(series);
        charts[1].setData(steps);
      }
      durations.replaceChildren(el("h2", {}, "Durations of ended sagas, by type"),
        el("table", {}, el("tr", {}, ["type", "count", "p50", "p90", "p99", "max"].map((h) => el("th", {}, h))),
          Object.entries(stats.durations).map(([type, d]) => el("tr", {},
            el("td", {}, type), el("td", {}, d.count), el("td", {}, duration(d.p50)),
            el("td", {}, duration(d.p90)), el("td", {}, duration(d.p99)),
            el("td", {}, duration(d.max))))));
    } catch (error) { failed(error); }
  });
}

// ---- the saga list -------------------------------------------------------------------------
function showList(view, params) {
  const form = el("form", {class: "filters", onsubmit: (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, v);
    location.hash = `#/sagas?${next}`;
  }},
    el("label", {}, "status", el("select", {name: "status", "data-testid": "filter-status"},
      el("option", {value: ""}, "any"),
      STATUSES.map((s) => el("option", {value: s, selected: params.get("status") === s}, s)))),
    el("label", {}, "type", el("input", {name: "type", value: params.get("type") || "",
                                         placeholder: "e.g. order"})),
    el("label", {}, "id starts with", el("input", {name: "id_prefix", "data-testid": "filter-id",
      value: params.get("id_prefix") || "", placeholder: "o-1"})),
    el("button", {type: "submit", "data-testid": "filter-apply"}, "Filter"));
  const body = el("tbody", {"data-testid": "saga-rows"});
  const pager = el("div", {class: "pager"});
  view.replaceChildren(el("h1", {}, "Sagas"), form, el("div", {class: "panel"},
    el("table", {}, el("thead", {}, el("tr", {}, ["saga", "type", "status", "started",
      "ended", "events", "error"].map((h) => el("th", {}, h)))), body), pager));
  const cursors = [null];
  let page = 0;
  const load = async () => {
    const query = new URLSearchParams(params);
    query.set("limit", "50");
    if (cursors[page]) query.set("cursor", cursors[page]);
    try {
      const result = await api(`/api/sagas?${query}`);
      body.replaceChildren(...result.sagas.map((s) => el("tr", {class: "row",
        "data-saga": s.saga_id, onclick: () => { location.hash = sagaLink(s.saga_id); }},
        el("td", {class: "mono"}, el("a", {href: sagaLink(s.saga_id)}, s.saga_id)),
        el("td", {}, `${s.type} v${s.version}`), el("td", {}, badge(s.status)),
        el("td", {title: clock(s.started_at_ms)}, ago(s.started_at_ms)),
        el("td", {}, s.ended_at_ms ? duration(s.ended_at_ms - s.started_at_ms) : "—"),
        el("td", {}, s.events), el("td", {class: "muted"}, (s.error || s.last_error || "").slice(0, 80)))));
      // A page may come back empty with a cursor: the server reads so many index rows
      // per request, and found no match among them; "older" reads on.
      if (!result.sagas.length) body.replaceChildren(el("tr", {}, el("td", {colspan: 7, class: "muted"},
        result.next_cursor ? "no saga matches in this stretch of the index: try older" : "no saga matches")));
      cursors[page + 1] = result.next_cursor;
      pager.replaceChildren(
        el("button", {class: "secondary", disabled: page === 0, onclick: () => { page -= 1; load(); }}, "newer"),
        `page ${page + 1}`,
        el("button", {class: "secondary", disabled: !result.next_cursor, "data-testid": "next-page",
                      onclick: () => { page += 1; load(); }}, "older"),
        el("span", {}, "refreshes every 2 s"));
    } catch (error) { failed(error); }
  };
  every(REFRESH_MS, load);
}

// ---- one saga ------------------------------------------------------------------------------
function showSaga(view, sagaId) {
  view.replaceChildren(el("h1", {}, "Saga ", el("span", {class: "mono"}, sagaId)),
                       el("p", {class: "muted"}, "loading…"));
  every(REFRESH_MS, async () => {
    try {
      const [saga, history] = await Promise.all([
        api(`/api/sagas/${seg(sagaId)}`), apiPage(`/api/sagas/${seg(sagaId)}/history`)]);
      renderSaga(view, saga, history.body, history.next !== null);
    } catch (error) {
      if (error.status === 404) {
        view.replaceChildren(el("h1", {}, "Saga ", el("span", {class: "mono"}, sagaId)),
          el("p", {}, "No such saga (yet): a saga started a moment ago appears within a second."));
      } else failed(error);
    }
  });
}

function renderSaga(view, saga, history, more = false) {
  const started = history.find((h) => h.type === "SagaStarted") || {};
  const ended = !!saga.ended_at_ms;
  const actions = el("div", {class: "actions"},
    el("button", {"data-testid": "signal", disabled: ended, onclick: () => sendSignal(saga)},
       "Send a signal…"),
    el("button", {class: "danger", "data-testid": "cancel", disabled: ended,
                  onclick: () => cancelSaga(saga)}, "Cancel…"),
    saga.status === "PARKED" ? el("button", {class: "secondary", onclick: () => resumeSaga(saga)}, "Resume…") : null);
  const links = [];
  if (saga.parent) links.push(el("a", {href: sagaLink(saga.parent)}, `parent ${saga.parent}`));
  const children = saga.children || [];
  for (const child of children.slice(0, 50)) links.push(el("a", {href: sagaLink(child)}, `child ${child}`));
  if (children.length > 50) links.push(el("span", {}, `… and ${children.length - 50} more children`));
  view.replaceChildren(
    el("h1", {}, "Saga ", el("span", {class: "mono", "data-testid": "saga-id"}, saga.saga_id), " ", badge(saga.status)),
    actions,
    el("div", {class: "two"},
      el("div", {class: "panel"}, el("h2", {}, "Summary"), el("dl", {class: "kv"},
        el("dt", {}, "type"), el("dd", {}, `${saga.type} v${saga.version}`),
        el("dt", {}, "started"), el("dd", {}, clock(saga.started_at_ms)),
        el("dt", {}, "ended"), el("dd", {}, ended ? `${clock(saga.ended_at_ms)} (${duration(saga.ended_at_ms - saga.started_at_ms)})` : "—"),
        el("dt", {}, "waiting for"), el("dd", {"data-testid": "waiting-for"}, saga.waiting_for.join(", ") || "—"),
        el("dt", {}, "in flight"), el("dd", {}, saga.in_flight),
        el("dt", {}, "events"), el("dd", {}, saga.events),
        el("dt", {}, "error"), el("dd", {}, saga.error || (saga.last_error ? `last: ${saga.last_error}` : "—")),
        saga.run ? [el("dt", {}, "run"), el("dd", {}, `${saga.run} (continued as new)`)] : null,
        Object.keys(saga.attributes || {}).length
          ? [el("dt", {}, "attributes"), el("dd", {class: "mono", "data-testid": "attributes"}, JSON.stringify(saga.attributes))] : null,
        links.length ? [el("dt", {}, "linked"), el("dd", {class: "links", "data-testid": "links"}, links)] : null)),
      el("div", {class: "panel"}, el("h2", {}, ended ? "Result" : "Input"),
        json(ended ? saga.result : started.input))),
    el("div", {class: "panel"}, el("h2", {}, "Timeline"), timeline(saga, history)),
    el("div", {class: "panel"}, el("h2", {}, more ? `The first ${history.length} events` : "Every event"),
      events(saga, history), more ? el("p", {class: "muted"}, "more in `saga history` or the API's next pages") : null));
}

// One lane per step attempt from its issue to its reply (or timeout); timers and
// signals as marks on their own lanes.
function timeline(saga, history) {
  const t0 = saga.started_at_ms;
  const t1 = Math.max(saga.ended_at_ms || Date.now(), t0 + 1);
  const x = (ms) => `${Math.min(100, Math.max(0, ((ms - t0) / (t1 - t0)) * 100))}%`;
  const attempts = new Map();
  const marks = [];
  for (const h of history) {
    if (h.type === "CommandIssued") {
      attempts.set(h.command_id, {h, start: h.at_ms, end: null, state: "open"});
    } else if (["CommandCompleted", "CommandFailed", "CommandTimedOut"].includes(h.type)) {
      const a = attempts.get(h.command_id);
      if (a) { a.end = h.at_ms; a.state = h.type === "CommandCompleted" ? "ok" : h.type === "CommandTimedOut" ? "timeout" : "failed"; a.reason = h.reason; }
    } else if (h.type === "WaitStarted") {
      attempts.set(`wait:${h.step}`, {h: {service: "wait", name: h.signal, attempt: 1, kind: "WAIT"},
                                      start: h.at_ms, end: null, state: "open"});
    } else if (h.type === "WaitResolved" || h.type === "WaitTimedOut") {
      const a = attempts.get(`wait:${h.step}`);
      if (a) { a.end = h.at_ms; a.state = h.type === "WaitResolved" ? "waited" : "timeout"; }
    } else if (h.type === "TimerFired" || h.type === "SignalReceived") {
      marks.push({at: h.at_ms, kind: h.type === "TimerFired" ? "timer" : "signal",
                  label: h.type === "TimerFired" ? h.timer_id : `signal ${h.name}`});
    }
  }
  const lanes = [...attempts.values()].map((a) => {
    const kind = a.h.kind === "COMPENSATION" ? "undo " : "";
    const label = a.h.kind === "WAIT" ? `wait for ${a.h.name}` : `${kind}${a.h.service}.${a.h.name} #${a.h.attempt}`;
    const end = a.end || (saga.ended_at_ms || Date.now());
    const title = `${kind}${a.h.service}.${a.h.name} attempt ${a.h.attempt}: ${a.state}` +
      (a.end ? ` after ${duration(a.end - a.start)}` : " (no reply yet)") + (a.reason ? ` — ${a.reason}` : "");
    return el("div", {class: "lane", "data-testid": a.h.kind === "WAIT" ? "wait-lane" : "step-lane"},
      el("div", {class: "name mono", title}, label),
      el("div", {class: "track"}, el("div", {class: `bar ${a.end ? a.state : "open"} ${kind ? "compensation" : ""}`,
        title, style: `left:${x(a.start)};width:calc(${x(end)} - ${x(a.start)})`})));
  });
  const markLane = marks.length ? el("div", {class: "lane"}, el("div", {class: "name"}, "timers & signals"),
    el("div", {class: "track"}, marks.map((m) => el("div", {class: `mark ${m.kind}`,
      title: `${m.label} at ${short(m.at)}`, style: `left:${x(m.at)}`})))) : null;
  return el("div", {class: "timeline"},
    el("div", {class: "legend"}, el("span", {style: "--c:var(--ok)"}, "replied"),
      el("span", {style: "--c:var(--bad)"}, "failed"), el("span", {style: "--c:var(--warn)"}, "timed out"),
      el("span", {style: "--c:var(--accent)"}, "in flight"), el("span", {style: "--c:var(--comp)"}, "compensation"),
      el("span", {style: "--c:var(--wait)"}, "waiting for a signal")),
    lanes.length ? lanes : el("p", {class: "muted"}, "no step yet"), markLane,
    el("div", {class: "axis"}, el("span"), el("div", {class: "ticks"},
      el("span", {}, short(t0)), el("span", {}, `+${duration(t1 - t0)}`))));
}

function events(saga, history) {
  const t0 = saga.started_at_ms;
  return el("table", {"data-testid": "events"},
    el("tr", {}, ["#", "at", "event", "details"].map((h) => el("th", {}, h))),
    history.map((h) => {
      const {seq, at_ms, type, ...details} = h;
      return el("tr", {}, el("td", {}, seq), el("td", {class: "nowrap", title: clock(at_ms)}, `+${duration(at_ms - t0)}`),
        el("td", {}, type), el("td", {class: "mono"}, JSON.stringify(details).slice(0, 240)));
    }));
}

async function sendSignal(saga) {
  const values = await ask({title: `Send a signal to ${saga.saga_id}`,
    text: "The saga records it; a wait for it takes it.",
    fields: [{name: "name", label: "signal", value: saga.waiting_for[0] || ""},
             {name: "payload", label: "payload (JSON)", value: "{}", multiline: true}],
    ok: "Send"});
  if (!values) return;
  let payload;
  try { payload = JSON.parse(values.payload || "null"); }
  catch (error) { return toast(`the payload is not JSON: ${error.message}`); }
  try {
    await api(`/api/sagas/${seg(saga.saga_id)}/signals/${seg(values.name)}`,
              {method: "POST", body: JSON.stringify({payload})});
    toast(`signal ${values.name} sent`, true);
  } catch (error) { failed(error); }
}

async function cancelSaga(saga) {
  const values = await ask({title: `Cancel ${saga.saga_id}?`, danger: true, ok: "Cancel the saga",
    text: "It stops where it is and compensates what it did, newest first.",
    fields: [{name: "reason", label: "reason", value: "cancelled from the console"}]});
  if (!values) return;
  try {
    await api(`/api/sagas/${seg(saga.saga_id)}/cancel`,
              {method: "POST", body: JSON.stringify({reason: values.reason})});
    toast("cancel sent", true);
  } catch (error) { failed(error); }
}

async function resumeSaga(saga) {
  const values = await ask({title: `Resume ${saga.saga_id}?`, ok: "Resume",
    text: "It replays with the code now deployed.", fields: [{name: "reason", label: "reason", value: "resumed from the console"}]});
  if (!values) return;
  try {
    await api(`/api/sagas/${seg(saga.saga_id)}/resume`, {method: "POST", body: JSON.stringify({reason: values.reason})});
    toast("resume sent", true);
  } catch (error) { failed(error); }
}

// ---- timers and dead letters ---------------------------------------------------------------
function showTimers(view) {
  const summary = el("p", {class: "muted"});
  const body = el("tbody");
  view.replaceChildren(el("h1", {}, "Timers"), summary, el("div", {class: "panel"},
    el("table", {}, el("thead", {}, el("tr", {}, ["due", "saga", "timer"].map((h) => el("th", {}, h)))), body)));
  every(REFRESH_MS, async () => {
    try {
      const timers = await api("/api/timers?limit=200");
      summary.textContent = `${timers.pending} pending, ${timers.overdue} overdue, next due ${ago(timers.next_due_ms)}`;
      body.replaceChildren(...timers.timers.map((t) => el("tr", {class: "row", onclick: () => { location.hash = sagaLink(t.saga_id); }},
        el("td", {title: clock(t.due_ms)}, ago(t.due_ms)), el("td", {class: "mono"}, t.saga_id), el("td", {class: "mono"}, t.timer_id))));
      if (!timers.timers.length) body.replaceChildren(el("tr", {}, el("td", {colspan: 3, class: "muted"}, "no timer pending")));
    } catch (error) { failed(error); }
  });
}

function showDeadLetters(view, chosen) {
  const body = el("tbody", {"data-testid": "dlq-rows"});
  const detail = el("div", {class: "panel", "data-testid": "dlq-detail"}, el("p", {class: "muted"}, "choose a letter"));
  view.replaceChildren(el("h1", {}, "Dead letters"), el("div", {class: "two"},
    el("div", {class: "panel"}, el("table", {}, el("thead", {}, el("tr", {},
      ["id", "reason", "component", "source"].map((h) => el("th", {}, h)))), body)), detail));
  const show = async (id) => {
    try {
      const letter = await api(`/api/dlq/letters/${seg(id)}`);
      detail.replaceChildren(el("h2", {}, `Letter ${letter.id}`), el("dl", {class: "kv"},
        ...Object.entries(letter).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {class: "mono"}, v === null ? "—" : String(v))])),
        el("div", {class: "actions"}, el("button", {"data-testid": "redrive", onclick: () => redrive(letter)}, "Redrive…")));
    } catch (error) { failed(error); }
  };
  every(REFRESH_MS * 2, async () => {
    try {
      const {body: letters, next} = await apiPage("/api/dlq?limit=100");
      body.replaceChildren(...letters.map((l) => el("tr", {class: "row", onclick: () => { location.hash = `#/dlq/${seg(l.id)}`; }},
        el("td", {class: "mono"}, l.id), el("td", {}, l.reason), el("td", {}, l.component), el("td", {class: "mono"}, l.source))));
      if (next) body.append(el("tr", {}, el("td", {colspan: 4, class: "muted"}, "the first 100: more with `saga dlq list`")));
      if (!letters.length) body.replaceChildren(el("tr", {}, el("td", {colspan: 4, class: "muted"}, "none: nothing was set aside")));
    } catch (error) { failed(error); }
  });
  if (chosen) show(chosen);
}

async function redrive(letter) {
  const ok = await ask({title: `Redrive ${letter.id}?`, ok: "Redrive",
    text: `Its record goes back to ${letter.source_topic || letter.source}, as it was.`});
  if (!ok) return;
  try {
    const result = await api("/api/dlq/redrive", {method: "POST", body: JSON.stringify({ids: [letter.id]})});
    toast(`redrove ${result.redriven.join(", ") || "nothing"}`, true);
  } catch (error) { failed(error); }
}

window.addEventListener("hashchange", route);
route();
health();
setInterval(health, 5000);
