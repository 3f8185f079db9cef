/* unitdissect report: charts, sort/filter of unit grids and tables, site-wide search.
   Data comes from the page (JSON in <script type="application/json">) or from
   static/search-index.js loaded as a script, so everything works from file://. */
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";

  /* ---------------- charts ---------------- */
  function drawCharts() {
    var nodes = document.querySelectorAll(".chart[data-figure]");
    if (!nodes.length) return;
    if (!window.Plotly) {
      nodes.forEach(function (el) {
        el.textContent = "The chart library (static/plotly.min.js) did not load.";
        el.className = "chart-error";
      });
      return;
    }
    var config = {
      displaylogo: false,
      responsive: true,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
    };
    nodes.forEach(function (el) {
      var data = document.getElementById(el.getAttribute("data-figure"));
      if (!data) return;
      var fig = JSON.parse(data.textContent);
      window.Plotly.newPlot(el, fig.data, fig.layout, config);
    });
  }

  /* ---------------- filter + sort of grids and tables ---------------- */
  function setupToolbar(bar) {
    var target = document.getElementById(bar.getAttribute("data-grid") || bar.getAttribute("data-table"));
    if (!target) return;
    var isTable = target.tagName === "TABLE";
    var container = isTable ? target.tBodies[0] : target;
    var items = Array.prototype.slice.call(container.children);
    var text = bar.querySelector("[data-filter-text]");
    var sort = bar.querySelector("select[data-sort]");
    var only = bar.querySelector("[data-detectors-only]");
    var chips = Array.prototype.slice.call(bar.querySelectorAll(".chip[data-category]"));
    var count = bar.querySelector("[data-count]");
    var empty = bar.parentNode.querySelector("[data-empty]");
    var noun = count ? count.textContent.replace(/^[\d,]+\s*/, "") : "";
    var category = "";

    function apply() {
      var q = text ? text.value.trim().toLowerCase() : "";
      var terms = q ? q.split(/\s+/) : [];
      var shown = 0;
      items.forEach(function (el) {
        var hay = (el.getAttribute("data-label") || "") + " #" + (el.getAttribute("data-unit") || "") + " ";
        var ok = terms.every(function (t) {
          return /^\d+$/.test(t) ? el.getAttribute("data-unit") === t || hay.indexOf(t) >= 0 : hay.indexOf(t) >= 0;
        });
        if (ok && category) ok = el.getAttribute("data-category") === category;
        if (ok && only && only.checked) ok = el.getAttribute("data-detector") === "1";
        el.hidden = !ok;
        if (ok) shown++;
      });
      if (count) count.textContent = (shown === items.length ? shown : shown + " of " + items.length) + " " + noun;
      if (empty) empty.hidden = shown > 0;
    }

    function reorder() {
      var key = sort.value;
      var sorted = items.slice().sort(function (a, b) {
        var ua = +a.getAttribute("data-unit"), ub = +b.getAttribute("data-unit");
        if (key === "iou") return (+b.getAttribute("data-iou") - +a.getAttribute("data-iou")) || ua - ub;
        if (key === "label") {
          var la = a.getAttribute("data-label") || "\uffff", lb = b.getAttribute("data-label") || "\uffff";
          return la < lb ? -1 : la > lb ? 1 : ua - ub;
        }
        return ua - ub;
      });
      var frag = document.createDocumentFragment();
      sorted.forEach(function (el) { frag.appendChild(el); });
      container.appendChild(frag);
    }

    if (text) text.addEventListener("input", apply);
    if (only) only.addEventListener("change", apply);
    if (sort) sort.addEventListener("change", reorder);
    chips.forEach(function (chip) {
      chip.addEventListener("click", function () {
        category = chip.getAttribute("data-category");
        chips.forEach(function (c) { c.setAttribute("aria-pressed", c === chip ? "true" : "false"); });
        apply();
      });
    });
    if ((text && text.value) || (only && only.checked)) apply();
    if (sort && sort.value !== "unit") reorder();
  }

  function setupSortableTable(table) {
    var heads = Array.prototype.slice.call(table.querySelectorAll("th[data-sort]"));
    heads.forEach(function (th) {
      th.tabIndex = 0;
      function go() {
        var col = Array.prototype.indexOf.call(th.parentNode.children, th);
        var numeric = th.getAttribute("data-sort") === "num";
        var asc = th.getAttribute("aria-sort") !== "ascending";
        if (numeric && !th.hasAttribute("aria-sort")) asc = false; // numbers: largest first
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var ca = a.cells[col], cb = b.cells[col];
          var va = ca.getAttribute("data-value") || ca.textContent.trim().toLowerCase();
          var vb = cb.getAttribute("data-value") || cb.textContent.trim().toLowerCase();
          var r = numeric ? (+va) - (+vb) : va < vb ? -1 : va > vb ? 1 : 0;
          return asc ? r : -r;
        });
        var frag = document.createDocumentFragment();
        rows.forEach(function (r) { frag.appendChild(r); });
        body.appendChild(frag);
      }
      th.addEventListener("click", go);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
    });
  }

  /* ---------------- search ---------------- */
  var KIND_RANK = { concept: 40, "class": 30, layer: 20, run: 15, unit: 0 };
  var indexPromise = null;
  var prepared = null;

  function loadIndex() {
    if (!indexPromise) {
      indexPromise = new Promise(function (resolve, reject) {
        if (window.UD_SEARCH_INDEX) return resolve(window.UD_SEARCH_INDEX);
        var s = document.createElement("script");
        s.src = root + "static/search-index.js";
        s.onload = function () { resolve(window.UD_SEARCH_INDEX || []); };
        s.onerror = function () { reject(new Error("search index missing")); };
        document.head.appendChild(s);
      }).then(function (entries) {
        prepared = entries.map(function (e) {
          var title = e[1].toLowerCase();
          return { e: e, title: title, hay: title + " " + e[2].toLowerCase() + " " + e[0] + " " + (e[4] || "") };
        });
        return prepared;
      });
    }
    return indexPromise;
  }

  function search(q, limit) {
    var terms = q.toLowerCase().split(/[\s·]+/).filter(Boolean);
    if (!terms.length || !prepared) return { total: 0, hits: [] };
    var hits = [];
    for (var i = 0; i < prepared.length; i++) {
      var p = prepared[i], score = 0, ok = true;
      for (var j = 0; j < terms.length; j++) {
        var t = terms[j], at = p.hay.indexOf(t);
        if (at < 0) { ok = false; break; }
        if (p.title === t) score += 100;
        else if (p.title.indexOf(t) === 0) score += 40;
        else if (at < p.title.length) score += 20;
        else score += 6;
        if (/^\d+$/.test(t) && p.e[0] === "unit" && p.title.slice(-(t.length + 1)) === " " + t) score += 60;
      }
      if (ok) hits.push([score + (KIND_RANK[p.e[0]] || 0) + 20 * (p.e[5] || 0), p.e]);
    }
    hits.sort(function (a, b) { return b[0] - a[0]; });
    return { total: hits.length, hits: hits.slice(0, limit).map(function (h) { return h[1]; }) };
  }

  function resultLink(e) {
    var a = document.createElement("a");
    a.className = "result";
    a.href = root + e[3];
    a.setAttribute("role", "option");
    var kind = document.createElement("span");
    kind.className = "result-kind";
    kind.textContent = e[0];
    var body = document.createElement("span");
    body.className = "result-text";
    var title = document.createElement("div");
    title.className = "result-title";
    title.textContent = e[1];
    var detail = document.createElement("div");
    detail.className = "result-detail";
    detail.textContent = e[2];
    body.appendChild(title);
    body.appendChild(detail);
    a.appendChild(kind);
    a.appendChild(body);
    return a;
  }

  function setupHeaderSearch(form) {
    var input = form.querySelector("input[name=q]");
    var box = form.querySelector(".search-results");
    var active = -1;
    function links() { return Array.prototype.slice.call(box.querySelectorAll("a.result")); }
    function highlight(i) {
      var all = links();
      active = Math.max(-1, Math.min(i, all.length - 1));
      all.forEach(function (a, k) { a.classList.toggle("active", k === active); });
      if (active >= 0) all[active].scrollIntoView({ block: "nearest" });
    }
    function update() {
      var q = input.value.trim();
      if (!q) { box.hidden = true; box.textContent = ""; return; }
      loadIndex().then(function () {
        if (input.value.trim() !== q) return;
        var r = search(q, 8);
        box.textContent = "";
        if (!r.total) {
          var none = document.createElement("div");
          none.className = "result-empty";
          none.textContent = "No match for \u201c" + q + "\u201d";
          box.appendChild(none);
        }
        r.hits.forEach(function (e) { box.appendChild(resultLink(e)); });
        if (r.total > r.hits.length) {
          var more = document.createElement("a");
          more.className = "result-more";
          more.href = root + "search.html?q=" + encodeURIComponent(q);
          more.textContent = "All " + r.total + " results \u2192";
          box.appendChild(more);
        }
        active = -1;
        box.hidden = false;
      }, function () {
        box.textContent = "Search is unavailable (static/search-index.js is missing).";
        box.hidden = false;
      });
    }
    input.addEventListener("focus", function () { loadIndex().catch(function () {}); if (input.value) update(); });
    input.addEventListener("input", update);
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown") { e.preventDefault(); highlight(active + 1); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(active - 1); }
      else if (e.key === "Escape") { box.hidden = true; input.blur(); }
      else if (e.key === "Enter" && active >= 0) { e.preventDefault(); window.location.href = links()[active].href; }
    });
    document.addEventListener("click", function (e) { if (!form.contains(e.target)) box.hidden = true; });
    document.addEventListener("keydown", function (e) {
      var tag = (document.activeElement && document.activeElement.tagName) || "";
      if (e.key === "/" && tag !== "INPUT" && tag !== "TEXTAREA" && tag !== "SELECT") { e.preventDefault(); input.focus(); }
    });
  }

  function setupSearchPage() {
    var results = document.querySelector("[data-search-results]");
    if (!results) return;
    var summary = document.querySelector("[data-search-summary]");
    var input = document.querySelector("[data-search-page] input[name=q]");
    var q = new URLSearchParams(window.location.search).get("q") || "";
    input.value = q;
    function show(query) {
      loadIndex().then(function () {
        var r = search(query, 200);
        results.textContent = "";
        r.hits.forEach(function (e) { results.appendChild(resultLink(e)); });
        summary.textContent = query
          ? r.total + " result" + (r.total === 1 ? "" : "s") + " for \u201c" + query + "\u201d" + (r.total > r.hits.length ? " (first " + r.hits.length + " shown)" : "")
          : "Type to search.";
      }, function () { summary.textContent = "Search is unavailable (static/search-index.js is missing)."; });
    }
    input.addEventListener("input", function () {
      var v = input.value.trim();
      try { history.replaceState(null, "", v ? "?q=" + encodeURIComponent(v) : window.location.pathname); }
      catch (err) { /* some browsers refuse URL changes on file:// pages */ }
      show(v);
    });
    show(q.trim());
  }

  document.querySelectorAll(".toolbar[data-grid], .toolbar[data-table]").forEach(setupToolbar);
  document.querySelectorAll("table.sortable").forEach(setupSortableTable);
  document.querySelectorAll("form.search").forEach(setupHeaderSearch);
  setupSearchPage();
  drawCharts();
})();
