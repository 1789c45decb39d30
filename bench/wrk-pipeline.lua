-- HTTP/1.1 pipelining with wrk: each write carries DEPTH copies of one POST, sent without waiting
-- for answers (wrk reads the DEPTH answers back). Prints one JSON line.
--   wrk -t1 -c16 -d5s -s bench/wrk-pipeline.lua http://127.0.0.1:8000/v2/models/digits/infer -- 8 body.json
init = function(args)
  local depth = tonumber(args[1]) or 8
  local f = assert(io.open(args[2], "rb"))
  local body = f:read("*a")
  f:close()
  local one = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
  req = string.rep(one, depth)
end

request = function()
  return req
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"us":%d,"errors":%d,"read_errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status, e.read, e.status,
    latency:percentile(50), latency:percentile(99)))
end
