import { login } from "../api.js";
import { append, h, problem } from "../dom.js";

export function loginPage(main, { params, navigate }) {
  const error = h("p", { class: "error", role: "alert", id: "login-error" });
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", text: "Log in" });
  const form = h("form", { class: "login", method: "post", action: "/console/login", "aria-describedby": "login-error" },
    h("h1", { text: "Log in" }),
    h("label", { for: "email", text: "E-mail" }), email,
    h("label", { for: "password", text: "Password" }), password,
    submit, error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      await login(email.value, password.value);
      const next = params.get("next");
      navigate(next && next.startsWith("/console/") && !next.startsWith("//") ? next : "/console/", { replace: true });
    } catch (e) {
      error.textContent = e.status === 401 ? "Wrong e-mail or password." : e.status === 429 ? "Too many attempts; try again later." : problem(e);
      submit.disabled = false;
      password.focus();
    }
  });
  append(main, form);
  email.focus();
}
