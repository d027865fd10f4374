"""An unreachable tracking server is named within seconds, before Spark starts, without its credentials."""

from __future__ import annotations

import socket
import time

import pytest

from cookie import cli
from cookie.constants import EXIT_STACK
from cookie.exceptions import StackNotLoaded
from cookie.storage.tracking import check_store

REPO_CONF = "conf/manhattan180.yaml"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: connections are refused


@pytest.mark.parametrize("verb", [["train"], ["evaluate"], ["promote", "--dry-run"], ["lookup", "--region", "1"]])
def test_verbs_stop_fast_on_an_unreachable_tracking_server(verb, capsys):
    uri = f"http://alice:s3cret@127.0.0.1:{_closed_port()}"
    t = time.perf_counter()
    code = cli.main([verb[0], "--config", REPO_CONF, "--set", f"train.tracking_uri={uri}", *verb[1:]])
    assert time.perf_counter() - t < 20
    err = capsys.readouterr().err
    assert code == EXIT_STACK
    assert "does not answer" in err and "127.0.0.1" in err and "s3cret" not in err


def test_a_server_that_never_answers_times_out():
    with socket.socket() as srv:  # accepts the connection (backlog) but never replies
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        t = time.perf_counter()
        with pytest.raises(StackNotLoaded, match="does not answer"):
            check_store(f"http://127.0.0.1:{srv.getsockname()[1]}", timeout=1.0)
        assert time.perf_counter() - t < 10


def test_local_stores_are_not_probed(tmp_path):
    check_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    check_store("databricks")
