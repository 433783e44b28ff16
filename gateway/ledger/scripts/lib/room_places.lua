-- A job's members in the unfinished jobs' sets (jobs:active, tenant:{t}:active), which the queue
-- quota and the queue limit count: the job itself and, for a batch, one place for each room it keeps
-- unfinished at once ('room_places' in its hash: `places`), named '{id}#{n}'. Its rooms are not
-- members: a batch waits for its rooms, so rooms refused for the places batches hold would wait
-- for each other for good; counted one by one as they were made, a burst of batches under the
-- quota brought 8 rooms each past it.
local function room_places(job_id, places)
  local members = {job_id}
  for n = 1, tonumber(places or '0') or 0 do members[#members + 1] = job_id .. '#' .. n end
  return members
end
