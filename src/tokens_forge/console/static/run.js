/* A run page: polls the run's live fragment every second until the run is over and settled;
   the controls (outside the polled region, so keyboard focus stays put) follow its state. */
"use strict";

(() => {
  const live = document.getElementById("run-live");
  if (!live) return;
  const announce = document.getElementById("run-announce");
  const buttons = document.querySelectorAll("#run-controls button[data-run-action]");
  let timer = null, lastStatus = null;

  function sync() {
    const root = live.querySelector("[data-status]");
    if (!root) return true;
    const actions = (root.dataset.actions || "").split(" ");
    for (const b of buttons) b.disabled = !actions.includes(b.dataset.runAction);
    if (lastStatus !== null && root.dataset.status !== lastStatus) announce.textContent = `Run ${root.dataset.status}`;
    lastStatus = root.dataset.status;
    return root.dataset.done === "true";
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const out = await Console.fragment(live.dataset.src);
      if (out.ok) live.innerHTML = out.html;
      if (out.ok && sync()) return;  // over and settled: the run receipt is shown
    } catch (e) { /* offline for a moment: try again */ }
    timer = setTimeout(refresh, 1000);
  }

  document.addEventListener("console:changed", refresh);
  if (!sync()) timer = setTimeout(refresh, 1000);
})();
