// rollguard review console: keyboard shortcuts, lease heartbeat, verdicts through the JSON API.
// Our own code, no dependencies.
(function () {
  "use strict";

  function api(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Rollguard-Review": "1" },
      body: JSON.stringify(body || {}),
    }).then(function (resp) {
      if (resp.status === 204) return {};
      return resp.json().then(function (data) {
        if (!resp.ok) {
          var msg = (data && data.error && data.error.message) || resp.statusText;
          throw new Error(resp.status + " " + msg);
        }
        return data;
      });
    });
  }

  // After a verdict: claim the next item of the queue that matches the queue page's filters
  // (``filters``: the query string they travel in) with a form post, so the server redirects to
  // the next item, or back to the queue saying nothing is left.
  function claimNext(queue, done, filters) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = "/review/queues/" + encodeURIComponent(queue) + "/claim";
    var fields = [["done", done]];
    new URLSearchParams(filters || "").forEach(function (value, name) { fields.push([name, value]); });
    fields.forEach(function (f) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = f[0];
      input.value = f[1];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  function typing(ev) {
    var t = ev.target;
    return t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable);
  }

  function setupItem(root) {
    var queue = root.dataset.queue, item = root.dataset.item, lease = root.dataset.lease;
    var filters = root.dataset.filters || "";
    var canDecide = root.dataset.canDecide === "1";
    var message = document.getElementById("message");
    var busy = false;
    if (!canDecide || !lease) return;

    function say(text, cls) {
      if (!message) return;
      message.textContent = text;
      message.className = cls || "";
    }

    function preference() {
      var el = document.querySelector("input[name=preference]:checked");
      return el ? el.value : null;
    }

    function submit(label) {
      if (busy) return;
      busy = true;
      say("Submitting " + label + "…");
      var corrected = document.getElementById("corrected");
      api("/v1/review/leases/" + encodeURIComponent(lease) + "/verdict", {
        item_id: item,
        label: label,
        note: (document.getElementById("note") || {}).value || "",
        preference: preference(),
        corrected: corrected && corrected.value.trim() ? corrected.value : null,
      }).then(function () {
        say("Verdict recorded; claiming the next item…", "ok");
        claimNext(queue, item, filters);
      }).catch(function (err) {
        busy = false;
        say("Verdict not recorded: " + err.message, "error");
      });
    }

    function release() {
      api("/v1/review/leases/" + encodeURIComponent(lease) + "/release", { item_id: item })
        .then(function () {
          window.location.href = "/review/queues/" + encodeURIComponent(queue) + (filters ? "?" + filters : "");
        })
        .catch(function (err) { say("Release failed: " + err.message, "error"); });
    }

    var keys = {};
    document.querySelectorAll(".label-btn").forEach(function (btn) {
      if (btn.dataset.key) keys[btn.dataset.key] = btn.dataset.label;
      btn.addEventListener("click", function () { submit(btn.dataset.label); });
    });
    var rel = document.getElementById("release");
    if (rel) rel.addEventListener("click", release);

    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && typing(ev)) { ev.target.blur(); return; }
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var pref = { a: "canary", s: "tie", d: "control" }[ev.key];
      if (pref) {
        var radio = document.querySelector("input[name=preference][value=" + pref + "]");
        if (radio) { radio.checked = true; ev.preventDefault(); }
        return;
      }
      if (ev.key === "n") { var n = document.getElementById("note"); if (n) { n.focus(); ev.preventDefault(); } return; }
      if (ev.key === "r") { ev.preventDefault(); release(); return; }
      if (keys[ev.key]) { ev.preventDefault(); submit(keys[ev.key]); }
    });

    var every = Math.max(5000, Math.floor(Number(root.dataset.leaseMs) / 3));
    window.setInterval(function () {
      if (busy) return;
      api("/v1/review/leases/" + encodeURIComponent(lease) + "/heartbeat").catch(function (err) {
        say("Lease lost: " + err.message + " — claim the item again.", "error");
      });
    }, every);
  }

  function setupQueue() {
    var claim = document.getElementById("claim-next");
    if (!claim) return;
    document.addEventListener("keydown", function (ev) {
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.key === "c") { ev.preventDefault(); claim.form.submit(); }
    });
  }

  // Rollout page: the Approve button posts the step it approves to the controller's route, so a
  // second click (or a second lead) on the same step promotes once.
  function setupRollout() {
    var btn = document.getElementById("approve");
    if (!btn) return;
    var message = document.getElementById("approve-message");
    btn.addEventListener("click", function () {
      btn.disabled = true;
      message.textContent = "Approving…";
      message.className = "";
      api("/v1/rollouts/" + encodeURIComponent(btn.dataset.rollout) + "/approve", {
        step: Number(btn.dataset.step),
      }).then(function () {
        message.textContent = "Approved: promoting to the next step.";
        message.className = "ok";
        window.setTimeout(function () { window.location.reload(); }, 800);
      }).catch(function (err) {
        btn.disabled = false;
        message.textContent = "Approval not recorded: " + err.message;
        message.className = "error";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("item");
    if (root) setupItem(root);
    setupQueue();
    setupRollout();
  });
})();
