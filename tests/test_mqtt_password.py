"""An MQTT user's password file holds the password alone, ready for ``mosquitto_pub -P "$(cat FILE)"``."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import bcrypt

from bus.access.keys import CredentialStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_password_file_holds_the_password_alone(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    issued = store.ensure_password("CITY", "network-server")
    text = issued.path.read_text()
    assert text == issued.password.reveal() + "\n"
    assert text.strip() and " " not in text.strip() and "{" not in text
    assert _mode(issued.path) == 0o600
    hash_file = issued.path.with_suffix(".bcrypt")
    assert hash_file.read_text().strip() == issued.bcrypt_hash and _mode(hash_file) == 0o600
    assert bcrypt.checkpw(text.strip().encode(), issued.bcrypt_hash.encode())
    # Loading again gives the same password and the same hash (the server's config stays as it is).
    again = store.ensure_password("CITY", "network-server")
    assert (again.password.reveal(), again.bcrypt_hash) == (issued.password.reveal(), issued.bcrypt_hash)


def test_a_file_of_an_earlier_citybus_is_rewritten_as_the_password_alone(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    path = store.ensure_password("CITY", "network-server").path
    hashed = bcrypt.hashpw(b"old-secret", bcrypt.gensalt(4)).decode()
    path.write_text(json.dumps({"user": "network-server", "password": "old-secret", "bcrypt": hashed}) + "\n")
    loaded = store.ensure_password("CITY", "network-server")
    assert (loaded.password.reveal(), loaded.bcrypt_hash) == ("old-secret", hashed)
    assert path.read_text() == "old-secret\n" and _mode(path) == 0o600
    assert path.with_suffix(".bcrypt").read_text().strip() == hashed


def test_a_password_set_by_hand_is_hashed_anew(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "credentials")
    path = store.ensure_password("CITY", "network-server").path
    path.write_text("chosen-by-the-operator\n")
    loaded = store.ensure_password("CITY", "network-server")
    assert loaded.password.reveal() == "chosen-by-the-operator"
    assert bcrypt.checkpw(b"chosen-by-the-operator", loaded.bcrypt_hash.encode())
    assert path.with_suffix(".bcrypt").read_text().strip() == loaded.bcrypt_hash
