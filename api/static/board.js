// The GPU board: draws GET /api/models/board, refreshes it on every event of the
// /api/models/events stream, and acts through the API's REST routes. No dependencies.
// The request rate and queue per task (GET /api/models/inference) change with traffic,
// not with events: they are read on every refresh and every INFERENCE_POLL_MS.
"use strict";

const API = "/api/models";
const MAX_EVENTS = 50;
const INFERENCE_POLL_MS = 2000;
let traffic = null; // GET /api/models/inference's tasks; null until read (or when it fails)
let token = localStorage.getItem("fovea-token") || "";
let refreshing = null;
let again = false;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.setAttribute("style", v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

// A size as everything else prints it (fovea.domain.units): GB = 1024^3 bytes, two decimals
// with one trailing zero dropped (24.0, 19.2, 0.06); a tiny size keeps its digits (0.000072).
const gb = (v) => {
  if (v === null || v === undefined) return "–";
  const n = Number(v);
  if (n !== 0 && Math.abs(n) < 0.005) return `${n} GB`;
  const text = n.toFixed(2);
  return `${text.endsWith("0") ? text.slice(0, -1) : text} GB`;
};

async function call(method, path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const one of [].concat(v)) query.append(k, one);
  }
  const url = path + (query.toString() ? `?${query}` : "");
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const resp = await fetch(url, { method, headers });
  if (resp.status === 401) {
    token = window.prompt("API token (FOVEA_API_API_TOKEN)") || "";
    localStorage.setItem("fovea-token", token);
    if (token) return call(method, path, params);
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `${resp.status} ${resp.statusText}`);
  return body;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

// --- GPUs ---------------------------------------------------------------------------------

function drawGpus(board) {
  const box = document.getElementById("gpus");
  box.replaceChildren();
  if (!board.gpus.length) {
    box.append(el("p", { class: "muted" }, "No GPUs in the cluster (no node has GPU labels)."));
    return;
  }
  for (const g of board.gpus) {
    const segs = g.models.map((m) => {
      const size = Math.max(m.declared_gb || 0, m.measured_gb || 0);
      const width = Math.min(100, (100 * size) / g.memory_gb);
      const fill = m.measured_gb ? Math.min(100, (100 * m.measured_gb) / size) : 0;
      const loaded = m.measured_gb !== null && m.measured_gb !== undefined;
      const cls = ["seg", m.own ? "" : "other", loaded ? "" : "planned"].join(" ").trim();
      const title =
        `${m.key}: ${m.model} (${m.phase})\ndeclared ${gb(m.declared_gb)}` +
        `\nmeasured ${gb(m.measured_gb)}${m.planned ? "\nplanned on this GPU" : ""}`;
      return el(
        "div",
        { class: cls, style: `width:${width}%`, title, "data-task": m.task, "data-model": m.model },
        el("div", { class: "fill", style: `width:${fill}%` }),
        el("span", { class: "label" }, `${m.task}: ${m.model}`),
      );
    });
    const line = (100 * g.threshold_gb) / g.memory_gb;
    const used = g.models.reduce((s, m) => s + Math.max(m.declared_gb || 0, m.measured_gb || 0), 0);
    box.append(
      el(
        "div",
        { class: "gpu", "data-gpu": `${g.node}/${g.index}` },
        el(
          "div",
          { class: "gpu-title" },
          el("span", { class: "name" }, `${g.node} GPU ${g.index}`),
          el("span", { class: "muted" }, g.product || ""),
          el("span", { class: g.simulated ? "tag sim" : "tag" }, g.simulated ? "simulated" : "real"),
          el(
            "span",
            { class: "muted" },
            `${gb(used)} of ${gb(g.memory_gb)} · threshold ${gb(g.threshold_gb)}`,
          ),
        ),
        el(
          "div",
          { class: "bar" },
          segs,
          el("div", {
            class: "threshold",
            style: `left:calc(${line}% - 1px)`,
            title: `threshold ${gb(g.threshold_gb)}`,
          }),
        ),
      ),
    );
  }
}

// --- tasks --------------------------------------------------------------------------------

