/* gwf-tutorial: the ipywidgets html-manager typesets widget labels with the MathJax 2 API
 * (MathJax.Hub.Queue). The book loads MathJax 3, so map that call onto MathJax.typesetPromise.
 * Loaded before the widget manager; MathJax 3 (deferred) has replaced window.MathJax by then. */
(function () {
  function install() {
    var mj = window.MathJax;
    if (!mj || mj.Hub || typeof mj.typesetPromise !== "function") return;
    mj.Hub = {
      Queue: function (job) {
        var el = Array.isArray(job) ? job[job.length - 1] : undefined;
        var p = mj.startup && mj.startup.promise ? mj.startup.promise : Promise.resolve();
        p.then(function () { return mj.typesetPromise(el ? [el] : undefined); })
         .catch(function (err) { console.warn("MathJax typeset of a widget label failed", err); });
      }
    };
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", install);
  } else {
    install();
  }
})();
