(function () {
  "use strict";
  // Sized for 10,000 rows: each row's filter/sort keys are read from the DOM once, a keystroke
  // touches only rows whose visibility changes, and a sort reorders the rows in one insertion.
  var table = document.getElementById("toc-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var text = document.getElementById("toc-filter");
  var state = document.getElementById("toc-state");
  var app = document.getElementById("toc-app");
  var run = document.getElementById("toc-run");
  var shown = document.getElementById("toc-shown");
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  var items = Array.prototype.map.call(body.rows, function (tr) {
    return { tr: tr, name: (tr.getAttribute("data-name") || "").toLowerCase(), state: tr.getAttribute("data-state"), app: tr.getAttribute("data-app"), run: tr.getAttribute("data-run"), hidden: tr.hidden };
  });

  function applyFilter() {
    var q = (text.value || "").trim().toLowerCase();
    var s = state.value, a = app.value, r = run.value;
    var n = 0;
    for (var i = 0; i < items.length; i += 1) {
      var it = items[i];
      var ok = (!q || it.name.indexOf(q) !== -1) && (!s || it.state === s) && (!a || it.app === a) && (!r || it.run === r);
      if (it.hidden === ok) { it.hidden = !ok; it.tr.hidden = !ok; }
      if (ok) { n += 1; }
    }
    shown.textContent = (q || s || a || r) ? n + " of " + items.length + " shown" : "";
  }

  function sortBy(th) {
    var key = th.getAttribute("data-key");
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var attr = "data-" + key;
    var keyed = items.map(function (it) { return { it: it, k: it.tr.getAttribute(attr) || "" }; });
    keyed.sort(function (a, b) { return sign * collator.compare(a.k, b.k); });
    items = keyed.map(function (x) { return x.it; });
    var frag = document.createDocumentFragment();
    for (var i = 0; i < items.length; i += 1) { frag.appendChild(items[i].tr); }
    body.appendChild(frag);
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.querySelector("button").addEventListener("click", function () { sortBy(th); });
  });
  text.addEventListener("input", applyFilter);
  state.addEventListener("change", applyFilter);
  app.addEventListener("change", applyFilter);
  run.addEventListener("change", applyFilter);
  applyFilter();
})();
