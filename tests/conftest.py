"""Fixtures shared by the tests: generated POP-ROK-shaped archives in each layout, and what they hold."""

from __future__ import annotations

import atexit
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

# A datasets cache of the session's own, set before datasets is imported: datasets keys its cache of a local
# Parquet folder on the folder's name and card (sizes, features), not on the files, so a copy an earlier session
# wrote under the same name, with other values of the same sizes, would be read back from a stale cache.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="pop_rok_tests_datasets_")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402

import pop_rok  # noqa: E402
from poprok.sample import archives as sample_archives  # noqa: E402

REAL_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "real-examples"


MEASURED = pytest.StashKey[list[str]]()


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_shared: needs ../shared (the real example previews); fails under CI")
    config.stash[MEASURED] = []


@pytest.fixture(scope="session")
def measured(pytestconfig) -> list[str]:
    """Lines a test appends what it measured to (AUCs, leak, group sizes, faults found): printed after the results,
    so a run shows the numbers its assertions bound, not only that they held."""
    return pytestconfig.stash[MEASURED]


def pytest_terminal_summary(terminalreporter, config):
    if config.stash[MEASURED]:
        terminalreporter.section("measured on renders of known truth and on the real previews")
        for line in config.stash[MEASURED]:
            terminalreporter.write_line(line)


def pytest_runtest_setup(item):
    """A test marked needs_shared without ../shared/real-examples: a failure when CI is set, else a skip."""
    if item.get_closest_marker("needs_shared") is None or REAL_EXAMPLES.is_dir():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{REAL_EXAMPLES} is missing, and CI is set: the real-example tests must run", pytrace=False)
    pytest.skip(f"{REAL_EXAMPLES} is missing")


@pytest.fixture(scope="session")
def per_loop_sample(tmp_path_factory):
    """Folders, one JSON per loop, the key-map file and macOS junk."""
    folder = tmp_path_factory.mktemp("per_loop")
    return folder, sample_archives.make_sample(folder, loops=5, seed=1, layout="per-loop")


@pytest.fixture(scope="session")
def aggregated_sample(tmp_path_factory):
    """Everything at the archive root, one JSON for all loops."""
    folder = tmp_path_factory.mktemp("aggregated")
    return folder, sample_archives.make_sample(folder, loops=4, seed=2, layout="aggregated")


@pytest.fixture(scope="session")
def extracted_sample(tmp_path_factory, per_loop_sample):
    """The per-loop archives unpacked into one folder, as a user who ran `tar xzf` twice has them."""
    archives, manifest = per_loop_sample
    folder = tmp_path_factory.mktemp("extracted")
    for name in pop_rok.ARCHIVES.values():
        with tarfile.open(archives / name) as tar:
            tar.extractall(folder, filter="data")
    return folder, manifest
