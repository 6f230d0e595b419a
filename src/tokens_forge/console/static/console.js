/* Tokens Forge console: the shared script. Forms marked data-api and buttons marked data-action
   call the gateway's API through the console proxy (/console/api/...), which attaches the signed-in
   secret server-side; this script only ever holds the CSRF token of the page. */
"use strict";

const Console = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  class ApiError extends Error {
    constructor(status, body) {
      const err = body && body.error ? body.error : {};
      super(err.message || `the API answered ${status}`);
      this.status = status;
      this.code = err.code || "error";
    }
  }

  function headers(extra) {
    return Object.assign({"X-CSRF-Token": csrf(), "Accept": "application/json"}, extra || {});
  }

  /* JSON API call through the console proxy: path is the API path without the leading slash. */
  async function api(method, path, body) {
    const init = {method, headers: headers(), credentials: "same-origin"};
    if (body !== undefined && method !== "GET") {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch("/console/api/" + path, init);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) throw new ApiError(r.status, data);
    return data;
  }

  /* An HTML fragment rendered by the console (receipt, preflight panel, run state). */
  async function fragment(url, body) {
    const init = {method: body === undefined ? "GET" : "POST", credentials: "same-origin",
                  headers: headers({"X-Console-Fragment": "1", "Accept": "text/html"})};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(url, init);
    return {ok: r.ok, status: r.status, html: await r.text()};
  }

  /* Integer micros as USD, exact: 12345 -> "$0.012345". */
  function usd(micros) {
    if (micros === null || micros === undefined) return "—";
    const m = BigInt(micros), neg = m < 0n, a = neg ? -m : m;
    const whole = (a / 1000000n).toLocaleString("en-US"), frac = (a % 1000000n).toString().padStart(6, "0");
    return `${neg ? "-" : ""}$${whole}.${frac}`;
  }

  function setPath(obj, path, value) {
    const parts = path.split(".");
    let o = obj;
    for (const p of parts.slice(0, -1)) o = (o[p] = o[p] || {});
    o[parts[parts.length - 1]] = value;
  }

  function getPath(obj, path) {
    return path.split(".").reduce((o, p) => (o === null || o === undefined ? undefined : o[p]), obj);
  }

  /* A form as the API's JSON body: names with dots nest; data-type says how a value is read. */
  function serialize(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled || el.type === "submit" || el.type === "button") continue;
      const type = el.dataset.type || "str";
      if (type === "check") {
        if (getPath(out, el.name) === undefined) setPath(out, el.name, []);
        if (el.checked) getPath(out, el.name).push(el.value);
        continue;
      }
      if (type === "bool") { setPath(out, el.name, el.checked); continue; }
      const raw = el.value.trim();
      const label = (el.labels && el.labels[0] ? el.labels[0].textContent : el.name).trim();
      if (type === "int" || type === "int?") {
        if (raw === "") { if (type === "int?") setPath(out, el.name, null); continue; }
        if (!/^-?\d+$/.test(raw)) throw new Error(`${label}: a whole number, please`);
        setPath(out, el.name, Number(raw));
      } else if (type === "float") {
        if (raw !== "") setPath(out, el.name, Number(raw));
      } else if (type === "list" || type === "list?") {
        const items = raw.split(",").map(s => s.trim()).filter(Boolean);
        setPath(out, el.name, items.length || type === "list" ? items : null);
      } else if (type === "str?") {
        setPath(out, el.name, raw === "" ? null : raw);
      } else if (raw !== "") {
        setPath(out, el.name, raw);
      }
    }
    return out;
  }

  /* "Key {id} created" with the answer's fields. */
  function fill(template, data) {
    return template.replace(/\{([\w.]+)\}/g, (_, path) => {
      const v = getPath(data, path);
      return v === undefined || v === null ? "" : String(v);
    });
  }

  function show(box, message, kind) {
    if (!box) return;
    box.replaceChildren();
    const p = document.createElement("p");
    p.className = kind;
    p.textContent = message;
    if (kind === "error") p.setAttribute("role", "alert");
    box.append(p);
  }

  function showSecret(box, data) {
    box.replaceChildren();
    const p = document.createElement("p");
    p.className = "secret";
    p.append(`Key ${data.id} created. Its secret is shown this once; copy it now: `);
    const code = document.createElement("code");
    code.textContent = data.secret;
    code.dataset.testid = "new-secret";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.textContent = "Copy secret";
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(data.secret); copy.textContent = "Copied"; }
      catch (e) { copy.textContent = "Select and copy it by hand"; }
    });
    p.append(code, " ", copy);
    const note = document.createElement("p");
    note.className = "help";
    note.textContent = "It is stored only as a hash: after you leave or reload this page nobody can show it again.";
    box.append(p, note);
    code.tabIndex = -1;
    code.focus();
  }

  function flash(message) {
    try { sessionStorage.setItem("tf-console-flash", message); } catch (e) { /* private mode */ }
  }

  function then(target, data, message) {
    const how = target.dataset.then || "";
    if (how === "reload") { flash(message); location.reload(); }
    else if (how.startsWith("goto:")) { flash(message); location.assign(fill(how.slice(5), data)); }
    else if (how) document.dispatchEvent(new CustomEvent("console:" + how, {detail: data}));
  }

  async function submitApiForm(form) {
    const box = form.querySelector("[data-result]");
    const button = form.querySelector('[type="submit"]');
    let body;
    try { body = serialize(form); } catch (e) { show(box, e.message, "error"); return; }
    const method = (form.dataset.method || "POST").toUpperCase();
    if (button) button.disabled = true;
    show(box, "Working…", "muted");
    try {
      const data = await api(method, fill(form.dataset.api, body), method === "GET" ? undefined : body);
      if (data && data.secret) { showSecret(box, data); return; }
      const message = form.dataset.success ? fill(form.dataset.success, data) : "Done.";
      show(box, message, "ok");
      then(form, data, message);
    } catch (e) {
      show(box, e.message, "error");
    } finally {
      if (button) button.disabled = false;
    }
  }

  async function runAction(button) {
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    const box = document.getElementById("flash");
    try {
      const data = await api(button.dataset.method || "POST", button.dataset.action, {});
      const message = `${button.textContent.trim()}: done.`;
      show(box, message, "ok");
      if (box) box.hidden = false;
      then(button, data, message);
      document.dispatchEvent(new CustomEvent("console:changed", {detail: data}));
    } catch (e) {
      show(box, e.message, "error");
      if (box) box.hidden = false;
      button.disabled = false;
    }
  }

  document.addEventListener("submit", ev => {
    const form = ev.target.closest("form[data-api]");
    if (!form) return;
    ev.preventDefault();
    submitApiForm(form);
  });

  document.addEventListener("click", ev => {
    const button = ev.target.closest("button[data-action]");
    if (button && !button.disabled) runAction(button);
  });

  /* Each cell learns its column's header (data-label), which the phone layout shows beside it. */
  function labelTables(root) {
    for (const table of root.querySelectorAll("table:not(.stack)")) {
      const heads = [...table.querySelectorAll(":scope > thead > tr > th")].map(th => th.textContent.trim());
      if (!heads.length) continue;
      for (const row of table.querySelectorAll(":scope > tbody > tr")) {
        [...row.children].forEach((cell, i) => { if (heads[i] && !cell.dataset.label) cell.dataset.label = heads[i]; });
      }
      table.classList.add("stack");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    labelTables(document);
    // fragments (the run's live part, the receipt, the preflight) arrive later
    new MutationObserver(() => labelTables(document)).observe(document.body, {childList: true, subtree: true});
    let message = null;
    try { message = sessionStorage.getItem("tf-console-flash"); sessionStorage.removeItem("tf-console-flash"); }
    catch (e) { message = null; }
    const box = document.getElementById("flash");
    if (message && box) { box.textContent = message; box.hidden = false; }
  });

  return {api, fragment, usd, serialize, fill, show, ApiError, csrf, labelTables};
})();
