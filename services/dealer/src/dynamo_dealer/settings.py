from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from dynamo_common.settings import DynamoSettings

DEFAULT_PLUGINS = {
    "requests": 5.0,
    "subscriptions": 4.0,
    "undertaker": 4.0,
    "enforcer": 3.0,
    "popularity": 2.0,
    "balancer": 1.0,
}


class DealerSettings(DynamoSettings):
    service_name: str = "dealer"
    plugins: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_PLUGINS),
        description="Enabled plugins and their priorities (1..5; higher goes first and is "
        'the transfers\' priority). JSON: DYNAMO_PLUGINS=\'{"requests": 5, "popularity": 2}\'.',
    )
    partition: str = Field(
        default="Physics", description="The partition whose quota and occupancy count."
    )
    target_sites: list[str] = Field(default_factory=lambda: ["*"], description="Name patterns.")
    excluded_sites: list[str] = Field(default_factory=list, description="Name patterns.")
    target_occupancy: float = Field(default=0.93, gt=0, le=1)
    request_occupancy: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="How full a user's explicit request may make the site it names (unset: "
        "the target occupancy). Above the target, detox brings the site down afterwards by "
        "its policy instead of the request waiting for room nobody makes.",
    )
    max_pending_fraction: float = Field(
        default=0.1, gt=0, le=1, description="In-flight volume per site, as a fraction of quota."
    )
    max_cycle_volume: int = Field(default=200 * 10**12, gt=0, description="Bytes per cycle.")
    max_site_volume: int = Field(default=50 * 10**12, gt=0, description="Bytes per site per cycle.")
    cycle_interval: float = Field(
        default=3600.0, ge=0, description="Seconds between scheduled cycles; 0: on demand only."
    )
    request_max_size: int = Field(default=100 * 10**12, gt=0, description="Bytes per request.")
    request_max_copies: int = Field(default=10, ge=1)
    placement_rules: dict[str, str] = Field(
        default_factory=dict,
        description="Vetoes: name -> replica condition on the would-be replica, e.g. "
        '{"no-HI-in-US": "dataset.name == /*/*HI*/* and site.name == T2_US_*"}.',
    )
    enforcer_files: list[Path] = Field(default_factory=list)
    popularity_group: str = Field(default="AnalysisOps")
    popularity_half_life_days: float = Field(default=7.0, gt=0)
    popularity_weight_per_copy: float = Field(default=100.0, gt=0)
    popularity_max_copies: int = Field(default=3, ge=1)
    popularity_max_dataset_size: int = Field(default=10 * 10**12, gt=0)
    popularity_window_days: float = Field(
        default=60.0, gt=0, description="Access records older than this are not fetched."
    )
    balancer_threshold: float = Field(default=0.1, gt=0)
    balancer_max_proposals: int = Field(default=1000, ge=0)
    evacuate_sites: list[str] = Field(
        default_factory=list, description="Sites the undertaker empties although not in morgue."
    )
    default_group: str = Field(
        default="AnalysisOps", description="Owner of rescued copies whose source has none."
    )
    detox_url: str = Field(
        default="",
        description="Detox's API (access records, last cycle); empty: popularity and balancer "
        "have no input.",
    )
    stuck_days: float = Field(default=5.0, gt=0)
    admins: list[str] = Field(default_factory=list, description="May cancel anyone's request.")
    read_model_queue: str = Field(default="dealer.inventory-events")
    read_model_timeout: float = Field(default=60.0, gt=0)
    command_reply_timeout: float = Field(default=60.0, gt=0)
    command_retry_interval: float = Field(default=60.0, gt=0)
    progress_interval: float = Field(
        default=5.0, gt=0, description="Seconds between checks of requests and placements."
    )
    db_pool_size: int = Field(default=6, ge=2)
    userdata_root: str = Field(
        default="/store/user",
        pattern=r"^(/[A-Za-z0-9_.\-]+)+$",
        description="User namespaces: <root>/<user>/... LFNs, written only by Dynamo.",
    )
    userdata_max_block_files: int = Field(
        default=100, ge=1, le=100_000, description="Files that close a user data block."
    )
    userdata_partition: str = Field(
        default="User", description="The partition whose per-site quota holds user data."
    )
    userdata_user_quota: int = Field(
        default=10 * 10**12, ge=0, description="Bytes of user data one user may inject."
    )
    userdata_import_schemes: list[str] = Field(
        default_factory=lambda: ["root", "xroot", "davs", "gsiftp", "srm"],
        description="URL schemes data produced elsewhere may be imported from (never file://: "
        "the dealer's own disk is nobody's source).",
    )
    userdata_group: str = Field(
        default="UserData", description="The group owning user data replicas (made if missing)."
    )

    @field_validator("plugins")
    @classmethod
    def _known_plugins(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DEFAULT_PLUGINS))
        if unknown:
            raise ValueError(f"unknown plugins {unknown}; known: {sorted(DEFAULT_PLUGINS)}")
        return value

    @model_validator(mode="after")
    def _request_ceiling_not_below_target(self) -> DealerSettings:
        if self.request_occupancy is not None and self.request_occupancy < self.target_occupancy:
            raise ValueError(
                f"request_occupancy {self.request_occupancy} is below target_occupancy "
                f"{self.target_occupancy}: requests would get less room than popularity copies"
            )
        return self
