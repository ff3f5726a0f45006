-- Argo CD health of a NemotronDeployment (nemotron.dev), from the conditions its operator writes
-- (the kstatus conventions), read in kstatus' order: Stalled=True means it cannot go on without
-- a person (Degraded), Reconciling=True that it is on its way (Progressing: a rollout, a new
-- version downloading while the old one serves, a failure being retried), Ready=True that every
-- replica serves or none is asked for (Healthy); anything else, as a change of the spec the
-- operator has not observed yet, is Progressing too.
-- Uses only Lua's base library: argocd-cm runs it without the others (useOpenLibs off).
local hs = {}

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local conditions = {}
for _, condition in ipairs(obj.status.conditions) do
  conditions[condition.type] = condition
end

if conditions.Stalled ~= nil and conditions.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = conditions.Stalled.message
  return hs
end

if conditions.Reconciling ~= nil and conditions.Reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = conditions.Reconciling.message
  return hs
end

if conditions.Ready ~= nil and conditions.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = conditions.Ready.message
  return hs
end

hs.status = "Progressing"
if conditions.Ready ~= nil then
  hs.message = conditions.Ready.message
else
  hs.message = "Waiting for the operator"
end
return hs
