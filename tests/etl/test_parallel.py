"""The feature job's table builds and writes run concurrently (``spark.parallel_tables``): results in order,
and the error of the first failing table, whatever finished first."""

from __future__ import annotations

import threading
import time

import pytest

from cookie.etl.job import in_parallel


def test_results_keep_the_items_order_and_calls_overlap():
    running, peak, lock = [0], [0], threading.Lock()

    def slow(x: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05 * (4 - x))  # the first item finishes last
        with lock:
            running[0] -= 1
        return x * x

    assert in_parallel(slow, [0, 1, 2, 3], workers=4) == [0, 1, 4, 9]
    assert peak[0] > 1
    peak[0] = 0
    assert in_parallel(slow, [0, 1, 2, 3], workers=1) == [0, 1, 4, 9]
    assert peak[0] == 1


def test_the_first_failing_item_raises_after_the_others_end():
    ended = []

    def fn(x: int) -> int:
        time.sleep(0.1 if x == 1 else 0.0)  # item 1 fails last, item 3 first
        if x in (1, 3):
            raise ValueError(f"item {x}")
        ended.append(x)
        return x

    with pytest.raises(ValueError, match="item 1"):
        in_parallel(fn, [0, 1, 2, 3], workers=4)
    assert sorted(ended) == [0, 2]


@pytest.mark.spark
def test_threads_inherit_the_callers_spark_local_properties(spark):
    """A scheduler cancels a job's work by its job group or tags: the table threads must carry the caller's."""
    sc = spark.sparkContext
    sc.setLocalProperty("cookie.test.group", "feature-job")
    try:
        seen = in_parallel(lambda _: sc.getLocalProperty("cookie.test.group"), [0, 1, 2], workers=3, spark=spark)
    finally:
        sc.setLocalProperty("cookie.test.group", None)
    assert seen == ["feature-job"] * 3
