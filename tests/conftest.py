"""pytest fixtures: one Garage for the whole session, a fresh Hydrant per test."""

import os
import uuid

import pytest

from harness import Garage, Hydrant

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    Hydrant.made.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines each daemon logged,
    so a failure seen once in CI can be read afterwards."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when == "call":
        for h in Hydrant.made:
            try:
                tail = "\n".join(h.logs().splitlines()[-60:])
            except OSError as e:
                tail = f"(cannot read the log: {e})"
            report.sections.append((f"hydrant log {h.dir.name}", tail))


@pytest.fixture(scope="session")
def garage(tmp_path_factory):
    g = Garage(tmp_path_factory.mktemp("garage")).start()
    yield g
    g.stop()


@pytest.fixture
def bucket(garage):
    name = f"t-{uuid.uuid4().hex[:12]}"
    garage.create_bucket(name)
    return name


@pytest.fixture
def hydrant_factory(tmp_path):
    started = []

    def make(config_body, **kw):
        h = Hydrant(tmp_path / f"hydrant{len(started)}", config_body, **kw)
        started.append(h)
        return h

    yield make
    for h in started:
        h.kill()


def s3_store_yaml(garage) -> str:
    return (
        "object_store:\n"
        "  type: s3\n"
        f"  endpoint: {garage.endpoint}\n"
        "  region: garage\n"
        f"  access_key_id: {garage.key_id}\n"
        f"  secret_access_key: {garage.secret}\n"
    )
