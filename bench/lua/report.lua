-- Shared by every script: print the figures wrk measured as one JSON line.
local report = {}

function report.done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 75, 90, 99, 99.9}) do
    p[#p + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
  end
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "max": %d, %s}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max, table.concat(p, ", ")))
end

return report
