-- A job's terminal states: a job in one never moves, renews or stores an output again.
local function terminal(s) return s == 'SUCCEEDED' or s == 'FAILED' or s == 'CANCELLED' end
