// litelens dashboard: the little that needs a script. Every page works without it (values on hover fall
// back to the SVG <title>); this adds the hover tooltip, auto-refresh, the calls live tail and copy buttons.
"use strict";

// Where the pointer last was in the window (null once it left): an auto-refresh replaces the charts under
// a pointer that has not moved, and the tooltip is read again from what is there now. It kept the old
// bucket's values until the mouse moved.
let pointer = null;

function showTip(event) {
  pointer = { x: event.clientX, y: event.clientY };
  placeTip(event.target, pointer.x, pointer.y);
}

function placeTip(element, clientX, clientY) {
  const tip = document.getElementById("tip");
  const target = element && element.closest ? element.closest("[data-tip]") : null;
  if (!tip) return;
  if (!target) { tip.hidden = true; return; }
  tip.textContent = target.getAttribute("data-tip");
  tip.hidden = false;
  const x = Math.min(clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  // Above the pointer when below it would pass the window's bottom edge (a chart low on the screen
  // showed no tooltip at all for its lower half).
  const below = clientY + 14;
  const y = below + tip.offsetHeight > window.innerHeight - 8 ? clientY - 14 - tip.offsetHeight : below;
  tip.style.left = x + "px";
  tip.style.top = Math.max(8, y) + "px";
}

function tipAfterRefresh() {
  if (pointer) placeTip(document.elementFromPoint(pointer.x, pointer.y), pointer.x, pointer.y);
  else { const tip = document.getElementById("tip"); if (tip) tip.hidden = true; }
}

function scheduleRefresh() {
  const main = document.getElementById("content");
  const seconds = Number(main && main.dataset.refresh);
  if (!seconds) return;
  setTimeout(async () => {
    const busy = document.activeElement && main.contains(document.activeElement) &&
      ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (!document.hidden && !busy) {
      try {
        const answer = await fetch(location.href, { credentials: "same-origin" });
        if (answer.ok) {
          const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
          const fresh = doc.getElementById("content");
          if (fresh) {
            // What the reader opened (a chart's table of values) stays open across the refresh.
            const open = Array.from(main.querySelectorAll("details"), (d) => d.open);
            main.replaceChildren(...fresh.childNodes);
            main.querySelectorAll("details").forEach((d, i) => { if (open[i]) d.open = true; });
            tipAfterRefresh();
          }
        }
      } catch (error) { /* the next round tries again */ }
    }
    scheduleRefresh();
  }, seconds * 1000);
}

function startTail() {
  const table = document.querySelector("table[data-tail]");
  if (!table) return;
  const body = table.tBodies[0];
  async function poll() {
    try {
      // The calls stored since the page or the last poll (their arrival), whatever their start: a
      // long stream, a spool delivered late, a client whose clock runs slow.
      const url = table.dataset.tail + "&arrived_after=" + encodeURIComponent(table.dataset.arrival || "0");
      const answer = await fetch(url, { credentials: "same-origin" });
      if (answer.ok) {
        const arrival = answer.headers.get("X-Litelens-Arrival");
        const holder = document.createElement("tbody");
        holder.innerHTML = await answer.text(); // server-rendered, escaped rows from our own server
        const calls = Array.from(body.rows).filter((r) => r.dataset.callId);
        const shown = new Map(calls.map((r) => [r.dataset.callId, r]));
        const fresh = [];
        // A row already shown follows its call (a record merged into it later, a retry, a span's
        // details): replaced in place, or moved when its start changed. A note of calls the poll
        // skipped (no call id) is new each time, and goes where they would be.
        Array.from(holder.rows).forEach((r) => {
          const old = r.dataset.callId && shown.get(r.dataset.callId);
          if (!old) fresh.push(r);
          else if (old.dataset.start !== r.dataset.start) { old.remove(); fresh.push(r); }
          else if (old.innerHTML !== r.innerHTML) { r.classList.add("fresh"); old.replaceWith(r); }
        });
        // Newest first by start; a call that started earlier but ended later lands in its place.
        fresh.forEach((r) => {
          const start = Number(r.dataset.start) || 0;
          const later = Array.from(body.rows).find((row) => (Number(row.dataset.start) || 0) < start);
          r.classList.add("fresh");
          body.insertBefore(r, later || null);
        });
        // Moved on once the rows are in: a poll that failed before asks for the same calls again.
        if (arrival) table.dataset.arrival = arrival;
        while (body.rows.length > 500) body.deleteRow(-1);
        const none = document.querySelector("[data-testid=no-calls]");
        if (none && body.rows.length) none.remove();
      }
    } catch (error) { /* keep polling */ }
    setTimeout(poll, 2000);
  }
  setTimeout(poll, 2000);
}

function copyButtons() {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    try {
      await navigator.clipboard.writeText(source ? source.textContent : "");
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Select the text to copy";
    }
  });
}

// The calls filters' From and To override the range's start and end: picking a range after a custom
// From kept the From, and the table went on listing the custom window under "Last hour".
function rangeReplacesCustomTimes() {
  const form = document.querySelector("form.filters");
  const range = form && form.querySelector("select[name=range]");
  if (!range) return;
  range.addEventListener("change", () => {
    form.querySelectorAll("input[name=since], input[name=until]").forEach((input) => { input.value = ""; });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("mousemove", showTip);
  document.documentElement.addEventListener("mouseleave", () => {
    pointer = null;
    const tip = document.getElementById("tip");
    if (tip) tip.hidden = true;
  });
  rangeReplacesCustomTimes();
  scheduleRefresh();
  startTail();
  copyButtons();
});
