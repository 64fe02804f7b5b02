"""An adapter module that fails to import, for the discovery tests."""

raise ImportError("this adapter needs a library that is not installed (on purpose)")
