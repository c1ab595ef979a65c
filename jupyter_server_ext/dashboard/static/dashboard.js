// rsql admin dashboard: renders a snapshot (first the one in the page, then each one from the
// Server-Sent Events of admin/events). Every value from users or upstreams goes in through
// textContent or an attribute set by the DOM API, never as HTML.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="rsql-csrf"]').content;
  const state = { version: 0, updates: 0, charts: {} };
  window.rsqlDashboard = state; // read by the tests and handy in the console

  const $ = (id) => document.getElementById(id);
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
    return tr;
  }
  function cell(child) { const td = document.createElement("td"); td.appendChild(child); return td; }
  function fill(tableId, rows, empty, cols) {
    const body = $(tableId).tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) { const td = el("td", empty, "muted"); td.colSpan = cols; body.appendChild(row([td])); }
  }
  const usd = (v) => "$" + Number(v || 0).toFixed(v >= 100 ? 0 : 4);
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%");
  const ms = (v) => (v === null || v === undefined ? "–" : Math.round(v) + " ms");
  const time = (ts) => new Date(ts * 1000).toISOString().slice(11, 19);

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-XSRFToken": csrf },
      body: JSON.stringify(body),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((data.error && data.error.message) || r.status + " " + r.statusText);
    return data;
  }

  function userLink(name) {
    const a = el("a", name);
    a.href = "users/" + encodeURIComponent(name);
    return a;
  }
  function resetButton(name) {
    const b = el("button", "Reset limits");
    b.type = "button";
    b.className = "reset";
    b.dataset.user = name;
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        const r = await post("reset-limits", { user: name });
        b.textContent = "reset (" + r.entries + ")";
      } catch (err) {
        b.textContent = "failed: " + err.message;
      } finally {
        setTimeout(() => { b.disabled = false; b.textContent = "Reset limits"; }, 4000);
      }
    });
    return b;
  }

  function alerts(s) {
    const out = [];
    const st = s.status || {};
    if (st.error) out.push(["Cannot read the proxy's status (" + st.error + ").", ""]);
    if (st.state && st.state.reachable === false)
      out.push(["The state backend (" + st.state.backend + ") is unreachable: limits and budgets cannot be checked, requests are refused.", ""]);
    if (st.database && st.database.reachable === false)
      out.push(["The database (" + st.database.backend + ") is unreachable: the usage log is not written and the figures below are stale.", ""]);
    else if (s.database_error) out.push(["The usage log cannot be read: " + s.database_error + ".", ""]);
    if (s.budget_error) out.push(["Budget: " + s.budget_error + ".", ""]);
    if (st.upstreams && st.upstreams.healthy === 0) out.push(["No upstream key is healthy: requests fail until one recovers.", ""]);
    if (!s.usage_log) out.push(["No usage log is configured: traffic, cost and users are not shown.", "warn"]);
    if (state.disconnected) out.push(["Live updates lost; reconnecting…", "warn"]);
    $("alerts").replaceChildren(...out.map(([text, cls]) => el("div", text, cls)));
  }

  function cards(s) {
    const st = s.status || {};
    const badge = $("overall");
    badge.textContent = st.status || "unknown";
    badge.className = "badge " + (st.status || "");
    const h = s.hour || {};
    $("c-requests").textContent = h.requests === undefined ? "–" : h.requests;
    $("c-success").textContent = "success " + pct(h.success_rate);
    const lat = h.latency_ms || {};
    $("c-latency").textContent = ms(lat.p50) + " / " + ms(lat.p95);
    $("c-cache").textContent = pct(h.cache_hit_rate);
    $("c-cache-sub").textContent = (h.cache_hits || 0) + " hits, last hour";
    const pc = h.prompt_cache || {};
    $("c-prompt").textContent = pct(pc.hit_ratio);
    $("c-prompt-sub").textContent = usd(pc.saved_usd) + " saved against the input price";
    const today = s.today || {};
    $("c-cost").textContent = usd(today.cost_usd);
    const b = s.budget;
    const bar = $("c-budget-bar");
    if (b) {
      const used = b.daily_usd ? b.spent_usd / b.daily_usd : 1;
      $("c-budget").textContent = usd(b.spent_usd) + " of the global budget " + usd(b.daily_usd) + " (" + pct(used) + ")";
      bar.style.width = Math.min(100, 100 * used).toFixed(1) + "%";
      bar.className = used >= 0.9 ? "over" : "";
    } else {
      $("c-budget").textContent = (today.requests || 0) + " requests; no global budget";
      bar.style.width = "0";
    }
    const counts = st.upstreams || {};
    const total = Object.values(counts).reduce((a, v) => a + v, 0);
    $("c-keys").textContent = (counts.healthy || 0) + " / " + total + " healthy";
    const db = st.database || {};
    $("c-backends").textContent = "state: " + ((st.state || {}).backend || "?") + (st.state && st.state.reachable === false ? " (down)" : "")
      + " · db: " + (db.backend || "none") + (db.reachable === false ? " (down)" : "");
  }

  function upstreams(s) {
    const rows = (s.upstreams || []).map((u) => {
      const st = el("td");
      st.appendChild(el("span", u.state, "state " + u.state));
      if (u.cooldown_until) st.appendChild(el("div", "until " + u.cooldown_until.slice(11, 19) + " UTC", "small"));
      if (u.disabled_reason) st.appendChild(el("div", u.disabled_reason, "small"));
      const br = u.breaker || {};
      const brText = br.state + (br.failures ? " (" + br.failures + " failures)" : "") + (br.open_until ? " until " + br.open_until.slice(11, 19) : "");
      const head = el("td");
      const list = el("ul", null, "plain");
      for (const h of u.headroom || []) list.appendChild(el("li", h.model + " · " + h.limit + ": " + (h.left === null ? h.used + " used" : h.left + " left")));
      for (const [model, rem] of Object.entries(u.provider_remaining || {}))
        list.appendChild(el("li", model + " · provider says: " + (rem.requests ?? "?") + " requests, " + (rem.tokens ?? "?") + " tokens left", "small"));
      if (!list.children.length) list.appendChild(el("li", "no use yet", "small"));
      head.appendChild(list);
      const errs = el("td");
      const elist = el("ul", null, "plain");
      for (const e of (u.recent_errors || []).slice(-3).reverse()) elist.appendChild(el("li", e.at.slice(11, 19) + " " + e.error, "small"));
      errs.appendChild(elist);
      const alias = el("td");
      alias.appendChild(el("strong", u.alias));
      alias.appendChild(el("div", u.provider, "small"));
      return row([alias, u.account, st, brText, u.in_flight, head, errs]);
    });
    fill("upstreams", rows, "No upstream keys configured.", 7);
  }

  function users(s) {
    fill("top-requests", (s.top_requests || []).map((u) =>
      row([cell(userLink(u.user)), u.requests, u.errors, usd(u.cost_usd), cell(resetButton(u.user))])), "No requests today.", 5);
    fill("top-cost", (s.top_cost || []).map((u) =>
      row([cell(userLink(u.user)), usd(u.cost_usd), u.requests, u.tokens, ...cached(u),
        cell(resetButton(u.user))])), "No requests today.", 7);
    fill("models", ((s.hour || {}).by_model || []).map((m) =>
      row([m.model || "", m.requests, m.errors, m.tokens, usd(m.cost_usd), ...cached(m)])),
      "No requests in the last hour.", 7);
    fill("errors", (s.errors || []).map((e) => {
      const tr = row([time(e.ts), cell(userLink(e.user)), e.model || "", e.upstream || "", e.status, e.error || ""]);
      tr.className = "bad";
      return tr;
    }), "No failed requests.", 6);
  }

  function endButton(name) {
    const b = el("button", "End now");
    b.type = "button";
    b.dataset.window = name;
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await post("windows/" + encodeURIComponent(name) + "/end", {});
        b.textContent = "ended";
      } catch (err) {
        b.textContent = "failed: " + err.message;
      }
    });
    return b;
  }
  function windows(s) {
    $("windows-tz").textContent = "local times in " + (s.timezone || "UTC");
    if (s.windows === null || s.windows === undefined) {
      fill("windows", [], "Cannot read the windows (state backend).", 8);
      return;
    }
    fill("windows", s.windows.map((w) => {
      const who = (w.groups || []).map((g) => (g === "*" ? "everyone" : g)).concat((w.users || []).map((u) => "user " + u));
      const wk = w.weekly;
      const when = wk ? "weekly " + wk.days.join(",") + " " + wk.start + "–" + wk.end + " " + wk.timezone
        : (w.starts_at || "") + " – " + (w.ends_at || "");
      const tr = row([w.name, w.mode, who.join(", "), w.active ? "yes" : "no", when, w.ends_at_local || "",
        w.message || "", w.active ? cell(endButton(w.name)) : ""]);
      if (w.active) tr.className = "active";
      return tr;
    }), "No windows.", 8);
  }
  // a row's prompt cache: the share of its prompts read from providers' caches, the dollars saved
  function cached(r) {
    const pc = r.prompt_cache || {};
    return [pct(pc.hit_ratio), usd(pc.saved_usd)];
  }
  function notebooks(s) {
    fill("notebooks", (s.notebooks || []).map((n) =>
      row([n.notebook, cell(userLink(n.user)), n.requests, (n.prompt_tokens || 0) + (n.completion_tokens || 0),
        usd(n.cost_usd), ...cached(n), n.cells])), "No requests from notebooks this week.", 8);
  }

  function chart(id, series, data) {
    const box = $(id);
    const opts = {
      width: Math.max(240, box.clientWidth), height: 220, series: [{}, ...series],
      scales: { x: { time: true } }, axes: [{}, { size: 50 }], legend: { live: false },
    };
    return new uPlot(opts, data, box);
  }
  function charts(s) {
    const pts = s.series || [];
    const t = pts.map((p) => p.t);
    const reqData = [t, pts.map((p) => p.answered), pts.map((p) => p.refused), pts.map((p) => p.failed)];
    const latData = [t, pts.map((p) => p.p50_ms), pts.map((p) => p.p95_ms), pts.map((p) => p.overhead_p50_ms)];
    if (!state.charts.requests) {
      state.charts.requests = chart("chart-requests", [
        { label: "answered", stroke: "#1a7f37", width: 2 },
        { label: "refused by a limit", stroke: "#9a6700", width: 2 },
        { label: "failed", stroke: "#c62828", width: 2 },
      ], reqData);
      state.charts.latency = chart("chart-latency", [
        // points too: a single busy minute in a quiet hour is a point, not a line
        { label: "p50", stroke: "#2f6fde", width: 2, spanGaps: true, points: { show: true, size: 5 } },
        { label: "p95", stroke: "#8e44ad", width: 2, spanGaps: true, points: { show: true, size: 5 } },
        { label: "overhead p50", stroke: "#5f6b7a", width: 1, spanGaps: true, points: { show: true, size: 4 } },
      ], latData);
    } else {
      state.charts.requests.setData(reqData);
      state.charts.latency.setData(latData);
    }
  }

  function render(s) {
    state.version = s.version;
    state.updates += 1;
    state.last = s;
    alerts(s);
    cards(s);
    upstreams(s);
    users(s);
    windows(s);
    notebooks(s);
    charts(s);
    $("live").textContent = "live · updated " + s.at.slice(11, 19) + " UTC";
  }

  $("health-check").addEventListener("click", async (ev) => {
    const b = ev.currentTarget;
    b.disabled = true;
    $("health-result").textContent = "checking…";
    try {
      const r = await post("upstreams/health-check", {});
      $("health-result").textContent = Object.entries(r.upstreams).map(([k, v]) => k + ": " + v).join(", ");
    } catch (err) {
      $("health-result").textContent = "failed: " + err.message;
    } finally {
      b.disabled = false;
    }
  });

  // the instruction field is a tutor window's only
  $("window-form").elements.mode.addEventListener("change", (ev) => {
    $("window-form").elements.instruction.hidden = ev.currentTarget.value !== "tutor";
  });
  $("window-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = ev.currentTarget.elements;
    const out = $("window-result");
    out.textContent = "starting…";
    try {
      const body = {
        name: f.name.value.trim(), mode: f.mode.value, minutes: Number(f.minutes.value),
        message: f.message.value, groups: f.groups.value.split(",").map((g) => g.trim()).filter(Boolean),
      };
      // a tutor window's own instruction; none (empty) is the proxy's default one
      if (f.mode.value === "tutor" && f.instruction.value.trim()) body.instruction = f.instruction.value;
      const r = await post("windows", body);
      out.textContent = "started, until " + r.window.ends_at_local;
    } catch (err) {
      out.textContent = "failed: " + err.message;
    }
  });

  window.addEventListener("resize", () => {
    for (const c of Object.values(state.charts)) c.setSize({ width: Math.max(240, c.root.parentNode.clientWidth), height: 220 });
  });

  render(JSON.parse($("initial").textContent));
  const source = new EventSource("events");
  source.addEventListener("snapshot", (ev) => {
    state.disconnected = false;
    render(JSON.parse(ev.data));
  });
  source.onerror = () => {
    state.disconnected = true;
    $("live").textContent = "reconnecting…";
    if (state.last) alerts(state.last);
  };
})();
