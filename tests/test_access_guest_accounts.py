"""Guests of a kind that may live in ``CITY`` (:attr:`bus.access.guests.GuestKind.accounts`).

A guest lives in ``SANDBOX`` unless its kind allows ``CITY`` and the operator chose it; its entry in
the kind's file says so (``account = "CITY"``), the model makes it a guest of that account with the
rules for guests, and a kind that allows only ``SANDBOX`` (the pilots) refuses the entry. No server
needed: the model and the files.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus.access import AccessError, AccessModel, Account, Declaration, Kind
from bus.access.declared import declaration_from_record, declaration_record
from bus.access.guests import Guest, GuestKind, contracts_named, load_guests, save_guests
from bus.errors import CityBusError, ConfigError
from bus.subjects import request_filter
from contracts import BeachObservation, RosterRequest, default_registry
from sandbox.access import PILOTS
from tests.test_access import CONTRACTS

ADDED = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def member_declaration(name: str, produces: tuple[type, ...]) -> Declaration:
    """A guest that asks on its own request subject and does nothing else."""
    return Declaration(
        name,
        consumes=(),
        produces=produces,
        declassifier=False,
        kind="member",
        asks=(request_filter(RosterRequest, name),),
        dead_letters=False,
    )


MEMBERS = GuestKind(
    name="member",
    declare=member_declaration,
    help="add a member",
    reads="its own inbox",
    accounts=(Account.SANDBOX, Account.CITY),
)


def test_a_guest_of_a_kind_that_allows_city_lives_where_its_entry_says(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    city = Guest(MEMBERS, "kim", (), ADDED, Account.CITY)
    sandbox = Guest(MEMBERS, "ola", (), ADDED)
    path = save_guests(tmp_path, MEMBERS, [city, sandbox])
    text = path.read_text()
    assert 'account = "CITY"' in text and text.count("account =") == 1  # SANDBOX is the default
    assert load_guests(tmp_path, MEMBERS) == [city, sandbox]
    model = AccessModel(CONTRACTS, guests=[city.declaration(), sandbox.declaration()])
    kim = model.user(Account.CITY, "kim")
    assert kim.kind is Kind.GUEST and kim.title == "member"
    assert [g.subject for g in kim.permissions.publish] == [request_filter(RosterRequest, "kim")]
    assert [g.subject for g in kim.permissions.subscribe] == ["_INBOX.kim.>"]
    assert model.user(Account.SANDBOX, "ola").kind is Kind.GUEST
    with pytest.raises(KeyError):
        model.user(Account.SANDBOX, "kim")
    with pytest.raises(KeyError):
        model.user(Account.CITY, "ola")


def test_guests_stay_guests_in_city(tmp_path: Path) -> None:
    # The rules for guests hold in CITY too: no control requests, never the privacy service.
    base = Guest(MEMBERS, "kim", (), ADDED, Account.CITY).declaration()
    for odd, message in (({"control": "member"}, "guests take no control"), ({"privacy": True}, "a guest")):
        fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
        with pytest.raises(AccessError, match=message):
            AccessModel(CONTRACTS, guests=[Declaration(**{**fields, **odd})])


def test_a_kind_refuses_an_account_it_does_not_allow(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    (tmp_path / "pilots.toml").write_text(
        '[pilots.acme]\nproduces = ["environment.beach-observation@1"]\n'
        'added = 2026-06-01T10:00:00Z\naccount = "CITY"\n'
    )
    with pytest.raises(ConfigError, match=r'\[pilots.acme\]: account must be "SANDBOX"'):
        load_guests(tmp_path, PILOTS)
    (tmp_path / "members.toml").write_text('[members.kim]\nadded = 2026-06-01T10:00:00Z\naccount = "SYS"\n')
    with pytest.raises(ConfigError, match=r'account must be "SANDBOX" or "CITY"'):
        load_guests(tmp_path, MEMBERS)


def test_a_pilot_file_without_accounts_reads_as_before(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    pilot = Guest(PILOTS, "acme", (BeachObservation,), ADDED)
    save_guests(tmp_path, PILOTS, [pilot])
    assert "account" not in (tmp_path / "pilots.toml").read_text()
    (read,) = load_guests(tmp_path, PILOTS)
    assert read.account is Account.SANDBOX and read.declaration().account is Account.SANDBOX


def test_the_account_survives_a_record() -> None:
    declared = Guest(MEMBERS, "kim", (), ADDED, Account.CITY).declaration()
    assert declaration_from_record(declaration_record(declared), default_registry()) == declared
    component = Declaration("beach", consumes=(), produces=(BeachObservation,), declassifier=False)
    assert declaration_from_record(declaration_record(component), default_registry()).account is None


def test_contracts_are_named_once_and_an_unknown_one_in_one_line() -> None:
    assert contracts_named(["environment.beach-observation", "environment.beach-observation@1"]) == (
        BeachObservation,
    )
    with pytest.raises(CityBusError, match="--produces: .*no-such"):
        contracts_named(["environment.no-such"])
