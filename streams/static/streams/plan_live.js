// The live plan page: load a snapshot over REST, draw the DAG, then apply the plan's events from the
// snapshot's last_event_id as they stream in (EventSource reconnects by itself with Last-Event-ID).
// Events are applied per step in id order, so a replayed or duplicated event changes nothing.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("live-config").textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const STATES = ["pending", "waiting", "queued", "running", "succeeded", "failed", "rejected", "cancelled"];
  const STEP_STATUS = {
    "step.queued": "queued", "step.requeued": "queued", "step.started": "running", "step.waiting": "waiting",
    "step.succeeded": "succeeded", "step.failed": "failed", "step.rejected": "rejected",
    "step.cancelled": "cancelled", "approval.required": "waiting",
  };
  const PLAN_STATUS = {
    "plan.created": "planning", "plan.started": "running", "plan.completed": "succeeded",
    "plan.failed": "failed", "plan.cancelled": "cancelled",
  };
  const EVENT_TYPES = [...Object.keys(STEP_STATUS), ...Object.keys(PLAN_STATUS), "step.progress", "step.output",
    "step.retrying", "step.context", "approval.decided", "approval.voted", "approval.edited", "approval.escalated"];
  const NODE_W = 150, NODE_H = 44, GAP_X = 70, GAP_Y = 22, PAD = 20;

  const steps = new Map();       // key -> step (from the snapshot, then kept up to date by events)
  const lastApplied = new Map(); // step key ("" for the plan) -> id of the last event applied to it
  const approvals = new Map();   // approval id -> {step_key, admin_url}
  let plan = null, selected = null, source = null;

  const $ = (selector) => document.querySelector(selector);
  const seconds = (from, to) => from ? ((to ? new Date(to) : new Date()) - new Date(from)) / 1000 : null;
  const fmt = (s) => s === null ? "" : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;

  async function getJSON(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  // --- the picture -------------------------------------------------------------------------------------
  function depths() {
    const depth = new Map();
    const visit = (key, seen) => {
      if (depth.has(key)) return depth.get(key);
      if (seen.has(key)) return 0;  // never happens: plans are validated acyclic
      seen.add(key);
      const deps = (steps.get(key)?.depends_on || []).filter((d) => steps.has(d));
      const d = deps.length ? 1 + Math.max(...deps.map((dep) => visit(dep, seen))) : 0;
      depth.set(key, d);
      return d;
    };
    for (const key of steps.keys()) visit(key, new Set());
    return depth;
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function draw() {
    const svg = $("#dag");
    svg.replaceChildren();
    const defs = el("defs", {}, svg);
    const marker = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7",
      markerHeight: "7", orient: "auto-start-reverse"}, defs);
    el("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa1ad"}, marker);
    const depth = depths();
    const layers = [];
    for (const [key, d] of depth) (layers[d] = layers[d] || []).push(key);
    const pos = new Map();
    layers.forEach((keys, d) => keys.sort().forEach((key, i) => pos.set(key, {
      x: PAD + d * (NODE_W + GAP_X), y: PAD + i * (NODE_H + GAP_Y)})));
    const width = PAD * 2 + layers.length * (NODE_W + GAP_X) - GAP_X;
    const height = PAD * 2 + Math.max(1, ...layers.map((l) => l.length)) * (NODE_H + GAP_Y) - GAP_Y;
    svg.setAttribute("width", Math.max(width, 200));
    svg.setAttribute("height", Math.max(height, 80));
    const edges = el("g", {class: "edges"}, svg);
    for (const step of steps.values()) {
      for (const dep of step.depends_on || []) {
        const a = pos.get(dep), b = pos.get(step.key);
        if (!a || !b) continue;
        const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 2, y2 = b.y + NODE_H / 2, mid = (x1 + x2) / 2;
        el("path", {class: "edge", d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`}, edges);
      }
    }
    const nodes = el("g", {class: "nodes"}, svg);
    for (const step of steps.values()) {
      const p = pos.get(step.key);
      const g = el("g", {class: "node", "data-step": step.key, transform: `translate(${p.x},${p.y})`, tabindex: "0"}, nodes);
      el("rect", {width: NODE_W, height: NODE_H, rx: "8"}, g);
      const title = el("text", {x: "10", y: "18"}, g);
      title.textContent = step.key.length > 20 ? step.key.slice(0, 19) + "…" : step.key;
      el("text", {x: "10", y: "34", class: "sub"}, g);
      g.addEventListener("click", () => select(step.key));
      g.addEventListener("keydown", (e) => { if (e.key === "Enter") select(step.key); });
      paint(step.key);
    }
  }

  function paint(key) {
    const step = steps.get(key);
    const g = document.querySelector(`#dag .node[data-step="${CSS.escape(key)}"]`);
    if (!step || !g) return;
    g.dataset.status = step.status;
    g.querySelector("rect").style.fill = `var(--${step.status}, #fff)`;
    const took = step.started_at ? fmt(seconds(step.started_at, step.finished_at)) : "";
    g.querySelector(".sub").textContent = [step.status, took, step.note].filter(Boolean).join(" · ");
    if (selected === key) details();
  }

  function legend() {
    $("#legend").replaceChildren(...STATES.map((s) => {
      const li = document.createElement("li");
      li.innerHTML = `<span style="background: var(--${s})"></span>${s}`;
      return li;
    }));
  }

  // --- side panels -------------------------------------------------------------------------------------
  async function select(key) {
    selected = key;
    document.querySelectorAll("#dag .node").forEach((n) => n.classList.toggle("selected", n.dataset.step === key));
    details();
    const step = steps.get(key);
    if (step && ["succeeded", "failed", "rejected"].includes(step.status) && step.output === undefined) {
      const fresh = await getJSON(config.planUrl);  // outputs are not in events: fetched when asked for
      for (const s of fresh.steps) if (steps.has(s.key)) Object.assign(steps.get(s.key), {output: s.output,
        error_code: s.error_code, error_message: s.error_message, usage: s.usage});
      details();
    }
  }

  function details() {
    const step = steps.get(selected);
    if (!step) return;
    const rows = [["status", step.status], ["agent", step.agent], ["attempt", step.attempt],
      ["depends on", (step.depends_on || []).join(", ") || "-"], ["queued", step.queued_at], ["started", step.started_at],
      ["finished", step.finished_at], ["took", fmt(seconds(step.started_at, step.finished_at))],
      ["error", step.error_code ? `${step.error_code}: ${step.error_message || ""}` : ""],
      ["context", step.memory || ""]];  // memory: what context assembly kept, recalled and cut
    const panel = $("#details");
    panel.replaceChildren();
    const h = document.createElement("h2");
    h.textContent = `Step ${step.key}`;
    const dl = document.createElement("dl");
    for (const [k, v] of rows) {
      if (!v && v !== 0) continue;
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      dl.append(dt, dd);
    }
    const pre = document.createElement("pre");
    pre.className = "output";
    pre.textContent = step.output !== undefined && step.output !== null ? JSON.stringify(step.output, null, 2)
      : (step.streamed || (step.status === "running" ? "(running…)" : "(no output yet)"));
    panel.append(h, dl, pre);
  }

  function showApprovals() {
    const list = $("#approvals ul");
    list.replaceChildren(...[...approvals.entries()].map(([id, a]) => {
      const li = document.createElement("li"), link = document.createElement("a");
      link.href = a.admin_url || "#";
      link.textContent = `approve or reject step ${a.step_key}`;
      link.className = "approval-link";
      link.dataset.step = a.step_key;
      link.dataset.approval = id;
      li.append(link);
      return li;
    }));
    $("#approvals").hidden = approvals.size === 0;
  }

  async function showResult() {
    const fresh = await getJSON(config.planUrl);
    plan = fresh;
    const box = $("#result");
    box.hidden = false;
    box.querySelector("pre").textContent = fresh.error_code ? `${fresh.error_code}: ${fresh.error_message}`
      : JSON.stringify(fresh.result, null, 2);
    planStatus(fresh.status);
  }

  function planStatus(status) {
    const badge = $("#plan-status");
    badge.textContent = badge.dataset.status = status;
    $("#plan-timing").textContent = plan && plan.started_at ? fmt(seconds(plan.started_at, plan.finished_at)) : "";
  }

  function logLine(event) {
    const li = document.createElement("li");
    li.textContent = `${event.time.slice(11, 23)} ${event.step_key || "(plan)"} ${event.type}`
      + (event.type === "step.context" ? ` ${contextSummary(event.data || {})}` : "");
    const list = $("#log ol");
    list.prepend(li);
    while (list.children.length > 200) list.lastChild.remove();
  }

  // memory: a step's context record (memory/context.py): tokens used, memories recalled, parts cut and why.
  function contextSummary(data) {
    if (data.code) return `memory unavailable (${data.code})`;
    const recalled = (data.recalled || []).map((r) => `${r.kind} of plan ${(r.plan_id || "-").slice(0, 8)} (${r.similarity})`);
    const cut = (data.cut || []).map((c) => `${c.part.slice(0, 20)}: ${c.reason}`);
    return `${data.tokens}/${data.budget} tokens; recalled ${recalled.length}${recalled.length ? ": " + recalled.join(", ") : ""}`
      + `; cut ${cut.length}${cut.length ? ": " + cut.join(", ") : ""}`;
  }

  // --- events ------------------------------------------------------------------------------------------
  function apply(event) {
    const key = event.step_key || "";
    if ((lastApplied.get(key) || 0) >= event.id) return;
    lastApplied.set(key, event.id);
    logLine(event);
    const data = event.data || {};
    if (event.type.startsWith("plan.")) {
      const status = PLAN_STATUS[event.type];
      if (plan) {
        if (event.type === "plan.started") plan.started_at = event.time;
        if (["succeeded", "failed", "cancelled"].includes(status)) plan.finished_at = event.time;
      }
      if (status) planStatus(status);
      if (["plan.completed", "plan.failed", "plan.cancelled"].includes(event.type)) showResult();
      return;
    }
    if (event.type === "approval.required") approvals.set(data.approval_id, {step_key: key, admin_url: data.admin_url});
    if (event.type === "approval.decided") approvals.delete(data.approval_id);
    if (event.type.startsWith("approval.")) showApprovals();
    const step = steps.get(key);
    if (!step) return;
    const status = STEP_STATUS[event.type];
    if (status) {
      step.status = status;
      step.note = "";
      if (status === "queued") { step.queued_at = event.time; step.started_at = step.finished_at = null; }
      if (status === "running") { step.started_at = event.time; step.finished_at = null; }
      if (["succeeded", "failed", "rejected", "cancelled"].includes(status)) {
        step.finished_at = event.time;
        step.output = undefined;  // fetched on click
      }
      if (data.attempt) step.attempt = data.attempt;
      if (data.code) step.error_code = data.code;
      if (data.message) step.error_message = data.message;
    }
    if (event.type === "step.retrying") {
      step.note = `retry ${data.attempt || ""} (${data.code || data.reason || "transient"})`;
      if (data.reason === "worker_lost") step.status = "queued";
    }
    if (event.type === "step.progress") step.note = String(data.message || data.fraction || "");
    if (event.type === "step.output") step.streamed = (step.streamed || "") + (data.text || "");
    if (event.type === "step.context") step.memory = contextSummary(data);
    paint(key);
  }

  function connect(cursor) {
    source = new EventSource(`${config.streamUrl}?lastEventId=${cursor}`);
    const handle = (message) => apply(JSON.parse(message.data));
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
    source.addEventListener("stream-open", () => setConnection("live", "live"));
    source.addEventListener("stream-error", (message) => {
      setConnection("error", `stream error: ${JSON.parse(message.data).text}`);
      source.close();
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setConnection("error", "disconnected (reload to retry)");
      else setConnection("connecting", "reconnecting…");
    };
  }

  function setConnection(state, text) {
    const c = $("#connection");
    c.dataset.state = state;
    c.textContent = text;
  }

  async function start() {
    legend();
    const snapshot = await getJSON(config.snapshotUrl);
    plan = snapshot.plan;
    for (const s of plan.steps) steps.set(s.key, {...s, output: undefined});
    for (const a of snapshot.approvals) approvals.set(a.approval_id, a);
    draw();
    showApprovals();
    planStatus(plan.status);
    if (["succeeded", "failed", "cancelled"].includes(plan.status)) showResult();
    connect(snapshot.last_event_id);
    setInterval(() => { for (const [key, s] of steps) if (s.status === "running") paint(key); planStatus($("#plan-status").dataset.status); }, 500);
    window.planLive = {steps, lastApplied, source: () => source};  // for tests and the curious
  }

  start().catch((error) => setConnection("error", String(error)));
})();
