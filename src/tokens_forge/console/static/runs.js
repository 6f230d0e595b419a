/* The run-start form: the preflight of the run exactly as the form describes it (the panel
   POST /v1/runs will store) is shown before Start; Start is enabled only while the panel shown is
   for the form's current values, and a panel that is not OK to start also needs the confirmation
   box ticked. */
"use strict";

(() => {
  const form = document.getElementById("new-run");
  if (!form) return;
  const $ = id => document.getElementById(id);
  const box = $("run-preflight"), start = $("run-start"), check = $("run-check"), status = $("run-status");
  let shownFor = null, shownOk = false, timer = null, asked = 0;

  function values() {
    const f = new FormData(form);
    const budget = String(f.get("budget_micros") || "").trim();
    return {
      name: String(f.get("name") || "").trim() || null, model: f.get("model"), mode: f.get("mode"),
      route_preference: f.get("route_preference"), budget: /^\d+$/.test(budget) ? Number(budget) : null,
    };
  }

  function runBody(v) {
    return {model: v.model, mode: v.mode, route_preference: v.route_preference, budget_micros: v.budget};
  }

  const key = v => JSON.stringify(runBody(v));

  function sync() {
    const current = shownFor !== null && shownFor === key(values());
    const confirm = $("run-confirm");
    start.disabled = !current || (!shownOk && !(confirm && confirm.checked));
  }

  async function preflight() {
    const v = values(), n = ++asked;
    if (v.budget === null) {
      shownFor = null;
      box.innerHTML = "";
      status.textContent = "Budget (micros): a whole number, please.";
      sync();
      return;
    }
    status.textContent = "Checking the preflight…";
    const out = await Console.fragment("/console/runs/preflight", runBody(v));
    if (n !== asked) return;  // a newer check is on its way
    box.innerHTML = out.html;
    const panel = box.querySelector('[data-testid="preflight"]');
    shownFor = out.ok && panel ? key(v) : null;
    shownOk = Boolean(panel && panel.dataset.ok === "true");
    status.textContent = shownFor === null ? "The preflight could not be computed; see above."
      : shownOk ? "OK to start." : "Not OK to start: read why, and tick the box to start anyway.";
    sync();
  }

  function changed(ev) {
    if ((ev.target && ev.target.id === "run-confirm") || (shownFor !== null && shownFor === key(values()))) {
      sync();  // the confirmation, or a field the preflight does not depend on (the name)
      return;
    }
    shownFor = null;  // the panel shown no longer describes the form
    sync();
    clearTimeout(timer);
    timer = setTimeout(preflight, 350);
  }

  async function startRun(ev) {
    ev.preventDefault();
    sync();
    if (start.disabled) return;
    const v = values();
    start.disabled = true;
    status.textContent = "Starting…";
    try {
      const run = await Console.api("POST", "v1/runs", {...runBody(v), name: v.name});
      try { sessionStorage.setItem("tf-console-flash", `Run ${run.id} started: send its requests with X-TF-Run-Id: ${run.id}`); }
      catch (e) { /* private mode */ }
      location.assign(`/console/runs/${encodeURIComponent(run.id)}`);
    } catch (e) {
      status.textContent = `Refused: ${e.message}`;
      sync();
    }
  }

  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", startRun);
  check.addEventListener("click", preflight);
  preflight();
})();
