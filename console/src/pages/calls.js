// /console/: the tenant's calls, newest first; filters, search, live status, paging, upload.
import { api, can, upload } from "../api.js";
import { announce, append, clear, clock, h, percent, problem, when } from "../dom.js";

const MODELS = ["", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize", "offline"];
const STATUSES = ["", "pending", "queued", "processing", "completed", "failed", "deleted"];
const POLL_MS = 2000;
// New calls are looked for every NEW_EVERY polls (10 s).
const NEW_EVERY = 5;
const PAGE = 50;

function callHref(id, t, q) {
  const base = `/console/calls/${encodeURIComponent(id)}`;
  if (t === undefined) return base;
  const query = new URLSearchParams({ t: Number(t).toFixed(2) });
  if (q) query.set("q", q);
  return `${base}?${query}`;
}

// Agent's share / customer's share of the talk time, from the conversation metrics.
function talkSplit(conversation) {
  if (!conversation || !conversation.speakers || !conversation.speakers.length) return "–";
  return conversation.speakers.map((s) => `${s.role ? s.role : s.speaker} ${percent(s.talk_ratio)}`).join(" · ");
}

function categoriesOf(meta) {
  return (meta.categories || []).map((c) => c.name);
}

function outcomeOf(meta) {
  const insights = meta.insights;
  return insights && insights.outcome ? insights.outcome : "";
}

function statusCell(job) {
  const meta = job.metadata;
  const state = meta.state || job.status;
  const cell = h("td", { class: "status" }, h("span", { class: `badge ${state}`, text: state }));
  const p = meta.progress;
  if ((state === "processing" || state === "queued") && p && typeof p.fraction === "number" && state !== "queued") {
    append(cell, " ", h("progress", { max: 100, value: Math.round(p.fraction * 100), "aria-label": `Progress of the call created ${when(meta.created_at)}` }));
  }
  if (state === "failed" && meta.error) append(cell, h("span", { class: "detail", text: ` ${meta.error.code || ""}` }));
  return cell;
}

function row(job) {
  const meta = job.metadata;
  return h("tr", { dataset: { id: meta.audio_file_id, state: meta.state || job.status } },
    h("td", {}, h("a", { href: callHref(meta.audio_file_id), "data-nav": "", class: "call-link", text: when(meta.created_at) })),
    statusCell(job),
    h("td", { class: "campaign", text: meta.campaign || "–" }),
    h("td", { class: "num", text: clock(meta.duration) }),
    h("td", { text: talkSplit(meta.conversation) }),
    h("td", {}, categoriesOf(meta).map((name) => h("span", { class: "tag", text: name }))),
    h("td", { text: outcomeOf(meta) || "–" }),
  );
}

// A search hit as a row until its status answer fills in the rest (fillRows).
function hitRow(hit) {
  return h("tr", { dataset: { id: hit.audio_file_id, state: "completed" } },
    h("td", {}, h("a", { href: callHref(hit.audio_file_id), "data-nav": "", class: "call-link", text: when(hit.created_at) })),
    h("td", { class: "status" }, h("span", { class: "badge completed", text: "completed" })),
    h("td", { class: "campaign", text: hit.campaign || "–" }),
    h("td", { class: "num", text: clock(hit.duration) }),
    h("td", { text: "…" }), h("td", { text: "…" }), h("td", { text: "…" }),
  );
}

// Each call's status answer, four at a time, replacing its row.
async function fillRows(ids, rows, stopped) {
  const queue = [...ids];
  const worker = async () => {
    while (queue.length && !stopped()) {
      const id = queue.shift();
      try {
        const job = await api("GET", `/api/media/status/${id}`);
        const old = rows.get(id);
        if (stopped() || !old) return;
        const fresh = row(job);
        old.replaceWith(fresh);
        rows.set(id, fresh);
      } catch { /* the hit's row stays */ }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

function filtersForm(params, onSubmit) {
  const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id, text: label }), input);
  const status = h("select", { id: "f-status", name: "status" }, STATUSES.map((s) => h("option", { value: s, text: s || "any", selected: params.get("status") === s })));
  const inputs = {
    status,
    campaign: h("input", { id: "f-campaign", name: "campaign", value: params.get("campaign") || "", maxlength: 256 }),
    since: h("input", { id: "f-since", name: "since", type: "date", value: params.get("since") || "" }),
    until: h("input", { id: "f-until", name: "until", type: "date", value: params.get("until") || "" }),
    category: h("input", { id: "f-category", name: "category", value: params.get("category") || "" }),
    outcome: h("input", { id: "f-outcome", name: "outcome", value: params.get("outcome") || "" }),
  };
  const form = h("form", { class: "filters", "aria-label": "Filters" },
    field("Status", inputs.status), field("Campaign", inputs.campaign), field("From", inputs.since),
    field("Until", inputs.until), field("Category", inputs.category), field("Outcome", inputs.outcome),
    h("button", { type: "submit", text: "Filter" }),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, input] of Object.entries(inputs)) if (input.value) next.set(k, input.value);
    onSubmit(next);
  });
  return form;
}

