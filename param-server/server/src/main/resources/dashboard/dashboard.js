// Strata prefetch tuning dashboard: polls /v1/dashboard/series every second (only what is new since the last
// answer), keeps 15 minutes, redraws every plot with uPlot. Knob changes are drawn as vertical markers.
"use strict";
(function () {
  const WINDOW = 900;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];
  const state = { service: { t: [], fields: {} }, nodes: new Map(), heat: new Map(), versions: [], events: [],
    since: 0, thresholds: {} };
  const perf = { updates: 0, draws: 0, lastDrawMs: 0, maxDrawMs: 0, totalDrawMs: 0, fetchMs: 0, maxFetchMs: 0,
    behind: 0, lastUpdateAt: 0, maxIntervalMs: 0, errors: 0 };
  window.strataPerf = perf;
  window.strataState = state;
  perf.markersDrawn = 0;
  window.strataPlots = {};
  const plots = {};

  /** Adds samples to a series (by time; a later copy of a second replaces the earlier), then trims to the window. */
  function append(dst, src) {
    const keys = Object.keys(src.fields);
    for (const k of keys) if (!dst.fields[k]) dst.fields[k] = dst.t.map(() => null);
    const last = dst.t.length ? dst.t[dst.t.length - 1] : -Infinity;
    if (src.t.length && src.t[0] > last) {
      // the usual case: only newer seconds
      for (const x of src.t) dst.t.push(x);
      for (const k of Object.keys(dst.fields)) {
        const v = src.fields[k];
        for (let i = 0; i < src.t.length; i++) dst.fields[k].push(v ? v[i] : null);
      }
    } else if (src.t.length) {
      // samples filed late (a backlog, the last second again): merge by time
      const at = new Map();
      dst.t.forEach((x, i) => at.set(x, { src: false, i: i }));
      src.t.forEach((x, i) => at.set(x, { src: true, i: i }));
      const t = Array.from(at.keys()).sort((a, b) => a - b);
      const fields = {};
      for (const k of Object.keys(dst.fields)) {
        fields[k] = t.map(x => { const e = at.get(x); const v = e.src ? src.fields[k] : dst.fields[k];
          return v ? v[e.i] : null; });
      }
      dst.t = t;
      dst.fields = fields;
    }
    const cut = dst.t.length ? dst.t[dst.t.length - 1] - WINDOW : 0;
    let drop = 0;
    while (drop < dst.t.length && dst.t[drop] <= cut) drop++;
    if (drop > 0) {
      dst.t.splice(0, drop);
      for (const k of Object.keys(dst.fields)) dst.fields[k].splice(0, drop);
    }
  }

  /** The same for a heat map's rows. */
  function appendHeat(dst, src) {
    const at = new Map();
    dst.t.forEach((x, i) => at.set(x, dst.counts[i]));
    src.t.forEach((x, i) => at.set(x, src.counts[i]));
    const t = Array.from(at.keys()).sort((a, b) => a - b);
    const cut = t.length ? t[t.length - 1] - WINDOW : 0;
    dst.t = t.filter(x => x > cut);
    dst.counts = dst.t.map(x => at.get(x));
  }

  function markers(u) {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#aa00aa";
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 1;
    ctx.fillStyle = "#aa00aa";
    ctx.font = "10px sans-serif";
    for (const e of state.events) {
      const x = u.valToPos(e.atMillis / 1000, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.fillText(e.knob + "=" + e.to, x + 2, u.bbox.top + 10);
      perf.markersDrawn++;
    }
    ctx.restore();
  }

  function plot(id, names, opts) {
    opts = opts || {};
    const series = [{}];
    names.forEach((n, i) => series.push({ label: n, stroke: opts.colors ? opts.colors[i] : COLORS[i % COLORS.length],
      width: 1.5, dash: opts.dashed && opts.dashed[i] ? [6, 4] : undefined, spanGaps: false }));
    const u = new uPlot({ width: opts.width || 420, height: opts.height || 180, series: series,
      scales: { x: { time: true } }, axes: [{}, { size: 60 }], legend: { show: names.length <= 8 },
      hooks: { draw: [markers] } }, [[]].concat(names.map(() => [])), document.getElementById(id));
    plots[id] = { u: u, names: names.join("\u0001") };
    return u;
  }

  /** (Re)creates a plot when its series changed, then sets its data and counts its points. */
  function show(id, names, t, ys, opts) {
    let p = plots[id];
    if (!p || p.names !== names.join("\u0001")) {
      if (p) p.u.destroy();
      plot(id, names, opts);
      p = plots[id];
    }
    p.u.setData([t].concat(ys));
    let points = 0;
    ys.forEach((y, i) => { if (!(opts && opts.dashed && opts.dashed[i])) for (const v of y) if (v !== null) points++; });
    window.strataPlots[id] = points;
  }

  function field(s, name) { return s.fields[name] || s.t.map(() => null); }

  function nodeKeys() { return Array.from(state.nodes.keys()).sort(); }

  /** Per-second values of one node field over the service's time axis, for every node. */
  function perNode(name, t) {
    const keys = nodeKeys();
    return { names: keys, ys: keys.map(k => {
      const s = state.nodes.get(k);
      const at = new Map();
      const f = field(s, name);
      s.t.forEach((x, i) => at.set(x, f[i]));
      return t.map(x => at.has(x) ? at.get(x) : null);
    }) };
  }

  function worst(ys, t) {
    return t.map((_, i) => {
      let w = null;
      for (const y of ys) if (y[i] !== null && y[i] !== undefined && (w === null || y[i] > w)) w = y[i];
      return w;
    });
  }

  function median(ys, t) {
    return t.map((_, i) => {
      const v = ys.map(y => y[i]).filter(x => x !== null && x !== undefined).sort((a, b) => a - b);
      return v.length ? v[Math.floor((v.length - 1) / 2)] : null;
    });
  }

  function timeAxis() {
    // the union of the service's and the nodes' seconds
    const all = new Set(state.service.t);
    for (const s of state.nodes.values()) for (const x of s.t) all.add(x);
    const t = Array.from(all).sort((a, b) => a - b);
    const cut = t.length ? t[t.length - 1] - WINDOW : 0;
    return t.filter(x => x > cut);
  }

  function draw() {
    const start = performance.now();
    const t = timeAxis();
    const svcAt = new Map();
    state.service.t.forEach((x, i) => svcAt.set(x, i));
    const svc = name => { const f = field(state.service, name); return t.map(x => svcAt.has(x) ? f[svcAt.get(x)] : null); };
    const th = state.thresholds;
    const line = v => t.map(() => v);

    const p99 = perNode("fetch_p99_ms", t);
    const p50 = perNode("fetch_p50_ms", t);
    show("p-load", ["P99 (worst node)", "threshold"], t, [worst(p99.ys, t), line(th.param_load_p99_ms)],
      { colors: ["#1f77b4", "#d62728"], dashed: [false, true] });
    const frag = perNode("fragmentation_pct", t);
    show("p-frag", ["fragmentation % (worst node)", "threshold"], t, [worst(frag.ys, t), line(th.fragmentation_pct)],
      { colors: ["#1f77b4", "#d62728"], dashed: [false, true] });
    show("p-thru", ["block requests/s", "threshold"], t, [svc("blocks_served_per_s"), line(th.service_requests_per_s)],
      { colors: ["#1f77b4", "#d62728"], dashed: [false, true] });

    show("p-hitrate", ["memory", "ssd", "object"], t, [svc("memory_hit_rate"), svc("ssd_hit_rate"), svc("object_hit_rate")]);
    show("p-occupancy", ["memory", "ssd", "object"], t, [svc("memory_used_bytes"), svc("ssd_used_bytes"), svc("object_used_bytes")]);
    show("p-latency", ["P50 (median node)", "P99 (worst node)"], t, [median(p50.ys, t), worst(p99.ys, t)]);

    for (const [id, name] of [["p-stall", "stall_ms_per_token"], ["p-tokens", "tokens_per_s"], ["p-budget", "budget_use"],
        ["p-accuracy", "accuracy"], ["p-coverage", "coverage"], ["p-timeliness", "timeliness"], ["p-lookahead", "lookahead"]]) {
      const n = perNode(name, t);
      show(id, n.names, t, n.ys);
    }

    // versions: tokens/s summed over the nodes of each version
    const versions = Array.from(new Set(nodeKeys().map(k => state.nodes.get(k).version))).sort();
    const tok = perNode("tokens_per_s", t);
    const vys = versions.map(v => t.map((_, i) => {
      let sum = null;
      tok.names.forEach((k, j) => { if (state.nodes.get(k).version === v && tok.ys[j][i] !== null) sum = (sum || 0) + tok.ys[j][i]; });
      return sum;
    }));
    show("p-versions", versions, t, vys);
    const tbody = document.querySelector("#versions tbody");
    const recent = vys.map(y => y.slice(-60).reduce((a, b) => a + (b || 0), 0));
    const total = recent.reduce((a, b) => a + b, 0);
    const rows = [];
    const listed = new Set();
    for (const v of state.versions) {
      listed.add(v.version);
      const i = versions.indexOf(v.version);
      rows.push("<tr><td>" + v.version + "</td><td>" + v.state + "</td><td>" + v.canary_weight + "</td><td>" +
        (i >= 0 && total > 0 ? (100 * recent[i] / total).toFixed(1) + "%" : "-") + "</td></tr>");
    }
    versions.forEach((v, i) => { if (!listed.has(v)) rows.push("<tr><td>" + v + "</td><td>reporting</td><td>-</td><td>" +
      (total > 0 ? (100 * recent[i] / total).toFixed(1) + "%" : "-") + "</td></tr>"); });
    tbody.innerHTML = rows.join("");

    drawHeat();
    const ms = performance.now() - start;
    perf.draws++;
    perf.lastDrawMs = ms;
    perf.totalDrawMs += ms;
    perf.maxDrawMs = Math.max(perf.maxDrawMs, ms);
  }

  function drawHeat() {
    const select = document.getElementById("heat-version");
    const names = Array.from(state.heat.keys()).sort();
    if (select.options.length !== names.length) {
      const keep = select.value;
      select.innerHTML = names.map(n => "<option>" + n + "</option>").join("");
      if (names.includes(keep)) select.value = keep;
    }
    const h = state.heat.get(select.value || names[0]);
    const canvas = document.getElementById("heat");
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    window.strataPlots["heat"] = 0;
    if (!h || h.t.length === 0) return;
    const units = h.counts[0].length;
    let max = 1;
    for (const row of h.counts) for (const c of row) if (c > max) max = c;
    const last = h.t[h.t.length - 1];
    const cw = canvas.width / WINDOW;
    const ch = canvas.height / units;
    let cells = 0;
    h.t.forEach((s, i) => {
      const x = (WINDOW - 1 - (last - s)) * cw;
      h.counts[i].forEach((c, u) => {
        if (c === 0) return;
        cells++;
        const v = Math.sqrt(c / max);
        ctx.fillStyle = "rgb(" + Math.round(255 * v) + "," + Math.round(80 * (1 - v)) + "," + Math.round(160 * (1 - v)) + ")";
        ctx.fillRect(x, u * ch, Math.max(1, cw), Math.max(1, ch));
      });
    });
    window.strataPlots["heat"] = cells;
    document.getElementById("heat-info").textContent = units + " units (" + h.layers + " layers" +
      (h.experts ? ", " + h.experts + " experts each" : "") + "), top row = layer 0; brightest = " + max + "/s";
  }

  async function update() {
    const t0 = performance.now();
    if (perf.lastUpdateAt) {
      const interval = t0 - perf.lastUpdateAt;
      perf.maxIntervalMs = Math.max(perf.maxIntervalMs, interval);
      if (interval > 1500) perf.behind++;
    }
    perf.lastUpdateAt = t0;
    try {
      const res = await fetch("/v1/dashboard/series?since=" + state.since);
      if (!res.ok) throw new Error("series: HTTP " + res.status);
      const d = await res.json();
      const fetched = performance.now() - t0;
      perf.fetchMs = fetched;
      perf.maxFetchMs = Math.max(perf.maxFetchMs, fetched);
      state.thresholds = d.thresholds;
      append(state.service, d.service);
      for (const n of d.nodes) {
        const k = n.node + " " + n.version;
        if (!state.nodes.has(k)) state.nodes.set(k, { version: n.version, t: [], fields: {} });
        append(state.nodes.get(k), n);
      }
      for (const h of d.heat) {
        if (!state.heat.has(h.version)) state.heat.set(h.version, { layers: h.layers, experts: h.experts, t: [], counts: [] });
        if (h.t.length) appendHeat(state.heat.get(h.version), h);
      }
      state.versions = d.versions;
      state.events = d.events;
      state.since = d.revision;
      showKnobs(d.settings);
      draw();
      perf.updates++;
      document.getElementById("status").textContent = "live: " + state.nodes.size + " node series, updated " +
        new Date(d.now_ms).toLocaleTimeString();
    } catch (e) {
      perf.errors++;
      document.getElementById("status").textContent = "update failed: " + e.message;
    }
    setTimeout(update, Math.max(0, 1000 - (performance.now() - t0)));
  }

  let knobsShown = false;
  function showKnobs(s) {
    if (knobsShown || !s) return;
    knobsShown = true;
    document.getElementById("k-lookahead").value = s.lookahead;
    document.getElementById("k-predictor").value = s.predictor;
    document.getElementById("k-budget").value = s.node_budget_bytes;
    document.getElementById("k-link").value = s.link_bytes_per_second;
    document.getElementById("k-memory").value = s.memory_budget_bytes;
    document.getElementById("k-ssd").value = s.ssd_budget_bytes;
    document.getElementById("k-eviction").value = s.eviction_policy;
  }

  function headers() {
    const token = document.getElementById("k-token").value;
    const h = { "Content-Type": "application/json" };
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }

  document.getElementById("k-apply").addEventListener("click", async () => {
    const out = document.getElementById("k-result");
    const body = {
      lookahead: Number(document.getElementById("k-lookahead").value),
      predictor: document.getElementById("k-predictor").value,
      node_budget_bytes: Number(document.getElementById("k-budget").value),
      link_bytes_per_second: Number(document.getElementById("k-link").value),
      memory_budget_bytes: Number(document.getElementById("k-memory").value),
      ssd_budget_bytes: Number(document.getElementById("k-ssd").value),
      eviction_policy: document.getElementById("k-eviction").value
    };
    const res = await fetch("/v1/dashboard/settings", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    const d = await res.json();
    if (res.ok) {
      out.className = "status ok";
      out.textContent = d.changed.length ? "applied: " + d.changed.map(e => e.knob + " " + e.from + " \u2192 " + e.to).join(", ") : "no change";
    } else {
      out.className = "status error";
      out.textContent = "refused (" + res.status + "): " + d.error;
    }
  });

  async function loadTraces() {
    const res = await fetch("/v1/dashboard/traces");
    const d = await res.json();
    const sel = document.getElementById("r-trace");
    const keep = sel.value;
    sel.innerHTML = d.traces.map(t => "<option>" + t.name + "</option>").join("");
    if (keep) sel.value = keep;
  }
  window.strataLoadTraces = loadTraces;

  document.getElementById("r-run").addEventListener("click", async () => {
    const out = document.getElementById("r-result");
    let settings;
    try {
      settings = JSON.parse(document.getElementById("r-settings").value);
    } catch (e) {
      out.className = "status error";
      out.textContent = "settings are not JSON: " + e.message;
      return;
    }
    const res = await fetch("/v1/dashboard/replay", { method: "POST", headers: headers(),
      body: JSON.stringify({ trace: document.getElementById("r-trace").value, settings: settings }) });
    const d = await res.json();
    const table = document.getElementById("r-table");
    if (!res.ok) {
      out.className = "status error";
      out.textContent = "refused (" + res.status + "): " + d.error;
      table.innerHTML = "";
      return;
    }
    out.className = "status ok";
    out.textContent = "trace " + d.trace + ": recorded run and " + d.replays.length + " replays";
    const runs = [["recorded", d.recorded]].concat(d.replays.map((r, i) => ["replay " + (i + 1), r]));
    const cols = ["lookahead", "prefetch", "budget_bytes", "link_bytes_per_second", "accesses", "hits", "misses",
      "hit_rate", "bytes_moved", "stall_ms", "stall_ms_per_token"];
    const fmt = v => v === null || v === undefined ? "-" : (typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v));
    table.innerHTML = "<tr><th>run</th>" + cols.map(c => "<th>" + c + "</th>").join("") + "</tr>" +
      runs.map(([n, r]) => "<tr class='run'><td>" + n + "</td>" + cols.map(c => "<td data-col='" + c + "'>" + fmt(r[c]) + "</td>").join("") + "</tr>").join("");
  });

  document.getElementById("heat-version").addEventListener("change", drawHeat);
  loadTraces();
  update();
})();
