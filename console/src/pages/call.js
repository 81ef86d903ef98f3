// /console/calls/{audio_file_id}: the player, the transcript synced to it, metrics, categories,
// insights, downloads, speakers, rerun and delete.
import { api, can } from "../api.js";
import { announce, append, clear, clock, confirmDialog, h, percent, problem, roleLabel, when } from "../dom.js";
import { LANE_COLOURS, timeline } from "../player.js";
import { buildTurns, REDACTED } from "../transcript.js";

const POLL_MS = 2000;
const SEEK_STEP = 5;
const FORMATS = ["txt", "json", "srt", "vtt"];

function speakerNames(meta) {
  return meta.speaker_names || {};
}

// The highlighter: the word being spoken carries aria-current="true". A binary search over the
// words' start times on every frame while playing; only the two words that change are touched.
class Highlighter {
  constructor(audio, elements, starts, ends, turnOf, onTurn) {
    this.audio = audio;
    this.elements = elements;
    this.starts = starts;
    this.ends = ends;
    this.turnOf = turnOf;
    this.onTurn = onTurn;
    this.current = -1;
    this.turn = -1;
    this.position = new Map(elements.map((el, i) => [el, i]));
    this.frame = 0;
    this.tick = () => {
      this.frame = 0;
      this.update();
      if (!this.audio.paused) this.frame = requestAnimationFrame(this.tick);
    };
    this.listeners = [
      ["play", () => { if (!this.frame) this.frame = requestAnimationFrame(this.tick); }],
      ["timeupdate", () => this.update()],
      ["seeked", () => this.update()],
    ];
    for (const [name, fn] of this.listeners) audio.addEventListener(name, fn);
  }

  index(t) {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= t) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    // Past the word's end by more than a second (a pause): nobody is speaking it.
    if (found >= 0 && t > this.ends[found] + 1) return -1;
    return found;
  }

  // The word `el` (a click on it): highlighted even where another speaker's word starts at
  // the same moment.
  pin(el) {
    const i = this.position.get(el);
    if (i === undefined) return;
    this.show(i);
  }

  update() {
    const t = this.audio.currentTime;
    // Still inside the highlighted word: nothing to do.
    if (this.current >= 0 && this.starts[this.current] <= t && t < this.ends[this.current]) return;
    this.show(this.index(t));
  }

  show(i) {
    if (i === this.current) return;
    if (this.current >= 0) this.elements[this.current].removeAttribute("aria-current");
    if (i >= 0) {
      this.elements[i].setAttribute("aria-current", "true");
      const turn = this.turnOf[i];
      if (turn !== this.turn) { this.turn = turn; this.onTurn(turn); }
    }
    this.current = i;
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    for (const [name, fn] of this.listeners) this.audio.removeEventListener(name, fn);
  }
}

function wordElement(w) {
  const redacted = REDACTED.exec(w.text);
  if (redacted) {
    return h("span", { class: "w redacted", "data-start": w.start.toFixed(3), title: `redacted: ${redacted[1].toLowerCase().replace(/_/g, " ")}` }, w.text);
  }
  return h("span", { class: "w", "data-start": w.start.toFixed(3) }, w.text);
}

