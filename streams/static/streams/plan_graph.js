// The plan's DAG: a layered layout by dagre (vendor/dagre-*.min.js), edges routed so that none passes under
// a node, one port per edge on each side of a node (fan-in shows which step feeds which), and pan & zoom.
//
// Routing: dagre gives every edge a polyline through its dummy nodes, one per rank it crosses; a dummy
// sits in its rank at least `edgesep` away from that rank's nodes. Inside a rank's band (the x range its
// nodes occupy) an edge runs horizontally at its dummy's y, so it cannot cross a node there; between bands
// there are no nodes, so the diagonal joining two bands crosses nothing. Each edge ends with a short
// horizontal stub into its own port on the target's left side, where its arrowhead is.
(function () {
  "use strict";
  const SVG = "http://www.w3.org/2000/svg";
  const NODE_W = 176, NODE_H = 50, PORT_GAP = 9, STUB = 10;

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  // steps: [{key, depends_on}] -> {nodes: Map key -> {x, y, width, height} (top-left), edges: [{from, to,
  // points: [[x, y], ...]}], width, height}
  function layout(steps) {
    const keys = new Set(steps.map((s) => s.key));
    const inDegree = new Map(), outDegree = new Map();
    const pairs = [];
    for (const s of steps) {
      for (const d of new Set(s.depends_on || [])) {
        if (!keys.has(d)) continue;
        pairs.push([d, s.key]);
        inDegree.set(s.key, (inDegree.get(s.key) || 0) + 1);
        outDegree.set(d, (outDegree.get(d) || 0) + 1);
      }
    }
    const g = new dagre.graphlib.Graph();
    g.setGraph({rankdir: "LR", nodesep: 18, ranksep: 64, edgesep: 12, marginx: 24, marginy: 24});
    g.setDefaultEdgeLabel(() => ({}));
    for (const s of steps) {
      const ports = Math.max(inDegree.get(s.key) || 0, outDegree.get(s.key) || 0);
      g.setNode(s.key, {width: NODE_W, height: Math.max(NODE_H, ports * PORT_GAP + 12)});
    }
    for (const [a, b] of pairs) g.setEdge(a, b);
    dagre.layout(g);

    const nodes = new Map();
    const bands = [];  // x centres of the ranks that hold real nodes
    for (const key of g.nodes()) {
      const n = g.node(key);
      nodes.set(key, {x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height, cx: n.x, cy: n.y});
      if (!bands.some((x) => Math.abs(x - n.x) < 1)) bands.push(n.x);
    }
    const bandOf = (x) => bands.find((b) => Math.abs(x - b) <= NODE_W / 2 + 0.5);

    // the middle of each edge: through its rank bands horizontally
    const routes = pairs.map(([from, to]) => {
      const points = (g.edge(from, to).points || []).slice(1, -1);
      const middle = [];
      for (const p of points) {
        const band = bandOf(p.x);
        if (band === undefined) middle.push([p.x, p.y]);
        else middle.push([band - NODE_W / 2, p.y], [band + NODE_W / 2, p.y]);
      }
      return {from, to, middle};
    });
    // ports: spread each node's edges over its side, in the order of where they come from / go to
    const portY = (node, count, i) => node.y + node.height * (i + 1) / (count + 1);
    const outPort = new Map(), inPort = new Map();
    const byNode = (pick, yOf) => {
      const groups = new Map();
      for (const r of routes) {
        const key = pick(r);
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(r);
      }
      return [...groups.entries()].map(([key, list]) => [key, list.sort((a, b) => yOf(a) - yOf(b) || (a.from + a.to).localeCompare(b.from + b.to))]);
    };
    const firstY = (r) => (r.middle.length ? r.middle[0][1] : nodes.get(r.to).cy);
    const lastY = (r) => (r.middle.length ? r.middle[r.middle.length - 1][1] : nodes.get(r.from).cy);
    for (const [key, list] of byNode((r) => r.from, firstY)) list.forEach((r, i) => outPort.set(r, portY(nodes.get(key), list.length, i)));
    for (const [key, list] of byNode((r) => r.to, lastY)) list.forEach((r, i) => inPort.set(r, portY(nodes.get(key), list.length, i)));

    const edges = routes.map((r) => {
      const a = nodes.get(r.from), b = nodes.get(r.to);
      const start = [a.x + a.width, outPort.get(r)];
      const end = [b.x, inPort.get(r)];
      const points = [start, ...r.middle, [end[0] - STUB, end[1]], end];
      return {from: r.from, to: r.to, points};
    });
    const graph = g.graph();
    return {nodes, edges, width: graph.width || 200, height: graph.height || 80};
  }

  // Pan (drag) and zoom (wheel, buttons) of one <g> inside an <svg>.
  class PanZoom {
    constructor(svg, viewport) {
      this.svg = svg; this.viewport = viewport; this.k = 1; this.x = 0; this.y = 0; this.size = {width: 1, height: 1};
      this.moved = false;
      svg.addEventListener("wheel", (e) => {
        e.preventDefault();
        const r = svg.getBoundingClientRect();
        this.zoomAt(e.clientX - r.left, e.clientY - r.top, Math.exp(-e.deltaY * 0.0015));
      }, {passive: false});
      let drag = null;
      svg.addEventListener("pointerdown", (e) => {
        if (e.button !== 0) return;
        drag = {x: e.clientX, y: e.clientY, ox: this.x, oy: this.y};
        this.moved = false;
      });
      window.addEventListener("pointermove", (e) => {
        if (!drag) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (!this.moved && Math.hypot(dx, dy) < 4) return;
        this.moved = true;
        svg.classList.add("panning");
        this.x = drag.ox + dx; this.y = drag.oy + dy;
        this.apply();
      });
      window.addEventListener("pointerup", () => { drag = null; svg.classList.remove("panning"); });
    }
    apply() { this.viewport.setAttribute("transform", `translate(${this.x},${this.y}) scale(${this.k})`); }
    zoomAt(px, py, factor) {
      const k = Math.min(4, Math.max(0.08, this.k * factor));
      this.x = px - (px - this.x) * (k / this.k);
      this.y = py - (py - this.y) * (k / this.k);
      this.k = k;
      this.apply();
    }
    zoomCentre(factor) {
      const r = this.svg.getBoundingClientRect();
      this.zoomAt(r.width / 2, r.height / 2, factor);
    }
    // The whole plan in view; or, with `readable`, the whole width but never smaller than a size where the
    // steps' names can still be read (a tall plan then starts at its top, and the rest is a drag away).
    fit(size, readable) {
      if (size) this.size = size;
      const r = this.svg.getBoundingClientRect();
      const byHeight = (r.height - 8) / this.size.height;
      const k = Math.min(1.25, (r.width - 8) / this.size.width, readable ? Math.max(byHeight, 0.6) : byHeight);
      this.k = Math.max(0.08, k);
      this.x = (r.width - this.size.width * this.k) / 2;
      this.y = Math.max(4, (r.height - this.size.height * this.k) / 2);
      this.apply();
    }
  }

  window.PlanGraph = {layout, PanZoom, el, NODE_W};
})();
