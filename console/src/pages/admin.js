// Admin pages: webhook endpoint and delivery log with resend, notification rules, categories
// with an editor, users, dead letters (operators). Each is a thin view of its /api routes.
import { api, can, currentUser } from "../api.js";
import { append, clear, confirmDialog, h, problem, when } from "../dom.js";

function table(columns, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows),
  );
}

function field(label, input) {
  return h("div", { class: "field" }, h("label", { for: input.id, text: label }), input);
}

function statusLine() {
  return h("p", { role: "status", class: "detail" });
}

async function webhooksPage(main) {
  const status = statusLine();
  append(main, h("h1", { text: "Webhooks" }), status);
  const endpoint = h("section", { "aria-labelledby": "endpoint-title" }, h("h2", { id: "endpoint-title", text: "Endpoint" }));
  append(main, endpoint);
  const show = (e) => {
    clear(endpoint).append(h("h2", { id: "endpoint-title", text: "Endpoint" }));
    const url = h("input", { id: "wh-url", name: "url", type: "url", value: e.webhook_url || "", size: 60 });
    const form = h("form", {}, field("URL", url), h("button", { type: "submit", text: "Save" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try { show(await api("PUT", "/api/webhooks/endpoint", { json: { url: url.value } })); status.textContent = "Saved."; } catch (err) { status.textContent = problem(err); }
    });
    append(endpoint,
      h("dl", {},
        h("dt", { text: "Enabled" }), h("dd", { text: e.enabled ? "yes" : `no${e.disabled_reason ? ` (${e.disabled_reason})` : ""}` }),
        h("dt", { text: "Consecutive failures" }), h("dd", { text: e.consecutive_failures }),
        h("dt", { text: "Failing since" }), h("dd", { text: when(e.failing_since) }),
      ),
      form,
      e.enabled || !e.webhook_url ? null : h("button", { type: "button", onclick: async () => { try { show(await api("POST", "/api/webhooks/endpoint/enable")); } catch (err) { status.textContent = problem(err); } }, text: "Enable" }),
    );
  };
  try { show(await api("GET", "/api/webhooks/endpoint")); } catch (err) { status.textContent = problem(err); }

  const job = h("input", { id: "wh-job", name: "audio_file_id", size: 40 });
  const log = h("div");
  const form = h("form", { "aria-labelledby": "deliveries-title" }, h("h2", { id: "deliveries-title", text: "Delivery log" }), field("Call id", job), h("button", { type: "submit", text: "Show deliveries" }));
  const load = async () => {
    clear(log);
    try {
      const answer = await api("GET", "/api/webhooks/deliveries", { query: { audio_file_id: job.value.trim() } });
      append(log, table(["Event", "Endpoint", "Status", "Attempts", "Last", ""], answer.deliveries.map((d) => h("tr", {},
        h("td", { text: d.event_type }), h("td", { text: d.endpoint_url }), h("td", { text: d.status }),
        h("td", { text: d.attempts }), h("td", { text: `${d.last_status_code ?? ""} ${d.last_error ?? ""}` }),
        h("td", {}, h("button", { type: "button", onclick: async () => { try { await api("POST", `/api/webhooks/deliveries/${d.id}/resend`); status.textContent = "Resent."; load(); } catch (err) { status.textContent = problem(err); } }, text: "Resend" })),
      ))));
    } catch (err) { status.textContent = problem(err); }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  append(main, form, log);
}

// Notification rules (GET/POST /api/notifications, docs/notifications.md): a rule has its
// events, exactly one target (e-mail addresses or a Slack incoming-webhook URL) and an
// optional campaign; the API shows a Slack URL by its scheme and host only (it is a secret).
// Each rule can be tested, enabled again after Slack's answer disabled it, or removed; the
// messages sent (with every attempt) are listed below with resend.
const splitList = (s) => s.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);

function ruleTarget(r) {
  if (r.target === "slack") return `Slack ${r.slack || ""}`.trim();
  return (r.emails || []).join(", ");
}

function ruleState(r) {
  if (r.enabled) return "enabled";
  return `disabled ${when(r.disabled_at)}${r.disabled_reason ? `: ${r.disabled_reason}` : ""}`;
}

async function notificationsPage(main) {
  const status = statusLine();
  const list = h("div", { class: "rules" });
  const log = h("div", { class: "deliveries" });
  append(main, h("h1", { text: "Notification rules" }), status, list);
  const act = async (what, done) => {
    try { await what(); status.textContent = done; await load(); } catch (err) { status.textContent = problem(err); }
  };
  const loadDeliveries = async () => {
    clear(log);
    try {
      const answer = await api("GET", "/api/notifications/deliveries");
      if (!answer.deliveries.length) { append(log, h("p", { class: "detail", text: "No messages yet." })); return; }
      append(log, table(["Created", "Event", "Target", "Status", "Attempts", "Last", ""], answer.deliveries.map((d) => h("tr", { dataset: { id: d.id } },
        h("td", { text: when(d.created_at) }), h("td", { text: d.event_type }), h("td", { text: d.endpoint_url }),
        h("td", { class: "status", text: d.status }), h("td", { text: d.attempts }),
        h("td", { text: `${d.last_status_code ?? ""} ${d.last_error ?? ""}`.trim() || "–" }),
        h("td", {}, h("button", { type: "button", onclick: () => act(() => api("POST", `/api/notifications/deliveries/${d.id}/resend`), "Resent."), text: "Resend", "aria-label": `Resend message ${d.id}` })),
      ))));
    } catch (err) { status.textContent = problem(err); }
  };
  async function load() {
    clear(list);
    try {
      const answer = await api("GET", "/api/notifications");
      if (!answer.rules.length) append(list, h("p", { class: "detail", text: "No rules yet." }));
      else {
        append(list, table(["Events", "Target", "Campaign", "State", ""], answer.rules.map((r) => h("tr", { dataset: { id: r.id } },
          h("td", { class: "events", text: r.events.join(", ") }),
          h("td", { class: "target", text: ruleTarget(r) }),
          h("td", { class: "campaign", text: r.campaign || "any" }),
          h("td", { class: "state", text: ruleState(r) }),
          h("td", {},
            h("button", { type: "button", class: "test", onclick: () => act(() => api("POST", `/api/notifications/${r.id}/test`), "Test message queued."), text: "Send a test" }), " ",
            r.enabled ? null : [h("button", { type: "button", class: "enable", onclick: () => act(() => api("POST", `/api/notifications/${r.id}/enable`), "Enabled."), text: "Enable" }), " "],
            h("button", { type: "button", class: "remove", onclick: async () => { if (await confirmDialog("Remove this rule?", "It stops notifying; its sent messages stay listed.", "Remove")) await act(() => api("DELETE", `/api/notifications/${r.id}`), "Removed."); }, text: "Remove" }),
          ),
        ))));
      }
    } catch (err) { status.textContent = problem(err); }
    await loadDeliveries();
  }
  const events = h("input", { id: "n-events", name: "events", required: true, placeholder: "failed, completed, category:NAME, outcome:VALUE", "aria-describedby": "n-events-hint", size: 50 });
  const eventsHint = h("p", { id: "n-events-hint", class: "detail", text: "Comma-separated: failed, dead_lettered, completed, category:<name>, outcome:<value>." });
  const target = h("select", { id: "n-target", name: "target" }, h("option", { value: "email", text: "E-mail" }), h("option", { value: "slack", text: "Slack" }));
  const emails = h("input", { id: "n-emails", name: "emails", placeholder: "a@example.com, b@example.com", size: 50 });
  const slack = h("input", { id: "n-slack", name: "slack_url", type: "url", placeholder: "https://hooks.slack.com/services/…", size: 50 });
  const campaign = h("input", { id: "n-campaign", name: "campaign", maxlength: 200 });
  const emailField = field("E-mail addresses", emails);
  const slackField = field("Slack incoming-webhook URL", slack);
  const showTarget = () => { emailField.hidden = target.value !== "email"; slackField.hidden = target.value !== "slack"; };
  target.addEventListener("change", showTarget);
  showTarget();
  const form = h("form", { "aria-labelledby": "n-title", class: "new-rule" }, h("h2", { id: "n-title", text: "Add a rule" }),
    field("Events", events), eventsHint, field("Send to", target), emailField, slackField, field("Campaign (empty: every campaign)", campaign),
    h("button", { type: "submit", text: "Add" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { events: splitList(events.value) };
    if (target.value === "email") body.emails = splitList(emails.value);
    else body.slack_url = slack.value.trim();
    if (campaign.value) body.campaign = campaign.value;
    try {
      await api("POST", "/api/notifications", { json: body });
      status.textContent = "Added.";
      form.reset();
      showTarget();
      await load();
    } catch (err) { status.textContent = problem(err); }
  });
  append(main, form, h("section", { "aria-labelledby": "nd-title" },
    h("h2", { id: "nd-title", text: "Messages sent" }),
    h("button", { type: "button", onclick: loadDeliveries, text: "Refresh" }), log));
  await load();
}

// Categories (docs/categories.md): PUT/GET/DELETE /api/categories/{name} with {"rule": ...};
// "Apply to the last 30 days" runs POST /api/categories/{name}/apply (following next_cursor
// until every call was seen) and lists the matching calls (GET /api/media/search?category=).
const CATEGORY_NAME = "[A-Za-z0-9][A-Za-z0-9_.\\-]*";

async function matchingCalls(name, into) {
  clear(into);
  const found = await api("GET", "/api/media/search", { query: { category: name, limit: 20 } });
  append(into, h("h3", { text: `Calls matching ${name}` }));
  if (!found.hits.length) { append(into, h("p", { class: "detail", text: "None of the recent calls match." })); return; }
  append(into, h("ul", { class: "matching" }, found.hits.map((hit) => h("li", {},
    h("a", { href: `/console/calls/${encodeURIComponent(hit.audio_file_id)}`, "data-nav": "", dataset: { id: hit.audio_file_id }, text: `${hit.campaign || "–"} · ${when(hit.created_at)}` })))),
  found.next_cursor ? h("p", {}, h("a", { href: `/console/?category=${encodeURIComponent(name)}`, "data-nav": "", text: "All matching calls" })) : null);
}

async function categoriesPage(main) {
  const status = statusLine();
  const list = h("div");
  const matches = h("section", { class: "category-matches", "aria-live": "polite" });
  const name = h("input", { id: "c-name", name: "name", required: true, maxlength: 64, pattern: CATEGORY_NAME, "aria-describedby": "c-name-hint" });
  const nameHint = h("p", { id: "c-name-hint", class: "detail", text: "1-64 letters, digits, _ . -, starting with a letter or digit." });
  const rule = h("textarea", { id: "c-rule", name: "rule", rows: 10, cols: 60, spellcheck: "false", placeholder: '{"said": ["cancel my subscription"], "by": "customer"}' });
  const form = h("form", { "aria-labelledby": "c-title" }, h("h2", { id: "c-title", text: "Edit a category" }), field("Name", name), nameHint, field("Rule (JSON)", rule),
    h("button", { type: "submit", text: "Save" }));
  append(main, h("h1", { text: "Categories" }), status, list, form, matches);
  const apply = async (c) => {
    status.textContent = `Applying ${c} to the last 30 days…`;
    try {
      let evaluated = 0; let matched = 0; let skipped = 0; let cursor;
      for (;;) {
        const done = await api("POST", `/api/categories/${encodeURIComponent(c)}/apply`, { query: { since: "30d", cursor } });
        evaluated += done.evaluated; matched += done.matched; skipped += done.skipped;
        if (!done.next_cursor) break;
        cursor = done.next_cursor;
      }
      status.textContent = `${c}: ${matched} of ${evaluated} calls of the last 30 days match${skipped ? ` (${skipped} not in the search index)` : ""}.`;
      await matchingCalls(c, matches);
    } catch (err) { status.textContent = problem(err); }
  };
  const load = async () => {
    clear(list);
    try {
      const answer = await api("GET", "/api/categories");
      if (!answer.categories.length) { append(list, h("p", { class: "detail", text: "No categories yet." })); return; }
      append(list, table(["Name", "Rule", ""], answer.categories.map((c) => h("tr", { dataset: { name: c.name } },
        h("td", { text: c.name }),
        h("td", {}, h("code", { text: JSON.stringify(c.rule) })),
        h("td", {},
          h("button", { type: "button", onclick: () => { name.value = c.name; rule.value = JSON.stringify(c.rule, null, 2); rule.focus(); }, text: "Edit" }), " ",
          h("button", { type: "button", class: "apply", onclick: () => apply(c.name), text: "Apply to the last 30 days" }), " ",
          h("a", { href: `/console/?category=${encodeURIComponent(c.name)}`, "data-nav": "", text: "Matching calls" }), " ",
          h("button", { type: "button", onclick: async () => { if (await confirmDialog(`Delete ${c.name}?`, "Its matches are removed from past calls.", "Delete")) { try { await api("DELETE", `/api/categories/${encodeURIComponent(c.name)}`); status.textContent = "Deleted."; load(); } catch (err) { status.textContent = problem(err); } } }, text: "Delete" })),
      ))));
    } catch (err) { status.textContent = problem(err); }
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let parsed;
    try { parsed = JSON.parse(rule.value); } catch (err) { status.textContent = `The rule is not JSON: ${err.message}`; return; }
    try { await api("PUT", `/api/categories/${encodeURIComponent(name.value)}`, { json: { rule: parsed } }); status.textContent = "Saved."; load(); } catch (err) { status.textContent = problem(err); }
  });
  load();
}

// The insight template (docs/llm.md): GET/PUT/DELETE /api/insights/template[?campaign=C],
// what the chat model is asked about the key's calls (or one campaign's).
async function insightTemplatePage(main) {
  const status = statusLine();
  const campaign = h("input", { id: "t-campaign", name: "campaign", maxlength: 200, "aria-describedby": "t-campaign-hint" });
  const campaignHint = h("p", { id: "t-campaign-hint", class: "detail", text: "Empty: the key's template, for every campaign without its own." });
  const facts = h("p", { class: "detail template-source" });
  const flag = (id, label) => { const box = h("input", { type: "checkbox", id, name: id }); return [box, h("div", { class: "field check" }, box, h("label", { for: id, text: label }))]; };
  const [summary, summaryField] = flag("t-summary", "Summary");
  const [reason, reasonField] = flag("t-reason", "Reason for the call");
  const [actionItems, actionField] = flag("t-action-items", "Action items");
  const [sentiment, sentimentField] = flag("t-sentiment", "Sentiment per role");
  const outcomes = h("input", { id: "t-outcomes", name: "outcomes", size: 50, placeholder: "resolved, escalated, churned", "aria-describedby": "t-outcomes-hint" });
  const outcomesHint = h("p", { id: "t-outcomes-hint", class: "detail", text: "Comma-separated; empty: no outcome is asked." });
  const questions = h("textarea", { id: "t-questions", name: "questions", rows: 6, cols: 60, spellcheck: "false", placeholder: '[{"id": "greeted", "text": "Did the agent greet the customer?", "kind": "yes_no"}]' });
  const question = h("form", { class: "pick", "aria-label": "Which template" }, field("Campaign", campaign), campaignHint, h("button", { type: "submit", text: "Show" }));
  const form = h("form", { class: "template", "aria-labelledby": "t-title" }, h("h2", { id: "t-title", text: "Template" }), facts,
    summaryField, reasonField, actionField, sentimentField, field("Outcomes", outcomes), outcomesHint, field("QA questions (JSON)", questions),
    h("button", { type: "submit", text: "Save" }), " ",
    h("button", { type: "button", class: "danger", onclick: async () => {
      try { show(await api("DELETE", "/api/insights/template", { query: { campaign: campaign.value.trim() } })); status.textContent = "Removed: the template below is in force now."; } catch (err) { status.textContent = problem(err); }
    }, text: "Remove this template" }));
  append(main, h("h1", { text: "Insight template" }), status, question, form);
  const show = (answer) => {
    const t = answer.template;
    const source = { campaign: "this campaign's own template", key: "the key's template", default: "the default (nothing stored)" }[answer.source] || answer.source;
    facts.textContent = `In force${answer.campaign ? ` for ${answer.campaign}` : ""}: ${source}.${answer.insights_enabled ? "" : " The operator turned insights off for this key."}`;
    summary.checked = t.summary; reason.checked = t.reason; actionItems.checked = t.action_items; sentiment.checked = t.sentiment;
    outcomes.value = (t.outcomes || []).join(", ");
    questions.value = t.questions && t.questions.length ? JSON.stringify(t.questions, null, 2) : "";
  };
  const load = async () => {
    try { show(await api("GET", "/api/insights/template", { query: { campaign: campaign.value.trim() } })); } catch (err) { status.textContent = problem(err); }
  };
  question.addEventListener("submit", (e) => { e.preventDefault(); status.textContent = ""; load(); });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    let qs = [];
    if (questions.value.trim()) {
      try { qs = JSON.parse(questions.value); } catch (err) { status.textContent = `The questions are not JSON: ${err.message}`; return; }
    }
    const body = { summary: summary.checked, reason: reason.checked, outcomes: splitList(outcomes.value), action_items: actionItems.checked, sentiment: sentiment.checked, questions: qs };
    try {
      show(await api("PUT", "/api/insights/template", { query: { campaign: campaign.value.trim() }, json: body }));
      status.textContent = "Saved.";
    } catch (err) { status.textContent = problem(err); }
  });
  await load();
}

