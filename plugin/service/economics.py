"""The economic model: what a share of tickets nobody has to answer is worth, every parameter shown.

The hackathon entry this project descends from (the seed) promised "about 9.8 million roubles a year"
from an *assumed* 50% reduction of first-line tickets, with these parameters: support staff cost
60,000 RUB per person-month, training 100,000 RUB per person-year, user downtime 2 hours per
user-month at 500 RUB per hour, and two headcounts. The seed's headcounts are not in our materials and
were not found in public sources; the formula the stated parameters imply is

    savings/year = d × support_staff × (12 × staff_cost_per_month + training_cost_per_year)
                 + d × users × 12 × downtime_hours_per_user_month × downtime_cost_per_hour

with ``d`` the share of tickets deflected (nobody had to answer them): first-line staff needed in
proportion to the tickets they answer, and user downtime in proportion to the tickets that wait for a
person. With d = 0.5, **10 support staff and 950 users give exactly 9,800,000 RUB** (4.1 M staff +
5.7 M downtime). Those two headcounts are OUR RECONSTRUCTION, the defaults below, and shown as such
wherever the model is printed; set your own.

What we add: ``d`` is measured (replayed tickets, or confirmations that were not reopened), and an
agent-time view next to the headcount view: deflected tickets × minutes of agent time per ticket,
priced at the staff's loaded hourly cost. The headcount view assumes staff can be cut in proportion;
the agent-time view says how many hours that really frees, and the two are printed side by side.
A projection gives both for a chosen monthly volume.

Pure functions on pydantic parameters; no I/O.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Our reconstruction of the seed's headcounts (see the module docstring): 10 × 820,000 × 0.5 + 950 × 12,000 × 0.5.
SEED_SUPPORT_STAFF = 10.0
SEED_USERS = 950.0
SEED_DEFLECTION = 0.5
SEED_ANNUAL_SAVINGS = 9_800_000.0


class EconomicParameters(BaseModel):
    """Every number the economic model uses; defaults are the seed's (headcounts: our reconstruction)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    support_staff: float = Field(default=SEED_SUPPORT_STAFF, ge=0, description="first-line support staff, people")
    users: float = Field(default=SEED_USERS, ge=0, description="users the helpdesk serves, people")
    staff_cost_per_month: float = Field(default=60_000.0, ge=0, description="support staff cost per person-month")
    training_cost_per_year: float = Field(default=100_000.0, ge=0, description="training per support person-year")
    downtime_hours_per_user_month: float = Field(
        default=2.0, ge=0, description="hours a user loses waiting for support per month"
    )
    downtime_cost_per_hour: float = Field(default=500.0, ge=0, description="cost of an hour of user downtime")
    agent_minutes_per_ticket: float = Field(
        default=15.0, ge=0, description="minutes of agent time a ticket takes (not in the seed: measure yours)"
    )
    working_hours_per_month: float = Field(
        default=164.0, gt=0, description="working hours of a person-month (40-hour week: 1,973 h a year / 12)"
    )
    currency: str = Field(default="RUB", min_length=1, max_length=8)

    @property
    def headcounts_are_reconstruction(self) -> bool:
        """True while the headcounts are the defaults (our reconstruction of the seed), not the user's."""
        return self.support_staff == SEED_SUPPORT_STAFF and self.users == SEED_USERS


class Savings(BaseModel):
    """Annual savings at one deflection rate; the agent-time fields need a monthly volume (else None)."""

    model_config = ConfigDict(frozen=True)

    deflection: float
    #: Headcount view (the seed's formula): staff no longer needed, and user downtime avoided.
    staff: float
    downtime: float
    total: float
    #: Agent-time view: tickets a month, deflected a month, agent hours freed a year, their value, FTE.
    tickets_per_month: float | None = None
    deflected_per_month: float | None = None
    agent_hours_per_year: float | None = None
    agent_time_value: float | None = None
    fte_equivalent: float | None = None


def annual_staff_cost(p: EconomicParameters) -> float:
    """What one support person costs a year: 12 months of salary plus training (seed: 820,000 RUB)."""
    return 12 * p.staff_cost_per_month + p.training_cost_per_year


def hourly_staff_cost(p: EconomicParameters) -> float:
    """The loaded cost of an agent hour (seed parameters: 820,000 / 1,968 h = 416.67 RUB)."""
    return annual_staff_cost(p) / (12 * p.working_hours_per_month)


