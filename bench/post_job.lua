-- wrk: POST the README's example job (examples/digits-mlp.json) for bench/http_load.py.
-- Paths are relative to the repository root, where http_load.py runs wrk.
local file = assert(io.open("examples/digits-mlp.json", "r"))
wrk.method = "POST"
wrk.body = file:read("*a")
wrk.headers["Content-Type"] = "application/json"
file:close()

dofile("bench/wrk_report.lua")