function renderTranscript(model, names) {
  const list = h("ol", { class: "turns" });
  const elements = [];
  const starts = [];
  const ends = [];
  const turnOf = [];
  const turnEls = [];
  model.turns.forEach((turn, ti) => {
    const lane = model.lanes.indexOf(turn.lane);
    const label = turn.role ? roleLabel(turn.role) : (turn.speaker || "Speech");
    const name = names[turn.role] || names[turn.speaker] || "";
    const text = h("p", { class: "words" });
    const frag = document.createDocumentFragment();
    for (const w of turn.words) {
      const el = wordElement(w);
      elements.push(el);
      starts.push(w.start);
      ends.push(w.end);
      turnOf.push(ti);
      frag.append(el, " ");
    }
    text.append(frag);
    const li = h("li", { class: `turn lane-${lane < 0 ? "x" : lane}`, "data-start": turn.start.toFixed(3) },
      h("div", { class: "turn-head" },
        h("button", { type: "button", class: "turn-time", "data-start": turn.start.toFixed(3), "aria-label": `Play from ${clock(turn.start)}, ${label}` }, clock(turn.start)),
        " ",
        h("span", { class: "role", text: label }),
        name ? h("span", { class: "speaker-name", text: ` ${name}` }) : null,
        turn.approximate ? h("span", { class: "detail", text: " (times approximate)" }) : null,
      ),
      text,
    );
    turnEls.push(li);
    list.append(li);
  });
  // Time order (turns of two speakers overlap, so document order is not): the highlighter
  // binary-searches these.
  const order = Uint32Array.from(starts.keys()).sort((a, b) => starts[a] - starts[b] || a - b);
  return {
    list, turnEls,
    elements: Array.from(order, (i) => elements[i]),
    starts: Float64Array.from(order, (i) => starts[i]),
    ends: Float64Array.from(order, (i) => ends[i]),
    turnOf: Array.from(order, (i) => turnOf[i]),
  };
}

