// The console: a small single-page app served from /console/, a client of the /api routes.
import "./styles.css";
import { can, currentUser, logout, session } from "./api.js";
import { append, clear, h } from "./dom.js";
import { adminPages } from "./pages/admin.js";
import { callPage } from "./pages/call.js";
import { callsPage } from "./pages/calls.js";
import { loginPage } from "./pages/login.js";

const ROUTES = [
  { pattern: /^\/console\/login\/?$/, page: loginPage, open: true, title: "Log in" },
  { pattern: /^\/console\/?$/, page: callsPage, title: "Calls" },
  { pattern: /^\/console\/calls\/([^/]+)\/?$/, page: callPage, title: "Call" },
  ...adminPages,
];

let dispose = null;
let checked = false;

export function navigate(to, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, "", to);
  else window.history.pushState(null, "", to);
  render();
}

function header() {
  const top = clear(document.getElementById("top"));
  const user = currentUser();
  const nav = h("nav", { "aria-label": "Main" },
    h("a", { href: "/console/", "data-nav": "", class: "brand", text: "Transcription console" }),
  );
  if (user) {
    const links = h("ul", { class: "links" }, h("li", {}, h("a", { href: "/console/", "data-nav": "", text: "Calls" })));
    for (const route of ROUTES) {
      if (route.nav && route.allowed()) append(links, h("li", {}, h("a", { href: route.nav, "data-nav": "", text: route.title })));
    }
    append(nav, links, h("span", { class: "who" },
      h("span", { text: `${user.email} (${user.role}${user.operator ? ", operator" : ""})` }),
      h("button", { type: "button", class: "link", onclick: async () => { await logout(); navigate("/console/login"); }, text: "Log out" }),
    ));
  }
  append(top, nav);
}

async function render() {
  if (dispose) { dispose(); dispose = null; }
  const path = window.location.pathname;
  let route = null;
  let match = null;
  for (const r of ROUTES) {
    match = path.match(r.pattern);
    if (match) { route = r; break; }
  }
  if (!checked || !currentUser()) {
    await session().catch(() => null);
    checked = true;
  }
  const main = clear(document.getElementById("main"));
  delete main.dataset.ready;
  if (!route) {
    header();
    append(main, h("h1", { text: "Not found" }), h("p", {}, h("a", { href: "/console/", "data-nav": "", text: "Back to the calls" })));
    return;
  }
  if (!route.open && !currentUser()) {
    navigate(`/console/login?next=${encodeURIComponent(path + window.location.search)}`, { replace: true });
    return;
  }
  if (route.allowed && !route.allowed()) {
    header();
    append(main, h("h1", { text: "Not allowed" }), h("p", { text: "Your role cannot open this page." }));
    return;
  }
  header();
  document.title = `${route.title} · Transcription console`;
  const params = new URLSearchParams(window.location.search);
  dispose = (await route.page(main, { match, params, navigate, can })) || null;
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-nav]");
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const to = new URL(a.href);
  if (to.origin !== window.location.origin) return;
  event.preventDefault();
  navigate(to.pathname + to.search);
});
window.addEventListener("popstate", render);
window.addEventListener("console:logged-out", () => {
  if (!window.location.pathname.startsWith("/console/login")) navigate("/console/login", { replace: true });
});
render();
