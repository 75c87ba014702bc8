"""mitm/master.py. HookIndex: events reach exactly the addons that handle them, in chain order, with
mitmproxy's error handling, also after the chain changes (a real SidecarMaster); block_global
spares the callback listeners."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import exceptions, hooks, options
from mitmproxy.proxy.layers.http import HttpResponseHook
from mitmproxy.test import tflow

from sinch_sms_exporter.mitm.master import HookIndex, SidecarMaster


class Recorder:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def response(self, flow) -> None:
        self.calls.append(self.name)


class Parent:
    """An addon that handles nothing itself; its sub-addon does."""

    def __init__(self, child: Recorder) -> None:
        self.addons = [child]


class Halting(Recorder):
    def response(self, flow) -> None:
        super().response(flow)
        raise exceptions.AddonHalt


class Failing(Recorder):
    def response(self, flow) -> None:
        super().response(flow)
        raise ValueError("addon bug")


def _run(scenario) -> None:
    async def main() -> None:
        master = SidecarMaster(options.Options())
        try:
            await scenario(master)
        finally:
            master.shutdown()

    asyncio.run(main())


def test_the_sidecar_master_dispatches_through_the_index() -> None:
    async def scenario(master: SidecarMaster) -> None:
        assert isinstance(master.addons, HookIndex)
        assert master.addons.get("sinchsmsexporter") is master.exporter
        assert master.addons.get("termlog") is master._termlog_addon

    _run(scenario)


def test_only_handlers_run_in_chain_order_and_added_addons_are_seen(caplog) -> None:
    calls: list[str] = []

    async def scenario(master: SidecarMaster) -> None:
        flow = tflow.tflow(resp=True)
        master.addons.add(Recorder("first", calls))
        await master.addons.handle_lifecycle(hooks.UpdateHook([flow]))  # nobody handles it: no error
        await master.addons.trigger_event(HttpResponseHook(flow))
        master.addons.add(Parent(Recorder("child", calls)), Failing("failing", calls), Recorder("last", calls))
        await master.addons.trigger_event(HttpResponseHook(flow))
        master.addons.remove(master.addons.get("first"))
        master.addons.add(Halting("halting", calls), Recorder("after-halt", calls))
        await master.addons.trigger_event(HttpResponseHook(flow))

    with caplog.at_level(logging.ERROR):
        _run(scenario)
    assert calls == [
        "first",
        "first", "child", "failing", "last",
        "child", "failing", "last", "halting",
    ]  # fmt: skip
    # an addon's exception is logged as mitmproxy logs it, and the next addon still runs
    assert sum("Addon error: addon bug" in r.getMessage() for r in caplog.records) == 2


def test_block_global_spares_callback_listeners_without_a_warning(caplog) -> None:
    """A public sender (Sinch) on a callback listener is let in, with no 'killed by
    block_global' line per connection; on the API listener it is refused as before."""
    from mitmproxy.proxy.mode_specs import ProxyMode

    from sinch_sms_exporter.mitm.master import CallbackAwareBlock

    async def check() -> None:
        sidecar = SidecarMaster(options.Options())
        sidecar.options.update(
            mode=["reverse:https://us.sms.api.sinch.com@8080"],
            sinch_metrics_port=0,
            sinch_callback_upstreams=["http://127.0.0.1:9000@8090"],
        )
        blocker = next(a for a in sidecar.addons.chain if isinstance(a, CallbackAwareBlock))
        with caplog.at_level(logging.WARNING):
            for mode, refused in (("reverse:http://127.0.0.1:9000@8090", False), (sidecar.options.mode[0], True)):
                client = tflow.tclient_conn()
                client.peername = ("54.76.19.159", 40000)
                client.proxy_mode = ProxyMode.parse(mode)
                client.error = None
                blocker.client_connected(client)
                assert (client.error is not None) == refused, mode
        assert sum("block_global" in r.getMessage() for r in caplog.records) == 1

    asyncio.run(check())
