// Report page: period tabs, filters (basis, segment, statistic, metric text), open sections and
// the floating list of metrics on the current tab. Works offline; reads nothing but the DOM.
//
// The view lives in the URL's fragment, e.g.
//   page.html#tab=weekly&basis=exposures&segment=new_users&statistic=mean&filter=uri
//            &open=<details key>,<details key>&section=<metric section id>
// A fragment is never sent to a server, so the same link works from a file, a static bucket
// (GCS serves the object whatever follows `#`) and any cache. Only values that differ from the
// defaults are written; an empty value means "any" (`segment=` shows every segment). Unknown
// keys and values that do not exist on this page are ignored: the default is shown instead.
// Older links (`#weekly`, `#<element id>`) still open that tab or reveal that element.
// Every change a person makes adds a history entry (typing in the metric filter adds one, then
// updates it), so the back button returns to the previous view; loading the page adds none.
(function () {
  "use strict";
  var slice = Array.prototype.slice;
  function all(root, selector) { return slice.call(root.querySelectorAll(selector)); }
  var tabs = all(document, ".tab");
  var basis = document.getElementById("filter-basis");
  var segment = document.getElementById("filter-segment");
  var statistic = document.getElementById("filter-statistic");
  var metric = document.getElementById("filter-metric");
  var toc = document.getElementById("toc");
  var content = document.getElementById("content") || document.body;
  var map = document.getElementById("completeness-map");
  var selects = { basis: basis, segment: segment, statistic: statistic };

  // --- the page's parts, read once: panels > views > groups, metrics > statistics -----------------
  function part(el) { return { el: el, shown: !el.classList.contains("hidden") }; }
  function setShown(p, visible) {
    if (p.shown === visible) return;
    p.shown = visible;
    p.el.classList.toggle("hidden", !visible);
  }
  function headingText(article) {
    var h = article.querySelector("h4");
    var first = h && h.firstChild;
    return first ? (first.textContent || "").trim() : article.id;
  }
  var panels = all(document, ".tab-panel").map(function (el) {
    var p = part(el);
    p.period = el.dataset.period;
    p.applied = null;
    p.views = all(el, ".view").map(function (v) {
      var view = part(v);
      view.basis = v.dataset.basis;
      view.segment = v.dataset.segment;
      view.label = v.dataset.basis + " · " + (v.dataset.segmentLabel || v.dataset.segment);
      var groups = [];
      view.metrics = all(v, "article.metric").map(function (m) {
        var mp = part(m);
        mp.search = m.dataset.search || "";
        mp.name = headingText(m);
        mp.stats = all(m, ".statistic").map(function (x) {
          var sp = part(x);
          sp.key = x.dataset.statistic;
          return sp;
        });
        var g = m.closest(".group");
        if (g) {
          var gp = groups.filter(function (o) { return o.el === g; })[0];
          if (!gp) { gp = part(g); gp.metrics = []; groups.push(gp); }
          gp.metrics.push(mp);
        }
        return mp;
      });
      view.groups = groups;
      return view;
    });
    return p;
  });

  // Collapsible sections (<details>): keyed by their own id, else by the nearest element with an
  // id (a metric section, an error row), with a counter when that element holds several.
  var detailsByKey = {};
  var detailsList = [];
  all(content, "details").forEach(function (d) {
    var key = d.id;
    if (!key) {
      var owner = d.parentElement && d.parentElement.closest("[id]");
      if (!owner) return;
      var n = all(owner, "details").indexOf(d);
      key = owner.id + (n > 0 ? "." + n : "");
    }
    if (detailsByKey[key]) return;
    detailsByKey[key] = d;
    detailsList.push({ key: key, el: d });
  });

  // --- state: defaults, reading and writing the fragment ----------------------------------------
  function options(select) { return select ? slice.call(select.options).map(function (o) { return o.value; }) : [""]; }
  function isTab(period) {
    return tabs.some(function (t) { return t.dataset.tab === period && !t.disabled; });
  }
  var defaultTab = isTab("overall") ? "overall" : ((tabs.filter(function (t) { return !t.disabled; })[0] || { dataset: {} }).dataset.tab || "");
  // the first basis (enrollments) and segment "all": bases are never mixed on screen by default
  var defaultBasis = options(basis)[1] || "";
  var defaultSegment = options(segment).indexOf("all") !== -1 ? "all" : "";

  function defaults() {
    return { tab: defaultTab, basis: defaultBasis, segment: defaultSegment, statistic: "", filter: "", open: [], section: "" };
  }
  function copy(s) {
    return { tab: s.tab, basis: s.basis, segment: s.segment, statistic: s.statistic, filter: s.filter, open: s.open.slice(), section: s.section };
  }
  // Any element of the report with an id can be the section a link opens at, except the controls.
  function sectionElement(id) {
    var el = id ? document.getElementById(id) : null;
    if (!el || el === document.body || el === document.documentElement || el === content) return null;
    return el.closest(".toolbar, .sidebar, script, style, head") ? null : el;
  }
  function decode(text) {
    try { return decodeURIComponent(text); } catch (e) { return ""; }
  }

  // The state a fragment asks for; `base` is kept by an old-style `#<id>` link.
  function parse(hash, base) {
    var h = (hash || "").replace(/^#/, "");
    if (!h) return defaults();
    var s;
    if (h.indexOf("=") === -1) {
      var id = decode(h);
      s = copy(base);
      s.section = "";
      if (isTab(id)) s.tab = id;
      else if (sectionElement(id)) { s.section = id; reveal(s); }
      return s;
    }
    s = defaults();
    var p = new URLSearchParams(h);
    if (isTab(p.get("tab"))) s.tab = p.get("tab");
    Object.keys(selects).forEach(function (k) {
      if (p.has(k) && options(selects[k]).indexOf(p.get(k)) !== -1) s[k] = p.get(k);
    });
    if (p.has("filter")) s.filter = p.get("filter").slice(0, 500);
    if (p.has("open")) {
      p.get("open").split(",").forEach(function (k) {
        if (detailsByKey[k] && s.open.indexOf(k) === -1) s.open.push(k);
      });
    }
    if (sectionElement(p.get("section"))) { s.section = p.get("section"); reveal(s); }
    return s;
  }

  function enc(v) {
    try { return encodeURIComponent(v); } catch (e) { return encodeURIComponent(String(v).replace(/[\uD800-\uDFFF]/g, "\uFFFD")); }
  }
  function serialize(s) {
    var d = defaults(), parts = [];
    if (s.tab !== d.tab) parts.push("tab=" + enc(s.tab));
    ["basis", "segment", "statistic"].forEach(function (k) { if (s[k] !== d[k]) parts.push(k + "=" + enc(s[k])); });
    if (s.filter) parts.push("filter=" + enc(s.filter));
    if (s.open.length) parts.push("open=" + s.open.map(enc).join(","));
    if (s.section) parts.push("section=" + enc(s.section));
    return parts.join("&");
  }
  function hrefFor(s) {
    var h = serialize(s);
    return h ? "#" + h : location.pathname + location.search;
  }

  // Change `s` so that its section is shown: its tab, its basis and segment (unless "any"), and
  // no metric text or statistic that would hide it.
  function reveal(s) {
    var el = sectionElement(s.section);
    if (!el) { s.section = ""; return; }
    var panel = el.closest(".tab-panel");
    if (panel && isTab(panel.dataset.period)) s.tab = panel.dataset.period;
    var view = el.closest(".view");
    if (view) {
      if (s.basis && s.basis !== view.dataset.basis) s.basis = view.dataset.basis;
      if (s.segment && s.segment !== view.dataset.segment) s.segment = view.dataset.segment;
    }
    var article = el.closest("article.metric");
    if (article) {
      var q = s.filter.trim().toLowerCase();
      if (q && (article.dataset.search || "").indexOf(q) === -1) s.filter = "";
      var stats = all(article, ".statistic");
      if (s.statistic && !stats.some(function (x) { return x.dataset.statistic === s.statistic; })) s.statistic = "";
    }
  }

  // --- showing a state --------------------------------------------------------------------------
  var state = defaults();
  var shownKey = null;
  var tocKey = null;

  function show(s) {
    state = s;
    tabs.forEach(function (t) { t.setAttribute("aria-selected", t.dataset.tab === s.tab ? "true" : "false"); });
    Object.keys(selects).forEach(function (k) { if (selects[k] && selects[k].value !== s[k]) selects[k].value = s[k]; });
    if (metric.value !== s.filter) metric.value = s.filter;
    detailsList.forEach(function (d) {
      var open = s.open.indexOf(d.key) !== -1;
      if (d.el.open !== open) d.el.open = open;
    });
    var q = s.filter.trim().toLowerCase();
    var key = [s.basis, s.segment, s.statistic, q].join("\u0000");
    var panel = null;
    panels.forEach(function (p) {
      if (!defaultTab) return;  // no period has results: every panel keeps its note on screen
      var current = p.period === s.tab;
      if (current) { panel = p; applyPanel(p, key, s.basis, s.segment, s.statistic, q); }
      setShown(p, current);
    });
    if (key !== shownKey) filterMap(s.basis, s.segment, s.statistic, q);
    var view = copy(s);
    view.section = "";
    var viewHash = serialize(view);
    if (viewHash !== tocKey || tocKey === null) buildToc(panel, viewHash);
    tocKey = viewHash;
    shownKey = key;
  }

  // Filters reach only the panel on screen; another panel catches up when its tab is chosen.
  function applyPanel(p, key, b, sg, st, q) {
    if (p.applied === key) return;
    p.applied = key;
    p.views.forEach(function (view) {
      var any = false;
      if ((!b || view.basis === b) && (!sg || view.segment === sg)) {
        view.metrics.forEach(function (m) {
          var anyStat = m.stats.length === 0 && !st;
          m.stats.forEach(function (x) {
            var ok = !st || x.key === st;
            setShown(x, ok);
            anyStat = anyStat || ok;
          });
          var ok = anyStat && (!q || m.search.indexOf(q) !== -1);
          setShown(m, ok);
          any = any || ok;
        });
        view.groups.forEach(function (g) {
          setShown(g, g.metrics.some(function (m) { return m.shown; }));
        });
      }
      setShown(view, any);
    });
  }

  // The completeness map follows the same filters: basis and segment pick its columns, the
  // metric text and the statistic its rows.
  function filterMap(b, s, st, q) {
    if (!map) return;
    map.querySelectorAll("[data-basis]").forEach(function (el) {
      el.classList.toggle("hidden", !((!b || el.dataset.basis === b) && (!s || el.dataset.segment === s)));
    });
    map.querySelectorAll("tr.map-row").forEach(function (row) {
      var stats = " " + row.dataset.statistics + " ";
      var ok = (!q || (row.dataset.search || "").indexOf(q) !== -1) && (!st || stats.indexOf(" " + st + " ") !== -1);
      row.classList.toggle("hidden", !ok);
    });
  }

  // The list of the tab's metrics; each link opens that section in this view (shareable as is).
  function buildToc(panel, viewHash) {
    var prefix = "#" + (viewHash ? viewHash + "&" : "") + "section=";
    var list = document.createDocumentFragment();
    if (panel) {
      panel.views.forEach(function (view) {
        if (!view.shown) return;
        var head = document.createElement("li");
        head.className = "view-entry";
        head.textContent = view.label;
        list.appendChild(head);
        view.metrics.forEach(function (m) {
          if (!m.shown) return;
          var li = document.createElement("li");
          var a = document.createElement("a");
          a.href = prefix + enc(m.el.id);
          a.textContent = m.name;
          li.appendChild(a);
          list.appendChild(li);
        });
      });
    }
    toc.textContent = "";
    toc.appendChild(list);
  }

  // --- history ----------------------------------------------------------------------------------
  var typing = false;  // a run of keystrokes in the metric filter is one history entry

  function commit(push) {
    var href = hrefFor(state);
    var now = location.hash && location.hash !== "#" ? location.hash : location.pathname + location.search;
    if (href === now) return;
    try {
      if (push) history.pushState(null, "", href); else history.replaceState(null, "", href);
    } catch (e) { /* a sandboxed frame may refuse: the view still changes */ }
  }
  function change(update, push) {
    var s = copy(state);
    update(s);
    s.section = "";
    show(s);
    commit(push);
  }
  // Sections off screen are laid out only when they come near it (content-visibility in the CSS)
  // and figures arrive later (lazy): the part above a linked section can still grow after the
  // jump. Until the person scrolls or 3 s have passed, each frame puts the section back in place.
  var settling = 0;
  function scrollToSection() {
    var el = sectionElement(state.section);
    if (!el) return;
    el.scrollIntoView();
    var want = el.getBoundingClientRect().top;
    var until = performance.now() + 3000;
    var run = ++settling;
    (function check() {
      if (run !== settling || performance.now() > until) return;
      var top = el.getBoundingClientRect().top;
      if (Math.abs(top - want) > 2) el.scrollIntoView();
      requestAnimationFrame(check);
    })();
  }
  ["wheel", "touchstart", "keydown", "mousedown"].forEach(function (type) {
    window.addEventListener(type, function () { settling++; }, { passive: true, capture: true });
  });

  tabs.forEach(function (t) {
    t.addEventListener("click", function () {
      if (t.disabled) return;
      typing = false;
      change(function (s) { s.tab = t.dataset.tab; }, true);
    });
  });
  Object.keys(selects).forEach(function (k) {
    if (!selects[k]) return;
    selects[k].addEventListener("change", function () {
      typing = false;
      change(function (s) { s[k] = selects[k].value; }, true);
    });
  });
  metric.addEventListener("input", function () {
    var push = !typing;
    typing = true;
    change(function (s) { s.filter = metric.value; }, push);
  });
  metric.addEventListener("change", function () { typing = false; });
  document.addEventListener("toggle", function (ev) {
    var d = ev.target;
    if (!d || d.tagName !== "DETAILS") return;
    var open = detailsList.filter(function (x) { return x.el.open; }).map(function (x) { return x.key; });
    var known = detailsList.some(function (x) { return x.el === d; });
    if (!known || open.join(",") === state.open.join(",")) return;  // our own restoring, or untracked
    typing = false;
    change(function (s) { s.open = open; }, true);
  }, true);

  // Links within the page (the list on the side, the completeness map, error links): show their
  // target in the view it belongs to, as a history entry of its own.
  document.addEventListener("click", function (ev) {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    var a = ev.target.closest ? ev.target.closest("a[href^='#']") : null;
    if (!a || a.classList.contains("copy-link")) return;
    var hash = a.getAttribute("href");
    if (hash.length < 2) return;
    var s = parse(hash, state);
    if (hash.indexOf("=") === -1 && !s.section && !isTab(decode(hash.slice(1)))) return;  // not ours
    ev.preventDefault();
    typing = false;
    show(s);
    commit(true);
    scrollToSection();
  });

  window.addEventListener("popstate", function () {
    typing = false;
    var s = parse(location.hash, state);
    show(s);
    var id = decode(location.hash.slice(1));
    if (id && id.indexOf("=") === -1 && (isTab(id) || sectionElement(id))) commit(false);  // an old-style link: say what is shown
    scrollToSection();
  });

  // --- copy link: one per metric section, for the view on screen -------------------------------
  function absolute(href) { return location.href.split("#")[0] + (href.charAt(0) === "#" ? href : ""); }
  function linkFor(article) {
    var s = copy(state);
    s.section = article.id;
    return hrefFor(s);
  }
  function flash(a, text) {
    a.textContent = text;
    a.classList.add("copied");
    clearTimeout(a._timer);
    a._timer = setTimeout(function () { a.textContent = "Copy link"; a.classList.remove("copied"); }, 2000);
  }
  // Without the asynchronous clipboard (an insecure page, a file:// page some browsers treat so,
  // or a refused permission): copy from a selected text field, the older way.
  function copyByCommand(text) {
    var field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.style.position = "fixed";
    field.style.top = "0";
    field.style.opacity = "0";
    var before = document.activeElement;
    document.body.appendChild(field);
    field.focus();
    field.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(field);
    if (before && before.focus) before.focus();
    return ok;
  }
  function copyText(text, done) {
    if (navigator.clipboard && navigator.clipboard.writeText && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(copyByCommand(text)); });
    } else {
      done(copyByCommand(text));
    }
  }
  panels.forEach(function (p) {
    p.views.forEach(function (view) {
      view.metrics.forEach(function (m) {
        var h = m.el.querySelector("h4");
        if (!m.el.id || !h) return;
        var a = document.createElement("a");
        a.className = "copy-link";
        a.href = "#section=" + enc(m.el.id);
        a.title = "Copy a link that opens this section in the view on screen";
        a.textContent = "Copy link";
        h.appendChild(a);
      });
    });
  });
  function refreshLink(ev) {
    var a = ev.target.closest ? ev.target.closest("a.copy-link") : null;
    if (a) a.href = linkFor(a.closest("article.metric"));
  }
  content.addEventListener("mouseover", refreshLink);
  content.addEventListener("focusin", refreshLink);
  content.addEventListener("contextmenu", refreshLink);
  content.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a.copy-link") : null;
    if (!a || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    ev.preventDefault();
    var href = linkFor(a.closest("article.metric"));
    a.href = href;
    var url = absolute(href);
    copyText(url, function (ok) {
      if (ok) { flash(a, "Copied"); return; }
      flash(a, "Copy failed");
      window.prompt("Copy this link:", url);
    });
  });

  // Printing: Chromium fetches lazy figures before it prints (and waits for them); for other
  // browsers, the figures of the view on screen are asked for as soon as printing starts.
  window.addEventListener("beforeprint", function () {
    all(content, "img[loading='lazy']").forEach(function (img) {
      if (img.offsetParent !== null) img.loading = "eager";
    });
  });

  // --- first view: from the URL, without a history entry of its own ---------------------------
  var first = parse(location.hash, defaults());
  show(first);
  commit(false);
  scrollToSection();
})();
