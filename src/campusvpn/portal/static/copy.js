// Copy buttons: shown only when this script runs (without it the text stays selectable).
(function () {
  "use strict";
  function setup() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target || !navigator.clipboard) { return; }
      var label = button.textContent;
      button.hidden = false;
      button.addEventListener("click", function () {
        navigator.clipboard.writeText(target.getAttribute("data-value") || target.textContent.trim()).then(function () {
          button.textContent = button.getAttribute("data-done") || label;
          window.setTimeout(function () { button.textContent = label; }, 2000);
        });
      });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setup); } else { setup(); }
})();
