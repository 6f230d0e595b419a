/* The playground: the preflight panel follows the form; Send streams the answer from
   /v1/chat/completions (through the console proxy) and Stop aborts it; then the receipt. */
"use strict";

(() => {
  const form = document.getElementById("playground");
  if (!form) return;
  const $ = id => document.getElementById(id);
  const panel = $("pg-panel"), answer = $("pg-answer"), status = $("pg-status");
  const send = $("pg-send"), stop = $("pg-stop"), check = $("pg-check");
  const receiptSection = $("pg-receipt-section"), receiptBox = $("pg-receipt");
  let controller = null, timer = null, asked = 0;

  function request() {
    const f = new FormData(form);
    const max = String(f.get("max_tokens") || "").trim();
    return {
      model: f.get("model"), mode: f.get("mode"), routePreference: f.get("route_preference"),
      runId: f.get("run_id") || null, maxTokens: /^\d+$/.test(max) ? Number(max) : null,
      messages: [{role: "user", content: String(f.get("prompt") || "")}],
    };
  }

  async function preflight() {
    const r = request(), n = ++asked;
    const body = {model: r.model, mode: r.mode, route_preference: r.routePreference, messages: r.messages};
    if (r.maxTokens) body.max_tokens = r.maxTokens;
    if (r.runId) body.run_id = r.runId;
    const out = await Console.fragment("/console/playground/preflight", body);
    if (n !== asked) return;  // a newer preflight is on its way
    if (out.ok || out.html.trim().startsWith("<")) panel.innerHTML = out.html;
    else panel.textContent = out.html;
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(preflight, 350);
  }

  async function showReceipt(id) {
    receiptSection.hidden = false;
    for (let i = 0; i < 60; i++) {
      const out = await Console.fragment(`/console/receipts/${encodeURIComponent(id)}?fragment=true`);
      receiptBox.innerHTML = out.html;
      const root = receiptBox.querySelector("[data-status]");
      if ((out.ok && root && root.dataset.status !== "pending") || (out.status >= 400 && out.status < 500)) break;
      await new Promise(ok => setTimeout(ok, 250));
    }
    status.textContent += " Receipt below.";
    preflight();  // balances and spend changed
  }

  function streaming(on) {
    send.disabled = on;
    stop.disabled = !on;
    if (on) stop.focus(); else send.focus();
  }

  /* Reads an SSE body: appends content deltas, reports an error event (e.g. run_cancelled). */
  async function readStream(body) {
    const reader = body.getReader(), decoder = new TextDecoder();
    let buffer = "", error = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") continue;
          let obj;
          try { obj = JSON.parse(data); } catch (e) { continue; }
          if (obj.error) error = obj.error;
          for (const choice of obj.choices || []) {
            const text = (choice.delta || {}).content;
            if (text) answer.textContent += text;
          }
        }
      }
    }
    return error;
  }

  async function sendRequest() {
    const r = request();
    if (!r.messages[0].content.trim()) { status.textContent = "Type a prompt first."; return; }
    answer.textContent = "";
    receiptSection.hidden = true;
    receiptBox.replaceChildren();
    controller = new AbortController();
    streaming(true);
    status.textContent = "Sending…";
    const headers = {"Content-Type": "application/json", "X-CSRF-Token": Console.csrf(),
                     "X-TF-Route-Preference": r.routePreference};
    if (r.runId) headers["X-TF-Run-Id"] = r.runId;
    const body = {model: r.model, messages: r.messages, stream: true, stream_options: {include_usage: true}};
    if (r.maxTokens) body.max_tokens = r.maxTokens;
    let receiptId = null;
    try {
      const resp = await fetch("/console/api/v1/chat/completions", {
        method: "POST", headers, body: JSON.stringify(body), signal: controller.signal, credentials: "same-origin"});
      receiptId = resp.headers.get("X-TF-Receipt-Id");
      if (!resp.ok) {
        let err = null;
        try { err = (await resp.json()).error; } catch (e) { err = null; }
        status.textContent = `Refused (${resp.status} ${err ? err.code : ""}): ${err ? err.message : "no details"}`;
      } else {
        status.textContent = `Streaming from a ${resp.headers.get("X-TF-Route-Kind")} route, paid from the ` +
          `${resp.headers.get("X-TF-Bucket")} bucket (reserved ${Console.usd(resp.headers.get("X-TF-Reserved-Micros"))})…`;
        const error = await readStream(resp.body);
        status.textContent = error ? `The stream ended with ${error.code}: ${error.message}` : "Done.";
      }
    } catch (e) {
      status.textContent = e.name === "AbortError" ? "Stopped: the gateway charges only what was delivered."
                                                   : `Failed: ${e.message}`;
    } finally {
      controller = null;
      streaming(false);
    }
    if (receiptId) await showReceipt(receiptId);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  form.addEventListener("submit", ev => { ev.preventDefault(); sendRequest(); });
  check.addEventListener("click", preflight);
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  preflight();
})();
