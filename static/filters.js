// progsearch demo page: the filter state, and how it becomes a filter expression, a sort, a
// URL and a list of chips. Pure functions over a plain state object, so the page (app.js) and
// the tests share one definition:
//   {q: "", terms: {brand: ["Alpa"], category: [], in_stock: [true]},
//    price: {min: null, max: null}, sort: "relevance", follow: false}
// `follow` is not a filter but lives in the same URL: the page's stream stays open after
// `done` and shows the updates writes cause (app.js).
"use strict";

const ProgsearchFilters = (() => {
  // Fields offered as checkboxes, in sidebar order. Within a field the ticked values are
  // alternatives (OR); the fields and the price range must all hold (AND).
  const TERM_FIELDS = [
    { field: "brand", label: "Brand" },
    { field: "category", label: "Category" },
    { field: "in_stock", label: "Availability", bool: true },
  ];
  const SORTS = {
    relevance: { label: "Relevance", sort: "" },
    "price-asc": { label: "Price: low to high", sort: "price:asc" },
    "price-desc": { label: "Price: high to low", sort: "price:desc" },
    "rating-desc": { label: "Rating: high to low", sort: "rating:desc" },
  };
  const FACETS = ["brand", "category", "in_stock", "price"];

  const empty = () => ({
    q: "",
    terms: Object.fromEntries(TERM_FIELDS.map((f) => [f.field, []])),
    price: { min: null, max: null },
    sort: "relevance",
    follow: false,
  });

  // A string literal of the filter language: double quotes, with \" and \\ escaped, and
  // control characters as \uXXXX (the server refuses them raw in a query string).
  const quote = (value) =>
    '"' +
    String(value).replace(/[\\"\u0000-\u001f\u007f-\u009f]/g, (c) =>
      c === "\\" || c === '"' ? "\\" + c : "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
    ) +
    '"';
  const literal = (spec, value) => (spec.bool ? String(value === true) : quote(value));
  const number = (value) => (value === null || !Number.isFinite(value) ? null : String(value));

  function termCondition(spec, values) {
    if (!values.length) return "";
    if (values.length === 1) return `${spec.field} = ${literal(spec, values[0])}`;
    return `${spec.field} IN [${values.map((v) => literal(spec, v)).join(", ")}]`;
  }

  function priceCondition(price) {
    const lo = number(price.min);
    const hi = number(price.max);
    if (lo !== null && hi !== null) {
      // Bounds typed the wrong way round still mean the range between them.
      return price.min <= price.max ? `price ${lo} TO ${hi}` : `price ${hi} TO ${lo}`;
    }
    if (lo !== null) return `price >= ${lo}`;
    if (hi !== null) return `price <= ${hi}`;
    return "";
  }

  // The one place a filter expression is written. `except` leaves one field's condition out:
  // that field's own counts are taken without it, so its other values still show what ticking
  // them would add (OR within a field).
  function expression(state, except = null) {
    const parts = TERM_FIELDS.filter((spec) => spec.field !== except).map((spec) =>
      termCondition(spec, state.terms[spec.field] || []),
    );
    if (except !== "price") parts.push(priceCondition(state.price));
    return parts.filter(Boolean).join(" AND ");
  }

  const sortParam = (state) => (SORTS[state.sort] || SORTS.relevance).sort;

  const active = (state) => expression(state) !== "";

  // Every active condition as a chip: its text, and the state without it.
  function chips(state) {
    const out = [];
    for (const spec of TERM_FIELDS) {
      for (const value of state.terms[spec.field]) {
        const shown = spec.bool ? (value ? "in stock" : "out of stock") : value;
        out.push({
          key: `${spec.field}:${value}`,
          label: `${spec.label}: ${shown}`,
          without: () => withTerm(state, spec.field, value, false),
        });
      }
    }
    const lo = number(state.price.min);
    const hi = number(state.price.max);
    if (lo !== null || hi !== null) {
      const [a, b] = state.price.min <= state.price.max ? [lo, hi] : [hi, lo];
      const text = lo !== null && hi !== null ? `${a} – ${b}` : lo !== null ? `≥ ${lo}` : `≤ ${hi}`;
      out.push({
        key: "price",
        label: `Price: ${text}`,
        without: () => ({ ...state, price: { min: null, max: null } }),
      });
    }
    return out;
  }

  function withTerm(state, field, value, on) {
    const values = state.terms[field].filter((v) => v !== value);
    if (on) values.push(value);
    return { ...state, terms: { ...state.terms, [field]: values } };
  }

  const cleared = (state) => ({ ...empty(), q: state.q, sort: state.sort, follow: state.follow });

  // URL state: q, one parameter per ticked value (brand=A&brand=B), price_min, price_max,
  // sort, follow=1. The page's own address, not the API's: the API gets the expression.
  function toParams(state) {
    const params = new URLSearchParams();
    if (state.q) params.set("q", state.q);
    for (const spec of TERM_FIELDS) {
      for (const value of state.terms[spec.field]) params.append(spec.field, String(value));
    }
    if (number(state.price.min) !== null) params.set("price_min", number(state.price.min));
    if (number(state.price.max) !== null) params.set("price_max", number(state.price.max));
    if (state.sort !== "relevance") params.set("sort", state.sort);
    if (state.follow) params.set("follow", "1");
    return params;
  }

  const parseNumber = (text) => {
    if (text === null || text.trim() === "") return null;
    const value = Number(text);
    return Number.isFinite(value) ? value : null;
  };

  function fromParams(params) {
    const state = empty();
    state.q = params.get("q") || "";
    for (const spec of TERM_FIELDS) {
      const values = [...new Set(params.getAll(spec.field))];
      state.terms[spec.field] = spec.bool
        ? values.filter((v) => v === "true" || v === "false").map((v) => v === "true")
        : values.filter((v) => v !== "");
    }
    state.price = { min: parseNumber(params.get("price_min")), max: parseNumber(params.get("price_max")) };
    const sort = params.get("sort");
    state.sort = sort !== null && Object.hasOwn(SORTS, sort) ? sort : "relevance";
    state.follow = params.get("follow") === "1";
    return state;
  }

  return {
    TERM_FIELDS, SORTS, FACETS, empty, quote, expression, sortParam, active, chips, withTerm,
    cleared, toParams, fromParams, parseNumber,
  };
})();
