/* The live page: one WebSocket to the gateway, a snapshot of the inference service per message.
   Reconnects with backoff; when the service is DOWN the last values stay on screen, greyed out. */
(function () {
  "use strict";
  var HISTORY = 120;
  var root, socket, retry = 0, tpsChart, tenantChart, lastUp = null, lastMessage = 0;

  function $(id) { return document.getElementById(id); }
  function text(id, value) { var el = $(id); if (el) { el.textContent = value; } }
  function fmt(n) { return typeof n === "number" ? n.toLocaleString() : "–"; }

  function setState(state, label) {
    var pill = $("live-state");
    pill.dataset.state = state;
    pill.textContent = label;
  }

  function banner(message) {
    var el = $("live-banner");
    el.hidden = !message;
    el.textContent = message || "";
    root.classList.toggle("stale", !!message);
  }

  function charts() {
    if (typeof Chart === "undefined") { return; }
    tpsChart = new Chart($("chart-live-tps"), {
      type: "line",
      data: { labels: [], datasets: [{ label: "tokens/s", data: [], borderColor: "#2f5bd3", backgroundColor: "rgba(47,91,211,.15)",
                                       fill: true, pointRadius: 0, tension: .25 }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } },
                 scales: { x: { ticks: { maxTicksLimit: 6, maxRotation: 0 } }, y: { beginAtZero: true } } }
    });
    tenantChart = new Chart($("chart-live-tenants"), {
      type: "bar",
      data: { labels: [], datasets: [
        { label: "running", data: [], backgroundColor: "#2b8a3e", stack: "s" },
        { label: "queued", data: [], backgroundColor: "#f59f00", stack: "s" }] },
      options: { indexAxis: "y", responsive: true, maintainAspectRatio: false, animation: false,
                 plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
                 scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true } } }
    });
  }

  function tenantRows(tenants) {
    var body = document.querySelector("#live-tenants tbody");
    body.replaceChildren();
    if (!tenants.length) {
      var empty = body.insertRow(); var cell = empty.insertCell();
      cell.colSpan = 5; cell.className = "empty"; cell.textContent = "No tenant has work queued or running.";
      return;
    }
    tenants.forEach(function (t) {
      var row = body.insertRow();
      row.dataset.tenant = t.slug;
      var name = row.insertCell(); name.textContent = t.slug; name.title = t.name || t.id;
      [t.weight, t.running, t.queued, t.virtual_counter].forEach(function (v) {
        var c = row.insertCell(); c.className = "num"; c.textContent = fmt(v);
      });
    });
  }

  function replicaRows(replicas) {
    var body = document.querySelector("#live-replicas tbody");
    body.replaceChildren();
    (replicas || []).forEach(function (r) {
      var row = body.insertRow();
      row.insertCell().textContent = r.name;
      var state = row.insertCell(), badge = document.createElement("span");
      badge.className = "badge " + (r.up ? "good" : "bad");
      badge.textContent = r.up ? r.status : "DOWN · " + r.error;
      state.appendChild(badge);
      [r.running, r.queued, r.tokens_per_s, r.up ? r.kv_percent + "%" : undefined].forEach(function (v) {
        var c = row.insertCell(); c.className = "num"; c.textContent = typeof v === "string" ? v : fmt(v);
      });
    });
  }

  function pushTps(at, value) {
    if (!tpsChart) { return; }
    var d = tpsChart.data;
    d.labels.push(new Date(at).toLocaleTimeString()); d.datasets[0].data.push(value);
    if (d.labels.length > HISTORY) { d.labels.shift(); d.datasets[0].data.shift(); }
    tpsChart.update("none");
  }

  function render(s) {
    text("live-at", new Date(s.at).toLocaleTimeString());
    replicaRows(s.replicas);
    if (!s.up) {
      setState("down", "DOWN");
      pushTps(s.at, null);  // a gap in the line, not a fake zero
      banner("The inference service is DOWN (" + s.error + ") since " + (lastUp ? lastUp.toLocaleTimeString() : "the page opened") +
             ". Showing the last values received; retrying every second.");
      return;
    }
    lastUp = new Date(s.at);
    setState("up", s.alive ? "UP" : "ENGINE STOPPED");
    banner(s.alive ? "" : "The service answers but its engine loop has stopped.");
    text("live-model", s.model + " · " + s.device + " · " + s.policy);
    text("live-running", fmt(s.running)); text("live-capacity", s.max_num_seqs ? "of " + s.max_num_seqs + " slots" : "");
    text("live-queued", fmt(s.queued)); text("live-tps", fmt(s.tokens_per_s));
    text("live-generated", fmt(s.generated_tokens)); text("live-preemptions", fmt(s.preemptions));
    text("live-kv", s.kv.percent + "%");
    text("live-kv-detail", fmt(s.kv.used_tokens) + " / " + fmt(s.kv.total_tokens) + " tokens");
    $("live-kv-bar").style.width = Math.min(100, s.kv.percent) + "%";
    text("live-policy", s.policy ? "· policy " + s.policy : "");
    tenantRows(s.tenants);
    if (tpsChart) {
      pushTps(s.at, s.tokens_per_s);
      tenantChart.data.labels = s.tenants.map(function (t) { return t.slug; });
      tenantChart.data.datasets[0].data = s.tenants.map(function (t) { return t.running; });
      tenantChart.data.datasets[1].data = s.tenants.map(function (t) { return t.queued; });
      tenantChart.update("none");
    }
    root.dataset.updates = String((parseInt(root.dataset.updates || "0", 10) + 1));
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.wsPath);
    socket.onopen = function () { retry = 0; lastMessage = Date.now(); };
    socket.onmessage = function (event) { lastMessage = Date.now(); render(JSON.parse(event.data)); };
    socket.onclose = function (event) {
      if (event.code === 4403) {  // signed out or no longer staff: reconnecting would not help
        setState("down", "SIGNED OUT");
        banner("Your session no longer allows the live view. Sign in again to continue.");
        return;
      }
      setState(retry > 5 ? "down" : "connecting", retry > 5 ? "NO CONNECTION" : "reconnecting…");
      banner("Lost the connection to the gateway; reconnecting…");
      retry += 1;
      setTimeout(connect, Math.min(10000, 500 * Math.pow(2, Math.min(retry, 5))));
    };
  }

  // A socket that stays open but silent (a dropped group membership, a stuck proxy) is replaced.
  function watchdog() {
    var limit = Math.max(5000, 5000 * parseFloat(root.dataset.interval || "1"));
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastMessage > limit) { socket.close(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    root = $("live");
    charts();
    connect();
    setInterval(watchdog, 1000);
  });
})();
