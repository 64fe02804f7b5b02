"""Personal data on the bus: sealed with a key per person, found for export, erased on request.

* :mod:`bus.personal.seal` — sealing and opening a body (AES-256-GCM).
* :mod:`bus.personal.vault` — the key vault: a person's ref and key, kept in JetStream, destroyed
  to erase them everywhere at once (crypto-shredding).
* :mod:`bus.personal.places` — where personal data is kept (:class:`PersonalPlace`), and the
  ``citybus.personal`` entry points of the places upper packages keep.
* :mod:`bus.personal.stored` — citybus's own places: the personal streams, the personal dead
  letters and the vault; :mod:`bus.personal.scan` reads and erases a stream's messages.
* :mod:`bus.personal.rights` — the rights engine: export, erasure and retention over every place.
"""

from bus.personal.places import PLACES_GROUP, Person, PersonalPlace
from bus.personal.seal import H_PERSON, Unreadable
from bus.personal.vault import ERASED_SUBJECT, VAULT_STREAM, KeyVault, VaultError, vault_subject

__all__ = [
    "ERASED_SUBJECT",
    "H_PERSON",
    "PLACES_GROUP",
    "VAULT_STREAM",
    "KeyVault",
    "Person",
    "PersonalPlace",
    "Unreadable",
    "VaultError",
    "vault_subject",
]
