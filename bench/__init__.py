"""citybus's benchmarks: bounded, reproducible runs that write their figures to ``docs/benchmarks.md``.

One command runs them all from the repository root, ``python -m bench`` (``--smoke`` shrinks every
case to seconds so CI can check that it still completes; ``--only`` picks cases). Numbers live in
the report, never in test assertions. The modules:

- :mod:`bench.suite`: the command, the list of cases, writing the report;
- :mod:`bench.bus` and :mod:`bench.peers`: citybus against raw nats-py and FastStream (throughput,
  latency, JetStream), each side a process of its own; :mod:`bench.faststream_peers`: FastStream's side;
- :mod:`bench.consume` and :mod:`bench.consumers`: the durable consumer against a raw nats-py fetch loop;
- :mod:`bench.replay` and :mod:`bench.memory`: the sandbox replay (throughput, schedule error, peak
  RSS), on recordings :mod:`bench.recordings` generates;
- :mod:`bench.startup`: ``citybus up`` to ready;
- :mod:`bench.gateway` and :mod:`bench.gateway_peers`: the HTTP gateway (the last value of an entity
  with ``wrk``, SSE to 1,000 clients) against plain aiohttp handlers doing the same work;
- :mod:`bench.journey`, :mod:`bench.journey_bus` and :mod:`bench.journey_report`: the journey planner
  (loading the NSB feed, requests over the bus, memory) against :mod:`bench.journey_reference`, an
  independent brute-force search;
- :mod:`bench.personal` and :mod:`bench.personal_bus`: personal data (issue 18): what sealing costs
  against an unsealed contract, sign-ups to the volunteer platform, export and erasure of one person;
- :mod:`bench.report`, :mod:`bench.stats`, :mod:`bench.common`: the report and the machine, percentiles
  and profiles, and what every case shares;
- :mod:`bench.compare`: the cases run against two checkouts in one run, before and after a change.
"""
