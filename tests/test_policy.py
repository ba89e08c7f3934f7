"""VPN eligibility rules, each at its boundary, with times given explicitly."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campusvpn.core.calendar import first_minute_from, fiscal_year_bounds, fiscal_year_of
from campusvpn.core.policy import AccountFacts, AccountStatus, Affiliation, decide, rules_from_config
from campusvpn.platform.config_schema import Config

RULES = rules_from_config(Config())
JST = ZoneInfo("Asia/Tokyo")
APPLIED = datetime(2026, 10, 1, 9, 0, tzinfo=JST)
LONG_AGO = datetime(2020, 1, 1, tzinfo=JST)


def facts(
    role: str = "staff",
    *,
    start: date = date(2020, 4, 1),
    end: date | None = None,
    status: AccountStatus = AccountStatus.ACTIVE,
    reason: str | None = None,
    applied: datetime | None = LONG_AGO,
    methods: int = 1,
    trained: tuple[date, ...] = (date(2026, 7, 15),),
    affiliations: tuple[Affiliation, ...] | None = None,
) -> AccountFacts:
    return AccountFacts(
        "1234567890", status, reason, affiliations or (Affiliation(role, start, end),), applied, methods, trained
    )


def codes(f: AccountFacts, at: datetime) -> list[str]:
    return [r.code for r in decide(f, at, RULES).reasons]


def test_allowed_when_every_rule_is_met() -> None:
    d = decide(facts(), APPLIED + timedelta(hours=1), RULES)
    assert d.allowed
    assert d.reasons == ()


def test_refused_until_40_minutes_after_application_with_the_exact_time() -> None:
    d = decide(facts(applied=APPLIED), APPLIED + timedelta(minutes=39, seconds=59), RULES)
    assert not d.allowed
    [r] = d.reasons
    assert r.code == "mfa_activation_pending"
    assert r.until == APPLIED + timedelta(minutes=40)
    assert "2026-10-01 09:40 JST" in r.message
    assert "in 1 minute)" in r.message
    assert d.changes_at == APPLIED + timedelta(minutes=40)


def test_the_time_vpn_use_opens_is_never_shown_before_it_opens() -> None:
    applied = APPLIED + timedelta(seconds=5)  # ready at 09:40:05: "from 09:40" would be refused at 09:40
    [r] = decide(facts(applied=applied), applied + timedelta(minutes=10), RULES).reasons
    assert "from 2026-10-01 09:41 JST" in r.message
    assert first_minute_from(applied) == APPLIED + timedelta(minutes=1)
    assert first_minute_from(APPLIED) == APPLIED  # a whole minute stays as it is


def test_allowed_at_exactly_40_minutes_after_application() -> None:
    assert decide(facts(applied=APPLIED), APPLIED + timedelta(minutes=40), RULES).allowed


def test_activation_delay_is_configuration() -> None:
    cfg = Config.model_validate({"mfa": {"activation_delay": "2h"}})
    rules = rules_from_config(cfg)
    assert not decide(facts(applied=APPLIED), APPLIED + timedelta(minutes=119), rules).allowed
    assert decide(facts(applied=APPLIED), APPLIED + timedelta(minutes=120), rules).allowed


def test_not_applied_says_where_to_apply() -> None:
    d = decide(facts(applied=None, methods=0), APPLIED, RULES)
    assert [r.code for r in d.reasons] == ["mfa_not_applied"]
    assert RULES.portal_url in d.reasons[0].message
    assert "40 minutes" in d.reasons[0].message


def test_applied_without_a_method_must_register() -> None:
    assert codes(facts(methods=0), APPLIED + timedelta(days=1)) == ["mfa_registration_required"]


def test_every_reason_is_given_not_just_the_first() -> None:
    f = facts(status=AccountStatus.SUSPENDED, reason="unpaid fees", applied=APPLIED, methods=0, trained=())
    got = codes(f, APPLIED + timedelta(minutes=10))
    assert got == ["account_suspended", "mfa_registration_required", "mfa_activation_pending", "training_missing"]
    assert "unpaid fees" in decide(f, APPLIED, RULES).reasons[0].message


def test_revoked_account_is_refused() -> None:
    assert codes(facts(status=AccountStatus.REVOKED), APPLIED + timedelta(hours=1)) == ["account_revoked"]


def test_affiliation_not_started_says_when() -> None:
    f = facts(start=date(2026, 10, 5))
    d = decide(f, APPLIED + timedelta(hours=1), RULES)
    assert [r.code for r in d.reasons] == ["affiliation_not_started"]
    assert d.reasons[0].until == datetime(2026, 10, 5, tzinfo=JST)


def test_affiliation_end_day_is_inclusive_in_local_time() -> None:
    f = facts(end=date(2026, 10, 31))
    last_minute = datetime(2026, 10, 31, 23, 59, tzinfo=JST)
    assert decide(f, last_minute, RULES).allowed
    assert codes(f, last_minute + timedelta(minutes=1)) == ["affiliation_ended"]


def test_notice_before_the_affiliation_ends_says_to_back_up() -> None:
    d = decide(facts(end=date(2026, 10, 20)), APPLIED + timedelta(hours=1), RULES)
    assert d.allowed
    assert [n.code for n in d.notices] == ["affiliation_ending"]
    assert "Back up" in d.notices[0].message


def test_change_of_affiliation_without_a_gap_keeps_the_join_date() -> None:
    # Student until March, staff from April 1: one unbroken membership, joined in 2019.
    affs = (Affiliation("student", date(2019, 4, 1), date(2026, 3, 31)), Affiliation("staff", date(2026, 4, 1)))
    f = facts(affiliations=affs, trained=())
    # Staff deadline 09-30 has passed on 10-01; not a late joiner, so training is missing.
    assert codes(f, APPLIED + timedelta(hours=1)) == ["training_missing"]


def test_gap_in_affiliation_makes_the_later_start_the_join_date() -> None:
    affs = (Affiliation("student", date(2019, 4, 1), date(2026, 3, 31)), Affiliation("staff", date(2026, 10, 1)))
    f = facts(affiliations=affs, trained=())
    assert decide(f, APPLIED + timedelta(hours=1), RULES).allowed  # joined after the window closed


# --- training -------------------------------------------------------------------------------


def at(day: str, hour: int = 12) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=JST) + timedelta(hours=hour)


@pytest.mark.parametrize(
    ("role", "deadline"),
    [
        ("student", "2026-06-30"),
        ("staff", "2026-09-30"),
        ("faculty", "2026-09-30"),
        ("dispatched", "2026-09-30"),
        ("visiting", "2026-09-30"),
    ],
)
def test_training_refusal_starts_the_day_after_each_roles_deadline(role: str, deadline: str) -> None:
    f = facts(role, trained=())
    last = datetime.combine(date.fromisoformat(deadline), datetime.max.time(), tzinfo=JST)
    assert "training_missing" not in codes(f, last)
    assert codes(f, last + timedelta(microseconds=1)) == ["training_missing"]


def test_students_see_a_notice_once_their_window_opens_in_may() -> None:
    f = facts("student", trained=())
    assert decide(f, at("2026-04-30"), RULES).notices == ()
    d = decide(f, at("2026-05-01"), RULES)
    assert d.allowed
    assert [n.code for n in d.notices] == ["training_due"]
    assert "2026-06-30" in d.notices[0].message


def test_staff_window_opens_in_july() -> None:
    f = facts("staff", trained=())
    assert decide(f, at("2026-06-30"), RULES).notices == ()
    assert [n.code for n in decide(f, at("2026-07-01"), RULES).notices] == ["training_due"]


def test_training_completed_this_fiscal_year_lifts_the_refusal() -> None:
    assert decide(facts("student", trained=(date(2026, 5, 20),)), at("2026-08-01"), RULES).allowed


def test_last_fiscal_years_training_does_not_count() -> None:
    f = facts("student", trained=(date(2026, 3, 31),))  # FY2025
    assert codes(f, at("2026-08-01")) == ["training_missing"]


def test_new_fiscal_year_starts_with_no_refusal_until_the_deadline() -> None:
    f = facts("student", trained=(date(2025, 6, 1),))  # FY2025 done; FY2026 not yet
    assert decide(f, at("2026-04-01", 0), RULES).allowed
    assert decide(f, at("2026-06-30"), RULES).allowed
    assert codes(f, at("2026-07-01", 0)) == ["training_missing"]


def test_late_joiner_after_the_window_closed_is_exempt_that_year_only() -> None:
    f = facts("student", start=date(2026, 7, 1), trained=())
    assert decide(f, at("2027-03-31"), RULES).allowed  # FY2026: exempt
    assert codes(f, at("2027-07-01")) == ["training_missing"]  # FY2027: due by 2027-06-30


def test_joiner_on_deadline_day_is_not_exempt() -> None:
    f = facts("student", start=date(2026, 6, 30), trained=())
    assert codes(f, at("2026-07-01")) == ["training_missing"]


def test_training_not_required_by_configuration() -> None:
    rules = rules_from_config(Config.model_validate({"training": {"required": False}}))
    assert decide(facts(trained=()), at("2026-12-01"), rules).allowed


def test_windows_are_configuration() -> None:
    cfg = Config.model_validate(
        {
            "training": {
                "windows": [
                    {
                        "name": "all",
                        "roles": ["student", "staff", "faculty", "dispatched", "visiting"],
                        "opens": "10-01",
                        "deadline": "01-31",
                    }
                ]
            }
        }
    )
    rules = rules_from_config(cfg)
    f = facts("staff", trained=())
    assert decide(f, at("2027-01-31"), rules).allowed
    assert [r.code for r in decide(f, at("2027-02-01"), rules).reasons] == ["training_missing"]


@pytest.mark.parametrize(
    ("day", "fy"), [("2026-03-31", 2025), ("2026-04-01", 2026), ("2027-03-31", 2026), ("2027-01-15", 2026)]
)
def test_fiscal_year_boundaries(day: str, fy: int) -> None:
    assert fiscal_year_of(date.fromisoformat(day), (4, 1)) == fy


def test_fiscal_year_boundary_is_read_in_local_time() -> None:
    # 2026-03-31T15:30Z is already April 1 in Tokyo: FY2026, whose student deadline is far off.
    f = facts("student", trained=(date(2025, 5, 1),))
    assert decide(f, datetime(2026, 3, 31, 15, 30, tzinfo=UTC), RULES).allowed
    assert fiscal_year_bounds(2026, (4, 1)) == (date(2026, 4, 1), date(2027, 3, 31))
