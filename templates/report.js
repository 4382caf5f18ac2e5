// Filters by tag and result, a focus mode (#focus=<anchor>: one scenario's
// timeline alone, for screenshots), and a self-check: every mark and band
// the report's data holds is drawn. The check's verdict lands in
// <body data-check="...">, which the browser test reads.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);

  function applyFilters() {
    var tag = document.getElementById("filter-tag").value;
    var outcome = document.getElementById("filter-outcome").value;
    var shown = 0;
    document.querySelectorAll("article.scenario, #summary tr.row").forEach(function (el) {
      var ok = (!tag || el.dataset.tags.indexOf(" " + tag + " ") >= 0) &&
        (!outcome || el.dataset.outcome === outcome);
      el.classList.toggle("hidden", !ok);
      if (ok && el.tagName === "ARTICLE") { shown += 1; }
    });
    document.getElementById("filter-count").textContent = shown + " scenarios shown";
  }
  document.getElementById("filter-tag").addEventListener("change", applyFilters);
  document.getElementById("filter-outcome").addEventListener("change", applyFilters);
  applyFilters();

  var focus = /^#focus=(.+)$/.exec(window.location.hash);
  if (focus) {
    var target = document.getElementById(decodeURIComponent(focus[1]));
    if (target) {
      document.body.classList.add("focus");
      target.classList.add("focused");
      target.parentElement.classList.add("focused");
    }
  }

  var problems = [];
  var timelines = 0;
  var drawn = 0;
  data.features.forEach(function (f) {
    f.scenarios.forEach(function (s) {
      if (!s.timeline) { return; }
      timelines += 1;
      var article = document.getElementById(s.anchor);
      var svg = article && article.querySelector("svg.timeline");
      if (!svg) { problems.push(s.anchor + ": no timeline drawn"); return; }
      var marks = 0, bands = 0;
      s.timeline.lanes.forEach(function (l) { marks += l.marks.length; bands += l.bands.length; });
      var gotMarks = svg.querySelectorAll(".mark").length;
      var gotBands = svg.querySelectorAll(".band").length;
      var gotLanes = svg.querySelectorAll("g.lane").length;
      if (gotMarks !== marks || gotBands !== bands || gotLanes !== s.timeline.lanes.length) {
        problems.push(s.anchor + ": drew " + gotLanes + " lanes, " + gotMarks + " marks, " +
          gotBands + " bands of " + s.timeline.lanes.length + ", " + marks + ", " + bands);
        return;
      }
      var box = svg.getBoundingClientRect();
      if (!article.classList.contains("hidden") && !document.body.classList.contains("focus") &&
          (box.width <= 0 || box.height <= 0)) {
        problems.push(s.anchor + ": timeline has no size");
        return;
      }
      drawn += 1;
    });
  });
  document.body.setAttribute("data-check", JSON.stringify({
    timelines: timelines, drawn: drawn, problems: problems
  }));
})();
