// Progressive enhancement only: the page works without it.
// Auto-refresh that never interrupts someone filling in a form.
(function () {
  var meta = document.querySelector('meta[name="refresh-seconds"]');
  if (!meta) return;
  var seconds = parseInt(meta.getAttribute("content"), 10);
  if (!(seconds > 0)) return;
  var dirty = false;
  document.addEventListener("input", function () { dirty = true; });
  document.addEventListener("change", function () { dirty = true; });
  function busy() {
    var el = document.activeElement;
    var editing = el && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName);
    var open = document.querySelector("details[open] form");
    return dirty || editing || (open && open.contains(el));
  }
  setInterval(function () {
    if (!busy() && document.visibilityState === "visible") window.location.reload();
  }, seconds * 1000);
})();
