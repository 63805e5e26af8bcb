"""The demo's settings: the agents on short schedules, so that within a few minutes of
``dynamo up`` a newcomer sees each of them act. Production defaults are hours; these are
seconds. Only settings a service declares are passed, so a service that does not know one
(an older or newer version) still starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["POLICIES", "POLICY_FILES", "demo_settings", "instance_policies", "policy_settings"]

POLICIES = Path(__file__).parent / "policies"
POLICY_FILES = ("partitions.txt", "detox-Physics.txt", "enforcer.json")

_SCHEDULES: dict[str, dict[str, Any]] = {
    "transfer": {
        "poll_interval": 1.0,
        "progress_interval": 2.0,
        "retry_base_seconds": 5.0,
        "retry_max_seconds": 60.0,
    },
    "detox": {
        "cycle_interval": 30.0,
        "command_retry_interval": 10.0,
        "command_reply_timeout": 20.0,
    },
    "consistency": {
        # A replica is judged once it has been settled this long, and a missing file is acted
        # on at its second sighting: with checks every 20 s, a file removed by hand is back
        # within about a minute.
        "grace_period": 10.0,
        "recheck_interval": 20.0,
        "schedule_interval": 2.0,
        "parallel_sites": 2,
    },
    "dealer": {
        "cycle_interval": 30.0,
        "progress_interval": 2.0,
        "command_retry_interval": 10.0,
        "command_reply_timeout": 20.0,
        "popularity_half_life_days": 1.0,
        # Below detox's trigger (90%) and at its goal (85%): the dealer never fills a site
        # that detox would then empty again.
        "target_occupancy": 0.85,
    },
}


def instance_policies(data_dir: Path) -> Path:
    """Where an instance keeps its policy files (copied from the package by the demo, so an
    operator can edit them and restart)."""
    return data_dir / "policies"


def demo_settings(service: str, fields: set[str]) -> dict[str, Any]:
    """The demo's schedule overrides for ``service``, limited to the ``fields`` it declares."""
    return {k: v for k, v in _SCHEDULES.get(service, {}).items() if k in fields}


def policy_settings(service: str, fields: set[str], data_dir: Path) -> dict[str, Any]:
    """The instance's policy files for detox and the dealer, when it has them."""
    folder = instance_policies(data_dir)
    values: dict[str, Any] = {}
    detox = sorted(folder.glob("detox-*.txt"))
    enforcer = sorted(folder.glob("enforcer*.json"))
    if service == "detox" and detox and "policy_files" in fields:
        values["policy_files"] = detox
    if enforcer and "enforcer_files" in fields:
        values["enforcer_files"] = enforcer
    return values
