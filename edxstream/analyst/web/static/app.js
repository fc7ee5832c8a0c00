// Draws every chart placeholder (a div.chart holding its figure as JSON) with plotly.js,
// and refreshes the live page without a reload.
(function () {
  function draw(el) {
    var fig = JSON.parse(el.querySelector('script[type="application/json"]').textContent);
    var plot = document.createElement('div');
    el.appendChild(plot);
    Plotly.newPlot(plot, fig.data, fig.layout, {responsive: true, displaylogo: false});
  }
  if (window.Plotly) document.querySelectorAll('div.chart').forEach(draw);

  var live = document.getElementById('live-charts');
  if (!live || !window.Plotly) return;
  function fmt(n) { return Number(n).toLocaleString('en-US'); }
  function refresh() {
    fetch(live.dataset.url, {credentials: 'same-origin'}).then(function (r) { return r.ok ? r.json() : null; }).then(function (d) {
      if (!d || !d.last) return;
      document.getElementById('live-last').textContent = d.last;
      var plots = live.querySelectorAll('div.chart > div');
      if (plots.length !== d.charts.length) {
        live.innerHTML = '';
        d.charts.forEach(function (fig) {
          var el = document.createElement('div'); el.className = 'chart'; live.appendChild(el);
          var p = document.createElement('div'); el.appendChild(p);
          Plotly.newPlot(p, fig.data, fig.layout, {responsive: true, displaylogo: false});
        });
      } else {
        d.charts.forEach(function (fig, i) { Plotly.react(plots[i], fig.data, fig.layout); });
      }
      var body = document.querySelector('#live-top tbody');
      body.innerHTML = '';
      d.top.forEach(function (t) {
        var tr = document.createElement('tr');
        var a = document.createElement('td'); a.className = 'answer'; a.textContent = t.action;
        var n = document.createElement('td'); n.className = 'n'; n.textContent = fmt(t.events);
        tr.appendChild(a); tr.appendChild(n); body.appendChild(tr);
      });
    }).catch(function () {});
  }
  setInterval(refresh, 5000);
})();
