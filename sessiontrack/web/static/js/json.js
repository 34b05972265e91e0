// Formatted, collapsible JSON built from <details>, so it is keyboard-operable for free.

import { h } from "./dom.js";

/**
 * Render a JSON value as a tree.
 * @param {*} value
 * @param {{openDepth?: number, openPaths?: Set<string>}} options open levels above openDepth
 *   are expanded; openPaths (from openPathsOf) restores what the reader had expanded.
 */
export function jsonTree(value, { openDepth = 1, openPaths = null } = {}) {
  return h("div", { class: "json" }, node(value, "$", 0, openDepth, openPaths));
}

/** The paths currently expanded in a tree, to keep them open across re-renders. */
export function openPathsOf(root) {
  const paths = new Set();
  for (const el of root.querySelectorAll("details[data-path]")) {
    paths.add(`${el.open ? "+" : "-"}${el.dataset.path}`);
  }
  return paths;
}

function node(value, path, depth, openDepth, openPaths) {
  if (value === null || typeof value !== "object") return scalar(value);
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (!entries.length) return h("span", { class: "json-punct" }, isArray ? "[]" : "{}");
  const items = h("ul", { class: "json-items" }, entries.map(([key, v]) => h("li", {},
    isArray ? null : h("span", { class: "json-key" }, JSON.stringify(String(key))),
    isArray ? null : h("span", { class: "json-punct" }, ": "),
    node(v, `${path}/${key}`, depth + 1, openDepth, openPaths))));
  if (depth === 0) return items;
  let open = depth < openDepth;
  if (openPaths?.has(`+${path}`)) open = true;
  if (openPaths?.has(`-${path}`)) open = false;
  const summary = isArray ? `[ ${entries.length} item${entries.length === 1 ? "" : "s"} ]`
    : `{ ${entries.length} key${entries.length === 1 ? "" : "s"} }`;
  return h("details", { open, dataset: { path } }, h("summary", { class: "json-punct" }, summary), items);
}

function scalar(value) {
  const kind = value === null ? "null" : typeof value;
  const text = kind === "string" ? JSON.stringify(value) : String(value);
  return h("span", { class: `json-${kind}` }, text);
}
