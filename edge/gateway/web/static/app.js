// The greenhouse page's only script: reload the page every 30 s (fresh values) unless the farmer is using a form.
"use strict";
(function () {
  var PERIOD = 30000;
  var busy = false;
  document.addEventListener("focusin", function () { busy = true; });
  document.addEventListener("focusout", function () { busy = false; });
  document.addEventListener("submit", function (event) {
    var buttons = event.target.querySelectorAll("button");
    setTimeout(function () { for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true; }, 0);
  });
  setInterval(function () {
    if (!busy && document.visibilityState !== "hidden" && !document.querySelector("#notice.bad")) {
      location.replace(location.pathname);
    }
  }, PERIOD);
})();
