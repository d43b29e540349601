// landlord console: live updates without a reload, and small conveniences.
// Plain JavaScript, no build step, no dependency; the pages work without it
// (they are complete server-rendered HTML), this only keeps them fresh.
//
// [data-poll=URL][data-every=MS]: the element's content is replaced by the
// HTML fragment at URL every MS milliseconds, until the fragment carries a
// [data-final] element (a finished job) or the element leaves the page.
// Polling pauses while the tab is hidden and skips a round while the user is
// typing inside the element (a form would otherwise lose its input).
(function () {
  "use strict";

  function poll(el) {
    var url = el.getAttribute("data-poll");
    var every = Math.max(1000, parseInt(el.getAttribute("data-every"), 10) || 3000);
    var busy = false;
    function tick() {
      if (!document.body.contains(el)) return;
      if (el.querySelector("[data-final]")) return;
      if (document.hidden || busy || el.contains(document.activeElement) && document.activeElement.tagName === "INPUT") {
        setTimeout(tick, every);
        return;
      }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          if (r.redirected || r.status === 401 || r.status === 403) {
            el.setAttribute("data-stale", "session");
            return null;
          }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null) {
            el.innerHTML = html;
            el.removeAttribute("data-stale");
            el.setAttribute("data-updated", String(Date.now()));
          }
        })
        .catch(function () { el.setAttribute("data-stale", "network"); })
        .then(function () { busy = false; setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  // A "select all" checkbox: [data-select-all=NAME] toggles inputs named NAME in its form.
  function selectAll(box) {
    box.addEventListener("change", function () {
      var form = box.form || document;
      var name = box.getAttribute("data-select-all");
      form.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (c) {
        c.checked = box.checked;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("[data-select-all]").forEach(selectAll);
  });
})();
