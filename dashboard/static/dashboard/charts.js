/* Draws the usage charts of the overview and tenant pages from the JSON in #usage-data.
   Chart.js is served from our own static files (vendor/chart.umd.min.js). */
(function () {
  "use strict";
  var PALETTE = ["#2f5bd3", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f59f00", "#868e96"];
  var OUTCOME_COLOURS = { ok: "#2b8a3e", cancelled: "#adb5bd", error: "#c92a2a", rejected: "#f59f00", pending: "#74c0fc" };

  function colour(name, i) { return name === "other" ? "#adb5bd" : PALETTE[i % PALETTE.length]; }

  function datasets(series, metric) {
    if (metric === "outcomes") {
      return Object.keys(series.outcomes).filter(function (s) {
        return series.outcomes[s].some(function (v) { return v > 0; }) || s === "ok";
      }).map(function (status) {
        return { label: status === "rejected" ? "rejected (429)" : status, data: series.outcomes[status],
                 backgroundColor: OUTCOME_COLOURS[status] || "#868e96", stack: "s" };
      });
    }
    return series.tenants.map(function (name, i) {
      return { label: name, data: series[metric][name], backgroundColor: colour(name, i), stack: "s" };
    });
  }

  function draw(canvas, series) {
    var metric = canvas.dataset.metric;
    var money = metric === "cost";
    canvas.chart = new Chart(canvas, {
      type: "bar",
      data: { labels: series.labels, datasets: datasets(series, metric) },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } },
                   tooltip: { callbacks: { label: function (c) {
                     return c.dataset.label + ": " + (money ? "$" + c.parsed.y.toFixed(4) : c.parsed.y); } } } },
        scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true } },
                  y: { stacked: true, beginAtZero: true,
                       ticks: { callback: function (v) { return money ? "$" + v : v; } } } }
      }
    });
    canvas.dataset.drawn = "1";
  }

  function budgetBars() {
    document.querySelectorAll(".bar i[data-width]").forEach(function (bar) {
      bar.style.width = Math.min(100, parseFloat(bar.dataset.width) || 0) + "%";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    budgetBars();
    var source = document.getElementById("usage-data");
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    document.querySelectorAll("canvas[data-series]").forEach(function (canvas) {
      draw(canvas, data[canvas.dataset.series]);
    });
  });
})();
