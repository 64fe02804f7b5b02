"""``citybus volunteer offer|signup|roster`` against a platform on a real server: what a newcomer
types, what they read back, and one line with exit status 1 for what the platform refuses."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bus import Bus
from bus.cli import main
from tests.volunteering import platform

pytestmark = pytest.mark.slow

OPPORTUNITY = "beach-cleanup-sota-2026-06-06"
KARI = "v-3f9c2a7e51d0"
OFFER = ("offer", "drammen-frivilligsentral", "x", "--title", "T", "--place", "P", "--places", "3")


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "citybus.toml"
    path.write_text('[auth]\nmode = "off"\n')
    saved = structlog.get_config()  # the CLI configures logging for the process
    # the platform in this process logs at info: keep its lines out of the command's output
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield path
    structlog.configure(**saved)


async def citybus(
    capsys: pytest.CaptureFixture[str], config: Path, bus: Bus, *args: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["--config", str(config), *args, "--nats", bus.url])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


async def test_offer_sign_up_and_ask_the_roster_from_the_command_line(
    quiet_bus: Bus, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with platform(quiet_bus):
        run = (capsys, config, quiet_bus)
        status, out, _ = await citybus(
            *run, "volunteer", "offer", "drammen-frivilligsentral", OPPORTUNITY,
            "--title", "Beach clean-up at Sota fjordpark", "--place", "Sota fjordpark",
            "--starts", "2026-06-06T10:00", "--ends", "2026-06-06T13:00",
            "--places", "2", "--skills", "lifting",
        )  # fmt: skip
        assert (status, out) == (0, f"offered {OPPORTUNITY} (drammen-frivilligsentral): 2 places left\n")
        status, out, _ = await citybus(
            *run, "volunteer", "signup", OPPORTUNITY, "--volunteer", "v-3f9c2a7e51d0",
            "--name", "Kari Nordmann", "--email", "kari.nordmann@example.no",
            "--consent", "volunteering,statistics",
        )  # fmt: skip
        assert (status, out) == (0, f"confirmed: {OPPORTUNITY}, 1 place left\n")
        status, out, _ = await citybus(
            *run, "volunteer", "signup", OPPORTUNITY, "--volunteer", "v-77aa01bc9e42",
            "--name", "Ola Nordmann", "--phone", "+4791234567", "--skills", "first-aid",
        )  # fmt: skip
        assert (status, out) == (0, f"confirmed: {OPPORTUNITY}, 0 places left\n")
        status, out, err = await citybus(
            *run, "volunteer", "signup", OPPORTUNITY, "--volunteer", "v-0badc0ffee00",
            "--name", "Per Hansen", "--email", "per@example.no",
        )  # fmt: skip
        assert (status, out, err) == (
            1,
            "",
            f"full: {OPPORTUNITY}, 0 places left (no place is left on {OPPORTUNITY})\n",
        )
        status, out, _ = await citybus(*run, "volunteer", "roster", "drammen-frivilligsentral")
        lines = out.splitlines()
        assert status == 0 and len(lines) == 2
        assert lines[0].startswith(
            f"{OPPORTUNITY}  Kari Nordmann <kari.nordmann@example.no>  v-3f9c2a7e51d0  signed up"
        )
        assert lines[1].endswith("[first-aid]") and "Ola Nordmann <+4791234567>" in lines[1]
        status, out, _ = await citybus(
            *run, "volunteer", "signup", OPPORTUNITY, "--volunteer", "v-77aa01bc9e42", "--withdraw"
        )
        assert (status, out) == (0, f"withdrawn: {OPPORTUNITY}, 1 place left\n")
        status, out, _ = await citybus(*run, "volunteer", "roster", "drammen-frivilligsentral", "--json")
        roster = json.loads(out)
        assert [e["volunteer_id"] for e in roster["entries"]] == ["v-3f9c2a7e51d0"]
        status, out, _ = await citybus(*run, "volunteer", "roster", "rode-kors-drammen")
        assert out == "nobody has signed up for the opportunities of rode-kors-drammen yet\n"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("signup", OPPORTUNITY, "--volunteer", "kari", "--name", "K", "--email", "k@x.no"), 2, "volunteer"),
        (("signup", OPPORTUNITY, "--volunteer", KARI, "--name", "K"), 1, "an email address or a phone"),
        (("signup", "no-such-thing", "--volunteer", KARI, "--withdraw"), 1, "no opportunity no-such-thing"),
        ((*OFFER, "--starts", "2026-06-06T13:00", "--ends", "2026-06-06T10:00"), 1, "ends before it starts"),
        ((*OFFER, "--starts", "tomorrow", "--ends", "2026-06-06T10:00"), 2, "'tomorrow' is not a time"),
    ],
)  # fmt: skip
async def test_what_cannot_be_done_is_one_line_and_a_non_zero_status(
    quiet_bus: Bus,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    code: int,
    says: str,
) -> None:
    async with platform(quiet_bus):
        status, out, err = await citybus(capsys, config, quiet_bus, "volunteer", *args)
    assert (status, out) == (code, "")
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err
