// RunUp web UI: progress without reloading, and confirmation of forms
// that remove data. Every page works without this script.
"use strict";

document.addEventListener("submit", (e) => {
  const msg = e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) e.preventDefault();
});

// A radio "to another folder" follows the folder field.
document.addEventListener("input", (e) => {
  if (e.target.id === "location") {
    const r = document.getElementById("to-elsewhere");
    if (r) r.checked = e.target.value !== "";
  }
});

function poll(url, every, fn) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const res = await fetch(url, { credentials: "same-origin" });
      if (res.ok && fn(await res.json()) === false) { stopped = true; return; }
    } catch (_) { /* the server restarts: try again */ }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

// The task page follows its task to the end.
const task = document.getElementById("task");
if (task && (task.dataset.state === "running" || task.dataset.state === "queued")) {
  poll("/api/tasks/" + task.dataset.task, 700, (t) => {
    task.dataset.state = t.state;
    const state = document.getElementById("task-state");
    state.textContent = t.state;
    state.className = "badge " + t.state;
    document.getElementById("task-progress").textContent = t.progress || "";
    const log = document.getElementById("task-log");
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = t.lines.map((l) => l + "\n").join("");
    if (atEnd) log.scrollTop = log.scrollHeight;
    if (t.state !== "running" && t.state !== "queued") {
      const result = document.getElementById("task-result");
      result.textContent = "";
      if (t.error) {
        const s = document.createElement("span");
        s.className = "error";
        s.textContent = t.error;
        result.append(s);
      } else if (t.summary) {
        result.append(t.summary);
      }
      if (t.job) {
        const a = document.createElement("a");
        a.href = "/jobs/" + t.job + "/browse/";
        a.textContent = " Open job " + t.job + " →";
        result.append(a);
      }
      const banner = document.getElementById("running-banner");
      if (banner) banner.remove();
      return false;
    }
  });
}

// The banner of a running task follows it, on every page.
const banner = document.getElementById("running-banner");
if (banner && !task) {
  poll("/api/status", 1000, (s) => {
    if (!s.running) { banner.remove(); return false; }
    banner.querySelector(".progress-line").textContent = s.running.progress || "";
  });
}
