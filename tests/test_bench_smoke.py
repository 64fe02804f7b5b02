"""The benchmark's smoke run: ``python -m bench --smoke`` completes and every case reports its figures;
``python -m bench.compare --smoke`` runs a case against two checkouts and tables both sides.

It runs as a user (and CI) runs it: a child process started from the repository root, writing its
report to a file of the test's own. What is checked is that every case ran and put its figures in
the report, never what the figures are: timing belongs in ``bench/``, not in assertions.

FastStream is an optional extra (``.[bench]``); where it is not installed, its case must say so
instead of a figure.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT = (
    300.0  # a bound against hangs, not a performance expectation (the failover case waits out elections)
)
NUMBER = r"[\d,]+(?:\.\d+)?"
RATIO = rf"{NUMBER}x"
VERDICT = ("yes", "**no**")
CASES = [
    "Contract publish → typed subscribe, against raw nats-py",
    "Contract publish → typed subscribe, against FastStream",
    "One-way latency at 5,000 msg/s",
    "JetStream durable publish",
    "JetStream durable consume, against a raw nats-py fetch loop",
    "Replay throughput, as fast as possible",
    "Schedule error at 1x",
    "Peak RSS replaying a large recording",
    "`citybus up` to ready",
    "`citybus certify` on a shipped adapter",
    "Last value of one entity over HTTP",
    "SSE to 1,000 clients on the public stream",
    "Journey planner: loading the NSB feed, requests over the bus",
    "Personal data: sealing, the volunteer platform, export and erasure",
    "Statistics: one release of a table, by mechanism and size",
    "Adapters scaled across processes",
    "Failover under load: kill -9 on a three-node cluster",
]
JOURNEY_KINDS = (
    "default: depart, max_walk 1000, bikes",
    "reference: depart, max_walk 0, no bikes, change 120",
    "arrive-by: max_walk 1000, bikes",
)
FASTSTREAM = (
    importlib.util.find_spec("faststream") is not None and importlib.util.find_spec("pydantic") is not None
)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))),
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of one smoke run."""
    output = tmp_path_factory.mktemp("bench") / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return output.read_text(encoding="utf-8")


def section(report: str, title: str) -> str:
    """The part of the report under ``## title`` (up to the next section)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", report, re.MULTILINE | re.DOTALL)
    assert match, f"the report has no section {title!r}"
    return match.group(1)


def case(report: str, title: str) -> str:
    """The section of the case called ``title`` (numbered in the order the cases ran)."""
    number = CASES.index(title) + 1
    return section(report, f"{number}. {title}")


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in ``text``, as rows of cells (the header first, the rule left out)."""
    found: list[list[list[str]]] = []
    for is_table, lines in itertools.groupby(text.splitlines(), key=lambda line: line.startswith("|")):
        if is_table:
            rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
            found.append([rows[0], *rows[2:]])
    return found


def table(text: str, which: int = 0) -> list[list[str]]:
    """The rows of the ``which``-th table in ``text`` (header left out)."""
    return tables(text)[which][1:]


