-- wrk script: POST /api/mfa/verify, every request with the session and code of another customer
-- (`load_setup sessions` wrote them, a line each: `cookie code wrong-code`).
--
--   wrk ... -s verify.lua http://127.0.0.1:PORT/api/mfa/verify -- FILE MODE THREADS [LAST]
--
-- MODE valid: each customer's valid code, once (a code is accepted once), from the first line on:
-- every answer must be 200.
-- MODE wrong: a wrong code, at most 4 times per customer (the 5th failure in a row would lock them
-- out), to the LAST customers of the file only (those the valid run did not reach; all when not
-- given): every answer must be 401 `invalid_code` (not `unauthenticated`, which a session the
-- valid run used would get).
-- THREADS must be wrk's -t, so that the threads share the customers out without overlap.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[3] or "1")
  mode = args[2] or "valid"
  expected = (mode == "valid") and 200 or 401
  local uses = (mode == "wrong") and 4 or 1
  local lines = {}
  for line in io.lines(file) do
    lines[#lines + 1] = line
  end
  local first = 1
  if mode == "wrong" and args[4] then
    first = math.max(1, #lines - tonumber(args[4]) + 1)
  end
  requests, line_of = {}, {}
  for n = first, #lines do
    if n % nthreads == id then
      line_of[#requests + 1] = n
      local cookie, good, bad = lines[n]:match("^(%S+) (%d+) (%d+)$")
      local body = '{"code":"' .. ((mode == "valid") and good or bad) .. '"}'
      requests[#requests + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["Cookie"] = "portal_session=" .. cookie,
      }, body)
    end
  end
  total = #requests * uses
  sent = 0
  exhausted = 0
  reached = 0
  unexpected = 0
  statuses = {}
end

function request()
  if sent >= total then
    -- Out of customers: stop (the request returned here goes out all the same, and fails).
    exhausted = exhausted + 1
    wrk.thread:stop()
    return requests[1]
  end
  local index = sent % #requests + 1
  sent = sent + 1
  reached = math.max(reached, line_of[index])
  return requests[index]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status ~= expected or (mode == "wrong" and not body:find('"invalid_code"', 1, true)) then
    unexpected = unexpected + 1
    sample = sample or (status .. " " .. body)
  end
end

function done(summary, latency, requests)
  local unexpected, exhausted, reached, counts = 0, 0, 0, {}
  for _, thread in ipairs(threads) do
    local sample = thread:get("sample")
    if sample then
      io.write("unexpected answer: " .. sample .. "\n")
    end
    unexpected = unexpected + thread:get("unexpected")
    exhausted = exhausted + thread:get("exhausted")
    reached = math.max(reached, thread:get("reached"))
    for status, count in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    parts[#parts + 1] = status .. ": " .. count
  end
  table.sort(parts)
  io.write("statuses  " .. table.concat(parts, ", ") .. "\n")
  if exhausted > 0 then
    io.write("WARNING: ran out of prepared customers; prepare more (LOAD_CUSTOMERS)\n")
  end
  -- reached: the last line any request used (the wrong-code run must start after it).
  io.write(string.format("RESULT rps=%.0f p50=%.2fms p99=%.2fms requests=%d unexpected=%d errors=%d reached=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, unexpected,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    reached))
end
