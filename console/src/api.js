// The console's only way to the gateway: the documented /api routes, with the session cookie
// and the CSRF token (header X-CSRF-Token) on every state-changing request.

let csrf = null;
let user = null;
const RANKS = { viewer: 0, supervisor: 1, admin: 2 };

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function url(path, query) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, String(v));
  }
  return u.pathname + u.search;
}

export async function api(method, path, { query, json, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(url(path, query), {
    method, headers, body, signal, credentials: "same-origin", cache: "no-store",
  });
  if (response.status === 401 && path !== "/api/session") {
    user = null;
    window.dispatchEvent(new CustomEvent("console:logged-out"));
  }
  if (!response.ok) {
    let detail = null;
    try { detail = await response.json(); } catch { detail = null; }
    throw new ApiError(response.status, detail);
  }
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

function remember(answer) {
  csrf = answer.csrf_token;
  user = answer.user;
  return user;
}

export async function session() {
  try {
    return remember(await api("GET", "/api/session"));
  } catch (error) {
    if (error.status === 401) { user = null; return null; }
    throw error;
  }
}

export async function login(email, password) {
  return remember(await api("POST", "/api/session", { json: { email, password } }));
}

export async function logout() {
  try { await api("DELETE", "/api/session"); } finally { user = null; csrf = null; }
}

export function currentUser() { return user; }
export function csrfToken() { return csrf; }

// Whether the user's role reaches `role` (viewer < supervisor < admin); the API decides anyway.
export function can(role) {
  return !!user && (RANKS[user.role] ?? -1) >= RANKS[role];
}

// Uploads one file as POST /api/media/transcribe with XMLHttpRequest, whose upload progress
// events fetch() does not give. `onProgress(loaded, total)`; resolves to the accepted body.
export function upload(file, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null && v !== "") form.append(k, v);
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/media/transcribe");
    xhr.withCredentials = true;
    if (csrf) xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { error: "network", detail: "the upload failed" })));
    xhr.send(form);
  });
}
