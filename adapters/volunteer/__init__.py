"""The volunteer platform: organisations offer opportunities, citizens sign up, change and withdraw.

A service adapter (``volunteer-platform``, :mod:`adapters.volunteer.adapter`) answering
:class:`~contracts.OpportunityOffer`, :class:`~contracts.SignupRequest` and
:class:`~contracts.RosterRequest`; places are kept by compare-and-set so that they are never
overbooked (:mod:`adapters.volunteer.places`), and each organisation is a tenant with a NATS user
of its own (:mod:`adapters.volunteer.access`). ``citybus volunteer offer|signup|roster`` asks it
from the command line (:mod:`adapters.volunteer.cli`).
"""

from adapters.volunteer.adapter import DEFAULT_ORGANISATIONS, VolunteerConfig, VolunteerPlatform
from adapters.volunteer.places import Entry, Places
from adapters.volunteer.platform import Platform
from adapters.volunteer.signups import Book

__all__ = [
    "Book",
    "DEFAULT_ORGANISATIONS",
    "Entry",
    "Places",
    "Platform",
    "VolunteerConfig",
    "VolunteerPlatform",
]
