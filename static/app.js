// progsearch demo page: search as you type over the SSE stream (protocol version 1).
// Each keystroke (debounced) opens an EventSource and closes the previous one; events of an
// older query are ignored. The list re-orders with a FLIP animation when a better phase
// arrives, reusing each result's element so nothing flickers.
"use strict";

(() => {
  const DEBOUNCE_MS = 120;
  const K = 10;
  const PHASES = ["keyword", "semantic", "enhanced"];
  const WARMING = "Meaning-based results are still warming up; keyword results are shown.";

  const form = document.getElementById("search-form");
  const input = document.getElementById("q");
  const list = document.getElementById("results");
  const status = document.getElementById("status");
  const corrected = document.getElementById("corrected");
  const badges = new Map(
    [...document.querySelectorAll(".phase")].map((el) => [el.dataset.phase, el]),
  );

  let source = null;
  let generation = 0;
  let timer = 0;
  const nodes = new Map(); // result id -> <li>

  const escapeHtml = (text) =>
    text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  // A highlight is HTML from the server: the passage escaped, query words in <mark>. It is
  // parsed inert (DOMParser runs no script and loads nothing) and only its text and <mark>
  // elements are kept, so document text can never bring markup, and entities such as &#x27;
  // show as the characters they stand for (escaping it again showed them literally).
  const markedNodes = (html) =>
    [...new DOMParser().parseFromString(html, "text/html").body.childNodes].map((node) => {
      if (node.nodeName !== "MARK") return document.createTextNode(node.textContent);
      const mark = document.createElement("mark");
      mark.textContent = node.textContent;
      return mark;
    });
  const ms = (value) => (value < 10 ? value.toFixed(1) : Math.round(value)) + " ms";

  function setStatus(text, bad = false) {
    status.textContent = text;
    status.classList.toggle("bad", bad);
  }

  function setBadge(phase, state, text) {
    const badge = badges.get(phase);
    if (!badge) return;
    badge.className = "phase " + state;
    badge.querySelector(".time").textContent = text;
    badge.title = state === "done" ? `${phase} phase answered in ${text}` : `${phase}: ${state}`;
  }

  function showCorrection(data) {
    if (data.corrected_query) {
      corrected.innerHTML = `Showing results for <strong>${escapeHtml(data.corrected_query)}</strong>`;
      corrected.hidden = false;
    } else {
      corrected.hidden = true;
    }
  }

  function moveLabel(phase, hit) {
    if (phase === "keyword") return null;
    if (hit.previous_rank === null || hit.previous_rank === undefined) return ["new", "new"];
    const delta = hit.previous_rank - hit.rank;
    if (delta > 0) return ["up", `▲ ${delta}`];
    if (delta < 0) return ["down", `▼ ${-delta}`];
    return null;
  }

  function fill(li, phase, hit) {
    const move = moveLabel(phase, hit);
    li.innerHTML =
      `<h2>${escapeHtml(hit.title || hit.id)}</h2><p></p>` +
      (move ? `<span class="move ${move[0]}" title="rank ${hit.previous_rank ?? "new"} → ${hit.rank}">${move[1]}</span>` : "");
    const body = li.querySelector("p");
    if (hit.highlight) body.replaceChildren(...markedNodes(hit.highlight));
    else body.textContent = hit.snippet || "";
    li.dataset.rank = hit.rank;
    li.setAttribute("aria-label", `${hit.rank}. ${hit.title || hit.id}`);
  }

  // FLIP: note where each item is (First), put the list in its new order (Last), shift each
  // item back to where it was (Invert), then let it slide to its place (Play).
  function render(phase, hits) {
    const first = new Map();
    for (const [id, li] of nodes) first.set(id, li.getBoundingClientRect().top);
    const keep = new Set();
    hits.forEach((hit) => {
      let li = nodes.get(hit.id);
      if (!li) {
        li = document.createElement("li");
        li.className = "hit entering";
        li.tabIndex = 0;
        li.dataset.id = hit.id;
        li.addEventListener("animationend", () => li.classList.remove("entering"), { once: true });
        nodes.set(hit.id, li);
      }
      fill(li, phase, hit);
      list.appendChild(li); // moves an existing element: no re-creation, no flicker
      keep.add(hit.id);
    });
    for (const [id, li] of nodes) {
      if (!keep.has(id)) {
        li.remove();
        nodes.delete(id);
      }
    }
    const moved = [];
    for (const id of keep) {
      if (!first.has(id)) continue;
      const li = nodes.get(id);
      const dy = first.get(id) - li.getBoundingClientRect().top;
      if (Math.abs(dy) < 1) continue;
      li.style.transition = "none";
      li.style.transform = `translateY(${dy}px)`;
      moved.push(li);
    }
    if (moved.length) {
      requestAnimationFrame(() =>
        requestAnimationFrame(() => {
          for (const li of moved) {
            li.style.transition = "transform 320ms cubic-bezier(.2,.7,.3,1)";
            li.style.transform = "";
          }
        }),
      );
    }
  }

  async function explainFailure(query) {
    // An EventSource does not expose the status or body of a refused request: ask the JSON
    // endpoint, which answers bad input with the same error.
    try {
      const r = await fetch(`/search?q=${encodeURIComponent(query)}&k=${K}`);
      if (!r.ok) {
        const body = await r.json();
        return body.error && body.error.message ? body.error.message : `error ${r.status}`;
      }
      return "The stream was interrupted.";
    } catch (e) {
      return "Cannot reach the search server. Is it running?";
    }
  }

  function search(query) {
    generation += 1;
    const gen = generation;
    if (source) {
      source.close();
      source = null;
    }
    if (!query.trim()) {
      render("keyword", []);
      corrected.hidden = true;
      setStatus("");
      PHASES.forEach((p) => setBadge(p, "", "–"));
      return;
    }
    PHASES.forEach((p) => setBadge(p, "pending", "…"));
    const es = new EventSource(`/search/stream?q=${encodeURIComponent(query)}&k=${K}`);
    source = es;
    const current = () => gen === generation;
    let sawEvent = false;

    const onPhase = (phase) => (ev) => {
      if (!current()) return;
      const data = JSON.parse(ev.data);
      if (data.query !== query) return;
      sawEvent = true;
      setBadge(phase, "done", ms(data.took_ms));
      if (phase === "keyword") showCorrection(data);
      render(phase, data.hits);
      if (phase === "keyword") setStatus(data.hits.length ? "" : `No results for “${query}”.`);
    };
    PHASES.forEach((p) => es.addEventListener(p, onPhase(p)));

    es.addEventListener("error", async (ev) => {
      if (!current()) return;
      if (ev.data) {
        // A phase failed on the server; the stream goes on with the others.
        const err = JSON.parse(ev.data);
        sawEvent = true;
        setBadge(err.phase, "failed", err.code === "warming_up" ? "warming up" : "failed");
        setStatus(err.code === "warming_up" ? WARMING : `The ${err.phase} phase failed: ${err.message}`, err.code !== "warming_up");
        return;
      }
      if (es.readyState === EventSource.CLOSED || !sawEvent) {
        es.close();
        const message = await explainFailure(query);
        if (current()) {
          setStatus(message, true);
          PHASES.forEach((p) => {
            if (badges.get(p).classList.contains("pending")) setBadge(p, "failed", "–");
          });
        }
      } else {
        setStatus("Connection lost; resuming…", true);
      }
    });

    es.addEventListener("done", (ev) => {
      if (!current()) return;
      es.close();
      const done = JSON.parse(ev.data);
      PHASES.forEach((p) => {
        if (!(p in done.phases) && !done.errors.includes(p)) setBadge(p, "skipped", "n/a");
      });
      if (!done.errors.length && status.classList.contains("bad")) setStatus("");
    });
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => search(input.value), DEBOUNCE_MS);
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearTimeout(timer);
    search(input.value);
  });

  // Keyboard: ↓ from the box enters the list, ↑/↓ move in it, Esc goes back to the box.
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" && list.firstElementChild) {
      ev.preventDefault();
      list.firstElementChild.focus();
    }
  });
  list.addEventListener("keydown", (ev) => {
    const item = ev.target.closest(".hit");
    if (!item) return;
    if (ev.key === "ArrowDown" && item.nextElementSibling) {
      ev.preventDefault();
      item.nextElementSibling.focus();
    } else if (ev.key === "ArrowUp") {
      ev.preventDefault();
      (item.previousElementSibling || input).focus();
    } else if (ev.key === "Escape") {
      input.focus();
    }
  });

  const initial = new URLSearchParams(location.search).get("q");
  if (initial) {
    input.value = initial;
    search(initial);
  }
})();
