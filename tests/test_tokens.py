"""The HTTP gateway's bearer tokens: the store, and ``citybus auth add-token`` / ``revoke-token``.

The store is tested on a directory of the test's own: a token is issued once, only its hash is
kept, in a private file; the store resolves it and, when the file changes under it (another
store's revoke, as ``citybus auth`` does beside a running gateway), stops resolving it at once.
The commands run as a user runs them, against a real ``citybus up`` under access control: the
token comes alone on standard output, in the account that instance serves, and no token is left in
any output or log but that one line.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.access import TokenError, TokenInfo, TokenStore
from bus.access.tokens import TOKENS_FILE, token_digest
from bus.errors import ConfigError
from tests.test_cli import Up, assert_one_line_error, run_citybus, start_up

TOKEN = re.compile(r"^cbt_[A-Za-z0-9_-]{43}$")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the store ------------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    directory = tmp_path / "credentials"
    store = TokenStore(directory)
    token = store.issue("acme-research", "SANDBOX", "internal")
    assert TOKEN.match(token), token
    assert token != store.issue("other", "SANDBOX", "internal")

    path = directory / TOKENS_FILE
    assert store.path == path
    assert (mode(directory), mode(path)) == (0o700, 0o600)
    text = path.read_text()
    assert token not in text and token.removeprefix("cbt_") not in text
    assert f'sha256 = "{token_digest(token)}"' in text

    info = store.resolve(token)
    assert info is not None
    assert (info.name, info.account, info.user, info.label) == (
        "acme-research",
        "SANDBOX",
        "internal",
        "SANDBOX/internal",
    )
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", info.created), info.created
    assert [i.name for i in store.list()] == ["acme-research", "other"]
    # A fresh store (another process: the gateway) reads the same.
    assert TokenStore(directory).resolve(token) == info


def test_what_is_not_a_token_resolves_to_nobody(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    assert store.resolve("cbt_" + "A" * 43) is None  # no file yet
    token = store.issue("acme", "CITY", "public")
    for bogus in (
        "",
        token[:-1],
        token + "A",
        token + "\n",
        token.upper(),
        token.removeprefix("cbt_"),
        "cbt_" + "A" * 43,
    ):
        assert store.resolve(bogus) is None, bogus
    assert store.resolve(token) is not None


def test_a_revoke_takes_effect_at_once_in_a_store_that_had_read_the_file(tmp_path: Path) -> None:
    gateway = TokenStore(tmp_path)  # resolves on every request and caches the parsed file
    command = TokenStore(tmp_path)  # what `citybus auth` makes, in another process
    kept = command.issue("kept", "SANDBOX", "internal")
    leaving = command.issue("leaving", "SANDBOX", "internal")
    assert gateway.resolve(leaving) is not None and gateway.resolve(kept) is not None

    revoked = command.revoke("leaving")
    assert revoked == TokenInfo("leaving", "SANDBOX", "internal", revoked.created)
    assert gateway.resolve(leaving) is None
    assert gateway.resolve(kept) is not None

    # A token issued since is known at once too.
    added = command.issue("added", "CITY", "public")
    assert gateway.resolve(added) == TokenInfo("added", "CITY", "public", gateway.list()[0].created)


def test_a_change_within_one_clock_tick_and_of_the_same_size_is_seen(tmp_path: Path) -> None:
    """The file is replaced by a rename: a new inode even when the size and the time are the same."""
    gateway, command = TokenStore(tmp_path), TokenStore(tmp_path)
    first = command.issue("aaaa", "SANDBOX", "internal")
    assert gateway.resolve(first) is not None
    before = (tmp_path / TOKENS_FILE).stat()
    command.revoke("aaaa")
    second = command.issue("bbbb", "SANDBOX", "internal")
    os.utime(tmp_path / TOKENS_FILE, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = (tmp_path / TOKENS_FILE).stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert gateway.resolve(first) is None
    assert gateway.resolve(second) is not None


def test_a_token_stands_only_for_a_user_that_reads_no_personal_data(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    for user in ("operator", "service", "provisioner", "system", "archive", "acme"):
        with pytest.raises(TokenError) as refused:
            store.issue("t", "CITY", user)
        message = str(refused.value)
        assert f"a token cannot stand for {user!r}" in message and "(public, internal;" in message
        assert "\n" not in message
    with pytest.raises(TokenError, match="a token belongs to account CITY or SANDBOX, not 'SYS'"):
        store.issue("t", "SYS", "public")
    for name in ("Acme Research", "acme\n", "-acme", ""):
        with pytest.raises(TokenError, match="cannot name a token: use kebab case"):
            store.issue(name, "CITY", "public")
    assert store.list() == []
    assert not (tmp_path / TOKENS_FILE).exists()


def test_names_are_unique_and_an_unknown_one_is_named_with_the_known_ones(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    with pytest.raises(TokenError, match=r"no token named 'ghost' to revoke; there are no tokens in "):
        store.revoke("ghost")
    store.issue("acme", "CITY", "internal")
    store.issue("bravo", "SANDBOX", "public")
    with pytest.raises(TokenError, match=r"token 'acme' already exists \(for CITY/internal, created "):
        store.issue("acme", "SANDBOX", "public")
    with pytest.raises(TokenError, match=r"no token named 'ghost' to revoke; the tokens are: acme, bravo$"):
        store.revoke("ghost")


def test_a_broken_or_foreign_file_refuses_every_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.issue("acme", "CITY", "internal")
    path = tmp_path / TOKENS_FILE
    good = path.read_text()

    path.chmod(0o666)  # anyone could have added a token
    with pytest.raises(ConfigError, match=r"may be written by other users \(mode 0666\).*chmod 600"):
        store.resolve(token)
    path.chmod(0o600)
    assert store.resolve(token) is not None

    path.write_text(good.replace("[tokens.acme]", "[tokens.acme"))
    with pytest.raises(ConfigError, match="is not valid TOML"):
        store.resolve(token)
    path.write_text(good.replace('user = "internal"', 'user = "operator"'))
    with pytest.raises(ConfigError, match=r"\[tokens\.acme\]: user must be 'public' or 'internal'"):
        store.resolve(token)
    path.write_text(good.replace("sha256", "hash"))
    with pytest.raises(ConfigError, match=r"the keys are account, created, sha256, user"):
        store.list()
    path.write_text(good + '\n[other]\nx = "y"\n')
    with pytest.raises(ConfigError, match=r"only \[tokens\.<name>\] tables belong here \(found other\)"):
        store.list()


def test_a_hand_written_file_in_the_documented_shape_is_read(tmp_path: Path) -> None:
    token = "cbt_" + "x" * 43
    (tmp_path / TOKENS_FILE).write_text(
        f'[tokens.by-hand]\naccount = "CITY"\nuser = "public"\nsha256 = "{token_digest(token)}"\n'
        "created = 2026-12-07T06:10:00+01:00\n"
    )
    (tmp_path / TOKENS_FILE).chmod(0o600)
    expected = TokenInfo("by-hand", "CITY", "public", "2026-12-07T05:10:00Z")
    assert TokenStore(tmp_path).resolve(token) == expected


# -- citybus auth, against a running citybus up ----------------------------------------------------


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    """A ``citybus up`` under access control with the sandbox only: it serves ``SANDBOX``."""
    running = await start_up(tmp_path_factory.mktemp("tokens-up"), sandbox=True)
    yield running
    await running.stop()


@pytest.mark.slow
async def test_add_token_prints_the_token_alone_in_the_running_instances_account(up: Up) -> None:
    assert up.instance["auth"]["account"] == "SANDBOX"
    credentials = Path(up.instance["auth"]["credentials"])
    outputs: list[str] = []

    added = await run_citybus("auth", "add-token", "research", "--user", "internal", cwd=up.cwd, env=up.env)
    outputs += [added.stdout, added.stderr]
    assert added.returncode == 0, added
    assert TOKEN.match(added.stdout.removesuffix("\n")), added  # TOKEN=$(citybus auth add-token …)
    token = added.stdout.strip()
    assert "issued token research for SANDBOX/internal (the account the running citybus up" in added.stderr
    assert "shown once" in added.stderr and token not in added.stderr

    info = TokenStore(credentials).resolve(token)
    assert info is not None and info.label == "SANDBOX/internal"

    city = await run_citybus(
        "auth", "add-token", "open-data", "--user", "public", "--account", "city", cwd=up.cwd, env=up.env
    )
    outputs += [city.stdout, city.stderr]
    assert city.returncode == 0, city
    city_info = TokenStore(credentials).resolve(city.stdout.strip())
    assert city_info is not None and city_info.label == "CITY/public"

    shown = await run_citybus("auth", "show", cwd=up.cwd, env=up.env)
    outputs += [shown.stdout, shown.stderr]
    assert shown.returncode == 0, shown
    assert re.search(r"^  open-data\s+CITY/public\s+created \S+Z$", shown.stdout, re.M), shown
    assert re.search(r"^  research\s+SANDBOX/internal\s+created \S+Z$", shown.stdout, re.M), shown
    as_json = await run_citybus("auth", "show", "--json", "--user", "internal", cwd=up.cwd, env=up.env)
    outputs += [as_json.stdout, as_json.stderr]
    document = json.loads(as_json.stdout)
    assert document["tokens"] == [
        {"name": "research", "account": "SANDBOX", "user": "internal", "created": info.created}
    ]
    assert document["tokens_file"] == str(credentials / TOKENS_FILE)

    revoked = await run_citybus("auth", "revoke-token", "research", cwd=up.cwd, env=up.env)
    outputs += [revoked.stdout, revoked.stderr]
    assert revoked.returncode == 0, revoked
    assert "revoked token research (SANDBOX/internal, created" in revoked.stdout
    assert TokenStore(credentials).resolve(token) is None
    assert TokenStore(credentials).resolve(city.stdout.strip()) is not None

    # No token anywhere but the one line that printed it: not in the other outputs, the file or a log.
    printed = {added.stdout, city.stdout}
    everything = [o for o in outputs if o not in printed]
    everything += [up.process.text, (credentials / TOKENS_FILE).read_text()]
    everything += [p.read_text(errors="replace") for p in up.data_dir.glob("*.log*")]
    for text in everything:
        assert token not in text and city.stdout.strip() not in text


@pytest.mark.slow
async def test_token_mistakes_end_in_one_line(up: Up) -> None:
    async def fails(*args: str) -> str:
        result = await run_citybus("auth", *args, cwd=up.cwd, env=up.env)
        assert result.stdout == "", result
        return assert_one_line_error(result, 1, "citybus: error: ")

    assert "tokens map only to the users that read no personal data (public, internal;" in await fails(
        "add-token", "snoop", "--user", "operator"
    )
    assert "cannot stand for 'beach'" in await fails("add-token", "snoop", "--user", "beach")
    first = await run_citybus("auth", "add-token", "twice", "--user", "public", cwd=up.cwd, env=up.env)
    assert first.returncode == 0, first
    assert "token 'twice' already exists (for SANDBOX/public, created " in await fails(
        "add-token", "twice", "--user", "internal"
    )
    line = await fails("revoke-token", "ghost")
    assert "no token named 'ghost' to revoke; the tokens are: " in line and "twice" in line
    assert "cannot name a token: use kebab case" in await fails("add-token", "Two Words", "--user", "public")