// A snippet with its highlight ranges ([from, to) in code points) as <mark>, all text nodes.
export function snippet(text, highlights) {
  const chars = Array.from(text);
  const out = h("span", { class: "snippet" });
  let at = 0;
  for (const [from, to] of [...(highlights || [])].sort((a, b) => a[0] - b[0])) {
    if (from < at) continue;
    append(out, chars.slice(at, from).join(""), h("mark", { text: chars.slice(from, to).join("") }));
    at = to;
  }
  append(out, chars.slice(at).join(""));
  return out;
}

function searchSection(params, navigate) {
  const q = h("input", { id: "q", name: "q", type: "search", value: params.get("q") || "", maxlength: 500, placeholder: "what was said, \"a phrase\", -not" });
  const role = h("select", { id: "q-role", name: "role" }, ["", "agent", "customer"].map((r) => h("option", { value: r, text: r || "anyone", selected: params.get("role") === r })));
  const form = h("form", { role: "search", class: "search" },
    h("label", { for: "q", text: "Search calls" }), q,
    h("label", { for: "q-role", text: "said by" }), role,
    h("button", { type: "submit", text: "Search" }),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    if (q.value.trim()) next.set("q", q.value.trim());
    if (role.value) next.set("role", role.value);
    navigate(`/console/${next.toString() ? `?${next}` : ""}`);
  });
  return form;
}

async function renderSearch(container, params) {
  const status = h("p", { role: "status", text: "Searching…" });
  append(container, h("h2", { text: "Search results" }), status);
  try {
    const page = await api("GET", "/api/media/search", { query: { q: params.get("q"), role: params.get("role"), limit: 20 } });
    status.textContent = page.hits.length ? `${page.hits.length} call(s)` : "Nothing found.";
    const list = h("ol", { class: "hits" });
    for (const hit of page.hits) {
      const matches = h("ul", { class: "matches" });
      for (const m of hit.matches) {
        append(matches, h("li", {},
          h("a", { href: callHref(hit.audio_file_id, m.start, params.get("q")), "data-nav": "", class: "hit", dataset: { start: m.start } },
            h("span", { class: "time", text: clock(m.start) }), " ",
            h("span", { class: "who", text: m.role ? m.role.charAt(0).toUpperCase() + m.role.slice(1) : (m.speaker || "") }), " ",
            snippet(m.text, m.highlights)),
        ));
      }
      append(list, h("li", {},
        h("a", { href: callHref(hit.audio_file_id), "data-nav": "", text: `${hit.campaign || "–"} · ${when(hit.created_at)}` }),
        h("span", { class: "detail", text: ` ${hit.match_count} match(es), ${clock(hit.duration)}` }),
        matches,
      ));
    }
    append(container, list);
  } catch (e) {
    status.textContent = problem(e);
  }
}

