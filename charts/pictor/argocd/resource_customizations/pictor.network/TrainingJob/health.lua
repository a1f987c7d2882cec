-- Argo CD health of a pictor.network TrainingJob, read from the status the Pictor operator writes:
-- Healthy once Succeeded, Degraded when Failed (with the Ready condition's message), Suspended
-- when cancelled by spec.suspend, Progressing otherwise and while the operator has not yet
-- observed the job's latest generation.
local hs = {}
local status = obj.status

if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Pictor operator to pick the job up"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Pictor operator to observe generation " .. generation
  return hs
end

local said = ""
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" and condition.message ~= nil then
      said = condition.message
    end
  end
end

local function tell(phase)
  if said == "" then
    return phase
  end
  return phase .. ": " .. said
end

if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = tell("Succeeded")
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = tell("Failed")
elseif status.phase == "Cancelled" then
  hs.status = "Suspended"
  hs.message = tell("Cancelled")
else
  -- Pending, Running, Restarting
  hs.status = "Progressing"
  hs.message = tell(status.phase)
end
return hs
