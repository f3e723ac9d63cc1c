// Report page: period tabs, filters (basis, segment, statistic, metric text) and the floating
// list of metrics on the current tab. Works offline; no data is read from anywhere but the DOM.
(function () {
  "use strict";
  var tabs = Array.prototype.slice.call(document.querySelectorAll(".tab"));
  var panels = Array.prototype.slice.call(document.querySelectorAll(".tab-panel"));
  var basis = document.getElementById("filter-basis");
  var segment = document.getElementById("filter-segment");
  var statistic = document.getElementById("filter-statistic");
  var metric = document.getElementById("filter-metric");
  var toc = document.getElementById("toc");
  var current = null;

  function show(el, visible) { el.classList.toggle("hidden", !visible); }

  function selectTab(period, updateHash) {
    var tab = tabs.filter(function (t) { return t.dataset.tab === period && !t.disabled; })[0];
    if (!tab) tab = tabs.filter(function (t) { return !t.disabled; })[0];
    if (!tab) return;
    current = tab.dataset.tab;
    tabs.forEach(function (t) { t.setAttribute("aria-selected", t === tab ? "true" : "false"); });
    panels.forEach(function (p) { show(p, p.dataset.period === current); });
    if (updateHash && history.replaceState) history.replaceState(null, "", "#" + current);
    apply();
  }

  function apply() {
    var b = basis.value, s = segment.value, st = statistic.value;
    var q = metric.value.trim().toLowerCase();
    document.querySelectorAll(".view").forEach(function (view) {
      var viewOk = (!b || view.dataset.basis === b) && (!s || view.dataset.segment === s);
      var anyMetric = false;
      view.querySelectorAll("article.metric").forEach(function (m) {
        var anyStat = false;
        m.querySelectorAll(".statistic").forEach(function (x) {
          var ok = !st || x.dataset.statistic === st;
          show(x, ok);
          anyStat = anyStat || ok;
        });
        var ok = anyStat && (!q || m.dataset.search.indexOf(q) !== -1);
        show(m, ok);
        anyMetric = anyMetric || ok;
      });
      view.querySelectorAll(".group").forEach(function (g) {
        show(g, g.querySelectorAll("article.metric:not(.hidden)").length > 0);
      });
      show(view, viewOk && anyMetric);
    });
    filterMap(b, s, st, q);
    buildToc();
  }

  // The completeness map follows the same filters: basis and segment pick its columns, the
  // metric text and the statistic its rows.
  function filterMap(b, s, st, q) {
    var map = document.getElementById("completeness-map");
    if (!map) return;
    map.querySelectorAll("[data-basis]").forEach(function (el) {
      show(el, (!b || el.dataset.basis === b) && (!s || el.dataset.segment === s));
    });
    map.querySelectorAll("tr.map-row").forEach(function (row) {
      var stats = " " + row.dataset.statistics + " ";
      show(row, (!q || row.dataset.search.indexOf(q) !== -1) && (!st || stats.indexOf(" " + st + " ") !== -1));
    });
  }

  // A link from the map to results on another tab, or hidden by the filters: show them first.
  function reveal(target) {
    var owner = target.closest(".tab-panel");
    var view = target.closest(".view");
    if (view) {
      if (basis.value && basis.value !== view.dataset.basis) basis.value = view.dataset.basis;
      if (segment.value && segment.value !== view.dataset.segment) segment.value = view.dataset.segment;
    }
    if (target.classList.contains("hidden")) { statistic.value = ""; metric.value = ""; }
    if (owner) selectTab(owner.dataset.period, false); else apply();
    target.scrollIntoView();
  }
  document.querySelectorAll("#completeness-map a[href^='#']").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      var target = document.getElementById(a.getAttribute("href").slice(1));
      if (!target) return;
      ev.preventDefault();
      reveal(target);
      if (history.replaceState) history.replaceState(null, "", a.getAttribute("href"));
    });
  });

  function buildToc() {
    while (toc.firstChild) toc.removeChild(toc.firstChild);
    var panel = panels.filter(function (p) { return p.dataset.period === current; })[0];
    if (!panel) return;
    panel.querySelectorAll(".view:not(.hidden)").forEach(function (view) {
      var head = document.createElement("li");
      head.className = "view-entry";
      head.textContent = view.dataset.basis + " · " + (view.dataset.segmentLabel || view.dataset.segment);
      toc.appendChild(head);
      view.querySelectorAll("article.metric:not(.hidden)").forEach(function (m) {
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = "#" + m.id;
        a.textContent = m.querySelector("h4").firstChild.textContent.trim();
        li.appendChild(a);
        toc.appendChild(li);
      });
    });
  }

  tabs.forEach(function (t) {
    t.addEventListener("click", function () { selectTab(t.dataset.tab, true); });
  });
  [basis, segment, statistic].forEach(function (el) { el.addEventListener("change", apply); });
  metric.addEventListener("input", apply);
  // Defaults: the first basis (enrollments) and segment "all", so bases are never mixed on screen.
  if (basis.options.length > 1) basis.selectedIndex = 1;
  for (var i = 0; i < segment.options.length; i++) {
    if (segment.options[i].value === "all") { segment.selectedIndex = i; break; }
  }
  var start = (location.hash || "#overall").slice(1);
  var target = start && document.getElementById(start);
  var owner = target && target.closest ? target.closest(".tab-panel") : null;
  selectTab(owner ? owner.dataset.period : start, false);
  if (owner) target.scrollIntoView();
})();
