(function () {
  "use strict";
  var table = document.getElementById("toc-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var text = document.getElementById("toc-filter");
  var state = document.getElementById("toc-state");
  var shown = document.getElementById("toc-shown");

  function applyFilter() {
    var q = (text.value || "").trim().toLowerCase();
    var s = state.value;
    var n = 0;
    rows.forEach(function (tr) {
      var ok = (!q || tr.getAttribute("data-name").toLowerCase().indexOf(q) !== -1) &&
               (!s || tr.getAttribute("data-state") === s);
      tr.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = (q || s) ? n + " of " + rows.length + " shown" : "";
  }

  function sortBy(th) {
    var key = th.getAttribute("data-key");
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = a.getAttribute("data-" + key) || "", y = b.getAttribute("data-" + key) || "";
      return sign * x.localeCompare(y, undefined, { numeric: true, sensitivity: "base" });
    });
    rows.forEach(function (tr) { body.appendChild(tr); });
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.querySelector("button").addEventListener("click", function () { sortBy(th); });
  });
  text.addEventListener("input", applyFilter);
  state.addEventListener("change", applyFilter);
  applyFilter();
})();