function uploadSection(onAccepted) {
  const list = h("ul", { class: "uploads", "aria-label": "Uploads" });
  const files = h("input", { id: "files", name: "file", type: "file", multiple: true, accept: "audio/*,video/*,.wav,.mp3,.m4a,.ogg,.opus,.flac,.webm" });
  const options = {
    campaign: h("input", { id: "u-campaign", name: "campaign", maxlength: 256 }),
    model: h("select", { id: "u-model", name: "model" }, MODELS.map((m) => h("option", { value: m, text: m || "the gateway's default" }))),
    multichannel: h("select", { id: "u-multichannel", name: "multichannel" }, ["auto", "true", "false"].map((m) => h("option", { value: m, text: m }))),
    channel_roles: h("input", { id: "u-roles", name: "channel_roles", placeholder: "agent,customer", pattern: "[a-zA-Z][a-zA-Z0-9_-]{0,31}( *, *[a-zA-Z][a-zA-Z0-9_-]{0,31}){0,7}" }),
    redact: h("input", { id: "u-redact", name: "redact", placeholder: "pci, pii, none, or classes" }),
    prompt: h("input", { id: "u-prompt", name: "prompt", maxlength: 1000 }),
  };
  const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id, text: label }), input);
  const zone = h("div", { class: "dropzone", id: "dropzone" },
    h("p", { text: "Drop audio files here, or choose them:" }),
    h("label", { for: "files", text: "Audio files" }), files,
  );
  const send = (chosen) => {
    const fields = { timestamps: "word" };
    for (const [k, input] of Object.entries(options)) if (input.value) fields[k] = input.value;
    for (const file of chosen) {
      const bar = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
      const state = h("span", { class: "state", text: "uploading" });
      const item = h("li", { class: "upload" }, h("span", { class: "name", text: file.name }), " ", bar, " ", state);
      append(list, item);
      upload(file, fields, (loaded, total) => { bar.value = total ? Math.round((loaded / total) * 100) : 0; })
        .then((accepted) => {
          bar.value = 100;
          clear(state).append(h("a", { href: callHref(accepted.audio_file_id), "data-nav": "", text: "queued" }));
          announce(`${file.name} uploaded`);
          onAccepted(accepted.audio_file_id);
        })
        .catch((e) => { state.textContent = `failed: ${problem(e)}`; item.classList.add("failed"); });
    }
  };
  files.addEventListener("change", () => { send([...files.files]); files.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    send([...(e.dataTransfer ? e.dataTransfer.files : [])]);
  });
  return h("section", { class: "upload-section", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title", text: "Upload" }),
    h("div", { class: "options" }, field("Campaign", options.campaign), field("Model", options.model),
      field("Multichannel", options.multichannel), field("Channel roles", options.channel_roles),
      field("Redact", options.redact), field("Prompt", options.prompt)),
    zone, list,
  );
}

