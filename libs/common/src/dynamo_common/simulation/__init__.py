"""The decision simulator (issue 10): replay weeks of data use in minutes on a synthetic grid,
with the real detox and dealer decision code, and compare strategies.

    scenario = load_scenario(Path("scenarios/tiny.yaml"))
    result = run_scenario(scenario)
    write_report(result.to_json(), Path("out"))

Agents reach the simulator through the ``dynamo.agents`` entry points (``Agent``); this
package never imports a service.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Loaded on first use: the `dynamo` CLI registers `simulate` from this package, and the
# runner's NumPy would otherwise slow every client command.
_HOME = {
    **dict.fromkeys(
        (
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
            "installed_agents",
            "load_agent",
        ),
        "agent",
    ),
    "SimulationResult": "runner",
    "run_scenario": "runner",
    "Scenario": "scenario",
    "ScenarioError": "scenario",
    "load_scenario": "scenario",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


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
