// Refresh the rollout's live parts without a reload: fetch the page again and swap in its #live section.
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  var every = parseInt(live.getAttribute("data-poll") || "3", 10) * 1000;
  setInterval(function () {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (next) live.innerHTML = next.innerHTML;
      })
      .catch(function () {});
  }, every);
})();