def annual_downtime_cost(p: EconomicParameters) -> float:
    """What waiting for support costs all users a year (seed: 12 × 2 h × 500 RUB = 12,000 RUB a user)."""
    return p.users * 12 * p.downtime_hours_per_user_month * p.downtime_cost_per_hour


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def savings(p: EconomicParameters, deflection: float, *, tickets_per_month: float | None = None) -> Savings:
    """Annual savings when a share ``deflection`` of tickets needs no person.

    The headcount view is the seed's formula (module docstring). With ``tickets_per_month`` the
    agent-time view is added: deflected tickets × ``agent_minutes_per_ticket``, priced at
    :func:`hourly_staff_cost`, and as full-time equivalents.
    """
    _check_share("deflection", deflection)
    staff = deflection * p.support_staff * annual_staff_cost(p)
    downtime = deflection * annual_downtime_cost(p)
    result = Savings(deflection=deflection, staff=staff, downtime=downtime, total=staff + downtime)
    if tickets_per_month is None:
        return result
    if tickets_per_month < 0:
        raise ValueError(f"tickets_per_month must not be negative, got {tickets_per_month}")
    deflected = tickets_per_month * deflection
    hours = 12 * deflected * p.agent_minutes_per_ticket / 60
    return result.model_copy(
        update={
            "tickets_per_month": tickets_per_month,
            "deflected_per_month": deflected,
            "agent_hours_per_year": hours,
            "agent_time_value": hours * hourly_staff_cost(p),
            "fte_equivalent": hours / (12 * p.working_hours_per_month),
        }
    )


def measured_savings(p: EconomicParameters, *, tickets: int, deflected: int, months: float) -> Savings:
    """:func:`savings` fed with what was measured: ``deflected`` of ``tickets`` over ``months`` months."""
    if tickets < 0 or deflected < 0 or deflected > tickets:
        raise ValueError(f"need 0 <= deflected <= tickets, got deflected={deflected}, tickets={tickets}")
    if months <= 0:
        raise ValueError(f"months must be positive, got {months}")
    rate = deflected / tickets if tickets else 0.0
    return savings(p, rate, tickets_per_month=tickets / months)


def projection(
    p: EconomicParameters, deflection: float, tickets_per_month: float, *, base_tickets_per_month: float | None = None
) -> Savings:
    """The savings at a chosen monthly volume.

    The agent-time view scales with the volume by itself. The headcount view holds the parameters'
    staff and users for ``base_tickets_per_month`` (the volume they handle today) and scales both in
    proportion to ``tickets_per_month``; without a base volume it is given for the parameters as they are.
    """
    result = savings(p, deflection, tickets_per_month=tickets_per_month)
    if base_tickets_per_month is None:
        return result
    if base_tickets_per_month <= 0:
        raise ValueError(f"base_tickets_per_month must be positive, got {base_tickets_per_month}")
    scale = tickets_per_month / base_tickets_per_month
    staff, downtime = result.staff * scale, result.downtime * scale
    return result.model_copy(update={"staff": staff, "downtime": downtime, "total": staff + downtime})


def parameter_rows(p: EconomicParameters) -> list[tuple[str, str, str]]:
    """(parameter, value, where it comes from) for printing next to every figure."""
    defaults = EconomicParameters()

    def origin(name: str, default_origin: str) -> str:
        return default_origin if getattr(p, name) == getattr(defaults, name) else "yours"

    c = p.currency
    ours = "our reconstruction of the seed"
    return [
        ("support staff", f"{p.support_staff:g} people", origin("support_staff", ours)),
        ("users", f"{p.users:g} people", origin("users", ours)),
        ("support staff cost", f"{p.staff_cost_per_month:,.0f} {c} per person-month",
         origin("staff_cost_per_month", "the seed")),
        ("training", f"{p.training_cost_per_year:,.0f} {c} per person-year",
         origin("training_cost_per_year", "the seed")),
        ("user downtime", f"{p.downtime_hours_per_user_month:g} h per user-month",
         origin("downtime_hours_per_user_month", "the seed")),
        ("cost of downtime", f"{p.downtime_cost_per_hour:,.0f} {c} per hour",
         origin("downtime_cost_per_hour", "the seed")),
        ("agent time per ticket", f"{p.agent_minutes_per_ticket:g} min",
         origin("agent_minutes_per_ticket", "not in the seed: measure yours")),
        ("working hours", f"{p.working_hours_per_month:g} h per person-month",
         origin("working_hours_per_month", "40-hour week")),
    ]
