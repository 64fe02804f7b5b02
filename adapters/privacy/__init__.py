"""The privacy service: a person's rights over their data (access, erasure) and retention, on the bus.

A service adapter (``privacy``) that answers export and erasure requests over the engine of
:mod:`bus.personal.rights`, and erases expired personal data on a schedule. ``citybus personal
export|erase`` (:mod:`adapters.privacy.cli`) runs the same engine from the command line as the
privacy service's user.
"""

from adapters.privacy.adapter import PrivacyConfig, PrivacyService

__all__ = ["PrivacyConfig", "PrivacyService"]
