// Passkeys: only a thin layer over the browser's WebAuthn; every check happens on the server.
"use strict";
(function () {
  const csrf = document.querySelector("meta[name=csrf]");
  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.content : "" },
      body: JSON.stringify(body || {}),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { throw new Error(data.error || ("HTTP " + r.status)); }
    return data;
  }
  function show(el, text) {
    const out = document.getElementById("passkey-status");
    if (out) { out.textContent = text; out.hidden = false; }
  }
  const supported = window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON;
  document.querySelectorAll("[data-passkey]").forEach((button) => {
    if (!supported) { return; }
    button.hidden = false;
    button.addEventListener("click", async (ev) => {
      ev.preventDefault();
      try {
        if (button.dataset.passkey === "register") {
          const options = await post("/passkeys/register/options");
          if (options.stepup) { location.href = options.stepup; return; }
          const cred = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) });
          const done = await post("/passkeys/register", { credential: cred.toJSON() });
          location.href = done.next;
        } else {
          const options = await post("/passkeys/signin/options");
          const cred = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
          const done = await post("/passkeys/signin", { credential: cred.toJSON() });
          location.href = done.next;
        }
      } catch (err) {
        show(button, err.message || String(err));
      }
    });
  });
})();
