// Send servicewatch events from Node.js (18+) over HTTP: no dependencies, built-in fetch.
//
//   node examples/node/post_events.mjs
//   SERVICEWATCH_URL=http://worker:6066 SERVICEWATCH_INGEST_TOKEN=... node examples/node/post_events.mjs
//
// POST /events takes one event, a JSON array of events, or NDJSON. The answer says, per item,
// what was accepted and what was rejected (index, field, error). A 503 means Kafka did not
// acknowledge: retry the same request; events already written are dropped by event_id.
import { randomUUID } from "node:crypto";

const url = process.env.SERVICEWATCH_URL ?? "http://127.0.0.1:6066";
const token = process.env.SERVICEWATCH_INGEST_TOKEN;
const team = process.env.TEAM ?? "example";

// Every event: a unique event_id, its type, occurred_at WITH a time zone (toISOString gives Z),
// the case id (the Kafka key), the team and the channel. See schemas/json/ for every field.
function event(type, caseId, fields = {}, occurredAt = new Date()) {
  return {
    event_id: randomUUID(), type, occurred_at: occurredAt.toISOString(), case_id: caseId,
    team, channel: "chat", source: "examples/node", ...fields,
  };
}

async function post(events, retries = 3) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(`${url}/events`, { method: "POST", headers, body: JSON.stringify(events) });
    const answer = await response.json();
    // The same body (same event_ids) can be re-sent safely: repeats are dropped.
    if (response.status === 503 && attempt < retries) {
      await new Promise((resolve) => setTimeout(resolve, 2000 * attempt));
      continue;
    }
    return { status: response.status, ...answer };
  }
}

const caseId = `case-${randomUUID().slice(0, 8)}`;
const promiseId = `${caseId}-refund`;
const inTwoDays = new Date(Date.now() + 2 * 24 * 3600 * 1000);

const result = await post([
  event("greeting", caseId, { contact_at: new Date(Date.now() - 15_000).toISOString() }),
  event("promise", caseId, { promise_id: promiseId, kind: "refund", due_at: inTwoDays.toISOString() }),
  event("delivery", caseId, { promise_id: promiseId }),
  // Rejected on purpose, and reported by index and field: kind must be one of the listed values.
  event("promise", caseId, { promise_id: `${caseId}-x`, kind: "someday", due_at: inTwoDays.toISOString() }),
]);
console.log(`HTTP ${result.status}: ${result.accepted} accepted`);
for (const problem of result.rejected) {
  console.log(`  item ${problem.index}: ${problem.field ?? "(whole item)"}: ${problem.error}`);
}
if (result.error) console.log(`  ${result.error}`);
process.exitCode = result.status === 202 || result.status === 207 ? 0 : 1;