export async function callsPage(main, { params, navigate }) {
  let stopped = false;
  let timer = null;
  const rows = new Map();
  const body = h("tbody");
  const message = h("p", { role: "status", class: "message" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const cursor = params.get("cursor");
  const filterKeys = ["status", "campaign", "since", "until", "category", "outcome"];
  const toQuery = (extra) => {
    const out = new URLSearchParams();
    for (const k of filterKeys) if (params.get(k)) out.set(k, params.get(k));
    for (const [k, v] of Object.entries(extra || {})) if (v) out.set(k, v);
    return out.toString() ? `?${out}` : "";
  };

  append(main, h("h1", { text: "Calls" }), searchSection(params, navigate));
  if (params.get("q")) {
    const results = h("section", { class: "results", "aria-label": "Search results" });
    append(main, results);
    renderSearch(results, params);
    return () => { stopped = true; };
  }
  append(main, filtersForm(params, (next) => navigate(`/console/${next.toString() ? `?${next}` : ""}`)));
  if (can("supervisor")) {
    append(main, uploadSection(async (id) => {
      if (cursor) return;
      try {
        const job = await api("GET", `/api/media/status/${id}`);
        const tr = row(job);
        rows.set(id, tr);
        body.prepend(tr);
        message.textContent = "";
        schedule();
      } catch { /* the next poll shows it */ }
    }));
  }
  const table = h("table", { class: "calls" },
    h("caption", { class: "visually-hidden", text: "Calls, newest first" }),
    h("thead", {}, h("tr", {}, ["Created", "Status", "Campaign", "Duration", "Talk split", "Categories", "Outcome"].map((c) => h("th", { scope: "col", text: c })))),
    body,
  );
  append(main, message, table, pager);

  const query = { limit: PAGE, cursor };
  for (const k of filterKeys) query[k] = params.get(k);
  for (const k of ["since", "until"]) {
    // A date filter covers whole days of the browser's time zone.
    if (query[k]) {
      const d = new Date(`${query[k]}T00:00:00`);
      if (k === "until") d.setDate(d.getDate() + 1);
      query[k] = d.toISOString();
    }
  }
  // The jobs list takes no category or outcome: with either, the calls come from search
  // (GET /api/media/search?category=&outcome=, completed calls only), newest first.
  const bySearch = !!(params.get("category") || params.get("outcome"));
  if (bySearch) {
    delete query.status;
    if (params.get("status") && params.get("status") !== "completed") {
      message.textContent = "Category and outcome find completed calls only.";
      return () => { stopped = true; };
    }
  } else {
    delete query.category;
    delete query.outcome;
  }
  let page;
  try {
    page = bySearch ? await api("GET", "/api/media/search", { query }) : await api("GET", "/api/media/jobs", { query });
  } catch (e) {
    message.textContent = problem(e);
    return () => { stopped = true; };
  }
  if (bySearch) {
    for (const hit of page.hits) {
      const tr = hitRow(hit);
      rows.set(hit.audio_file_id, tr);
      append(body, tr);
    }
    message.textContent = page.hits.length ? "" : "No calls match.";
    // Talk split, categories and outcome are the status answer's.
    fillRows(page.hits.map((hit) => hit.audio_file_id), rows, () => stopped);
  } else {
    for (const job of page.jobs) {
      const tr = row(job);
      rows.set(job.metadata.audio_file_id, tr);
      append(body, tr);
    }
    message.textContent = page.jobs.length ? "" : "No calls yet.";
  }
  if (cursor) append(pager, h("a", { href: `/console/${toQuery()}`, "data-nav": "", text: "First page" }), " ");
  if (page.next_cursor) append(pager, h("a", { href: `/console/${toQuery({ cursor: page.next_cursor })}`, "data-nav": "", rel: "next", text: "Next page" }));
  if (bySearch) return () => { stopped = true; };

  // Live status: the calls still queued or running are asked for again until they finish;
  // on the first page, calls submitted since (by anyone of the tenant) are added on top.
  let sweeps = 0;
  async function poll() {
    timer = null;
    sweeps += 1;
    if (!cursor && sweeps % NEW_EVERY === 0) {
      try {
        const fresh = await api("GET", "/api/media/jobs", { query: { ...query, limit: 20 } });
        if (stopped) return;
        for (const job of [...fresh.jobs].reverse()) {
          const id = job.metadata.audio_file_id;
          if (rows.has(id)) continue;
          const tr = row(job);
          rows.set(id, tr);
          body.prepend(tr);
          message.textContent = "";
        }
      } catch { /* the next sweep tries again */ }
    }
    const pending = [...rows.entries()].filter(([, tr]) => tr.dataset.state === "queued" || tr.dataset.state === "processing");
    await Promise.all(pending.map(async ([id, tr]) => {
      try {
        const job = await api("GET", `/api/media/status/${id}`);
        if (stopped) return;
        const fresh = row(job);
        tr.replaceWith(fresh);
        rows.set(id, fresh);
        if (fresh.dataset.state === "completed") announce("A call finished transcribing");
      } catch { /* kept as it was until the next poll */ }
    }));
    schedule();
  }
  function schedule() {
    if (stopped || timer) return;
    const pending = [...rows.values()].some((tr) => tr.dataset.state === "queued" || tr.dataset.state === "processing");
    if (pending || !cursor) timer = setTimeout(poll, POLL_MS);
  }
  schedule();
  return () => { stopped = true; if (timer) clearTimeout(timer); };
}