function metrics(conversation, lanes) {
  if (!conversation) return null;
  const bar = h("div", { class: "split", role: "img", "aria-label": `Talk time: ${conversation.speakers.map((s) => `${s.role || s.speaker} ${percent(s.talk_ratio)}`).join(", ")}` });
  conversation.speakers.forEach((s) => {
    const lane = lanes.indexOf(s.role || s.speaker);
    const part = h("span", { class: `part lane-${lane < 0 ? "x" : lane}`, text: `${s.role ? roleLabel(s.role) : s.speaker} ${percent(s.talk_ratio)}` });
    part.style.flexGrow = String(Math.max(0.02, s.talk_ratio));
    bar.append(part);
  });
  const rows = [
    ["Silence", `${percent(conversation.silence_ratio)} (${clock(conversation.silence_time)})`],
    ["Overlap", `${conversation.overlap_time.toFixed(1)} s`],
    ["Interruptions", String(conversation.interruptions)],
    ["Longest monologue", clock(conversation.longest_monologue)],
  ];
  const table = h("table", { class: "speakers" },
    h("caption", { text: "By speaker" }),
    h("thead", {}, h("tr", {}, ["Speaker", "Talk", "Words/min", "Interruptions", "Longest"].map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, conversation.speakers.map((s) => h("tr", {},
      h("th", { scope: "row", text: s.role ? roleLabel(s.role) : s.speaker }),
      h("td", { text: `${clock(s.talk_time)} (${percent(s.talk_ratio)})` }),
      h("td", { text: s.words_per_minute ? Math.round(s.words_per_minute) : "–" }),
      h("td", { text: s.interruptions }),
      h("td", { text: clock(s.longest_monologue) }),
    ))),
  );
  return h("section", { class: "metrics", "aria-labelledby": "metrics-title" },
    h("h2", { id: "metrics-title", text: "Conversation" }), bar,
    h("dl", {}, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    table,
  );
}

// The call's categories (metadata.categories, or the insights answer's), each evidence
// utterance a link to its moment (?t=) that seeks the player there in place.
function categoriesSection(id, categories, seek) {
  if (!categories || !categories.length) return null;
  return h("section", { class: "categories", "aria-labelledby": "categories-title" },
    h("h2", { id: "categories-title", text: "Categories" }),
    h("ul", {}, categories.map((c) => h("li", { dataset: { category: c.name } },
      h("span", { class: "tag", text: c.name }),
      h("ul", { class: "evidence" }, (c.matches || []).map((m) => h("li", {},
        h("a", {
          href: `/console/calls/${encodeURIComponent(id)}?t=${Number(m.start).toFixed(2)}`,
          class: "evidence-link", "data-start": m.start,
          onclick: (e) => { e.preventDefault(); seek(m.start); },
          "aria-label": `Play the evidence of ${c.name} at ${clock(m.start)}`,
        }, clock(m.start)),
        " ", h("span", { class: "who", text: m.role ? `${roleLabel(m.role)}: ` : (m.speaker ? `${m.speaker}: ` : "") }),
        h("span", { class: "evidence-text", text: m.text || "" }),
      ))),
    ))),
  );
}

const INSIGHTS_STATES = {
  pending: "being evaluated",
  completed: "completed",
  failed: "failed",
  not_configured: "not configured",
};

// `ins`: the status answer's summary ({status, reason, outcome}) or the answer of
// GET /api/media/insights/{id} ({status, reason, categories, insights: {summary, ...}}).
function insightsSection(ins, seek) {
  if (!ins) return null;
  const body = ins.insights || { outcome: ins.outcome };
  const section = h("section", { class: "insights", "aria-labelledby": "insights-title", dataset: { status: ins.status } },
    h("h2", { id: "insights-title", text: "Insights" }),
    h("p", { class: "detail insights-status", text: `Status: ${INSIGHTS_STATES[ins.status] || ins.status}${ins.reason ? ` (${ins.reason})` : ""}` }));
  const dl = h("dl");
  if (body.summary) append(dl, h("dt", { text: "Summary" }), h("dd", { class: "summary", text: body.summary }));
  if (body.reason) append(dl, h("dt", { text: "Reason" }), h("dd", { class: "reason", text: body.reason }));
  if (body.outcome) append(dl, h("dt", { text: "Outcome" }), h("dd", { class: "outcome", text: body.outcome }));
  if (body.sentiment && body.sentiment.length) append(dl, h("dt", { text: "Sentiment" }), h("dd", { class: "sentiment", text: body.sentiment.map((x) => `${roleLabel(x.role)}: ${x.sentiment}`).join(", ") }));
  append(section, dl);
  if (body.action_items && body.action_items.length) {
    append(section, h("h3", { text: "Action items" }), h("ul", { class: "action-items" }, body.action_items.map((a) => h("li", { text: `${roleLabel(a.owner)}: ${a.text}` }))));
  }
  if (body.answers && body.answers.length) {
    append(section, h("h3", { text: "Questions" }), h("ul", { class: "answers" }, body.answers.map((a) => h("li", {},
      h("span", { text: `${a.question}: ${a.answer}` }),
      a.evidence ? h("span", { class: "detail", text: ` “${a.evidence}”` }) : null,
      typeof a.start === "number" ? [" ", h("button", { type: "button", class: "link", onclick: () => seek(a.start), "aria-label": `Play the evidence at ${clock(a.start)}` }, clock(a.start))] : null,
    ))));
  }
  if (ins.model) append(section, h("p", { class: "detail", text: `Model: ${ins.model}` }));
  return section;
}

function downloads(id) {
  return h("section", { class: "downloads", "aria-labelledby": "downloads-title" },
    h("h2", { id: "downloads-title", text: "Downloads" }),
    h("ul", {},
      FORMATS.map((f) => h("li", {}, h("a", { href: `/api/media/transcript/${id}.${f}`, download: `${id}.${f}`, text: `Transcript (${f})` }))),
      h("li", {}, h("a", { href: `/api/media/${id}/audio`, download: "", text: "Audio" })),
    ),
  );
}

function speakersForm(id, lanes, names, reload) {
  const inputs = lanes.map((lane, i) => h("input", { id: `name-${i}`, name: lane, value: names[lane] || "", maxlength: 64 }));
  const status = h("p", { role: "status", class: "detail" });
  const form = h("form", { class: "speakers-form", "aria-labelledby": "speakers-title" },
    h("h2", { id: "speakers-title", text: "Speakers" }),
    lanes.map((lane, i) => h("div", { class: "field" }, h("label", { for: `name-${i}`, text: `Name of ${lane === "agent" || lane === "customer" ? roleLabel(lane) : lane}` }), inputs[i])),
    h("button", { type: "submit", text: "Save names" }), status,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const next = {};
    // A blank field: that speaker has no name (the API takes only the names given).
    lanes.forEach((lane, i) => { if (inputs[i].value.trim()) next[lane] = inputs[i].value.trim(); });
    try {
      await api("PUT", `/api/media/${id}/speakers`, { json: { names: next } });
      status.textContent = "Saved.";
      reload();
    } catch (err) {
      status.textContent = problem(err);
    }
  });
  return form;
}

function actions(id, state, navigate, reload) {
  const status = h("p", { role: "status", class: "detail" });
  const rerun = h("button", { type: "button", id: "rerun", text: "Rerun" });
  const del = h("button", { type: "button", id: "delete", class: "danger", text: "Delete" });
  rerun.addEventListener("click", async () => {
    if (!(await confirmDialog("Rerun this call?", "It is transcribed again; the current transcript is replaced when the new one is ready.", "Rerun"))) return;
    try {
      await api("POST", `/api/media/rerun/${id}`, { query: { force: state !== "completed" && state !== "failed" ? "true" : undefined } });
      announce("Requeued");
      reload();
    } catch (err) { status.textContent = problem(err); }
  });
  del.addEventListener("click", async () => {
    if (!(await confirmDialog("Delete this call?", "The audio, the transcripts and their personal data are removed for good.", "Delete"))) return;
    try {
      await api("DELETE", `/api/media/${id}`);
      announce("Deleted");
      navigate("/console/");
    } catch (err) { status.textContent = problem(err); }
  });
  return h("section", { class: "actions", "aria-labelledby": "actions-title" },
    h("h2", { id: "actions-title", text: "Actions" }), rerun, " ", del, status);
}

// The time of the first matching words of the utterance starting at `start`
// (GET /api/media/{id}/search gives word-level times); `go(seconds)` moves there.
async function refine(id, start, q, go) {
  try {
    const found = await api("GET", `/api/media/${encodeURIComponent(id)}/search`, { query: { q } });
    const match = found.matches.find((m) => Math.abs(m.start - start) < 0.01 && m.times.length);
    if (match) go(match.times[0][0]);
  } catch { /* the utterance's start stays */ }
}

export async function callPage(main, { match, params, navigate }) {
  const id = decodeURIComponent(match[1]);
  let stopped = false;
  let timer = null;
  const cleanups = [];
  const stop = () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    for (const fn of cleanups.splice(0)) fn();
  };
  const reload = () => { stop(); clear(main); stopped = false; load(); };

  async function load() {
    let job;
    try {
      job = await api("GET", `/api/media/status/${encodeURIComponent(id)}`);
    } catch (e) {
      append(main, h("h1", { text: e.status === 404 ? "Call not found" : "Call" }), h("p", { class: "error", text: e.status === 404 ? "There is no such call for your account." : problem(e) }));
      return;
    }
    if (stopped) return;
    const meta = job.metadata;
    const state = meta.state || job.status;
    append(main, h("h1", {}, "Call ", h("span", { class: "campaign", text: meta.campaign || "" })),
      h("p", { class: "facts" },
        h("span", { class: `badge ${state}`, text: state }), " ",
        h("span", { text: `created ${when(meta.created_at)}` }),
        meta.duration ? h("span", { text: ` · ${clock(meta.duration)}` }) : null,
        meta.language ? h("span", { text: ` · ${meta.language}` }) : null,
        meta.redaction ? h("span", { text: ` · redacted (${meta.redaction.policy}): ${meta.redaction.total}` }) : null,
      ));
    if (state === "queued" || state === "processing") {
      const p = meta.progress || {};
      append(main, h("section", { class: "progress", "aria-labelledby": "progress-title" },
        h("h2", { id: "progress-title", text: "Transcribing" }),
        h("p", { text: `${p.stage || state}${p.chunks ? `: chunk ${p.chunk || 0} of ${p.chunks}` : ""}` }),
        h("progress", { max: 100, value: Math.round((p.fraction || 0) * 100), "aria-label": "Transcription progress" }),
      ));
      if (can("supervisor")) append(main, actions(id, state, navigate, reload));
      timer = setTimeout(() => { if (!stopped) reload(); }, POLL_MS);
      return;
    }
    if (state === "failed") {
      append(main, h("p", { class: "error", text: `Failed: ${meta.error ? `${meta.error.code}: ${meta.error.detail}` : "unknown"}` }));
      if (can("supervisor")) append(main, actions(id, state, navigate, reload));
      return;
    }
    if (state === "deleted") {
      append(main, h("p", { text: `Deleted ${when(meta.deleted_at)}.` }));
      return;
    }
    let transcript;
    try {
      transcript = await api("GET", `/api/media/transcript/${encodeURIComponent(id)}.json`);
    } catch (e) {
      append(main, h("p", { class: "error", text: problem(e) }));
      return;
    }
    if (stopped) return;
    render(meta, transcript);
  }

  function render(meta, transcript) {
    const duration = meta.duration || transcript.duration || 0;
    const model = buildTurns(transcript);
    const names = speakerNames(meta);
    const audio = h("audio", { controls: true, preload: "metadata", src: `/api/media/${encodeURIComponent(id)}/audio`, "aria-label": "Call audio" });
    const wave = h("div", { class: "wave", id: "waveform" });
    const legend = h("ul", { class: "legend", "aria-label": "Timeline lanes" },
      model.lanes.map((lane, i) => {
        const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
        swatch.style.background = LANE_COLOURS[i % LANE_COLOURS.length];
        return h("li", {}, swatch, lane === "agent" || lane === "customer" ? roleLabel(lane) : (names[lane] || lane));
      }),
      h("li", {}, h("span", { class: "swatch overlap", "aria-hidden": "true" }), "overlap"),
      h("li", {}, h("span", { class: "swatch silence", "aria-hidden": "true" }), "long silence"),
    );
    const view = renderTranscript(model, names);
    const follow = h("input", { type: "checkbox", id: "follow", checked: true });
    let highlighter = null;
    const seek = (t) => {
      audio.currentTime = Math.max(0, Math.min(t, duration || t));
      // Paused, or before the media is loaded, no `seeked` may come soon: highlight now.
      if (highlighter) highlighter.update();
    };
    const turnStarts = model.turns.map((t) => t.start);
    const nextTurn = (dir) => {
      const t = audio.currentTime;
      let i = turnStarts.findIndex((s) => s > t + 0.05);
      if (i < 0) i = turnStarts.length;
      const target = dir > 0 ? i : i - 2;
      if (target >= 0 && target < turnStarts.length) seek(turnStarts[target]);
      else if (dir < 0) seek(0);
    };
    const playPause = () => { if (audio.paused) audio.play().catch(() => {}); else audio.pause(); };
    const controls = h("div", { class: "controls", role: "group", "aria-label": "Player" },
      h("button", { type: "button", id: "play", onclick: playPause, "aria-keyshortcuts": "Space k", text: "Play/Pause" }),
      h("button", { type: "button", onclick: () => nextTurn(-1), "aria-keyshortcuts": "p", text: "Previous turn" }),
      h("button", { type: "button", onclick: () => seek(audio.currentTime - SEEK_STEP), "aria-keyshortcuts": "ArrowLeft j", text: `Back ${SEEK_STEP} s` }),
      h("button", { type: "button", onclick: () => seek(audio.currentTime + SEEK_STEP), "aria-keyshortcuts": "ArrowRight l", text: `Forward ${SEEK_STEP} s` }),
      h("button", { type: "button", onclick: () => nextTurn(1), "aria-keyshortcuts": "n", text: "Next turn" }),
      h("label", { for: "follow" }, follow, " follow the transcript"),
    );
    const player = h("section", { class: "player", "aria-labelledby": "player-title" },
      h("h2", { id: "player-title", class: "visually-hidden", text: "Player" }),
      audio, controls, wave, legend,
      h("p", { class: "detail", text: "Keys: space or k play/pause, ← → or j l seek 5 s, n / p next / previous turn." }),
    );
    const transcriptSection = h("section", { class: "transcript", "aria-labelledby": "transcript-title" },
      h("h2", { id: "transcript-title", text: "Transcript" }), view.list);
    const categoriesHolder = h("div", { class: "categories-holder" });
    const insightsHolder = h("div", { class: "insights-holder" });
    const showCategories = (list) => categoriesHolder.replaceChildren(categoriesSection(id, list, seek) || "");
    const showInsights = (ins) => insightsHolder.replaceChildren(insightsSection(ins, seek) || "");
    showCategories(meta.categories);
    showInsights(meta.insights);
    // The whole answer (summary, action items, ...); asked again while the insights service
    // has not evaluated the call yet, so categories and insights appear without a reload.
    const askInsights = async () => {
      insightsTimer = null;
      try {
        const ins = await api("GET", `/api/media/insights/${encodeURIComponent(id)}`);
        if (stopped) return;
        showInsights(ins);
        if (ins.status !== "pending") { showCategories(ins.categories); return; }
      } catch (err) {
        // A refusal (the call was deleted or rerun meanwhile) is not asked again.
        if (err.status >= 400 && err.status < 500) return;
      }
      if (!stopped) insightsTimer = setTimeout(askInsights, POLL_MS);
    };
    let insightsTimer = null;
    askInsights();
    cleanups.push(() => { if (insightsTimer) clearTimeout(insightsTimer); });
    const side = h("div", { class: "side" },
      metrics(meta.conversation, model.lanes),
      categoriesHolder,
      insightsHolder,
      downloads(id),
      can("supervisor") ? speakersForm(id, model.lanes, names, reload) : null,
      can("supervisor") ? actions(id, "completed", navigate, reload) : null,
    );
    append(main, player, h("div", { class: "columns" }, transcriptSection, side));

    view.list.addEventListener("click", (e) => {
      const target = e.target.closest("[data-start]");
      if (!target) return;
      seek(Number(target.dataset.start));
      if (target.classList.contains("w")) highlighter.pin(target);
    });
    highlighter = new Highlighter(audio, view.elements, view.starts, view.ends, view.turnOf, (turn) => {
      if (follow.checked && !audio.paused) view.turnEls[turn].scrollIntoView({ block: "nearest" });
    });
    const onKey = (e) => {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
      const tag = e.target && e.target.tagName;
      if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (e.target && e.target.isContentEditable)) return;
      if (e.target === audio) return;
      const key = e.key;
      if ((key === " " && tag !== "BUTTON" && tag !== "A") || key === "k") playPause();
      else if (key === "ArrowLeft" || key === "j") seek(audio.currentTime - SEEK_STEP);
      else if (key === "ArrowRight" || key === "l") seek(audio.currentTime + SEEK_STEP);
      else if (key === "n") nextTurn(1);
      else if (key === "p") nextTurn(-1);
      else return;
      e.preventDefault();
    };
    document.addEventListener("keydown", onKey);
    let line = null;
    try { line = timeline(wave, audio, model, duration); } catch (err) { append(wave, h("p", { class: "detail", text: `Timeline unavailable: ${problem(err)}` })); }
    const start = params.has("t") ? Number(params.get("t")) : NaN;
    if (Number.isFinite(start) && start >= 0) {
      let at = start;
      const go = (to) => {
        if (to !== undefined) at = to;
        seek(at);
        highlighter.update();
        const i = highlighter.current;
        if (i >= 0) view.elements[i].scrollIntoView({ block: "center" });
      };
      // Before the media loads this is its default start position; again once it is known.
      go();
      if (audio.readyState < 1) audio.addEventListener("loadedmetadata", () => seek(at), { once: true });
      // From a search hit (?t= is its utterance's start): the matching words' own time.
      if (params.get("q")) refine(id, start, params.get("q"), go);
    }
    cleanups.push(() => {
      highlighter.destroy();
      document.removeEventListener("keydown", onKey);
      if (line) line.destroy();
      audio.pause();
      audio.removeAttribute("src");
      audio.load();
    });
    main.dataset.ready = "true";
    // bench/console_bench.py reads this: the page is usable (transcript, player, timeline).
    performance.mark("console:call-ready");
  }

  await load();
  return stop;
}
