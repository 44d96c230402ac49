// The job spec reference: every model the body of POST /v1/jobs reaches, one table each, read
// from this server's OpenAPI document. The pydantic models that validate a spec also write
// that document, so the page matches the server it comes from and needs nothing but it.
import { el, getJSON } from "./api.js";

const REF = "#/components/schemas/";
const contents = document.getElementById("contents");
const reference = document.getElementById("reference");

const nameOf = (ref) => ref.slice(REF.length);

// A field's type as text and links: `list of LinearSpec | ReluSpec`, `"adam"`, `number`.
function typeOf(schema) {
  if (!schema) return ["any"];
  if (schema.$ref) return [el("a", { href: `#${nameOf(schema.$ref)}` }, nameOf(schema.$ref))];
  const choices = schema.oneOf || schema.anyOf;
  if (choices) return choices.flatMap((choice, i) => (i ? [" | "] : []).concat(typeOf(choice)));
  if (schema.const !== undefined) return [JSON.stringify(schema.const)];
  if (schema.enum) return [schema.enum.map((v) => JSON.stringify(v)).join(" | ")];
  if (schema.type === "array") {
    if (schema.prefixItems) {
      return ["[", ...schema.prefixItems.flatMap((item, i) => (i ? [", "] : []).concat(typeOf(item))), "]"];
    }
    return ["list of ", ...typeOf(schema.items)];
  }
  if (schema.type === "object" && schema.additionalProperties) {
    return ["map of ", ...typeOf(schema.additionalProperties)];
  }
  return [schema.type || "any"];
}

const BOUNDS = [["minimum", ">="], ["exclusiveMinimum", ">"], ["maximum", "<="],
  ["exclusiveMaximum", "<"], ["minLength", "length >="], ["maxLength", "length <="],
  ["minItems", "items >="], ["maxItems", "items <="]];

function limitsOf(schema) {
  const parts = [schema, ...(schema.anyOf || [])].flatMap((s) =>
    BOUNDS.filter(([key]) => s[key] !== undefined).map(([key, op]) => `${op} ${s[key]}`));
  return parts.join(", ");
}

function fieldRow(name, schema, required) {
  const fallback = required ? el("strong", {}, "required")
    : schema.default === undefined ? "" : el("code", {}, JSON.stringify(schema.default));
  return el("tr", {},
    el("td", {}, el("code", {}, name)),
    el("td", {}, typeOf(schema)),
    el("td", {}, fallback),
    el("td", {}, [schema.description || "", limitsOf(schema) ? ` (${limitsOf(schema)})` : ""]));
}

function modelSection(name, schema) {
  const required = new Set(schema.required || []);
  const rows = Object.entries(schema.properties || {}).map(([field, fieldSchema]) =>
    fieldRow(field, fieldSchema, required.has(field)));
  return el("section", { id: name, class: "spec-model" },
    el("h2", {}, name),
    schema.description ? el("p", {}, schema.description) : "",
    rows.length
      ? el("table", { class: "compact" },
        el("thead", {}, el("tr", {}, ["field", "type", "default", "meaning"].map((h) => el("th", {}, h)))),
        el("tbody", {}, rows))
      : el("p", { class: "muted" }, "no fields"));
}

// The models JobSpec reaches, breadth first: JobSpec, its sections, then what they hold.
function reachable(schemas, start) {
  const order = [start];
  for (let i = 0; i < order.length; i += 1) {
    const text = JSON.stringify(schemas[order[i]]);
    for (const match of text.matchAll(/"#\/components\/schemas\/([^"]+)"/g)) {
      if (!order.includes(match[1]) && schemas[match[1]]) order.push(match[1]);
    }
  }
  return order;
}

async function render() {
  try {
    const doc = await getJSON("/openapi.json");
    const body = doc.paths["/v1/jobs"].post.requestBody.content["application/json"].schema;
    const schemas = doc.components.schemas;
    const names = reachable(schemas, nameOf(body.$ref));
    contents.replaceChildren(...names.flatMap((name, i) =>
      [i ? " · " : "", el("a", { href: `#${name}` }, name)]));
    reference.replaceChildren(...names.map((name) => modelSection(name, schemas[name])));
    if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
  } catch (error) {
    reference.replaceChildren(el("p", { class: "bad" }, `Cannot read the schema: ${error.message}`));
  }
}

render();