function taskRow(t) {
  const choice = el(
    "select",
    { class: "model-choice", "aria-label": `model for ${t.task}` },
    t.options.map((o) =>
      el("option", { value: o.name }, `${o.name} (${o.external ? "external" : gb(o.declared_gb)})`),
    ),
  );
  choice.addEventListener("change", () => (choice.dataset.dirty = "1"));
  const act = (label, cls, run) =>
    el("button", { class: cls, onclick: () => run().catch((e) => showError(e.message)) }, label);
  return el(
    "tr",
    { "data-task": t.task },
    el("td", { class: "task" }, t.task),
    el("td", {}, choice),
    el(
      "td",
      { class: "actions" },
      act("select", "do-select", async () => {
        showError("");
        delete choice.dataset.dirty;
        await call("POST", `${API}/select`, { task_type: t.task, model_name: choice.value });
      }),
      " ",
      act("what if", "do-whatif", () => whatIf(t.task, choice.value)),
      " ",
      act("load", "do-load", () => call("POST", `${API}/load/${encodeURIComponent(t.task)}`)),
      " ",
      act("unload", "do-unload", () => call("POST", `${API}/unload/${encodeURIComponent(t.task)}`)),
    ),
    el("td", { class: "selected" }),
    el("td", { class: "phase" }),
    el("td", { class: "device" }),
    el("td", { class: "memory" }),
    el("td", { class: "progress" }),
    el("td", { class: "traffic" }, "–"),
    el("td", { class: "endpoint" }, "–"),
  );
}

function drawTasks(board) {
  const body = document.querySelector("#tasks tbody");
  const rows = new Map([...body.children].map((r) => [r.dataset.task, r]));
  for (const t of board.tasks) {
    let row = rows.get(t.task);
    if (!row) {
      row = taskRow(t);
      body.append(row);
    }
    rows.delete(t.task);
    const choice = row.querySelector(".model-choice");
    if (!choice.dataset.dirty && t.selected) choice.value = t.selected;
    row.querySelector(".selected").textContent = t.selected || "–";
    const phase = row.querySelector(".phase");
    phase.className = `phase phase-${t.phase || "none"}`;
    phase.replaceChildren(t.phase || "no selection");
    if (t.degraded) {
      phase.append(el("span", { class: "degraded", title: t.degraded }, "degraded"));
    }
    phase.title = t.message || "";
    const where = t.node ? `${t.node}${t.gpu_index !== null && t.gpu_index !== undefined ? ` GPU ${t.gpu_index}` : ""}` : "";
    row.querySelector(".device").textContent = [t.device, where].filter(Boolean).join(" · ") || "–";
    row.querySelector(".memory").textContent = t.selected
      ? `${gb(t.declared_gb)} decl. / ${gb(t.measured_gb)} meas.`
      : "–";
    const cell = row.querySelector(".progress");
    cell.replaceChildren();
    if (t.progress) {
      if (t.progress.percent !== null) {
        cell.append(el("progress", { max: "100", value: String(t.progress.percent) }), " ");
      }
      const reason = t.progress.reason || "";
      cell.title = reason;
      cell.append(t.progress.state, reason ? ` · ${reason.length > 48 ? `${reason.slice(0, 47)}…` : reason}` : "");
    }
    const endpoint = row.querySelector(".endpoint");
    endpoint.replaceChildren();
    if (t.endpoint) {
      const serving = t.endpoint.serving_model;
      endpoint.title = `Service ${t.endpoint.service}`;
      endpoint.append(
        el("code", {}, `POST ${t.endpoint.route}`),
        serving && serving !== t.selected ? ` · ${serving} answers until ${t.selected} is Ready` : "",
      );
    } else {
      endpoint.title = "";
      endpoint.append("–");
    }
  }
  for (const stale of rows.values()) stale.remove();
  drawTraffic();
}

const rate = (v) => (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2));

