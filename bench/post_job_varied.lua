-- wrk: POST the README's example job with a hidden layer of a random width each time, for
-- bench/http_load.py: each submission is, but for rare repeats, a network the API has not
-- validated before (it remembers the layers it has; see models/build.py _measure_layer).
-- Widths up to 1,000,000: the most a linear layer takes.
local file = assert(io.open("examples/digits-mlp.json", "r"))
local template = file:read("*a")
file:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", os.time() * 100 + threads)
end

init = function(args)
  math.randomseed(seed)
end

request = function()
  local width = math.random(1000, 1000000)
  local body = template:gsub('"out_features": 128', '"out_features": ' .. width, 1)
  return wrk.format(nil, nil, nil, body)
end

dofile("bench/wrk_report.lua")
