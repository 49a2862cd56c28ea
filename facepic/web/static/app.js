// Small progressive enhancement: person inputs suggest names as you type (the forms work without it).
"use strict";
(function () {
  const list = document.getElementById("persons-found");
  let timer = null;
  function suggest(input) {
    const q = input.value.trim();
    if (!q || !list) return;
    fetch("/api/persons/search?q=" + encodeURIComponent(q), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : []; })
      .then(function (persons) {
        list.replaceChildren();
        persons.forEach(function (p) {
          const option = document.createElement("option");
          option.value = p.id;
          option.label = (p.name || "unnamed") + " (" + p.face_count + " faces)";
          option.textContent = option.label;  // text, never HTML
          list.appendChild(option);
        });
      })
      .catch(function () {});
  }
  document.addEventListener("input", function (event) {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.hasAttribute("data-person-search")) return;
    clearTimeout(timer);
    timer = setTimeout(function () { suggest(input); }, 150);
  });
})();
