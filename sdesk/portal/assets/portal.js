// sdesk portal: the forms work without this; it only hides the fields that do not apply yet
// (a field with show_when), as the server ignores them. No data leaves the page.
"use strict";
(function () {
  function value(form, name) {
    var el = form.elements[name];
    if (!el) return null;
    if (el.type === "checkbox") return el.checked;
    return el.value;
  }
  function holds(op, want, got) {
    if (op === "set") return (got !== null && got !== "" && got !== false) === want;
    if (got === null || got === "") return false;
    if (op === "equals") return String(got).toLowerCase() === String(want).toLowerCase();
    if (op === "in") return want.map(String).indexOf(String(got)) >= 0;
    var n = Number(got);
    if (isNaN(n)) return false;
    return op === "above" ? n > want : n < want;
  }
  function update(form) {
    form.querySelectorAll("[data-show-field]").forEach(function (box) {
      var want = JSON.parse(box.getAttribute("data-show-value"));
      var shown = holds(box.getAttribute("data-show-op"), want, value(form, box.getAttribute("data-show-field")));
      box.hidden = !shown;
      box.querySelectorAll(".help").forEach(function (p) { if (p.textContent.indexOf("Only when") === 0) p.hidden = true; });
    });
  }
  document.querySelectorAll("form").forEach(function (form) {
    if (!form.querySelector("[data-show-field]")) return;
    form.addEventListener("input", function () { update(form); });
    form.addEventListener("change", function () { update(form); });
    update(form);
  });
})();
