"""End to end: the daemon (``fmfb run``) as a subprocess, EventBridge through a cut link.

The daemon's ``[sinks.eventbridge]`` endpoint is a fault proxy in front of moto (both in this
process); a rule on the bus sends every event of the source to an SQS queue that a background
thread drains as it fills, so the test sees what EventBridge delivered, in arrival order.

The link is cut (the proxy refuses connections) and 3,000 presses are journaled through the
control socket — most become FeedRejected (the caps top out at 1,000 per bowl), which are
events too. When the link comes back, everything must arrive: in seq order, no gaps. The
second test also SIGKILLs the daemon during the outage and starts it again on the same
journal.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from daemon_process import HIGH_CAPS, DaemonProcess
from fault_proxy import FaultProxy
from waiting import wait_for

from gateway.control import call
from gateway.devstack.aws import AWS_TEST_ENV, Drainer, Feeds, MotoServer, seqs
from gateway.devstack.mosquitto import Mosquitto

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PRESSES = 3_000
CLICKS = ("SINGLE", "DOUBLE", "LONG")


def cloud_daemon(broker: Mosquitto, workdir: Path, proxy: FaultProxy) -> DaemonProcess:
    return DaemonProcess(
        broker.port,
        workdir=workdir,
        policy=HIGH_CAPS,
        extra_config={
            "sinks": {
                "eventbridge": {"endpoint_url": proxy.url, "max_attempts": 1, "timeout_s": 5.0}
            }
        },
        env=AWS_TEST_ENV,
    )


def press_many(daemon: DaemonProcess, n: int) -> None:
    """``n`` presses through the control socket (what ``fmfb press`` does), a few at a time;
    each answer comes once its event is durable."""

    def press(i: int) -> str:
        answer = call(
            daemon.control_path,
            {"op": "press", "button": daemon.button_name, "click": CLICKS[i % 3]},
            timeout_s=30,
        )
        assert answer.get("ok"), answer
        return str(answer["event"]["type"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        types = list(pool.map(press, range(n)))
    assert set(types) <= {"FeedRequested", "FeedRejected"}


def wait_link_up(daemon: DaemonProcess, drainer: Drainer) -> None:
    """GatewayStarted has reached the SQS target and the cursor moved over it."""
    wait_for(lambda: 1 in seqs(drainer.arrivals()), timeout=30, what="GatewayStarted in SQS")
    wait_for(
        lambda: daemon.sink_status("eventbridge")["cursor"] >= 1,
        timeout=15,
        what="the EventBridge cursor to move",
    )


def wait_offline(daemon: DaemonProcess) -> dict[str, Any]:
    status: dict[str, Any] = wait_for(
        lambda: (s := daemon.sink_status("eventbridge"))["last_error"] and s,
        timeout=30,
        what="the EventBridge sink to report the cut link",
    )
    assert status["connected"] is False
    assert str(status["last_error"]).startswith("offline:")
    return status


def journal_event_ids(daemon: DaemonProcess) -> dict[int, str]:
    with daemon.reader() as reader:
        return {e.seq: e.event_id for e in reader.query()}


def wait_everything(drainer: Drainer, last: int) -> list[dict[str, Any]]:
    want = set(range(1, last + 1))
    wait_for(
        lambda: want <= set(seqs(drainer.arrivals())),
        timeout=75,
        interval=0.1,
        what=f"seq 1..{last} at the SQS target",
    )
    return drainer.arrivals()


def test_cut_link_3000_events_arrive_in_order_when_it_returns(
    broker: Mosquitto, tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    with cloud_daemon(broker, tmp_path / "gw", proxy) as daemon, Drainer(moto, feeds) as drainer:
        daemon.start()
        wait_link_up(daemon, drainer)
        proxy.refuse()
        press_many(daemon, PRESSES)
        status = wait_offline(daemon)
        assert status["backlog"] >= PRESSES
        assert seqs(drainer.arrivals()) == [1]  # nothing went through the cut link

        proxy.accept()
        ids = journal_event_ids(daemon)
        last = max(ids)
        assert last >= PRESSES + 1
        arrivals = wait_everything(drainer, last)
        # A clean cut: nothing was in flight, so each event arrives once, in seq order.
        assert seqs(arrivals) == list(range(1, last + 1))
        assert all(e["detail"]["event-id"] == ids[e["detail"]["seq"]] for e in arrivals)
        assert all(e["detail"]["gateway-id"] == daemon.gateway_id for e in arrivals)
        kinds = [e["detail-type"] for e in arrivals]
        assert kinds.count("Feed Requested") + kinds.count("Feed Rejected") == PRESSES
        assert kinds.count("Feed Rejected") >= 1  # the caps really bit
        wait_for(
            lambda: (s := daemon.sink_status("eventbridge"))["connected"] and s["backlog"] == 0,
            timeout=15,
            what="the sink to be online with no backlog",
        )
        assert proxy.size_violations == 0
        assert all(len(batch) <= 10 for batch in proxy.put_events)


def test_daemon_killed_during_the_outage_loses_nothing(
    broker: Mosquitto, tmp_path: Path, moto: MotoServer, feeds: Feeds, proxy: FaultProxy
) -> None:
    with cloud_daemon(broker, tmp_path / "gw", proxy) as daemon, Drainer(moto, feeds) as drainer:
        daemon.start()
        wait_link_up(daemon, drainer)
        proxy.refuse()
        press_many(daemon, PRESSES // 2)
        wait_offline(daemon)
        daemon.kill()  # SIGKILL: a crash in the middle of the outage

        daemon.start()  # the same journal; the link is still cut
        press_many(daemon, PRESSES - PRESSES // 2)
        wait_offline(daemon)
        assert seqs(drainer.arrivals()) == [1]

        proxy.accept()
        ids = journal_event_ids(daemon)
        last = max(ids)
        arrivals = wait_everything(drainer, last)
        order = seqs(arrivals)
        # Everything arrived, each event as journaled, no gaps.
        assert set(order) == set(range(1, last + 1))
        assert all(e["detail"]["event-id"] == ids[e["detail"]["seq"]] for e in arrivals)
        # In order: a crash may repeat what was sent just before it, never reorder. Taking each
        # event's last copy, the stream is in seq order (here, with a clean cut, exactly).
        last_copy = {seq: i for i, seq in enumerate(order)}
        assert sorted(last_copy, key=last_copy.__getitem__) == sorted(last_copy)
        assert order == list(range(1, last + 1))
        kinds = [e["detail-type"] for e in arrivals]
        assert kinds.count("Feed Requested") + kinds.count("Feed Rejected") == PRESSES
        assert kinds.count("Gateway Started") == 2
