"""``citybus certify``: a pilot's adapter run against the recorded city, clean and under faults,
and scored by the same rules for everyone (docs/certify.md).

* :mod:`sandbox.certify.suite` — suites of fault presets, versioned, with their thresholds;
* :mod:`sandbox.certify.engine` — one run: a private sandbox, the adapter in its own process
  (:mod:`sandbox.certify.child`), what it did on the replay's clock;
* :mod:`sandbox.certify.score` and :mod:`sandbox.certify.detect` — the checks and detection
  precision and recall;
* :mod:`sandbox.certify.report` — the report as JSON, Markdown and HTML;
* :mod:`sandbox.certify.certify` — all of it in order; :mod:`sandbox.certify.cli` the command.
"""

__all__: list[str] = []