// Beside each task: its answers per second (last minute), the requests held now, and
// the 5xx/429 answers of the last minute.
function drawTraffic() {
  for (const row of document.querySelectorAll("#tasks tbody tr")) {
    const cell = row.querySelector(".traffic");
    if (traffic === null) {
      cell.replaceChildren("–");
      continue;
    }
    // A task with no request since the API started has no figures (or only its endpoints).
    const t = {
      queued: 0,
      requests_per_second: 0,
      errors_last_minute: 0,
      answers_last_minute: 0,
      ...traffic[row.dataset.task],
    };
    cell.title = `${t.answers_last_minute} answered in the last minute, ${t.errors_last_minute} of them 5xx or 429`;
    const errors = t.errors_last_minute;
    cell.replaceChildren(
      el("span", { class: "rate" }, `${rate(t.requests_per_second)} req/s`),
      " · ",
      el("span", { class: t.queued ? "queue held" : "queue" }, `queue ${t.queued}`),
      ...(errors ? [el("span", { class: "errors" }, ` · ${errors} error${errors === 1 ? "" : "s"}`)] : []),
    );
  }
}

async function readTraffic() {
  try {
    traffic = (await call("GET", `${API}/inference`)).tasks;
  } catch (e) {
    traffic = null; // shown as "–", not as zero
  }
  drawTraffic();
}

async function whatIf(task, model) {
  const body = await call("POST", `${API}/validate`, { task_type: task, model_name: model });
  const box = document.getElementById("whatif");
  const items = (list, text) => (list.length ? el("ul", {}, list.map((x) => el("li", {}, text(x)))) : null);
  const parts = [
    el("strong", {}, `What if ${task} used ${model}? `),
    el("span", { class: body.valid ? "ok" : "bad" }, body.valid ? "fits" : "does not fit"),
    el("span", { class: "muted" }, ` · ${gb(body.total_required_gb)} of ${gb(body.max_allowed_gb)} allowed`),
    items(body.plan.gpus, (g) =>
      `${g.node} GPU ${g.index}: ${g.models.map((m) => m.model).join(", ") || "nothing"} (${gb(g.used_gb)} of ${gb(g.capacity_gb)})`,
    ),
    items(body.plan.evicted, (e) => `evicted: ${e.key} (${e.model}) from ${e.from} for ${e.for.map((f) => f.key).join(", ") || "—"}`),
    items(body.plan.cpu, (c) => `on the CPU: ${c.key} (${c.model}): ${c.reason}`),
    items(body.warnings, (w) => w),
    el("p", { class: "muted" }, "Nothing was changed."),
  ];
  box.replaceChildren(...parts.filter(Boolean));
  box.hidden = false;
}

// --- events and refresh --------------------------------------------------------------------

function addEvent(text, kind) {
  const list = document.getElementById("events");
  const now = new Date();
  list.prepend(el("li", { class: `ev-${kind}` }, el("time", {}, now.toLocaleTimeString()), text));
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

async function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      again = false;
      try {
        const board = await call("GET", `${API}/board`);
        document.getElementById("scope").textContent =
          `namespace ${board.namespace}${board.cluster_wide ? " · cluster-wide view" : ""}`;
        drawGpus(board);
        drawTasks(board);
        await readTraffic();
        document.body.dataset.version = String(Number(document.body.dataset.version || 0) + 1);
      } catch (e) {
        showError(e.message);
      }
    } while (again);
  })();
  try {
    await refreshing;
  } finally {
    refreshing = null;
  }
}

function connect() {
  const conn = document.getElementById("conn");
  const stream = new EventSource(`${API}/events`);
  stream.addEventListener("open", () => {
    conn.textContent = "live";
    conn.className = "pill on";
  });
  stream.addEventListener("error", () => {
    conn.textContent = "reconnecting…";
    conn.className = "pill off";
  });
  stream.addEventListener("selection", (e) => {
    const d = JSON.parse(e.data);
    const where = d.node ? ` on ${d.node}` : "";
    addEvent(`${d.task}: ${d.model || "no model"} · ${d.phase}${where}${d.message ? ` · ${d.message}` : ""}`, "selection");
    refresh();
  });
  stream.addEventListener("status", () => refresh());
  stream.addEventListener("sync", (e) => {
    const d = JSON.parse(e.data);
    if (!d.synced) addEvent(`lost the cluster: ${Object.values(d.unsynced).join("; ")}`, "sync");
    refresh();
  });
}

refresh();
connect();
setInterval(readTraffic, INFERENCE_POLL_MS);
