// Browser side of the resumable upload protocol (platform/api/uploads.py): open an upload, PUT chunks at the
// offset the server confirms, resume after a dropped connection, then complete it into a submission.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const team = form.dataset.team;
  const maxBytes = Number(form.dataset.maxBytes);
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const phase = document.getElementById("phase");
  const bar = document.getElementById("progress");
  const statusText = document.getElementById("upload-status");
  const headers = { "X-CSRFToken": csrf, "X-Touchstone-Team": team };

  function showQuota() {
    const option = phase.selectedOptions[0];
    document.getElementById("remaining").textContent = option ? option.dataset.remaining + " of " + option.dataset.perDay : "–";
  }
  phase.addEventListener("change", showQuota);
  showQuota();

  const REQUEST_TIMEOUT_MS = 5 * 60 * 1000;  // a stalled connection counts as dropped, and is resumed

  async function api(method, path, body, extra) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    try {
      response = await fetch("/api/v1/" + path, {
        method, body, credentials: "same-origin", headers: Object.assign({}, headers, extra || {}),
        signal: controller.signal,
      });
    } finally {
      clearTimeout(timer);
    }
    let data = {};
    try { data = await response.json(); } catch (e) { data = { detail: "The server answered " + response.status + "." }; }
    return { status: response.status, data };
  }

  function key(file) { return "touchstone-upload:" + team + ":" + phase.value + ":" + file.name + ":" + file.size + ":" + file.lastModified; }
  function say(text) { statusText.textContent = text; }

  async function openOrResume(file, algorithm) {
    const saved = localStorage.getItem(key(file));
    if (saved) {
      const found = await api("GET", "uploads/" + saved + "/");
      if (found.status === 200 && found.data.state === "receiving") { say("Resuming at " + found.data.offset + " bytes."); return found.data; }
      if (found.status === 200 && found.data.submission) {  // it was submitted, but the answer never arrived
        localStorage.removeItem(key(file));
        return Object.assign({}, found.data, { done: true });
      }
      localStorage.removeItem(key(file));
    }
    const opened = await api("POST", "uploads/", JSON.stringify({ phase: phase.value, algorithm, size: file.size }),
                             { "Content-Type": "application/json" });
    if (opened.status !== 201) throw new Error(opened.data.detail || JSON.stringify(opened.data));
    localStorage.setItem(key(file), opened.data.id);
    return opened.data;
  }

  async function send(file, upload) {
    let offset = upload.offset, failures = 0;
    while (offset < file.size) {
      const end = Math.min(offset + upload.chunk_size, file.size);
      let result;
      try {
        result = await api("PUT", "uploads/" + upload.id + "/", file.slice(offset, end),
                           { "Content-Type": "application/octet-stream", "Content-Range": "bytes " + offset + "-" + (end - 1) + "/" + file.size });
      } catch (error) {  // the connection dropped: ask the server where it stands, then go on from there
        if (++failures > 20) throw new Error("The connection keeps dropping. Choose the file again later to resume.");
        say("Connection lost; retrying…");
        await new Promise((resolve) => setTimeout(resolve, 1000 * Math.min(failures, 10)));
        const found = await api("GET", "uploads/" + upload.id + "/");
        if (found.status === 200) offset = found.data.offset;
        continue;
      }
      if (result.status === 409 && typeof result.data.offset === "number") { offset = result.data.offset; continue; }
      if (result.status !== 200) throw new Error(result.data.detail || ("HTTP " + result.status));
      failures = 0;
      offset = result.data.offset;
      bar.value = Math.floor((100 * offset) / file.size);
      say("Uploaded " + (offset / 1048576).toFixed(1) + " of " + (file.size / 1048576).toFixed(1) + " MB");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = document.getElementById("tar").files[0];
    const algorithm = document.getElementById("algorithm").value.trim();
    if (!file) return;
    if (file.size > maxBytes) { say("This file is larger than the " + maxBytes + "-byte limit. Make the image smaller."); return; }
    const button = document.getElementById("upload-button");
    button.disabled = true;
    statusText.classList.remove("reason");
    try {
      const upload = await openOrResume(file, algorithm);
      if (upload.done) { window.location.href = "/portal/submissions/" + upload.submission + "/"; return; }
      await send(file, upload);
      say("Checking the upload…");
      const done = await api("POST", "uploads/" + upload.id + "/complete/");
      if (done.status !== 201) throw new Error(done.data.detail || ("HTTP " + done.status));
      localStorage.removeItem(key(file));
      bar.value = 100;
      window.location.href = "/portal/submissions/" + done.data.id + "/";
    } catch (error) {
      say(error instanceof TypeError || error.name === "AbortError"
        ? "The connection dropped. Choose the same file again and press the button: the upload resumes where it stopped."
        : error.message);
      statusText.classList.add("reason");
      button.disabled = false;
    }
  });
})();
