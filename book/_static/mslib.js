// The book's own script (added by tools/book.py's Sphinx extension).
// Printing (or "Save as PDF") shows every folded solution; they fold again afterwards.
(function () {
  var opened = [];
  window.addEventListener("beforeprint", function () {
    opened = [];
    document.querySelectorAll("details:not([open])").forEach(function (d) {
      d.open = true;
      opened.push(d);
    });
  });
  window.addEventListener("afterprint", function () {
    opened.forEach(function (d) { d.open = false; });
    opened = [];
  });
  // Equations wider than the page are scaled to fit when printing.
  function fitEquations() {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (m) {
      m.style.fontSize = "";
      var box = m.parentElement ? m.parentElement.clientWidth : 0;
      var wide = m.firstElementChild ? m.firstElementChild.getBoundingClientRect().width : 0;
      if (box > 0 && wide > box) {
        m.style.fontSize = Math.max(50, Math.floor(100 * box / wide)) + "%";
      }
    });
  }
  window.addEventListener("beforeprint", fitEquations);
  window.addEventListener("afterprint", function () {
    document.querySelectorAll('mjx-container[display="true"]').forEach(function (m) { m.style.fontSize = ""; });
  });
})();
