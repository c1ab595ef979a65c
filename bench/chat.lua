-- wrk script: POST a chat completion with a bearer token, print a JSON summary at the end.
-- Environment: BENCH_AUTH (full Authorization header value), BENCH_BODY (JSON body; default:
-- a small non-deterministic request, so the proxy's cache never answers it).
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or
  '{"model": "fake-small", "messages": [{"role": "user", "content": "how many rows in t250?"}], "max_tokens": 32, "temperature": 0.7}'
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "mean": %.1f, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
