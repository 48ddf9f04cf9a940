"""The economic model against numbers worked out by hand (the seed's 9.8 M first)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from plugin.service.economics import (
    SEED_ANNUAL_SAVINGS,
    SEED_DEFLECTION,
    EconomicParameters,
    annual_downtime_cost,
    annual_staff_cost,
    hourly_staff_cost,
    measured_savings,
    parameter_rows,
    projection,
    savings,
)

SEED = EconomicParameters()


def test_the_seeds_assumptions_give_the_seeds_figure() -> None:
    # 0.5 × 10 × (12 × 60,000 + 100,000) = 4,100,000; 0.5 × 950 × 12 × 2 × 500 = 5,700,000.
    result = savings(SEED, SEED_DEFLECTION)
    assert result.staff == pytest.approx(4_100_000)
    assert result.downtime == pytest.approx(5_700_000)
    assert result.total == pytest.approx(SEED_ANNUAL_SAVINGS) == pytest.approx(9_800_000)
    assert result.agent_hours_per_year is None  # no volume given: no agent-time view
    assert SEED.headcounts_are_reconstruction


def test_unit_costs() -> None:
    assert annual_staff_cost(SEED) == 820_000
    assert annual_downtime_cost(SEED) == 950 * 12_000
    assert hourly_staff_cost(SEED) == pytest.approx(820_000 / 1968)  # 416.67 an hour


def test_agent_time_view() -> None:
    # 1,000 tickets a month, 30% deflected: 300 a month, 12 × 300 × 15 min = 900 h a year.
    result = savings(SEED, 0.3, tickets_per_month=1000)
    assert result.deflected_per_month == pytest.approx(300)
    assert result.agent_hours_per_year == pytest.approx(900)
    assert result.agent_time_value == pytest.approx(900 * 820_000 / 1968)  # 375,000
    assert result.agent_time_value == pytest.approx(375_000)
    assert result.fte_equivalent == pytest.approx(900 / 1968)
    assert result.total == pytest.approx(0.3 * 9_800_000 / 0.5)


def test_measured_savings_use_the_measured_rate_and_volume() -> None:
    # 600 of 2,400 tickets over 12 months: d = 0.25, 200 tickets a month.
    result = measured_savings(SEED, tickets=2400, deflected=600, months=12)
    assert result.deflection == 0.25
    assert result.tickets_per_month == 200
    assert result.staff == pytest.approx(2_050_000)
    assert result.downtime == pytest.approx(2_850_000)
    assert result.total == pytest.approx(4_900_000)
    assert result.agent_hours_per_year == pytest.approx(12 * 50 * 15 / 60)  # 150 h
    assert result.agent_time_value == pytest.approx(62_500)


def test_other_parameters_change_the_figures() -> None:
    p = EconomicParameters(support_staff=4, users=200, staff_cost_per_month=80_000, training_cost_per_year=0,
                           downtime_hours_per_user_month=1, downtime_cost_per_hour=1000, agent_minutes_per_ticket=30,
                           working_hours_per_month=160)
    result = savings(p, 0.2, tickets_per_month=500)
    assert result.staff == pytest.approx(0.2 * 4 * 960_000)  # 768,000
    assert result.downtime == pytest.approx(0.2 * 200 * 12 * 1000)  # 480,000
    assert result.agent_hours_per_year == pytest.approx(12 * 100 * 0.5)  # 600 h
    assert result.agent_time_value == pytest.approx(600 * 960_000 / 1920)  # 300,000
    assert not p.headcounts_are_reconstruction


def test_projection_scales_the_headcount_view_with_the_volume() -> None:
    result = projection(SEED, 0.25, 400, base_tickets_per_month=200)
    assert result.staff == pytest.approx(4_100_000)  # twice 2,050,000
    assert result.downtime == pytest.approx(5_700_000)
    assert result.agent_hours_per_year == pytest.approx(300)
    same = projection(SEED, 0.25, 400)
    assert same.staff == pytest.approx(2_050_000)  # no base volume: headcounts as given


@pytest.mark.parametrize(
    "call",
    [
        lambda: savings(SEED, 1.2),
        lambda: savings(SEED, -0.1),
        lambda: savings(SEED, 0.5, tickets_per_month=-1),
        lambda: measured_savings(SEED, tickets=10, deflected=11, months=1),
        lambda: measured_savings(SEED, tickets=10, deflected=1, months=0),
        lambda: projection(SEED, 0.5, 100, base_tickets_per_month=0),
    ],
)
def test_bad_numbers_are_refused(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        call()


def test_parameters_are_validated_and_named() -> None:
    with pytest.raises(ValidationError, match="support_staff"):
        EconomicParameters(support_staff=-1)
    with pytest.raises(ValidationError, match="unknown"):
        EconomicParameters(unknown=1)  # type: ignore[call-arg]


def test_zero_tickets_measure_zero() -> None:
    assert measured_savings(SEED, tickets=0, deflected=0, months=1).total == 0


def test_parameter_rows_say_where_each_number_comes_from() -> None:
    rows = {name: (value, origin) for name, value, origin in parameter_rows(SEED)}
    assert rows["support staff"] == ("10 people", "our reconstruction of the seed")
    assert rows["support staff cost"] == ("60,000 RUB per person-month", "the seed")
    mine = {name: origin for name, _v, origin in parameter_rows(EconomicParameters(users=3000, downtime_cost_per_hour=700))}
    assert mine["users"] == "yours"
    assert mine["cost of downtime"] == "yours"
    assert mine["support staff"] == "our reconstruction of the seed"
