#!/bin/sh
# Send servicewatch events over HTTP with curl: one event, a JSON array, and NDJSON.
#
#   sh examples/curl/post_events.sh                       # worker on http://127.0.0.1:6066
#   SERVICEWATCH_URL=http://worker:6066 SERVICEWATCH_INGEST_TOKEN=... sh examples/curl/post_events.sh
#
# Each answer is JSON: {"accepted": n, "rejected": [{"index": i, "field": ..., "error": ...}]}
# with status 202 (all accepted), 207 (some rejected), 400, 401/403 (token), 413 (too big),
# or 503 (Kafka did not acknowledge; retrying the same request is safe).
set -eu

URL="${SERVICEWATCH_URL:-http://127.0.0.1:6066}"
TEAM="${TEAM:-example}"

# ISO 8601 UTC time N seconds from now (GNU date, then BSD/macOS date).
at() {
  t=$(( $(date -u +%s) + $1 ))
  date -u -d "@$t" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u -r "$t" +%Y-%m-%dT%H:%M:%SZ
}
# A fresh id per run; reuse the same id when re-sending an event, so it is counted once.
id() { printf '%s-%s-%s' "$1" "$(date +%s)" "$$"; }

post() {  # post CONTENT_TYPE BODY
  if [ -n "${SERVICEWATCH_INGEST_TOKEN:-}" ]; then
    curl -sS -w ' -> HTTP %{http_code}\n' -X POST "$URL/events" -H "Content-Type: $1" \
      -H "Authorization: Bearer $SERVICEWATCH_INGEST_TOKEN" --data-binary "$2"
  else
    curl -sS -w ' -> HTTP %{http_code}\n' -X POST "$URL/events" -H "Content-Type: $1" --data-binary "$2"
  fi
}

CASE="case-$(id c)"
NOW=$(at 0)

echo "1. one event: a promise to call back within an hour"
post application/json "{\"event_id\": \"$(id promise)\", \"type\": \"promise\", \"occurred_at\": \"$NOW\",
  \"case_id\": \"$CASE\", \"team\": \"$TEAM\", \"channel\": \"phone\",
  \"promise_id\": \"$CASE-callback\", \"due_at\": \"$(at 3600)\", \"kind\": \"callback\"}"

echo "2. a JSON array: a greeting and a response (occurred_at must carry a time zone)"
post application/json "[
  {\"event_id\": \"$(id greeting)\", \"type\": \"greeting\", \"occurred_at\": \"$NOW\",
   \"case_id\": \"$CASE\", \"team\": \"$TEAM\", \"channel\": \"phone\", \"contact_at\": \"$(at -20)\"},
  {\"event_id\": \"$(id response)\", \"type\": \"response\", \"occurred_at\": \"$NOW\",
   \"case_id\": \"$CASE\", \"team\": \"$TEAM\", \"channel\": \"phone\", \"requested_at\": \"$(at -90)\"}
]"

echo "3. NDJSON, one event per line (use --data-binary: curl -d would strip the newlines)."
echo "   The second line has a time without a time zone: it is rejected by index and field,"
echo "   the first is still accepted (HTTP 207)."
post application/x-ndjson "{\"event_id\": \"$(id delivery)\", \"type\": \"delivery\", \"occurred_at\": \"$NOW\", \"case_id\": \"$CASE\", \"team\": \"$TEAM\", \"channel\": \"phone\", \"promise_id\": \"$CASE-callback\"}
{\"event_id\": \"$(id bad)\", \"type\": \"response\", \"occurred_at\": \"2026-01-01T10:00:00\", \"case_id\": \"$CASE\", \"team\": \"$TEAM\", \"channel\": \"phone\", \"requested_at\": \"$NOW\"}" || true

echo "The endpoint is described at $URL/openapi.yaml"
