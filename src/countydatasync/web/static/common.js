/* Shared helpers for the dashboard and the map. Every value from the API reaches the page through
   textContent, never parsed as HTML, so a parcel attribute can never become markup. */
"use strict";

window.cds = (function () {
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value == null ? "" : String(value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function getJSON(url, options) {
    const response = await fetch(url, Object.assign({ headers: { Accept: "application/json" } }, options || {}));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
      const error = new Error(detail || ("HTTP " + response.status));
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function fmt(value) {
    if (value === null || value === undefined || value === "") return "—";
    if (typeof value === "number") {
      return Number.isInteger(value) ? value.toLocaleString() : value.toLocaleString(undefined, { maximumFractionDigits: 2 });
    }
    return String(value);
  }

  // A parcel's value as the working DB holds it: a year built of 1987 is not "1,987", acres keep every digit.
  function asStored(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function when(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return isNaN(date) ? String(iso) : date.toLocaleString();
  }

  function table(columns, rows) {
    const head = el("tr", {}, columns.map(c => el("th", { text: c.label, scope: "col" })));
    const body = rows.map(row => el("tr", {}, columns.map(c => {
      const cell = el("td", { text: fmt(c.value(row)) });
      if (c.className) cell.className = c.className(row);
      return cell;
    })));
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  function replace(id, ...nodes) {
    const target = document.getElementById(id);
    target.replaceChildren(...nodes);
    return target;
  }

  return { el, getJSON, fmt, asStored, when, table, replace };
})();