def columns(text: str, which: int = 0) -> list[dict[str, str]]:
    """The ``which``-th table of ``text`` as one dict per row, by column name."""
    header, *rows = tables(text)[which]
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_the_report_says_it_is_a_smoke_run_and_where_it_ran(report: str) -> None:
    assert report.startswith("# citybus benchmarks\n")
    assert "**Smoke run**" in report
    machine = dict(row[:2] for row in table(section(report, "Machine")))
    assert set(machine) >= {"date", "CPU", "memory", "OS", "Python", "nats-server", "libraries", "commit"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", machine["date"])
    assert machine["Python"].endswith(".".join(map(str, sys.version_info[:3])))


def test_every_case_ran_in_order(report: str) -> None:
    titles = re.findall(r"^## \d+\. (.*)$", report, re.MULTILINE)
    assert titles == CASES
    assert "The case failed" not in report


def test_the_summary_gives_every_target_a_figure_and_a_verdict(report: str) -> None:
    rows = {row[0]: row for row in table(section(report, "Summary"))}
    expected = {
        "1. Contract publish → typed subscribe, against raw nats-py (throughput)",
        "2. Contract publish → typed subscribe, against FastStream (throughput)",
        "3. One-way latency at 5,000 msg/s: p99 against raw nats-py",
        "5. JetStream durable consume, against a raw nats-py fetch loop (throughput)",
        "6. Replay throughput, as fast as possible: a no-op publish (the replayer's ceiling)",
        "6. Replay throughput, as fast as possible: nats-server (`Bus.publish_raw`, streams provisioned)",
        "7. Schedule error at 1x: a no-op publish",
        "7. Schedule error at 1x: nats-server",
        "9. `citybus up` to ready",
        "10. `citybus certify` on a shipped adapter: `beach-neighbours --suite quick --only outage`, wall",
        "10. `citybus certify` on a shipped adapter: `beach-neighbours --suite quick --only outage`, verdict",
        "11. Last value of one entity over HTTP: requests/s with p99",
        "12. SSE to 1,000 clients on the public stream: p99 delivery delay",
        "13. loading the feed: `load_feed` + `Planner(feed)`",
        "13. reference-mode arrival equals the brute force's (same queries, same run)",
        *(
            "14. sealing: sealed sign-ups against unsealed opportunities, publish → typed subscribe, "
            f"{setup} (throughput)"
            for setup in ("two processes", "one process")
        ),
        "14. a sign-up over the bus, volunteer platform running (people new to the vault)",
        *(
            f"13. request/reply over the bus, {setup}, {kind}"
            for setup in ("planner only", "default")
            for kind in JOURNEY_KINDS
        ),
    }
    assert expected <= set(rows)
    assert sum(name.startswith("4. JetStream durable publish: citybus") for name in rows) == 1
    assert sum(name.startswith("8. Peak RSS replaying a large recording") for name in rows) == 1
    assert sum(name.startswith("14. erasing one person over 1,000 messages") for name in rows) == 1
    assert {f"17. {CASES[16]}: messages {what} on R3" for what in ("lost", "stored twice")} <= set(rows)
    assert len(rows) == 29
    for name, (_, target, result, verdict) in rows.items():
        assert target, name
        if name.startswith("2.") and not FASTSTREAM:
            assert (result, verdict) == ("FastStream not installed", "not measured")
        elif name.endswith("the brute force's (same queries, same run)"):
            assert re.fullmatch(r"\d+ mismatches in 12 queries", result), result
            assert verdict in ("met", "**missed**"), name
        elif name.endswith(", verdict"):
            assert target == "pass" and result in ("pass", "fail"), name
            assert verdict in ("met", "**missed**"), name
        else:
            assert re.search(NUMBER, result), name
            assert verdict in ("met", "**missed**"), name


def test_throughput_against_raw_nats_py_has_a_figure_per_side(report: str) -> None:
    rows = {row["implementation"]: row for row in columns(case(report, CASES[0]))}
    assert set(rows) == {"raw", "citybus"}
    for row in rows.values():
        assert re.fullmatch(NUMBER, row["msg/s (median)"])
        assert re.fullmatch(RATIO, row["ratio"])
    assert rows["citybus"]["met"] in VERDICT
    # the smoke run always profiles, so the profile code is checked too
    text = case(report, CASES[0])
    assert text.count("Profile: the citybus") == 4
    assert "bus/bus.py" in text


def test_faststream_is_compared_or_said_to_be_missing(report: str) -> None:
    text = case(report, CASES[1])
    if not FASTSTREAM:
        assert "FastStream is not installed" in text
        return
    rows = {row["implementation"]: row for row in columns(text)}
    assert set(rows) == {"citybus", "faststream-msgspec", "faststream-pydantic", "faststream-defaults", "raw"}
    for row in rows.values():
        assert re.fullmatch(NUMBER, row["msg/s (median)"])
        assert re.fullmatch(rf"citybus is {RATIO}", row["ratio"])
    assert re.search(r"FastStream \d+\.\d+\.\d+", text)


def test_latency_has_percentiles_per_side(report: str) -> None:
    text = case(report, CASES[2])
    rows = {row["implementation"]: row for row in columns(text)}
    assert set(rows) == {"raw", "citybus"}
    for row in rows.values():
        figures = [float(row[key]) for key in ("p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms")]
        assert figures == sorted(figures), row
        assert re.fullmatch(RATIO, row["p99 ratio"])
    assert rows["citybus"]["met"] in VERDICT


def test_durable_publish_is_measured_against_publish_async(report: str) -> None:
    rows = columns(case(report, CASES[3]))
    assert len(rows) == 4
    assert "publish_async" in rows[0]["publisher"]
    for row in rows:
        assert re.fullmatch(NUMBER, row["msg/s (median)"])
        assert re.fullmatch(RATIO, row["ratio to `publish_async`"])
    targeted = [row for row in rows if "publish_durable_many" in row["publisher"]]
    assert len(targeted) == 1 and targeted[0]["met"] in VERDICT
    assert all(row["met"] == "" for row in rows if row not in targeted)  # diagnostics: no verdict


def test_durable_consume_is_measured_against_a_raw_fetch_loop(report: str) -> None:
    text = case(report, CASES[4])
    rows = {row["implementation"]: row for row in columns(text)}
    assert set(rows) == {"raw", "citybus"}
    for row in rows.values():
        assert row["messages"] == "500"
        assert re.fullmatch(NUMBER, row["msg/s (median)"])
        assert re.fullmatch(RATIO, row["ratio"])
    assert rows["citybus"]["met"] in VERDICT
    # the smoke run always profiles the citybus consumer
    assert text.count("Profile: the citybus consumer") == 2
    assert "`bus/" in text  # citybus's own functions are named where the reader finds them


def test_replay_throughput_is_measured_into_nothing_and_into_nats_server(report: str) -> None:
    text = case(report, CASES[5])
    rows = {row[0]: row for row in table(text)}
    assert len(rows) == 4
    for into, row in rows.items():
        assert row[1] == "3000", into  # every message replayed (the bench fails on a lost one)
        assert re.fullmatch(NUMBER, row[3]), into
    targeted = [row for row in rows.values() if row[4] == ">= 60,000"]
    assert len(targeted) == 2
    assert all(re.fullmatch(rf"{NUMBER}(?:, {NUMBER})*", row[5]) for row in targeted)  # each round
    assert all(row[6] in VERDICT for row in targeted)
    # the smoke run always profiles: the event loop (twice) and the reader
    assert text.count("Profile: ") == 3
    assert "sandbox/replay.py" in text
    assert "mcap/" in text


def test_schedule_error_is_measured_at_1x_with_percentiles(report: str) -> None:
    text = case(report, CASES[6])
    rows = table(text)
    assert [(row[0], row[1].split(":")[0]) for row in rows] == [
        *(
            (into, which)
            for into in ("a no-op publish", "nats-server")
            for which in ("all", "steady only", "bursts only")
        ),
        ("the event loop alone (`asyncio.sleep` until each due time, no replay)", "all"),
    ]
    for row in rows:
        assert all(re.fullmatch(NUMBER, cell) for cell in row[2:5]), row
        assert float(row[2]) <= float(row[3]) <= float(row[4]), row  # p50 <= p99 <= max
    totals = [row for row in rows[:-1] if row[1].startswith("all")]
    assert len(totals) == 2
    assert rows[-1][5] == "(diagnostic)"
    assert all(row[5] == "p99 <= 2 ms" and row[6] in VERDICT for row in totals)
    assert text.count("went out more than 2 ms late") == 2


def test_peak_rss_is_measured_against_a_baseline(report: str) -> None:
    rows = table(case(report, CASES[7]))
    replaying, baseline = rows
    assert replaying[0] == "replaying the recording" and baseline[0] == "baseline: imports only"
    assert float(replaying[1]) >= float(baseline[1]) > 10  # a Python process with citybus imported
    assert replaying[4] == "< 150 MB" and replaying[5] in VERDICT


def test_citybus_up_is_timed_to_ready_and_profiled(report: str) -> None:
    text = case(report, CASES[8])
    rows = {row["run"]: row for row in columns(text)}
    assert set(rows) == {"first start, compiling bytecode (not counted)", "run 1", "median"}
    for row in rows.values():
        assert re.fullmatch(NUMBER, row["ready s"])
        assert re.fullmatch(NUMBER, row["adapters ready"])  # every step was found in the log
    assert rows["median"]["met"] in VERDICT
    # the smoke run always profiles: -X importtime and cProfile
    assert "`bus.cli`" in text
    assert text.count("Profile: `citybus up` under cProfile") == 2


def test_certify_is_timed_with_each_run_and_the_adapters_use(report: str) -> None:
    text = case(report, CASES[9])
    (row,) = columns(text)
    assert row["adapter"] == "`beach-neighbours`" and row["suite"] == "quick v1, only outage"
    assert row["runs"] == "2"  # the clean run and the one preset
    for key in ("wall s", "runs' wall s (sum)", "CPU s of the command", "longest silence s"):
        assert re.fullmatch(NUMBER, row[key]), key
    assert int(row["progress lines"]) > 0
    assert row["verdict"] in ("pass", "fail") and row["met"] in VERDICT
    runs = columns(text, 1)
    assert [run["run"] for run in runs] == ["clean", "outage"]
    for run in runs:
        for key in ("wall s", "inputs", "outputs", "adapter peak RSS MiB", "adapter CPU s"):
            assert re.fullmatch(NUMBER, run[key]), (run["run"], key)
        assert run["verdict"] in ("pass", "fail")
    assert "citybus certify beach-neighbours --suite quick --seed " in text  # the reproducing command


def test_the_gateways_last_value_is_measured_against_a_plain_handler(report: str) -> None:
    text = case(report, CASES[10])
    rows = {row["server"]: row for row in columns(text)}
    assert set(rows) == {"citybus gateway", "plain aiohttp"}
    for row in rows.values():
        assert row["connections"] == "10"
        assert re.fullmatch(NUMBER, row["requests/s"])
        figures = [float(row[key]) for key in ("p50 ms", "p90 ms", "p99 ms")]
        assert figures == sorted(figures), row
        assert re.fullmatch(RATIO, row["requests/s ratio to plain"])
    assert rows["citybus gateway"]["met"] in VERDICT
    assert "(one CloudEvent, as the gateway serves it)" in text


def test_sse_is_measured_with_delays_and_memory_against_a_plain_handler(report: str) -> None:
    text = case(report, CASES[11])
    rows = {row["server"]: row for row in columns(text)}
    assert set(rows) == {"citybus gateway", "plain aiohttp"}
    for row in rows.values():
        assert row["clients"] == "20 of 20"
        assert re.fullmatch(rf"{NUMBER}%", row["delivered"]), row
        figures = [float(row[key]) for key in ("p50 ms", "p99 ms", "max ms")]
        assert figures == sorted(figures), row
        for key in ("RSS before MB", "RSS with clients MB", "clients' loop lag p99 ms"):
            assert re.fullmatch(NUMBER, row[key]), key
        assert re.fullmatch(r"-?\d+\.\d+", row["MB per client"])
    assert rows["citybus gateway"]["met"] in VERDICT


def test_the_journey_planner_is_timed_over_the_bus_against_the_brute_force(report: str) -> None:
    text = case(report, CASES[12])
    rows = {(row["`citybus up`"], row["requests"]): row for row in columns(text)}
    for setup in ("planner only", "default"):
        for kind in JOURNEY_KINDS:
            row = rows[(setup, kind)]
            assert row["queries"] == "12"
            assert re.fullmatch(r"[\d,]+ (ok|no-route)(, [\d,]+ [a-z-]+)*", row["answers"]), row
            figures = [float(row[key]) for key in ("p50 ms", "p95 ms", "p99 ms", "max ms")]
            assert figures == sorted(figures), row
            assert row["met"] in VERDICT
        floor = rows[(setup, "floor: from a place to itself (refused once both names are resolved)")]
        assert floor["answers"] == "bad-request" and re.fullmatch(NUMBER, floor["p95 ms"])
    alone = rows[("planner only", JOURNEY_KINDS[1])]
    brute = rows[("", "brute force (`bench/journey_reference.py`), the reference queries")]
    for row in (alone, brute):
        for key in (
            "in-process p95 ms",
            "in-process CPU p50 ms",
            "in-process CPU p95 ms",
            "in-process CPU mean ms",
        ):
            assert re.fullmatch(NUMBER, row[key]), key
    loading = {row["run"]: row for row in columns(text, 2)}
    assert set(loading) == {"run 1", "median"}
    assert re.fullmatch(NUMBER, loading["median"]["load + planner s"]) and loading["median"]["met"] in VERDICT
    memory = {row["what"]: row["MB"] for row in columns(text, 3)}
    assert len(memory) == 9 and all(re.fullmatch(NUMBER, mb) for mb in memory.values())
    # the smoke run always profiles: each kind in the bench's process, and a default citybus up
    assert text.count("Profile: ") == 8
    assert "Profile: the default `citybus up` (sandbox and planner) under cProfile" in text
    assert "adapters/journey/planner.py" in text


def test_personal_data_is_measured_sealed_against_unsealed_with_the_platform_and_erasure(report: str) -> None:
    text = case(report, CASES[13])
    rows = {(row["publisher and subscriber"], row["contract"]): row for row in columns(text)}
    assert set(rows) == {
        (setup, contract)
        for setup in ("two processes", "one process")
        for contract in ("`community.opportunity`, unsealed", "`community.volunteer-signup`, sealed")
    }
    for (_, contract), row in rows.items():
        assert re.fullmatch(NUMBER, row["msg/s (median)"])
        assert re.fullmatch(RATIO, row["ratio"])
        assert row["met"] in (VERDICT if contract.endswith(", sealed") else ("",))
    durable = columns(text, 1)
    assert len(durable) == 2 and all(re.fullmatch(NUMBER, row["msg/s"]) for row in durable)
    steps = {row["step"]: row["µs a message"] for row in columns(text, 2)}
    assert len(steps) == 9 and all(re.fullmatch(NUMBER, value) for value in steps.values())
    latencies = columns(text, 3)
    assert len(latencies) == 4
    for row in latencies:
        figures = [float(row[key]) for key in ("p50 ms", "p95 ms", "p99 ms", "max ms")]
        assert figures == sorted(figures), row
    signups = columns(text, 4)
    assert [row["requests"] for row in signups] == ["20", "20"]
    assert all(row["met"] in VERDICT for row in signups)
    # the platform never overbooks: the case fails otherwise, so these are the only counts it can show
    settled = columns(text, 5)
    assert all(re.fullmatch(r"\d+", row["ledger conflicts"]) for row in settled)
    assert [(row["platform instances"], row["confirmed"], row["full"]) for row in settled] == [
        ("1", "5", "15"),
        ("2", "5", "15"),
    ]
    rights = {row["what"]: row for row in columns(text, 6)}
    assert rights["export of one person (2 messages)"]["figure"].endswith(" s")
    erasure = rights["erasure of one person (3 erased: messages and key)"]
    assert re.fullmatch(rf"{NUMBER} s", erasure["figure"]) and erasure["met"] in VERDICT
    # the smoke run always profiles: a sealed round in one process, and each of the two processes
    assert text.count("Profile: ") == 6
    assert "bus/personal/" in text


def test_scaleout_drains_one_stream_with_one_and_two_processes_for_each_kind_of_work(report: str) -> None:
    text = case(report, CASES[15])
    for which in (0, 1):  # 0.2 ms of CPU, then an await of 20 ms, per message
        rows = {row["processes"]: row for row in columns(text, which)}
        assert set(rows) == {"1", "2"}
        for processes, row in rows.items():
            assert re.fullmatch(NUMBER, row["msg/s (median)"])
            assert re.fullmatch(RATIO, row["ratio to 1 process"])
            assert row["handled twice"] == "0"
            split = row["share of each process (median round)"].split(" / ")
            shares = [int(share.replace(",", "")) for share in split]
            assert len(shares) == int(processes)
            assert sum(shares) == int(row["messages"].replace(",", "")), "each message handled once"


def test_failover_counts_every_message_and_times_each_kill_the_outage_and_r3_against_r1(report: str) -> None:
    text = case(report, CASES[16])
    [outcome] = columns(text, 0)
    assert outcome["published"] == outcome["acknowledged"] == outcome["stored"] == "3,000"
    assert outcome["distinct ids handed to the consumer"] == "3,000"
    assert (outcome["lost"], outcome["stored twice"], outcome["handled twice"]) == ("0", "0", "0")
    events = columns(text, 1)
    assert [row["event"].split(" (")[0] for row in events[::2]] == ["the leader", "the follower"]
    for row in events:
        for what in ("publishing", "consumer", "replay"):
            assert re.fullmatch(
                rf"{NUMBER} \({NUMBER}\)|none after it", row[f"{what} paused s (resumed after s)"]
            )
    assert all(re.fullmatch(NUMBER, row["caught up after s"]) for row in events[1::2])
    outage = {row["what"]: row for row in columns(text, 2)}
    first = outage["first durable publish after the kills: gave up after"]
    assert first["citybus"] == "JetStreamUnavailableError" and re.fullmatch(NUMBER, first["s"])
    assert outage["core publish → subscribe on the surviving node"]["citybus"] == "100 of 100 heard"
    assert re.fullmatch(NUMBER, outage["the same bus stored a durable publish, from the nodes running"]["s"])
    setups = {row["setup"]: row for row in columns(text, 3)}
    assert set(setups) == {"cluster, R1 stream", "cluster, R3 stream", "single nats-server"}
    assert all(re.fullmatch(RATIO, row["ratio to R1"]) for row in setups.values())
    assert "CITY_PUBLIC_ENVIRONMENT" in text and "Bring its nodes back" in text


def test_compare_runs_a_case_against_two_checkouts_and_tables_both(tmp_path: Path) -> None:
    # The same checkout on both sides: what is checked is the mechanism, not a difference.
    output = tmp_path / "compare.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--before", str(ROOT), "--after", str(ROOT)]
        + ["--only", "consume", "--rounds", "1", "--smoke", "--output", str(output)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    text = output.read_text(encoding="utf-8")
    assert text.startswith("# citybus benchmarks: before and after\n")
    rows = {row["figure"]: row for row in columns(text, 1)}
    assert set(rows) == {
        "raw msg/s (higher is better)",
        "citybus msg/s (higher is better)",
        "citybus / raw (higher is better)",
    }
    for row in rows.values():
        assert row["case"] == CASES[4]
        for side in ("before", "after"):
            assert re.fullmatch(rf"{NUMBER}x?", row[f"{side} (median)"]), row
        assert row["verdict"] in ("within noise (ranges overlap)", "**better**", "**worse**")
    assert "Failed runs" not in text


def test_compare_refuses_a_directory_that_is_not_a_checkout(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--before", str(tmp_path), "--only", "consume"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"bench.compare: {tmp_path} is not a citybus checkout (no bus/__init__.py): give its root"
    ]
