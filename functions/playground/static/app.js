// The sora-relay playground: plain JavaScript against the public API on this page's own origin.
// The key lives in sessionStorage and travels only as an Authorization header. Everything the API
// says is put in the page as text (textContent), never as HTML.
"use strict";

(() => {
  const KEY_STORE = "sora-relay.api-key";
  const API = new URL("v1/", document.baseURI); // the page is served at the stage's root
  const TERMINAL = new Set(["completed", "failed"]);
  const POLL_MS = 1000; // status polling when the API suggests nothing (openai-poll-after-ms)
  const DETAIL_POLL_MS = 1500;
  const DETAIL_POLL_LIMIT_MS = 120000; // the detail stops refreshing itself after this long
  // The API's `param` -> the form field it names (the others are shown under the form).
  const PARAM_FIELDS = {
    prompt: "prompt",
    model: "model",
    seconds: "seconds",
    duration: "seconds",
    size: "size",
    input_reference: "image",
    image_urls: "image",
    callback_url: "callback",
  };
  const FIELD_INPUTS = {
    prompt: "prompt",
    model: "model",
    seconds: "seconds",
    size: "size",
    image: "image-url",
    callback: "callback-url",
  };

  const $ = (id) => document.getElementById(id);
  let models = [];
  let uploads = null; // null: not probed yet; true/false: the API reads multipart/form-data
  let pollTimer = null;
  let detailTimer = null;
  const cursors = [null]; // `after` of each page seen: [null, last_id of page 1, ...]

  // -- the API ----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || `http_${status}`;
      this.param = error.param || null;
    }
  }

  async function api(path, { method = "GET", json, form, headers = {} } = {}) {
    const key = sessionStorage.getItem(KEY_STORE);
    if (!key) throw new ApiError(401, { code: "no_key", message: "Paste an API key first.", param: null });
    const init = { method, headers: { Authorization: `Bearer ${key}`, ...headers }, cache: "no-store" };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form !== undefined) {
      init.body = form; // the browser writes the multipart boundary
    }
    let response;
    try {
      response = await fetch(new URL(path, API), init);
    } catch (failure) {
      throw new ApiError(0, { code: "network_error", message: `The API could not be reached (${failure.message}).` });
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error ? body.error : { message: body && body.message ? body.message : `HTTP ${response.status}` };
      throw new ApiError(response.status, error);
    }
    return { body, headers: response.headers };
  }

  // -- small helpers ------------------------------------------------------------------------------

  const money = (usd) => (usd === null || usd === undefined ? "–" : `$${usd.toFixed(usd < 1 ? 3 : 2)}`);
  const when = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
  const took = (from, to) => (from && to ? `${((to - from) / 1000).toFixed(1)} s` : "–");

  function element(tag, text, attributes = {}) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function showMessage(id, text) {
    const node = $(id);
    node.textContent = text || "";
    node.hidden = !text;
  }

  function describe(error) {
    return error instanceof ApiError ? `${error.message} (${error.code})` : String(error);
  }

  // -- the key --------------------------------------------------------------------------------------

  async function useKey(key) {
    sessionStorage.setItem(KEY_STORE, key);
    showMessage("api-key-error", "");
    $("api-key").removeAttribute("aria-invalid");
    setText("key-status", "Checking the key…");
    try {
      const { body } = await api("models");
      models = body.data;
    } catch (error) {
      sessionStorage.removeItem(KEY_STORE);
      $("api-key").setAttribute("aria-invalid", "true");
      const refused = error.status === 401 || error.status === 403;
      showMessage("api-key-error", refused ? `This key was refused: ${describe(error)}` : describe(error));
      setText("key-status", "");
      hideWork();
      return;
    }
    $("api-key").value = "";
    setText("key-status", "Key accepted. It stays in this tab only.");
    fillModels();
    $("create-panel").hidden = false;
    $("list-panel").hidden = false;
    cursors.length = 1;
    loadList(0);
  }

  function hideWork() {
    for (const id of ["create-panel", "task-panel", "list-panel", "detail-panel"]) $(id).hidden = true;
    clearTimeout(pollTimer);
    clearTimeout(detailTimer);
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      $("api-key").setAttribute("aria-invalid", "true");
      showMessage("api-key-error", "Paste an API key.");
      return;
    }
    useKey(key);
  });

  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    hideWork();
    setText("key-status", "The key is forgotten.");
  });

  // -- the form -------------------------------------------------------------------------------------

  function chosenModel() {
    return models.find((model) => model.id === $("model").value);
  }

  function fillModels() {
    const select = $("model");
    select.replaceChildren();
    const usable = models.filter((model) => model.available);
    const others = models.filter((model) => !model.available);
    for (const model of usable) {
      const served = model.served_by ? `, served by ${model.served_by}` : "";
      select.append(element("option", `${model.id} — ${money(model.price_per_second_usd)}/s${served}`, { value: model.id }));
    }
    for (const model of others) {
      // Listed so the catalogue is whole, but cannot be chosen: this deployment cannot run them.
      select.append(element("option", `${model.id} (not available here)`, { value: model.id, disabled: "" }));
    }
    fillChoices();
  }

  function fillChoices() {
    const model = chosenModel();
    if (!model) return;
    const seconds = $("seconds");
    seconds.replaceChildren(...model.seconds.map((value) => element("option", `${value} s`, { value: String(value) })));
    seconds.value = String(model.default_seconds);
    const size = $("size");
    size.replaceChildren(...model.sizes.map((value) => element("option", value, { value })));
    size.value = model.default_size;
    const offers = [
      `${model.name}: ${model.seconds.join(", ")} s`,
      `sizes ${model.sizes.join(", ")}`,
      model.image ? "takes a first-frame image" : "no first-frame image",
      model.audio ? "with audio" : "no audio",
      `${money(model.price_per_second_usd)} per second`,
    ];
    setText("model-facts", offers.join("; "));
    $("image-fields").hidden = !model.image;
    $("image-url").disabled = !model.image;
    setText("image-hint", model.image ? "An https link to a PNG, JPEG or WebP image." : "");
    if (model.image) probeUploads();
    clearErrors();
    estimate();
  }

  function estimate() {
    const model = chosenModel();
    const seconds = Number($("seconds").value);
    setText("estimate", model && seconds ? `List price: ${seconds} s × ${money(model.price_per_second_usd)}/s = ${money(seconds * model.price_per_second_usd)}` : "");
  }

  function updateCount() {
    setText("prompt-count", `${$("prompt").value.length} of 4000 characters`);
  }

  // Whether POST /v1/videos reads multipart/form-data (an uploaded first frame): a form with no
  // prompt is refused either way, but an API that reads forms names the missing field, and one
  // that reads JSON only answers invalid_json. No task is made.
  async function probeUploads() {
    if (uploads !== null) {
      $("upload-field").hidden = !uploads;
      return;
    }
    const form = new FormData();
    form.append("model", $("model").value);
    try {
      await api("videos", { method: "POST", form });
      uploads = true;
    } catch (error) {
      if (error.status === 0 || error.status === 401 || error.status === 403) return; // ask again later
      uploads = error.status === 400 && error.code !== "invalid_json";
    }
    $("upload-field").hidden = !uploads;
  }

  function clearErrors() {
    for (const [field, input] of Object.entries(FIELD_INPUTS)) {
      showMessage(`${field}-error`, "");
      $(input).removeAttribute("aria-invalid");
    }
    showMessage("create-error", "");
  }

  // The API's 4xx, next to the field its `param` names (under the form if it names none).
  function showError(error) {
    const field = error instanceof ApiError ? PARAM_FIELDS[error.param] : undefined;
    if (field) {
      showMessage(`${field}-error`, describe(error));
      $(FIELD_INPUTS[field]).setAttribute("aria-invalid", "true");
      $(FIELD_INPUTS[field]).focus();
      return;
    }
    const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
    showMessage("create-error", refused ? `Your API key was refused: ${describe(error)}` : describe(error));
  }

  // What the browser can tell before sending; the API's own checks stay the last word.
  function checkBeforeSubmit() {
    const prompt = $("prompt").value.trim();
    if (!prompt) return ["prompt", "Write a prompt."];
    for (const [field, input] of [["image", "image-url"], ["callback", "callback-url"]]) {
      const value = $(input).value.trim();
      if (value && !/^https?:\/\//i.test(value)) return [field, "This must be an https:// link."];
    }
    return null;
  }

  $("model").addEventListener("change", fillChoices);
  $("seconds").addEventListener("change", estimate);
  $("prompt").addEventListener("input", updateCount);

  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const problem = checkBeforeSubmit();
    if (problem) {
      showMessage(`${problem[0]}-error`, problem[1]);
      $(FIELD_INPUTS[problem[0]]).setAttribute("aria-invalid", "true");
      return;
    }
    const fields = {
      prompt: $("prompt").value.trim(),
      model: $("model").value,
      seconds: $("seconds").value,
      size: $("size").value,
    };
    const image = $("image-url").value.trim();
    const callback = $("callback-url").value.trim();
    if (image && chosenModel().image) fields.input_reference = image;
    if (callback) fields.callback_url = callback;
    const file = uploads && !image ? $("image-file").files[0] : undefined;
    const button = $("create-submit");
    button.disabled = true;
    try {
      // A fresh Idempotency-Key per click: a retried request can never make a second video.
      const headers = { "Idempotency-Key": crypto.randomUUID() };
      let request;
      if (file) {
        const form = new FormData();
        for (const [name, value] of Object.entries(fields)) form.append(name, value);
        form.append("input_reference", file);
        request = { method: "POST", form, headers };
      } else {
        request = { method: "POST", json: fields, headers };
      }
      const { body } = await api("videos", request);
      follow(body);
      loadList(0);
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  });

  // -- the new video's live status ------------------------------------------------------------------

  function follow(video) {
    clearTimeout(pollTimer);
    $("task-panel").hidden = false;
    $("player-box").hidden = true;
    $("player").removeAttribute("src");
    showMessage("task-error", "");
    setText("task-id", video.id);
    $("task-panel").dataset.videoId = video.id;
    render(video);
    poll(video.id, POLL_MS);
  }

  function render(video) {
    const labels = { queued: "Queued", in_progress: "In progress", completed: "Completed", failed: "Failed" };
    const progress = video.status === "in_progress" ? ` — ${video.progress}%` : "";
    setText("task-status", `${labels[video.status] || video.status}${progress}`);
    $("task-panel").dataset.status = video.status;
    $("task-progress").value = video.progress || 0;
    if (video.status === "failed" && video.error) {
      showMessage("task-error", `${video.error.message} (${video.error.code})`);
    }
    if (video.status === "completed" && video.download_url) {
      // The presigned link carries its own authority: a <video> cannot send our header.
      $("player").src = video.download_url;
      $("download").href = video.download_url;
      $("player-box").hidden = false;
    }
  }

  function poll(id, delay) {
    pollTimer = setTimeout(async () => {
      if ($("task-panel").dataset.videoId !== id) return;
      try {
        const { body, headers } = await api(`videos/${encodeURIComponent(id)}`);
        render(body);
        if (TERMINAL.has(body.status)) {
          loadList(0);
          return;
        }
        const suggested = Number(headers.get("openai-poll-after-ms"));
        poll(id, suggested > 0 ? suggested : POLL_MS);
      } catch (error) {
        showMessage("task-error", describe(error));
      }
    }, delay);
  }

  $("task-details").addEventListener("click", () => showDetail($("task-panel").dataset.videoId));

  // -- my videos --------------------------------------------------------------------------------------

  async function loadList(page) {
    const limit = $("page-size").value;
    const after = cursors[page];
    const query = new URLSearchParams({ limit });
    if (after) query.set("after", after);
    setText("list-status", "Loading…");
    try {
      const { body } = await api(`videos?${query}`);
      cursors.length = page + 1;
      if (body.has_more) cursors.push(body.last_id);
      $("videos").dataset.page = String(page);
      renderList(body.data);
      setText("list-status", body.data.length ? `Page ${page + 1}` : "No videos yet.");
      $("list-newer").disabled = page === 0;
      $("list-older").disabled = !body.has_more;
    } catch (error) {
      setText("list-status", describe(error));
    }
  }

  function renderList(videos) {
    const list = $("videos");
    list.replaceChildren();
    for (const video of videos) {
      const item = element("li", null, { class: "video", "data-id": video.id, "data-status": video.status });
      // The thumbnail from its presigned link (the S3 origin the CSP's img-src names); a placeholder
      // while there is none, or once the link has lapsed on a page left open (Refresh signs anew).
      const placeholder = new URL("playground/placeholder.svg", document.baseURI).href;
      const thumbnail = video.thumbnail_url
        ? element("img", null, { src: video.thumbnail_url, alt: `Thumbnail of ${video.id}`, class: "thumb" })
        : element("img", null, { src: placeholder, alt: "No preview", class: "thumb" });
      if (video.thumbnail_url) {
        thumbnail.addEventListener("error", () => {
          thumbnail.src = placeholder;
          thumbnail.alt = "No preview";
        }, { once: true });
      }
      const facts = element("div", null, { class: "video-facts" });
      facts.append(
        element("p", video.prompt, { class: "prompt" }),
        element("p", `${video.status.replace("_", " ")} · ${video.model} · ${video.seconds} s · ${video.size} · ${money(video.cost_usd)}`, { class: "meta" }),
        element("p", when(video.created_at * 1000), { class: "meta" }),
      );
      const open = element("button", "Details", { type: "button", class: "secondary", "aria-label": `Details of ${video.id}` });
      open.addEventListener("click", () => showDetail(video.id));
      item.append(thumbnail, facts, open);
      list.append(item);
    }
  }

  $("list-refresh").addEventListener("click", () => loadList(Number($("videos").dataset.page || 0)));
  $("page-size").addEventListener("change", () => {
    cursors.length = 1;
    loadList(0);
  });
  $("list-newer").addEventListener("click", () => loadList(Math.max(0, Number($("videos").dataset.page) - 1)));
  $("list-older").addEventListener("click", () => loadList(Number($("videos").dataset.page) + 1));

  // -- one video's details ------------------------------------------------------------------------------

  async function showDetail(id, since = Date.now()) {
    clearTimeout(detailTimer);
    const panel = $("detail-panel");
    const first = panel.dataset.videoId !== id;
    panel.dataset.videoId = id;
    panel.hidden = false;
    showMessage("detail-error", "");
    try {
      const { body } = await api(`videos/${encodeURIComponent(id)}`);
      if (panel.dataset.videoId !== id) return;
      renderDetail(body);
      if (first) panel.focus();
      const webhook = body.webhook;
      const settled = TERMINAL.has(body.status) && (!body.callback_url || (webhook && !["sending", "retrying"].includes(webhook.state)));
      panel.dataset.settled = String(settled);
      if (!settled && Date.now() - since < DETAIL_POLL_LIMIT_MS) {
        detailTimer = setTimeout(() => showDetail(id, since), DETAIL_POLL_MS);
      }
    } catch (error) {
      showMessage("detail-error", describe(error));
    }
  }

  function renderDetail(video) {
    const settings = [
      ["Id", video.id],
      ["Status", video.status + (video.error ? ` — ${video.error.message} (${video.error.code})` : "")],
      ["Model", video.model === video.served_model ? video.model : `${video.model} (served by ${video.served_model})`],
      ["Prompt", video.prompt],
      ["Seconds", video.seconds],
      ["Size", video.size],
      ["List price", money(video.cost_usd)],
      ["Callback URL", video.callback_url || "none"],
      ["Expires", when(video.expires_at ? video.expires_at * 1000 : null)],
    ];
    const list = $("detail-settings");
    list.replaceChildren();
    for (const [name, value] of settings) list.append(element("dt", name), element("dd", value));

    const timings = video.timings || {};
    const stages = [
      ["Accepted", timings.created_ms, null],
      ["Provider's result received", timings.result_received_ms, timings.created_ms],
      [video.status === "failed" ? "Failed" : "Completed (in our bucket)", timings.finished_ms, timings.result_received_ms || timings.created_ms],
    ];
    const timingRows = $("detail-timings").tBodies[0];
    timingRows.replaceChildren();
    for (const [stage, at, from] of stages) {
      const row = element("tr");
      row.append(element("th", stage, { scope: "row" }), element("td", when(at)), element("td", took(from, at)));
      timingRows.append(row);
    }

    const webhook = video.webhook;
    const state = !video.callback_url
      ? "No callback URL: no webhook is sent."
      : webhook
        ? `${webhook.state} (event ${webhook.event_id})${webhook.next_attempt_ms ? `, next attempt ${when(webhook.next_attempt_ms)}` : ""}`
        : "Not sent yet: the event goes out once the video is completed or failed.";
    setText("detail-webhook-state", state);
    const attemptRows = $("detail-webhook").tBodies[0];
    attemptRows.replaceChildren();
    for (const attempt of webhook ? webhook.attempts : []) {
      const row = element("tr", null, { "data-outcome": attempt.outcome });
      row.append(
        element("td", attempt.attempt),
        element("td", when(attempt.at_ms)),
        element("td", attempt.status_code ?? "none"),
        element("td", attempt.outcome + (attempt.error && attempt.outcome !== "delivered" ? ` — ${attempt.error}` : "")),
        element("td", attempt.duration_ms === null ? "–" : `${attempt.duration_ms} ms`),
        element("td", when(attempt.next_retry_ms)),
      );
      attemptRows.append(row);
    }
  }

  $("detail-refresh").addEventListener("click", () => showDetail($("detail-panel").dataset.videoId));

  // -- start ------------------------------------------------------------------------------------------

  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) useKey(saved);
})();
