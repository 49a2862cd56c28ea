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
          option.label = (p.name || "Unnamed") + " (" + p.face_count + (p.face_count === 1 ? " face)" : " faces)");
          option.textContent = option.label;  // text, never HTML
          list.appendChild(option);
        });
      })
      .catch(function () {});
  }
  // A face's label over the photo stays inside it: moved in from an edge, squeezed when wider.
  const MARGIN = 2;
  document.querySelectorAll("svg.boxes text").forEach(function (text) {
    const SIDE = text.ownerSVGElement.viewBox.baseVal.width;
    let box = text.getBBox();
    if (box.width > SIDE - 2 * MARGIN) {
      text.setAttribute("textLength", String(SIDE - 2 * MARGIN));
      text.setAttribute("lengthAdjust", "spacingAndGlyphs");
      box = text.getBBox();
    }
    const shift = Math.max(MARGIN - box.x, 0) + Math.min(SIDE - MARGIN - (box.x + box.width), 0);
    if (shift) text.setAttribute("x", String(parseFloat(text.getAttribute("x")) + shift));
  });
  // Labels never touch one another: a label too near one placed before it goes above its box,
  // else inside it at the bottom or the top, else a line lower at a time; a place that crosses no
  // other face's box is taken first.
  function meets(a, b, gap) {
    return a.x < b.x + b.width + gap && b.x < a.x + a.width + gap &&
      a.y < b.y + b.height + gap && b.y < a.y + a.height + gap;
  }
  document.querySelectorAll("svg.boxes").forEach(function (svg) {
    const height = svg.viewBox.baseVal.height;
    const faces = Array.from(svg.querySelectorAll("g")).filter(function (g) {
      return g.querySelector("rect") && g.querySelector("text");
    });
    const boxes = faces.map(function (g) { return g.querySelector("rect").getBBox(); });
    const placed = [];
    faces.forEach(function (g, n) {
      const text = g.querySelector("text"), own = boxes[n];
      const line = text.getBBox().height;
      const first = parseFloat(text.getAttribute("y"));
      const places = [first, own.y + own.height + 0.9 * line, own.y - 0.25 * line,
        own.y + own.height - 0.25 * line, own.y + 0.85 * line];
      for (let y = first + line; y < height; y += line) places.push(y);
      function fits(y, alone) {
        if (y < 0.8 * line || y > height - 0.1 * line) return false;
        text.setAttribute("y", String(y));
        const box = text.getBBox();
        return !placed.some(function (other) { return meets(box, other, line); }) &&
          (!alone || !boxes.some(function (b, k) { return k !== n && meets(box, b, 0); }));
      }
      let y = places.find(function (y) { return fits(y, true); });
      if (y === undefined) y = places.find(function (y) { return fits(y, false); });
      text.setAttribute("y", String(y === undefined ? first : y));
      placed.push(text.getBBox());
    });
  });
  // Choosing faces: shift-click ticks the range since the last box clicked; one button ticks the page.
  const picks = Array.from(document.querySelectorAll("input.pick"));
  const chosen = document.querySelector("#bulk .chosen");
  let last = null;
  function count() {
    if (chosen) chosen.textContent = picks.filter(function (p) { return p.checked; }).length + " chosen";
  }
  picks.forEach(function (pick) {
    pick.addEventListener("click", function (event) {
      if (event.shiftKey && last !== null) {
        const a = picks.indexOf(last), b = picks.indexOf(pick);
        picks.slice(Math.min(a, b), Math.max(a, b) + 1).forEach(function (p) { p.checked = pick.checked; });
      }
      last = pick;
      count();
    });
  });
  const all = document.querySelector("[data-select-all]");
  if (all) all.addEventListener("click", function () {
    const tick = !picks.every(function (p) { return p.checked; });
    picks.forEach(function (p) { p.checked = tick; });
    count();
  });
  count();
  document.addEventListener("input", function (event) {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.hasAttribute("data-person-search")) return;
    clearTimeout(timer);
    timer = setTimeout(function () { suggest(input); }, 150);
  });
})();
