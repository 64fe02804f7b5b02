"""Personal data on the bus: sealed with a key per person, found for export, erased on request.

* :mod:`bus.personal.seal` — sealing and opening a body (AES-256-GCM).
* :mod:`bus.personal.vault` — the key vault: a person's ref and key, kept in JetStream, destroyed
  to erase them everywhere at once (crypto-shredding).
"""

from bus.personal.seal import H_PERSON, Unreadable
from bus.personal.vault import ERASED_SUBJECT, VAULT_STREAM, KeyVault, VaultError, vault_subject

__all__ = [
    "ERASED_SUBJECT",
    "H_PERSON",
    "VAULT_STREAM",
    "KeyVault",
    "Unreadable",
    "VaultError",
    "vault_subject",
]
