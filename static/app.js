// progsearch demo page: search as you type over the SSE stream (protocol version 1).
// Each keystroke (debounced) opens an EventSource and closes the previous one; events of an
// older query are ignored. The list re-orders with a FLIP animation when a better phase
// arrives, reusing each result's element so nothing flickers. The sidebar's facets, the price
// range and the sort (their state and filter expression: filters.js) go with every request,
// and the whole state lives in the page's URL, so a reload or a shared link shows the same.
// With "follow" on, the stream stays open after `done` and each `update` (a write changed the
// results) re-renders the list the same way, new documents marked, removed ones fading out.
// The "write a product" form posts to /documents, so the page can show both ends of a write.
// Opening a result (a click, or Enter on a focused one) sends a click event for the search
// that showed it (POST /events, with the search_id of the stream's `done`).
"use strict";

(() => {
  const DEBOUNCE_MS = 120;
  const K = 10;
  const PRICE_DEBOUNCE_MS = 300;
  const RECOUNT_MS = 250; // updates can come in bursts: their facet counts are asked once
  const LEAVE_MS = 320; // the fade of a result an update removed (style.css: .leaving)
  const KEY_STORE = "progsearch-api-key";
  const F = ProgsearchFilters;
  const PHASES = ["keyword", "semantic", "enhanced"];
  const WARMING = "Meaning-based results are still warming up; keyword results are shown.";

  const form = document.getElementById("search-form");
  const input = document.getElementById("q");
  const list = document.getElementById("results");
  const status = document.getElementById("status");
  const corrected = document.getElementById("corrected");
  const empty = document.getElementById("empty");
  const chipBox = document.getElementById("chips");
  const chipList = chipBox.querySelector("ul");
  const sortSelect = document.getElementById("sort");
  const priceMin = document.getElementById("price-min");
  const priceMax = document.getElementById("price-max");
  const sidebar = document.getElementById("filters");
  const toggle = document.getElementById("filters-toggle");
  const followBox = document.getElementById("follow");
  const followState = document.getElementById("follow-state");
  const writeForm = document.getElementById("write-form");
  const writeResult = document.getElementById("write-result");
  const apiKey = document.getElementById("api-key");
  const facetLists = new Map(
    [...document.querySelectorAll(".facet")].map((el) => [el.dataset.field, el.querySelector(".values")]),
  );
  const badges = new Map(
    [...document.querySelectorAll(".phase")].map((el) => [el.dataset.phase, el]),
  );

  let source = null;
  let generation = 0;
  let timer = 0;
  let priceTimer = 0;
  let counting = null; // AbortController of the current searches' facet counts
  let recountTimer = 0;
  let state = F.fromParams(new URLSearchParams(location.search));
  let searchId = null; // the current search's, from its `done`: what a click is reported on
  const nodes = new Map(); // result id -> <li>
  const counts = new Map(); // facet field -> its latest {matched, values, min, max}
  // Ids an update brought in or rewrote since the search began: they keep their mark while the
  // page follows, through later updates, until the next search.
  const arrived = new Set();
  const edited = new Set();

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

  // Brand, price and rating of a product, those it has.
  function meta(fields) {
    if (!fields) return "";
    const parts = [];
    if (typeof fields.brand === "string") parts.push(`<span class="brand">${escapeHtml(fields.brand)}</span>`);
    if (typeof fields.price === "number") {
      parts.push(`<span class="price" data-price="${fields.price}">${fields.price.toFixed(2)}</span>`);
    }
    if (typeof fields.rating === "number") {
      parts.push(`<span class="rating" data-rating="${fields.rating}" aria-label="rated ${fields.rating} of 5">★ ${fields.rating.toFixed(1)}</span>`);
    }
    return parts.length ? `<p class="meta">${parts.join("")}</p>` : "";
  }

  // An update's hits move against the list shown before it, whatever its phase; its new ones
  // carry the "new" badge instead.
  function moveLabel(phase, hit, isUpdate) {
    if (phase === "keyword" && !isUpdate) return null;
    if (hit.previous_rank === null || hit.previous_rank === undefined) return isUpdate ? null : ["new", "new"];
    const delta = hit.previous_rank - hit.rank;
    if (delta > 0) return ["up", `▲ ${delta}`];
    if (delta < 0) return ["down", `▼ ${-delta}`];
    return null;
  }

  function fill(li, phase, hit, isUpdate) {
    const move = moveLabel(phase, hit, isUpdate);
    const isNew = arrived.has(hit.id);
    const isEdited = edited.has(hit.id);
    li.classList.toggle("hit-new", isNew);
    li.classList.toggle("hit-changed", isEdited);
    li.innerHTML =
      `<h2>${isNew ? '<span class="badge-new">new</span> ' : ""}${escapeHtml(hit.title || hit.id)}` +
      `${isEdited ? ' <span class="badge-edited" title="Rewritten since it was first shown">edited</span>' : ""}</h2>` +
      `${meta(hit.fields)}<p></p>` +
      (move ? `<span class="move ${move[0]}" title="rank ${hit.previous_rank ?? "new"} → ${hit.rank}">${move[1]}</span>` : "");
    const body = li.querySelector("p:not(.meta)");
    if (hit.highlight) body.replaceChildren(...markedNodes(hit.highlight));
    else body.textContent = hit.snippet || "";
    li.dataset.rank = hit.rank;
    li.setAttribute("aria-label", `${hit.rank}. ${hit.title || hit.id}${isNew ? ", new" : ""}${isEdited ? ", edited" : ""}`);
  }

  // The results being shown (not those fading out).
  const isHit = (el) => el !== null && el.classList.contains("hit") && !el.classList.contains("leaving");
  function sibling(item, forward) {
    let el = item;
    do el = forward ? el.nextElementSibling : el.previousElementSibling;
    while (el !== null && !isHit(el));
    return el;
  }

  // Results an update removed fade out where they are, taken out of the flow so the others
  // slide over them; they are no longer results (no focus, hidden from assistive technology).
  // All are measured before any moves.
  function leave(items) {
    const boxes = items.map((li) => [li.offsetTop, li.offsetLeft, li.offsetWidth]);
    items.forEach((li, i) => {
      const [top, left, width] = boxes[i];
      Object.assign(li.style, { top: `${top}px`, left: `${left}px`, width: `${width}px` });
      li.classList.add("leaving");
      li.removeAttribute("tabindex");
      li.setAttribute("aria-hidden", "true");
      setTimeout(() => li.remove(), LEAVE_MS);
    });
  }

  // FLIP: note where each item is (First), put the list in its new order (Last), shift each
  // item back to where it was (Invert), then let it slide to its place (Play). A phase's
  // re-rank drops the results it no longer has at once; an update (`isUpdate`: a follow's
  // write) lets them fade out and slides its new ones in.
  function render(phase, hits, isUpdate = false) {
    const first = new Map();
    for (const [id, li] of nodes) first.set(id, li.getBoundingClientRect().top);
    const keep = new Set(hits.map((hit) => hit.id));
    const shown = [...list.children].filter(isHit);
    let refocus = -1; // the focused result left: focus goes to the one now in its place
    const gone = [];
    for (const [id, li] of nodes) {
      if (keep.has(id)) continue;
      if (document.activeElement === li) refocus = shown.indexOf(li);
      gone.push(li);
      nodes.delete(id);
    }
    if (isUpdate) leave(gone);
    else gone.forEach((li) => li.remove());
    hits.forEach((hit) => {
      let li = nodes.get(hit.id);
      if (!li) {
        li = document.createElement("li");
        li.className = isUpdate ? "hit arriving" : "hit entering";
        li.tabIndex = 0;
        li.dataset.id = hit.id;
        li.addEventListener("animationend", () => li.classList.remove("entering", "arriving"), { once: true });
        nodes.set(hit.id, li);
      }
      fill(li, phase, hit, isUpdate);
      list.appendChild(li); // moves an existing element: no re-creation, no flicker
    });
    list.dataset.phase = phase;
    if (refocus >= 0) {
      const rest = [...list.children].filter(isHit);
      (rest[Math.min(refocus, rest.length - 1)] || input).focus();
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

  // The API's parameters for the current state: the query, the filter expression, the sort
  // and the facets to count; `except` leaves out one field's condition (see facet counts).
  function apiParams(k, facets, except = null) {
    const params = new URLSearchParams({ q: state.q, k: String(k) });
    const filter = F.expression(state, except);
    if (filter) params.set("filter", filter);
    const sort = F.sortParam(state);
    if (sort) params.set("sort", sort);
    if (facets.length) params.set("facets", facets.join(","));
    return params;
  }

  const errorMessage = async (r) => {
    const body = await r.json().catch(() => null);
    return body && body.error && body.error.message ? body.error.message : `error ${r.status}`;
  };

  async function explainFailure(params, followUrl = null) {
    // An EventSource does not expose the status or body of a refused request: ask the JSON
    // endpoint, which answers bad input with the same error.
    try {
      const r = await fetch(`/search?${params}`);
      if (!r.ok) return await errorMessage(r);
      // A follow can be refused where a search is not (too many follows from this address, a
      // snapshot that never changes): ask the stream itself, and leave it at once if it opens.
      if (followUrl) {
        const leaving = new AbortController();
        const s = await fetch(followUrl, { signal: leaving.signal, cache: "no-store" });
        if (!s.ok) return await errorMessage(s);
        leaving.abort();
      }
      return "The stream was interrupted.";
    } catch (e) {
      return "Cannot reach the search server. Is it running?";
    }
  }

  // ---- URL state -------------------------------------------------------------------------
  function writeUrl() {
    const params = F.toParams(state).toString();
    history.replaceState(null, "", params ? `${location.pathname}?${params}` : location.pathname);
  }

  // ---- facets ----------------------------------------------------------------------------
  const valueLabel = (field, value) =>
    field === "in_stock" ? (value ? "In stock" : "Out of stock") : String(value);

  // One checkbox per counted value, and per ticked value even when its count fell to 0. Each
  // value keeps its element, so a focused checkbox stays focused while counts change.
  function renderFacet(field) {
    const ul = facetLists.get(field);
    const data = counts.get(field);
    const ticked = state.terms[field];
    const rows = data ? data.values.map(([value, n]) => [value, n]) : [];
    for (const value of ticked) {
      if (!rows.some(([v]) => v === value)) rows.push([value, 0]);
    }
    const focused = document.activeElement;
    const old = new Map([...ul.children].map((li) => [li.dataset.key, li]));
    const keep = [];
    for (const [value, n] of rows) {
      const key = JSON.stringify(value);
      let li = old.get(key);
      if (!li) {
        li = document.createElement("li");
        li.dataset.key = key;
        const label = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.addEventListener("change", () => update(F.withTerm(state, field, value, box.checked)));
        const name = document.createElement("span");
        name.className = "value";
        name.textContent = valueLabel(field, value);
        const count = document.createElement("span");
        count.className = "n";
        label.append(box, name, count);
        li.append(label);
      }
      li.querySelector("input").checked = ticked.includes(value);
      li.querySelector(".n").textContent = String(n);
      li.classList.toggle("zero", n === 0);
      keep.push(li);
    }
    ul.replaceChildren(...keep);
    if (focused && focused.isConnected && document.activeElement !== focused) focused.focus();
  }

  function renderFacets() {
    F.TERM_FIELDS.forEach((spec) => renderFacet(spec.field));
    const price = counts.get("price");
    if (price && price.min !== null && price.max !== null) {
      priceMin.placeholder = String(Math.floor(price.min));
      priceMax.placeholder = String(Math.ceil(price.max));
    }
  }

  // Counts of a field are taken with every condition but the field's own: its other values
  // then say how many products ticking them would add. Fields with nothing ticked get theirs
  // from the stream's keyword event; each field with ticked values, and the sidebar before any
  // query, from the JSON endpoint (k=1: only the counts are wanted). An update carries no
  // counts, and a write changes those the keyword event gave too: `all` asks for every field,
  // past the browser's cache (GET /search may be cached for a minute; the ETag is the index
  // version, so an unchanged index still answers 304).
  function fetchCounts(gen, browsing, all = false) {
    if (counting) counting.abort();
    counting = new AbortController();
    const { signal } = counting;
    const ticked = (field) => Boolean(state.terms[field] && state.terms[field].length);
    const jobs = browsing
      ? [[F.FACETS, null]]
      : F.TERM_FIELDS.filter((spec) => ticked(spec.field)).map((spec) => [[spec.field], spec.field]);
    const rest = F.FACETS.filter((field) => !ticked(field));
    if (all && !browsing && rest.length) jobs.push([rest, null]);
    for (const [fields, except] of jobs) {
      const params = apiParams(1, fields, except);
      // An empty q needs a filter or a sort to list anything; a sort changes no count.
      if (!state.q.trim() && !params.has("filter") && !params.has("sort")) params.set("sort", "price:asc");
      fetch(`/search?${params}`, { signal, cache: all ? "no-cache" : "default" })
        .then((r) => (r.ok ? r.json() : null))
        .then((body) => {
          if (!body || gen !== generation || !body.facets) return;
          for (const field of fields) if (body.facets[field]) counts.set(field, body.facets[field]);
          renderFacets();
        })
        .catch(() => {}); // aborted by a newer search, or the stream reports the failure
    }
  }

  function recount(gen) {
    clearTimeout(recountTimer);
    recountTimer = setTimeout(() => {
      if (gen === generation) fetchCounts(gen, false, true);
    }, RECOUNT_MS);
  }

  function streamCounts(facets) {
    if (!facets) return;
    for (const [field, data] of Object.entries(facets)) {
      if (!state.terms[field] || !state.terms[field].length) counts.set(field, data);
    }
    renderFacets();
  }

  // ---- chips, sort, price ----------------------------------------------------------------
  function renderChips(focusIndex = -1) {
    const chips = F.chips(state);
    chipList.replaceChildren(
      ...chips.map((chip) => {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "chip";
        button.dataset.key = chip.key;
        button.setAttribute("aria-label", `Remove filter ${chip.label}`);
        button.append(chip.label, Object.assign(document.createElement("span"), { textContent: "×", ariaHidden: "true" }));
        button.addEventListener("click", () => {
          update(chip.without());
          renderChips(Math.min(chips.indexOf(chip), chips.length - 2));
        });
        li.append(button);
        return li;
      }),
    );
    chipBox.hidden = chips.length === 0;
    toggle.querySelector(".n").textContent = chips.length ? `(${chips.length})` : "";
    if (focusIndex >= 0 && chipList.children[focusIndex]) chipList.children[focusIndex].querySelector("button").focus();
    else if (focusIndex >= -1 && document.activeElement === document.body) input.focus();
  }

  function syncControls() {
    input.value = state.q;
    sortSelect.value = state.sort;
    followBox.checked = state.follow;
    const shown = (v) => (v === null ? "" : String(v));
    if (F.parseNumber(priceMin.value) !== state.price.min) priceMin.value = shown(state.price.min);
    if (F.parseNumber(priceMax.value) !== state.price.max) priceMax.value = shown(state.price.max);
  }

  // Every change of the filters goes through here: state, controls, URL, chips, search.
  function update(next, { now = true } = {}) {
    state = next;
    syncControls();
    writeUrl();
    renderChips(-2);
    renderFacets();
    if (now) {
      clearTimeout(timer);
      search();
    }
  }

  function showEmpty(hits) {
    empty.hidden = !(hits.length === 0 && F.active(state));
  }

  // What the follow switch says about the stream: "" (not following), "live" (open after
  // `done`, updates come as writes land), what the last update changed, or "reconnecting…".
  function setFollowState(text, live = false) {
    followState.textContent = text;
    followState.classList.toggle("live", live);
  }

  function updateSummary(data) {
    const parts = [];
    if (data.added.length) parts.push(`${data.added.length} new`);
    if (data.removed.length) parts.push(`${data.removed.length} removed`);
    if (data.changed.length) parts.push(`${data.changed.length} edited`);
    return `live · ${parts.length ? parts.join(", ") : "re-ranked"}`;
  }

  function search() {
    generation += 1;
    const gen = generation;
    const query = state.q;
    const following = state.follow;
    if (source) {
      source.close();
      source = null;
    }
    clearTimeout(recountTimer);
    arrived.clear();
    edited.clear();
    searchId = null;
    const params = apiParams(K, F.FACETS);
    const browsing = !query.trim() && !params.has("filter") && !params.has("sort");
    fetchCounts(gen, browsing);
    setFollowState(following && !browsing ? "waiting…" : "");
    // aria-busy: the list is still changing (the stream has not ended).
    list.setAttribute("aria-busy", String(!browsing));
    if (browsing) {
      render("keyword", []);
      corrected.hidden = true;
      empty.hidden = true;
      setStatus("");
      PHASES.forEach((p) => setBadge(p, "", "–"));
      return;
    }
    PHASES.forEach((p) => setBadge(p, "pending", "…"));
    // A follow is the same stream with follow=1: the phases and `done`, then `update`s.
    const streamParams = new URLSearchParams(params);
    if (following) streamParams.set("follow", "1");
    const streamUrl = `/search/stream?${streamParams}`;
    const es = new EventSource(streamUrl);
    source = es;
    const current = () => gen === generation;
    let sawEvent = false;
    let sawDone = false;

    const onPhase = (phase) => (ev) => {
      if (!current()) return;
      const data = JSON.parse(ev.data);
      if (data.query !== query) return;
      sawEvent = true;
      setBadge(phase, "done", ms(data.took_ms));
      if (phase === "keyword") {
        showCorrection(data);
        streamCounts(data.facets);
      }
      // With no words (browsing by filter or sort) there is no meaning to rank by: the later
      // phases bring no hits, and the keyword phase's list stays.
      if (phase !== "keyword" && !query.trim()) return;
      render(phase, data.hits);
      showEmpty(data.hits);
      if (phase === "keyword") {
        setStatus(data.hits.length || F.active(state) ? "" : `No results for “${query}”.`);
      }
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
        const message = await explainFailure(params, following ? streamUrl : null);
        if (current()) {
          list.setAttribute("aria-busy", "false");
          setStatus(message, true);
          setFollowState("");
          PHASES.forEach((p) => {
            if (badges.get(p).classList.contains("pending")) setBadge(p, "failed", "–");
          });
        }
      } else if (sawDone) {
        // A follow whose connection dropped, or that reached its lifetime: the EventSource
        // reconnects with its last id and the server resumes from what this page shows.
        setFollowState("reconnecting…");
      } else {
        setStatus("Connection lost; resuming…", true);
      }
    });

    es.addEventListener("open", () => {
      if (current() && sawDone) setFollowState("live", true);
    });

    // A write changed the followed results: the new list, against the one shown.
    es.addEventListener("update", (ev) => {
      if (!current()) return;
      const data = JSON.parse(ev.data);
      if (data.query !== query) return;
      for (const id of data.added) arrived.add(id);
      for (const id of data.changed) edited.add(id);
      for (const id of data.removed) {
        arrived.delete(id);
        edited.delete(id);
      }
      render(data.phase, data.hits, true);
      showEmpty(data.hits);
      if (!status.classList.contains("bad")) {
        setStatus(data.hits.length || F.active(state) ? "" : `No results for “${query}”.`);
      }
      setFollowState(updateSummary(data), true);
      recount(gen);
    });

    es.addEventListener("done", (ev) => {
      if (!current()) return;
      sawDone = true;
      if (following) setFollowState("live", true);
      else es.close(); // else the browser would reconnect, and get 204
      list.setAttribute("aria-busy", "false");
      const done = JSON.parse(ev.data);
      searchId = done.search_id || null;
      PHASES.forEach((p) => {
        if (!(p in done.phases) && !done.errors.includes(p)) setBadge(p, "skipped", "n/a");
      });
      if (!done.errors.length && status.classList.contains("bad")) setStatus("");
    });
  }

  input.addEventListener("input", () => {
    state = { ...state, q: input.value };
    writeUrl();
    clearTimeout(timer);
    timer = setTimeout(search, DEBOUNCE_MS);
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearTimeout(timer);
    search();
  });

  followBox.addEventListener("change", () => update({ ...state, follow: followBox.checked }));

  for (const [key, option] of Object.entries(F.SORTS)) sortSelect.add(new Option(option.label, key));
  sortSelect.addEventListener("change", () => update({ ...state, sort: sortSelect.value }));

  const onPrice = () => {
    clearTimeout(priceTimer);
    priceTimer = setTimeout(() => {
      const price = { min: F.parseNumber(priceMin.value), max: F.parseNumber(priceMax.value) };
      if (price.min !== state.price.min || price.max !== state.price.max) update({ ...state, price });
    }, PRICE_DEBOUNCE_MS);
  };
  priceMin.addEventListener("input", onPrice);
  priceMax.addEventListener("input", onPrice);

  const clearFilters = () => update(F.cleared(state));
  document.getElementById("clear-all").addEventListener("click", () => {
    clearFilters();
    input.focus();
  });
  document.getElementById("clear-filters").addEventListener("click", () => {
    clearFilters();
    input.focus();
  });

  // Phone width: the sidebar folds behind the "Filters" button (style.css hides the button
  // where there is room for both).
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    sidebar.classList.toggle("open", open);
  });

  // Keyboard: ↓ from the box enters the list, ↑/↓ move in it, Esc goes back to the box.
  input.addEventListener("keydown", (ev) => {
    const first = list.querySelector(".hit:not(.leaving)");
    if (ev.key === "ArrowDown" && first) {
      ev.preventDefault();
      first.focus();
    }
  });
  list.addEventListener("keydown", (ev) => {
    const item = ev.target.closest(".hit");
    if (!item) return;
    const next = sibling(item, true);
    if (ev.key === "ArrowDown" && next) {
      ev.preventDefault();
      next.focus();
    } else if (ev.key === "ArrowUp") {
      ev.preventDefault();
      (sibling(item, false) || input).focus();
    } else if (ev.key === "Escape") {
      input.focus();
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      open(item);
    }
  });
  list.addEventListener("click", (ev) => {
    const item = ev.target.closest(".hit");
    if (item && isHit(item)) open(item);
  });

  // ---- opening a result ------------------------------------------------------------------
  // The event is sent with keepalive, so it is delivered even if the page is left at once. A
  // result an update brought in was not shown when the search ended: the server would refuse
  // it, so it is not sent; nor is anything before `done` gave the search its id.
  function open(item) {
    item.classList.add("opened");
    const id = item.dataset.id;
    if (!searchId || arrived.has(id)) return;
    fetch("/events", {
      method: "POST",
      keepalive: true,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ search_id: searchId, doc_id: id, kind: "click" }),
    }).catch(() => {}); // a lost event costs the page nothing
  }

  // ---- writing a product -----------------------------------------------------------------
  // The demo catalog's fields (app/catalog/schema.toml); empty ones are left out. The key goes
  // in the Authorization header only, kept for this tab in sessionStorage, never in the URL.
  const newId = () => `page-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;

  function product() {
    const field = (name) => writeForm.elements.namedItem(name);
    const doc = { id: field("id").value.trim() || newId(), title: field("title").value.trim() };
    const text = field("text").value.trim();
    if (text) doc.text = text;
    for (const name of ["brand", "category"]) {
      const value = field(name).value.trim();
      if (value) doc[name] = value;
    }
    for (const name of ["price", "rating"]) {
      const value = F.parseNumber(field(name).value);
      if (value !== null) doc[name] = value;
    }
    doc.in_stock = field("in_stock").checked;
    return doc;
  }

  function showWrite(text, bad) {
    writeResult.textContent = text;
    writeResult.classList.toggle("bad", bad);
    writeResult.classList.toggle("ok", !bad);
  }

  try {
    apiKey.value = sessionStorage.getItem(KEY_STORE) || "";
  } catch (e) {} // storage disabled: the key is typed again
  writeForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const doc = product();
    const key = apiKey.value;
    try {
      sessionStorage.setItem(KEY_STORE, key);
    } catch (e) {}
    const button = writeForm.querySelector("button[type=submit]");
    button.disabled = true;
    showWrite("Writing…", false);
    try {
      const r = await fetch("/documents", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
        body: JSON.stringify(doc),
      });
      if (r.ok) {
        const body = await r.json();
        showWrite(`Written “${doc.id}” (seq ${body.seq}, index version ${body.index_version}).`, false);
      } else {
        showWrite(`Not written: ${await errorMessage(r)}`, true);
      }
    } catch (e) {
      showWrite("Not written: cannot reach the server.", true);
    } finally {
      button.disabled = false;
    }
  });

  // The state of the URL (a reload, a shared link) is the state the page starts in.
  update(state);
})();
