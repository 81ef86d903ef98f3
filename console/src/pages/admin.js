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
      e.enabled ? null : h("button", { type: "button", onclick: async () => { try { show(await api("POST", "/api/webhooks/endpoint/enable")); } catch (err) { status.textContent = problem(err); } }, text: "Enable" }),
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

async function notificationsPage(main) {
  const status = statusLine();
  const list = h("div");
  append(main, h("h1", { text: "Notification rules" }), status, list);
  const load = async () => {
    clear(list);
    try {
      const answer = await api("GET", "/api/notifications");
      const rules = answer.rules || answer.notifications || answer || [];
      append(list, table(["Events", "Target", "Campaign", ""], rules.map((r) => h("tr", {},
        h("td", { text: (r.on || r.events || []).join(", ") }),
        h("td", { text: r.slack_url ? "Slack" : (r.emails || r.email || []).join(", ") }),
        h("td", { text: r.campaign || "any" }),
        h("td", {}, h("button", { type: "button", onclick: async () => { if (await confirmDialog("Remove this rule?", "It stops notifying.", "Remove")) { try { await api("DELETE", `/api/notifications/${r.id}`); load(); } catch (err) { status.textContent = problem(err); } } }, text: "Remove" })),
      ))));
    } catch (err) { status.textContent = problem(err); }
  };
  const on = h("input", { id: "n-on", name: "on", placeholder: "failed, completed, category:NAME" });
  const emails = h("input", { id: "n-email", name: "email", placeholder: "a@example.com, b@example.com" });
  const slack = h("input", { id: "n-slack", name: "slack", type: "url" });
  const campaign = h("input", { id: "n-campaign", name: "campaign" });
  const form = h("form", { "aria-labelledby": "n-title" }, h("h2", { id: "n-title", text: "Add a rule" }),
    field("Events", on), field("E-mail addresses", emails), field("Slack webhook URL", slack), field("Campaign", campaign), h("button", { type: "submit", text: "Add" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const split = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
    const body = { on: split(on.value) };
    if (emails.value) body.email = split(emails.value);
    if (slack.value) body.slack = slack.value;
    if (campaign.value) body.campaign = campaign.value;
    try { await api("POST", "/api/notifications", { json: body }); status.textContent = "Added."; load(); } catch (err) { status.textContent = problem(err); }
  });
  append(main, form);
  load();
}

async function categoriesPage(main) {
  const status = statusLine();
  const list = h("div");
  const name = h("input", { id: "c-name", name: "name", required: true, maxlength: 100 });
  const rule = h("textarea", { id: "c-rule", name: "rule", rows: 10, cols: 60, spellcheck: "false", placeholder: '{"said": ["cancel my subscription"], "by": "customer"}' });
  const form = h("form", { "aria-labelledby": "c-title" }, h("h2", { id: "c-title", text: "Edit a category" }), field("Name", name), field("Rule (JSON)", rule),
    h("button", { type: "submit", text: "Save" }));
  append(main, h("h1", { text: "Categories" }), status, list, form);
  const load = async () => {
    clear(list);
    try {
      const answer = await api("GET", "/api/categories");
      const categories = answer.categories || answer || [];
      append(list, table(["Name", "Rule", ""], categories.map((c) => h("tr", {},
        h("td", { text: c.name }),
        h("td", {}, h("code", { text: JSON.stringify(c.rule) })),
        h("td", {},
          h("button", { type: "button", onclick: () => { name.value = c.name; rule.value = JSON.stringify(c.rule, null, 2); rule.focus(); }, text: "Edit" }), " ",
          h("button", { type: "button", onclick: async () => {
            try {
              const done = await api("POST", `/api/categories/${encodeURIComponent(c.name)}/apply`, { query: { since: "30d" } });
              status.textContent = `${c.name}: ${done.matched} of ${done.evaluated} calls of the last 30 days match.`;
            } catch (err) { status.textContent = problem(err); }
          }, text: "Apply to the last 30 days" }), " ",
          h("a", { href: `/console/?category=${encodeURIComponent(c.name)}`, "data-nav": "", text: "Matching calls" }), " ",
          h("button", { type: "button", onclick: async () => { if (await confirmDialog(`Delete ${c.name}?`, "Its matches are removed from past calls.", "Delete")) { try { await api("DELETE", `/api/categories/${encodeURIComponent(c.name)}`); load(); } catch (err) { status.textContent = problem(err); } } }, text: "Delete" })),
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
      append(list, table(["E-mail", "Role", "Disabled", ""], users.map((u) => {
        const role = h("select", { "aria-label": `Role of ${u.email}` }, roles.map((r) => h("option", { value: r, text: r, selected: u.role === r })));
        role.addEventListener("change", async () => { try { await api("PATCH", `/api/users/${u.id}`, { json: { role: role.value } }); status.textContent = "Saved."; } catch (err) { status.textContent = problem(err); } });
        return h("tr", {},
          h("td", { text: u.email }), h("td", {}, role), h("td", { text: u.disabled ? "yes" : "no" }),
          h("td", {}, h("button", { type: "button", onclick: async () => { try { await api("PATCH", `/api/users/${u.id}`, { json: { disabled: !u.disabled } }); load(); } catch (err) { status.textContent = problem(err); } }, text: u.disabled ? "Enable" : "Disable" })),
        );
      })));
    } catch (err) { status.textContent = problem(err); }
  };
  const email = h("input", { id: "u-email", name: "email", type: "email", required: true });
  const role = h("select", { id: "u-role", name: "role" }, roles.map((r) => h("option", { value: r, text: r })));
  const password = h("input", { id: "u-password", name: "password", type: "password", autocomplete: "new-password", "aria-describedby": "u-password-hint" });
  const hint = h("p", { id: "u-password-hint", class: "detail", text: "Leave empty to have one generated (shown once)." });
  const form = h("form", { "aria-labelledby": "nu-title" }, h("h2", { id: "nu-title", text: "Add a user" }), field("E-mail", email), field("Role", role), field("Password", password), hint, h("button", { type: "submit", text: "Add" }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { email: email.value, role: role.value };
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
      append(list, table(["Captured", "Kind", "Consumer", "Call", ""], answer.dead_letters.map((d) => h("tr", {},
        h("td", { text: when(d.captured_at || d.created_at) }), h("td", { text: d.kind }), h("td", { text: d.consumer }),
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
  { pattern: /^\/console\/admin\/users\/?$/, page: usersPage, title: "Users", nav: "/console/admin/users", allowed: () => can("admin") },
  { pattern: /^\/console\/admin\/dead-letters\/?$/, page: deadLettersPage, title: "Dead letters", nav: "/console/admin/dead-letters", allowed: isOperatorAdmin },
];
