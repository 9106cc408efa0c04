// The index page: the pre-filled chat example and the curl example built from the same data.
"use strict";

const EXAMPLE_SCHEMA = {
  type: "array",
  items: {
    type: "object",
    properties: { name: { type: "string" }, age: { type: "number" } },
    required: ["name", "age"],
    additionalProperties: false,
  },
};

function exampleUser() {
  return "List every person in this text with their age (skip a person whose age is unknown).\n\n" +
    $("story").textContent.replace(/\s+/g, " ").trim();
}

document.addEventListener("DOMContentLoaded", () => {
  const example = {
    messageType: "user",
    messageUser: exampleUser(),
    format: { useGrammar: true, jsonSchema: JSON.stringify(EXAMPLE_SCHEMA, null, 2) },
    options: JSON.stringify({ temperature: 0, maxTokens: 512 }, null, 2),
  };
  $("open-example").addEventListener("click", () => {
    window.open("/chat?example=" + encodeURIComponent(JSON.stringify(example)), "_blank");
  });
  const body = {
    model: "<a name from /state/models>",
    message: { user: exampleUser() },
    durationMsec: 60000,
    options: { temperature: 0, maxTokens: 512 },
    format: { useGrammar: true, jsonSchema: EXAMPLE_SCHEMA },
  };
  $("curl").textContent = `curl -s ${location.origin}/prompt -H 'Content-Type: application/json' \\\n` +
    `  -d '${JSON.stringify(body, null, 2).replace(/'/g, "'\\''")}'`;
});
