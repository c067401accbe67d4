"""pytest fixtures: one Garage for the whole session, a fresh Hydrant per test."""

import os
import uuid

import pytest

from harness import Garage, Hydrant

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


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
