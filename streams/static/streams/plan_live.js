// The live plan page. On open: the REST snapshot (the plan, its steps, its open approvals and the event id
// to stream from) and the plan's whole event history; then, only while the plan runs, its SSE stream from
// that id (EventSource resumes by itself with Last-Event-ID). Events are applied per step in id order, so a
// replayed or duplicated one changes nothing. Agent text is shown as text, or as Markdown rendered by
// markdown-it with raw HTML off (vendor/), never as HTML.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("live-config").textContent);
  const {layout, PanZoom, el} = window.PlanGraph;
  const md = window.markdownit({html: false, linkify: false, breaks: true});
  const STATES = ["pending", "waiting", "queued", "running", "succeeded", "failed", "rejected", "cancelled"];
  const STEP_STATUS = {
    "step.queued": "queued", "step.requeued": "queued", "step.started": "running", "step.waiting": "waiting",
    "step.succeeded": "succeeded", "step.failed": "failed", "step.rejected": "rejected",
    "step.cancelled": "cancelled", "approval.required": "waiting",
    "step.pending": "pending", "step.retried": "pending", "step.rerun": "pending",  // issue 10: run again
  };
  const PLAN_STATUS = {
    "plan.created": "planning", "plan.started": "running", "plan.completed": "succeeded",
    "plan.failed": "failed", "plan.cancelled": "cancelled",
  };
  // issue 10: the plan's steps changed while it runs (spawned, re-planned, edited, re-run): read them again.
  const STRUCTURE = ["plan.grown", "plan.edited", "plan.rerun"];
  const PLAN_DONE = ["succeeded", "failed", "cancelled"];
  const STEP_DONE = ["succeeded", "failed", "rejected", "cancelled"];
  const EVENT_TYPES = [...Object.keys(STEP_STATUS), ...Object.keys(PLAN_STATUS), "step.progress", "step.output",
    "step.retrying", "step.context", "approval.decided", "approval.voted", "approval.edited", "approval.escalated",
    "approval.expired", "plan.budget", "plan.spawn_refused", "plan.replan_limit", "step.added", "step.removed",
    "step.changed", ...STRUCTURE];

  const steps = new Map();       // key -> step (from the snapshot, then kept up to date by events)
  const lastApplied = new Map(); // step key ("" for the plan) -> id of the last event applied to it
  const approvals = new Map();   // approval id -> {approval_id, step_key, ...details once fetched}
  const logged = new Set();      // event ids already in the events list
  const orphans = [];            // events of steps added while the page runs, until the page has read them
  let restructuring = null;      // a read of the plan's steps in flight ({again: true}: another one after it)
  let plan = null, selected = null, source = null, panZoom = null, drawn = null, view = "graph";

  const $ = (selector) => document.querySelector(selector);
  const seconds = (from, to) => from ? ((to ? new Date(to) : new Date()) - new Date(from)) / 1000 : null;
  const fmt = (s) => s === null ? "" : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  const clock = (t) => t ? new Date(t).toLocaleTimeString([], {hour12: false}) + `.${String(new Date(t).getMilliseconds()).padStart(3, "0")}` : "";
  const money = (v) => (v === null || v === undefined) ? "" : `$${Number(v).toFixed(4)}`;
  const node = (tag, attrs, ...children) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") n.textContent = v; else if (k === "html") n.innerHTML = v; else n.setAttribute(k, v);
    }
    n.append(...children.filter((c) => c !== null && c !== undefined));
    return n;
  };

  async function getJSON(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  async function postJSON(url, body) {
    const response = await fetch(url, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": config.csrfToken}});
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || `HTTP ${response.status}`);
    return data;
  }

  // --- the graph ---------------------------------------------------------------------------------------
  function draw() {
    const svg = $("#dag"), viewport = $("#viewport");
    viewport.replaceChildren();
    let defs = svg.querySelector("defs");
    if (!defs) {
      defs = el("defs", {}, null);
      svg.prepend(defs);
      const marker = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "6",
        markerHeight: "6", orient: "auto"}, defs);
      el("path", {d: "M 0 1 L 10 5 L 0 9 z", fill: "#6b7482"}, marker);
    }
    drawn = layout([...steps.values()]);
    const edges = el("g", {class: "edges"}, viewport);
    for (const e of drawn.edges) {
      const d = e.points.map(([x, y], i) => `${i ? "L" : "M"} ${x.toFixed(1)} ${y.toFixed(1)}`).join(" ");
      el("path", {class: "edge", d, "data-from": e.from, "data-to": e.to}, edges);
    }
    const nodes = el("g", {class: "nodes"}, viewport);
    for (const step of steps.values()) {
      const p = drawn.nodes.get(step.key);
      const g = el("g", {class: "node", "data-step": step.key, transform: `translate(${p.x},${p.y})`, tabindex: "0"}, nodes);
      el("rect", {width: p.width, height: p.height, rx: "7"}, g);
      const title = el("text", {x: "10", y: String(p.height / 2 - 4)}, g);
      title.textContent = step.key.length > 22 ? step.key.slice(0, 21) + "…" : step.key;
      el("text", {x: "10", y: String(p.height / 2 + 11), class: "sub"}, g);
      el("title", {}, g).textContent = `${step.key} (${step.agent})`;
      g.addEventListener("click", () => { if (!panZoom.moved) select(step.key); });
      g.addEventListener("keydown", (e) => { if (e.key === "Enter") select(step.key); });
      paint(step.key);
    }
    panZoom.fit({width: drawn.width, height: drawn.height}, true);
  }

  function paint(key) {
    const step = steps.get(key);
    const g = document.querySelector(`#dag .node[data-step="${CSS.escape(key)}"]`);
    if (!step || !g) return;
    g.dataset.status = step.status;
    g.querySelector("rect").style.fill = `var(--${step.status}, #fff)`;
    const took = step.started_at ? fmt(seconds(step.started_at, step.finished_at)) : "";
    const cost = Number(step.cost) > 0 ? money(step.cost) : "";
    g.querySelector(".sub").textContent = [step.status, took, cost, step.note].filter(Boolean).join(" · ");
    if (selected === key) details();
  }

  function legend() {
    $("#legend").replaceChildren(...STATES.map((s) => {
      const swatch = node("span", {style: `background: var(--${s})`});
      return node("li", {}, swatch, s);
    }));
  }

  // --- the timeline (Gantt) ----------------------------------------------------------------------------
  function timeline() {
    if (view !== "timeline") return;
    const rows = [...steps.values()].filter((s) => s.queued_at || s.started_at)
      .sort((a, b) => new Date(a.queued_at || a.started_at) - new Date(b.queued_at || b.started_at) || a.key.localeCompare(b.key));
    const box = $("#gantt");
    if (!rows.length) { box.replaceChildren(node("p", {class: "hint", text: "No step has started yet."})); return; }
    const origin = Math.min(...rows.map((s) => new Date(s.queued_at || s.started_at).getTime()));
    const end = Math.max(Date.now() * (PLAN_DONE.includes(plan.status) ? 0 : 1),
      ...rows.map((s) => new Date(s.finished_at || s.started_at || s.queued_at).getTime()), origin + 1);
    const span = end - origin;
    const pct = (t) => `${(100 * (new Date(t).getTime() - origin) / span).toFixed(3)}%`;
    const width = (a, b) => `${Math.max(0.3, 100 * ((b ? new Date(b) : new Date(end)) - new Date(a)) / span).toFixed(3)}%`;
    const axis = node("div", {class: "gantt-row axis"}, node("span", {class: "label"}),
      node("div", {class: "track"}, ...[0, 0.25, 0.5, 0.75, 1].map((f) =>
        node("span", {class: "tick", style: `left: ${f * 100}%`, text: fmt(span * f / 1000)}))));
    box.replaceChildren(axis, ...rows.map((s) => {
      const track = node("div", {class: "track"});
      if (s.queued_at && s.started_at) track.append(node("span", {class: "bar queued-part", style: `left: ${pct(s.queued_at)}; width: ${width(s.queued_at, s.started_at)}`, title: "queued"}));
      if (s.started_at) track.append(node("span", {class: "bar", "data-status": s.status, style: `left: ${pct(s.started_at)}; width: ${width(s.started_at, s.finished_at)}; background: var(--${s.status})`, title: `${s.status} ${fmt(seconds(s.started_at, s.finished_at))}`}));
      else track.append(node("span", {class: "bar queued-part", style: `left: ${pct(s.queued_at)}; width: ${width(s.queued_at, null)}`}));
      const row = node("div", {class: "gantt-row", "data-step": s.key}, node("span", {class: "label", text: s.key}), track,
        node("span", {class: "took", text: s.started_at ? fmt(seconds(s.started_at, s.finished_at)) : s.status}));
      row.addEventListener("click", () => select(s.key));
      return row;
    }));
  }

  function showView(name) {
    view = name;
    document.querySelectorAll(".tabs [data-view]").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.view === name)));
    $("#graph-panel").hidden = name !== "graph";
    $("#timeline-panel").hidden = name !== "timeline";
    $(".zoom").hidden = name !== "graph";
    if (name === "graph" && drawn) panZoom.fit(null, true);
    timeline();
  }

  // --- side panels -------------------------------------------------------------------------------------
  function select(key) {
    selected = key;
    document.querySelectorAll("#dag .node").forEach((n) => n.classList.toggle("selected", n.dataset.step === key));
    details();
  }

  function rendered(output) {
    if (output === undefined || output === null) return null;
    if (typeof output === "object" && typeof output.text === "string") {
      const extra = Object.keys(output).filter((k) => !["text", "model"].includes(k));
      return node("div", {}, node("div", {class: "markdown", html: md.render(output.text)}),
        output.model ? node("p", {class: "muted", text: String(output.model).startsWith("offline/")
          ? `offline answer (${output.model}): no LLM key is set, so no model was called` : `model ${output.model}`}) : null,
        extra.length ? node("details", {}, node("summary", {text: "all of the output"}), node("pre", {text: JSON.stringify(output, null, 2)})) : null);
    }
    return node("pre", {class: "output", text: JSON.stringify(output, null, 2)});
  }

  function details() {
    const step = steps.get(selected);
    if (!step) return;
    const tokens = (step.prompt_tokens || 0) + (step.completion_tokens || 0);
    const rows = [["status", step.status], ["agent", step.agent], ["attempt", step.attempt],
      ["depends on", (step.depends_on || []).join(", ") || "-"], ["queued", clock(step.queued_at)], ["started", clock(step.started_at)],
      ["finished", clock(step.finished_at)], ["took", fmt(seconds(step.started_at, step.finished_at))],
      ["tokens", tokens ? `${tokens} (${step.prompt_tokens} in, ${step.completion_tokens} out)` : ""],
      ["cost", Number(step.cost) > 0 ? money(step.cost) : ""],
      ["error", step.error_code ? `${step.error_code}: ${step.error_message || ""}` : ""],
      ["context", step.memory || ""]];  // what context assembly kept, recalled and cut (memory)
    const dl = node("dl", {});
    for (const [k, v] of rows) if (v || v === 0) dl.append(node("dt", {text: k}), node("dd", {text: String(v)}));
    const body = rendered(step.output) || node("pre", {class: "output",
      text: step.streamed || (step.status === "running" ? "(running…)" : "(no output yet)")});
    const input = step.input && Object.keys(step.input).length
      ? node("details", {}, node("summary", {text: "input"}), node("pre", {text: JSON.stringify(step.input, null, 2)})) : null;
    $("#details").replaceChildren(...[node("h2", {text: `Step ${step.key}`}), dl, input, node("h3", {text: "Output"}), body].filter(Boolean));
  }

  // --- approvals: decide from the page -----------------------------------------------------------------
  async function loadApprovals() {
    if (!approvals.size) { showApprovals(); return; }
    try {
      for (const a of await getJSON(config.approvalsUrl)) {
        if (approvals.has(a.id)) Object.assign(approvals.get(a.id), a, {loaded: true});
      }
    } catch (error) { /* the cards still show, without the input */ }
    showApprovals();
  }

  function approvalCard(id, a) {
    const card = node("div", {class: "approval", "data-approval": id, "data-step": a.step_key});
    card.append(node("h3", {}, "Step ", node("code", {text: a.step_key}), a.agent ? ` (agent ${a.agent})` : ""));
    if (a.reason) card.append(node("p", {class: "muted", text: `${a.reason}${a.policy ? ` (${a.policy})` : ""}`}));
    if (a.required_approvals > 1) card.append(node("p", {class: "muted", text: `${a.approvals} of ${a.required_approvals} approvals`}));
    const original = a.edited_input || a.input || {};
    if (!config.canDecide) {
      card.append(node("p", {class: "hint", text: "Waiting for an approver: you may not decide this step."}));
      if (a.loaded) card.append(node("details", {}, node("summary", {text: "input it will run with"}), node("pre", {text: JSON.stringify(original, null, 2)})));
      return card;
    }
    const text = node("textarea", {class: "edited-input", rows: "6", spellcheck: "false", "aria-label": "input it will run with"});
    text.value = JSON.stringify(original, null, 2);
    const comment = node("input", {class: "comment", type: "text", placeholder: "comment (optional)", "aria-label": "comment"});
    const message = node("p", {class: "decision-message", role: "status"});
    const decide = async (decision) => {
      const body = {comment: comment.value};
      if (decision === "approve") {
        let edited;
        try { edited = JSON.parse(text.value); } catch (e) { message.textContent = `The input is not valid JSON: ${e.message}`; return; }
        if (JSON.stringify(edited) !== JSON.stringify(original)) body.edited_input = edited;
      }
      card.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      try {
        const done = await postJSON(config.decideUrl.replace("{id}", id).replace("{decision}", decision), body);
        message.textContent = done.status === "pending" ? `Your vote is in (${done.approvals} of ${done.required_approvals}).` : `${done.status} by ${done.decided_by || config.user}.`;
        card.dataset.decided = done.status;
      } catch (error) {
        message.textContent = String(error.message || error);
        card.querySelectorAll("button").forEach((b) => { b.disabled = false; });
      }
    };
    const approve = node("button", {type: "button", class: "primary approve", text: "Approve"});
    const reject = node("button", {type: "button", class: "danger reject", text: "Reject"});
    approve.addEventListener("click", () => decide("approve"));
    reject.addEventListener("click", () => decide("reject"));
    if (config.user === config.owner) card.append(node("p", {class: "hint", text: "You started this plan: unless its policy allows self-approval, another approver must decide."}));
    card.append(node("label", {text: "Input it will run with (edit, then approve, to change it)"}), text, comment,
      node("div", {class: "buttons"}, approve, reject), message);
    return card;
  }

  function showApprovals() {
    const box = $("#approvals .items");
    const keep = new Set(approvals.keys());
    box.querySelectorAll(".approval").forEach((c) => { if (!keep.has(c.dataset.approval)) c.remove(); });
    for (const [id, a] of approvals) {
      const old = box.querySelector(`.approval[data-approval="${CSS.escape(id)}"]`);
      if (old && (old.dataset.loaded === "1" || !a.loaded)) continue;
      const card = approvalCard(id, a);
      card.dataset.loaded = a.loaded ? "1" : "0";
      if (old) old.replaceWith(card); else box.append(card);
    }
    $("#approvals").hidden = approvals.size === 0;
  }

  // --- the plan: status, cost, result ------------------------------------------------------------------
  let refreshTimer = null;
  function refreshSoon() {  // outputs and costs are not in events: read the plan again, at most once a second
    if (refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      const fresh = await getJSON(config.planUrl);
      plan = Object.assign(plan || {}, fresh, {status: plan ? plan.status : fresh.status});
      for (const s of fresh.steps) {
        const mine = steps.get(s.key);
        if (mine && STEP_DONE.includes(s.status)) Object.assign(mine, {output: s.output, error_code: s.error_code,
          error_message: s.error_message, usage: s.usage, cost: s.cost, prompt_tokens: s.prompt_tokens,
          completion_tokens: s.completion_tokens});
        if (mine) paint(s.key);
      }
      header();
      if (PLAN_DONE.includes(fresh.status)) showResult(fresh);
    }, 800);
  }

  function showResult(fresh) {
    const box = $("#result");
    const out = box.querySelector(".markdown");
    if (fresh.error_code) {
      out.replaceChildren(node("p", {class: "error", text: `${fresh.error_code}: ${fresh.error_message}`}));
    } else if (fresh.result && typeof fresh.result.text === "string") {
      out.replaceChildren(rendered(fresh.result));
    } else if (fresh.result && typeof fresh.result === "object" && Object.values(fresh.result).some((v) => v && typeof v.text === "string")) {
      out.replaceChildren(...Object.entries(fresh.result).flatMap(([key, v]) => [node("h3", {text: key}), rendered(v)]));
    } else {
      out.replaceChildren(node("pre", {text: JSON.stringify(fresh.result, null, 2)}));
    }
    box.hidden = false;
  }

  function header() {
    const badge = $("#plan-status");
    badge.textContent = badge.dataset.status = plan.status;
    $("#plan-timing").textContent = plan.started_at ? `ran ${fmt(seconds(plan.started_at, plan.finished_at))}` : "not started";
    const done = [...steps.values()].filter((s) => s.status === "succeeded").length;
    $("#plan-cost").textContent = `${done}/${steps.size} steps · ${plan.tokens_used || 0} tokens · ${money(plan.cost_used || 0)}`;
  }

  function logLine(event) {
    if (logged.has(event.id)) return;
    logged.add(event.id);
    const data = event.data || {};
    const said = ["code", "message", "reason", "attempt", "decision"].filter((k) => data[k] !== undefined && data[k] !== "")
      .map((k) => `${k}=${String(data[k]).slice(0, 120)}`).join(" ");
    const text = data.text && event.type === "step.output" ? ` “${String(data.text).slice(0, 80)}”`
      : event.type === "step.context" ? ` ${contextSummary(data)}` : "";
    const li = node("li", {"data-event": String(event.id), "data-type": event.type},
      node("time", {text: event.time.slice(11, 23)}), " ", node("b", {text: event.step_key || "(plan)"}), " ",
      node("span", {class: "type", text: event.type}), said ? ` ${said}` : "", event.actor ? ` by ${event.actor}` : "", text);
    $("#log ol").prepend(li);
    $("#event-count").textContent = `(${logged.size})`;
  }

  // memory: a step's context record (memory/context.py): tokens used, memories recalled, parts cut and why.
  function contextSummary(data) {
    if (data.code) return `memory unavailable (${data.code})`;
    const recalled = (data.recalled || []).map((r) => `${r.kind} of plan ${(r.plan_id || "-").slice(0, 8)} (${r.similarity})`);
    const cut = (data.cut || []).map((c) => `${c.part.slice(0, 20)}: ${c.reason}`);
    return `${data.tokens}/${data.budget} tokens; recalled ${recalled.length}${recalled.length ? ": " + recalled.join(", ") : ""}`
      + `; cut ${cut.length}${cut.length ? ": " + cut.join(", ") : ""}`;
  }

  // --- steps added, removed or changed while the plan runs (issue 10) --------------------------------------
  // Statuses come from events (every change has one, in order); the structure (which steps, their agents,
  // inputs and dependencies) from the plan read again. Events of a step the page does not know yet wait in
  // `orphans` and are applied, in order, once it does; so a step added while it runs ends in its last state.
  async function restructure() {
    if (restructuring) { restructuring.again = true; return; }
    restructuring = {again: false};
    try {
      const fresh = await getJSON(config.planUrl);
      const known = new Set(fresh.steps.map((s) => s.key));
      for (const key of [...steps.keys()]) if (!known.has(key)) steps.delete(key);
      for (const s of fresh.steps) {
        const mine = steps.get(s.key);
        if (mine) Object.assign(mine, {agent: s.agent, input: s.input, depends_on: s.depends_on});
        else steps.set(s.key, {...s, note: "new"});
      }
      plan.version = fresh.version;
      for (const event of orphans.splice(0).sort((a, b) => a.id - b.id)) {
        if (steps.has(event.step_key)) apply(event, true);  // else it was removed again meanwhile
      }
      draw();
      header();
      timeline();
    } finally {
      const again = restructuring.again;
      restructuring = null;
      if (again) restructure();
    }
  }

  // --- events ------------------------------------------------------------------------------------------
  function apply(event, live) {
    logLine(event);
    const key = event.step_key || "";
    if (live && key && !event.type.startsWith("plan.") && !steps.has(key) && event.type !== "step.removed") {
      orphans.push(event);
      if (!restructuring) restructure();
      return;
    }
    if ((lastApplied.get(key) || 0) >= event.id) return;
    lastApplied.set(key, event.id);
    const data = event.data || {};
    if (event.type === "approval.required") approvals.set(data.approval_id, {approval_id: data.approval_id, step_key: key, admin_url: data.admin_url});
    if (event.type === "approval.decided" || event.type === "approval.expired") approvals.delete(data.approval_id);
    if (event.type.startsWith("approval.") && live) loadApprovals();
    if (STRUCTURE.includes(event.type) && live) restructure();
    if (event.type.startsWith("plan.")) {
      const status = PLAN_STATUS[event.type];
      if (!status) return;
      plan.status = status;
      if (event.type === "plan.started") plan.started_at = event.time;
      if (PLAN_DONE.includes(status)) { plan.finished_at = event.time; ended(); refreshSoon(); }
      header();
      return;
    }
    const step = steps.get(key);
    if (!step) return;
    const status = STEP_STATUS[event.type];
    if (status) {
      step.status = status;
      step.note = "";
      if (status === "pending") { step.queued_at = step.started_at = step.finished_at = null; step.output = null; step.streamed = ""; }
      if (status === "queued") { step.queued_at = event.time; step.started_at = step.finished_at = null; }
      if (status === "running") { step.started_at = event.time; step.finished_at = null; }
      if (STEP_DONE.includes(status)) { step.finished_at = event.time; if (live) refreshSoon(); }
      if (data.attempt) step.attempt = data.attempt;
      if (data.code) step.error_code = data.code;
      if (data.message) step.error_message = data.message;
    }
    if (event.type === "step.retrying") {
      step.note = `retry ${data.attempt || ""} (${data.code || data.reason || "transient"})`;
      if (data.reason === "worker_lost") step.status = "queued";
    }
    if (event.type === "step.changed") step.note = "edited";
    if (event.type === "step.progress") step.note = String(data.message || data.fraction || "");
    if (event.type === "step.output") step.streamed = (step.streamed || "") + (data.text || "");
    if (event.type === "step.context") step.memory = contextSummary(data);
    paint(key);
  }

  function ended() {
    if (source) { source.close(); source = null; }
    setConnection("ended", "finished");
  }

  function connect(cursor) {
    source = new EventSource(`${config.streamUrl}?lastEventId=${cursor}`);
    const handle = (message) => { apply(JSON.parse(message.data), true); header(); timeline(); };
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
    source.addEventListener("stream-open", () => setConnection("live", "live"));
    source.addEventListener("stream-error", (message) => {
      setConnection("error", `stream error: ${JSON.parse(message.data).text}`);
      source.close();
    });
    source.onerror = () => {
      if (!source) return;
      if (source.readyState === EventSource.CLOSED) setConnection("error", "disconnected (reload to retry)");
      else setConnection("connecting", "reconnecting…");
    };
  }

  function setConnection(state, text) {
    const c = $("#connection");
    c.dataset.state = state;
    c.textContent = text;
  }

  async function history(upTo) {  // every stored event up to the snapshot's cursor, into the events list
    let after = 0;
    while (after !== null) {
      const page = await getJSON(`${config.historyUrl}?after=${after}`);
      for (const event of page.events) if (event.id <= upTo) logLine(event);
      after = page.next_after;
      if (page.events.length && page.events[page.events.length - 1].id >= upTo) break;
    }
  }

  async function start() {
    legend();
    panZoom = new PanZoom($("#dag"), $("#viewport"));
    $("#zoom-in").addEventListener("click", () => panZoom.zoomCentre(1.25));
    $("#zoom-out").addEventListener("click", () => panZoom.zoomCentre(0.8));
    $("#zoom-fit").addEventListener("click", () => panZoom.fit());
    document.querySelectorAll(".tabs [data-view]").forEach((b) => b.addEventListener("click", () => showView(b.dataset.view)));
    const snapshot = await getJSON(config.snapshotUrl);
    plan = snapshot.plan;
    for (const s of plan.steps) steps.set(s.key, {...s});
    for (const a of snapshot.approvals) approvals.set(a.approval_id, {...a});
    draw();
    header();
    const finished = PLAN_DONE.includes(plan.status);
    await history(finished ? Number.MAX_SAFE_INTEGER : snapshot.last_event_id);  // finished: all of it
    loadApprovals();
    if (finished) {
      setConnection("ended", "finished");
      showResult(plan);
    } else {
      connect(snapshot.last_event_id);
    }
    const wanted = new URLSearchParams(location.hash.slice(1)).get("step");
    if (wanted && steps.has(wanted)) select(wanted);
    setInterval(() => {
      if (PLAN_DONE.includes(plan.status)) return;
      for (const [key, s] of steps) if (s.status === "running") paint(key);
      header();
      timeline();
    }, 500);
    window.addEventListener("resize", () => { if (view === "graph") panZoom.fit(null, true); });
    window.planLive = {steps, lastApplied, approvals, source: () => source, layout: () => drawn};  // tests, the curious
    document.body.dataset.ready = "1";
  }

  start().catch((error) => setConnection("error", String(error)));
})();
