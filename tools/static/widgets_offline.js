// Loaded between require.js and the widget manager on pages that show widgets (tools/offline_assets.py).
(function () {
  "use strict";
  // 1. The widget manager finds its icon fonts relative to the AMD module's URL, which require.js
  //    derives from the page's folder; point that module name at the bundled copy instead.
  var here = document.currentScript.src;
  var staticRoot = here.slice(0, here.lastIndexOf("/") + 1);   // .../_static/
  window.require.config({
    paths: { "@jupyter-widgets/html-manager/dist": staticRoot + "vendor/html-manager/dist" },
  });
  // 2. ipywidgets' controls typeset labels through MathJax 2's API (MathJax.Hub.Queue), which
  //    throws under the book's MathJax 3. Translate those calls. Widgets render on "load", after
  //    MathJax (a deferred script) has run, so DOMContentLoaded is early enough.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub || !mathjax.startup) return;
    mathjax.Hub = {
      Queue: function (job) {
        var element = job && job[2];
        if (!element) return;
        mathjax.startup.promise
          .then(function () { return mathjax.typesetPromise([element]); })
          .catch(function (error) { console.warn("MathJax could not typeset a widget label:", error); });
      },
    };
  });
})();