async function usersPage(main) {
  const status = statusLine();
  const list = h("div");
  append(main, h("h1", { text: "Users" }), status, list);
  const roles = ["viewer", "supervisor", "admin"];
  const load = async () => {
    clear(list);
    try {
      const answer = await api("GET", "/api/users");
      const users = answer.users || answer || [];
      const operator = !!(currentUser() && currentUser().operator);
      append(list, table(operator ? ["E-mail", "Role", "Key", "Disabled", ""] : ["E-mail", "Role", "Disabled", ""], users.map((u) => {
        const role = h("select", { "aria-label": `Role of ${u.email}` }, roles.map((r) => h("option", { value: r, text: r, selected: u.role === r })));
        role.addEventListener("change", async () => { try { await api("PATCH", `/api/users/${u.id}`, { json: { role: role.value } }); status.textContent = "Saved."; } catch (err) { status.textContent = problem(err); } });
        return h("tr", {},
          h("td", { text: u.email }), h("td", {}, role),
          operator ? h("td", { text: u.operator ? "operator" : (u.key_hint || u.key_id || "–") }) : null,
          h("td", { text: u.disabled ? "yes" : "no" }),
          h("td", {},
            h("button", { type: "button", onclick: async () => { try { await api("PATCH", `/api/users/${u.id}`, { json: { disabled: !u.disabled } }); load(); } catch (err) { status.textContent = problem(err); } }, text: u.disabled ? "Enable" : "Disable", "aria-label": `${u.disabled ? "Enable" : "Disable"} ${u.email}` }), " ",
            h("button", { type: "button", onclick: async () => {
              if (!(await confirmDialog(`New password for ${u.email}?`, "A password is generated and shown once; their sessions end.", "Reset password"))) return;
              try { const set = await api("POST", `/api/users/${u.id}/password`, { json: {} }); status.textContent = `New password of ${u.email} (shown once): ${set.password}`; } catch (err) { status.textContent = problem(err); }
            }, text: "Reset password", "aria-label": `Reset the password of ${u.email}` })),
        );
      })));
    } catch (err) { status.textContent = problem(err); }
  };
  const email = h("input", { id: "u-email", name: "email", type: "email", required: true });
  const role = h("select", { id: "u-role", name: "role" }, roles.map((r) => h("option", { value: r, text: r })));
  const password = h("input", { id: "u-password", name: "password", type: "password", autocomplete: "new-password", "aria-describedby": "u-password-hint" });
  const hint = h("p", { id: "u-password-hint", class: "detail", text: "Leave empty to have one generated (shown once)." });
  // An operator admin says whose user it is: a key (id or hint) or another operator user.
  const isOperator = !!(currentUser() && currentUser().operator);
  const key = h("input", { id: "u-key", name: "key", size: 40, "aria-describedby": "u-key-hint" });
  const keyHint = h("p", { id: "u-key-hint", class: "detail", text: "The key (id or hint) whose tenant the user joins; empty: an operator user." });
  const form = h("form", { "aria-labelledby": "nu-title" }, h("h2", { id: "nu-title", text: "Add a user" }), field("E-mail", email), field("Role", role),
    isOperator ? [field("Key", key), keyHint] : null, field("Password", password), hint, h("button", { type: "submit", text: "Add" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { email: email.value, role: role.value };
    if (isOperator) { if (key.value.trim()) body.key = key.value.trim(); else body.operator = true; }
    if (password.value) body.password = password.value;
    try {
      const made = await api("POST", "/api/users", { json: body });
      status.textContent = made.password ? `Added. Their password (shown once): ${made.password}` : "Added.";
      password.value = "";
      load();
    } catch (err) { status.textContent = problem(err); }
  });
  append(main, form);
  load();
}

async function deadLettersPage(main) {
  const status = statusLine();
  const list = h("div");
  append(main, h("h1", { text: "Dead letters" }), status, list);
  const load = async () => {
    clear(list);
    try {
      const answer = await api("GET", "/api/ops/dead-letters", { query: { open: "true", limit: 100 } });
      if (!answer.dead_letters.length) { append(list, h("p", { class: "detail", text: "No open dead letters." })); return; }
      append(list, table(["Captured", "Kind", "Consumer", "Event", "Reason", "Call", ""], answer.dead_letters.map((d) => h("tr", {},
        h("td", { text: when(d.captured_at) }), h("td", { text: d.kind }), h("td", { text: d.consumer }),
        h("td", { text: d.event_type || d.subject || "–" }), h("td", { text: d.reason || "–" }),
        h("td", {}, d.audio_file_id ? h("a", { href: `/console/calls/${d.audio_file_id}`, "data-nav": "", text: d.audio_file_id }) : "–"),
        h("td", {}, h("button", { type: "button", onclick: async () => { try { await api("POST", `/api/ops/dead-letters/${d.id}/requeue`); status.textContent = "Requeued."; load(); } catch (err) { status.textContent = problem(err); } }, text: "Requeue" })),
      ))));
    } catch (err) { status.textContent = problem(err); }
  };
  load();
}

const isOperatorAdmin = () => can("admin") && !!(currentUser() && currentUser().operator);

export const adminPages = [
  { pattern: /^\/console\/admin\/webhooks\/?$/, page: webhooksPage, title: "Webhooks", nav: "/console/admin/webhooks", allowed: () => can("admin") },
  { pattern: /^\/console\/admin\/notifications\/?$/, page: notificationsPage, title: "Notifications", nav: "/console/admin/notifications", allowed: () => can("admin") },
  { pattern: /^\/console\/admin\/categories\/?$/, page: categoriesPage, title: "Categories", nav: "/console/admin/categories", allowed: () => can("supervisor") },
  { pattern: /^\/console\/admin\/insight-template\/?$/, page: insightTemplatePage, title: "Insight template", nav: "/console/admin/insight-template", allowed: () => can("admin") },
  { pattern: /^\/console\/admin\/users\/?$/, page: usersPage, title: "Users", nav: "/console/admin/users", allowed: () => can("admin") },
  { pattern: /^\/console\/admin\/dead-letters\/?$/, page: deadLettersPage, title: "Dead letters", nav: "/console/admin/dead-letters", allowed: isOperatorAdmin },
];
