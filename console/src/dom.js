// The one way the console builds DOM: elements and text nodes, never HTML strings, so every
// campaign, file name, transcript word and speaker name is text whatever it contains.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value" || key === "checked") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, ...children);
  return el;
}

export function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function announce(message) {
  const live = document.getElementById("live");
  if (live) live.textContent = message;
}

export function clock(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

export function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function percent(ratio) {
  return Number.isFinite(ratio) ? `${Math.round(ratio * 100)}%` : "–";
}

// "agent" -> "Agent": the label the transcript shows for a role.
export function roleLabel(role) {
  return role ? role.charAt(0).toUpperCase() + role.slice(1) : "";
}

// An error as one line of text for a status message.
export function problem(error) {
  if (error && error.body && error.body.detail) return `${error.body.detail} (${error.body.error})`;
  return error && error.message ? error.message : String(error);
}

// A modal confirmation (<dialog>), resolving to true when confirmed.
export function confirmDialog(title, message, action) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title", text: title }),
      h("p", { text: message }),
    );
    const done = (ok) => { dialog.close(); dialog.remove(); resolve(ok); };
    append(dialog, h("div", { class: "actions" },
      h("button", { type: "button", onclick: () => done(false), text: "Cancel" }),
      h("button", { type: "button", class: "danger", onclick: () => done(true), text: action }),
    ));
    dialog.addEventListener("cancel", () => done(false));
    document.body.append(dialog);
    dialog.showModal();
  });
}
