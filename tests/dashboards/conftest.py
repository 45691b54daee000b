"""The live dashboard test reuses the integration suite's broker and worker fixtures.

(``pytest_plugins`` is only allowed in the top-level conftest, so the fixtures are imported:
importing a fixture function into a conftest makes it available to the tests below it.)
"""

from tests.integration.conftest import broker, pytest_runtest_makereport, start_worker  # noqa: F401
