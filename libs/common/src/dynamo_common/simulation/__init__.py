"""The decision simulator (issue 10): replay weeks of data use in minutes on a synthetic grid,
with the real detox and dealer decision code, and compare strategies.

    scenario = load_scenario(Path("scenarios/tiny.yaml"))
    result = run_scenario(scenario)
    write_report(result.to_json(), Path("out"))

Agents reach the simulator through the ``dynamo.agents`` entry points (``Agent``); this
package never imports a service.
"""

from dynamo_common.simulation.agent import (
    AGENT_GROUP,
    AccessRecord,
    AccessSummary,
    Agent,
    AgentDecisions,
    AgentError,
    AgentInputs,
    Copy,
    CopyRequest,
    Deletion,
    OwnerChange,
    installed_agents,
    load_agent,
)
from dynamo_common.simulation.runner import SimulationResult, run_scenario
from dynamo_common.simulation.scenario import Scenario, ScenarioError, load_scenario

__all__ = [
    "AGENT_GROUP",
    "AccessRecord",
    "AccessSummary",
    "Agent",
    "AgentDecisions",
    "AgentError",
    "AgentInputs",
    "Copy",
    "CopyRequest",
    "Deletion",
    "OwnerChange",
    "Scenario",
    "ScenarioError",
    "SimulationResult",
    "installed_agents",
    "load_agent",
    "load_scenario",
    "run_scenario",
]
