"""Barrier-free rescue in verl's agent-loop worker, without Ray: the worker's session logic over a fake
agent loop (verl's `_run_agent_loop` replaced by a coroutine returning scripted rewards) and a fake client."""

import asyncio

import pytest

from aero_verl.verl_ext import rescue_worker
from aero_verl.verl_ext.rescue_worker import PromptRescue, RescueAgentLoopWorkerImpl


class FakeClient:
    def __init__(self):
        self.started_sessions, self.aborted = set(), []

    def started(self, session):
        return session in self.started_sessions

    async def abort(self, session):
        self.aborted.append(session)
        return True

    def forget(self, session):
        self.started_sessions.discard(session)


class FakeTransferQueue:
    def __init__(self):
        self.tags = {}

    async def async_kv_put(self, key, partition_id, tag):
        self.tags.setdefault(key, {}).update(tag)


@pytest.fixture
def worker(monkeypatch):
    """A worker whose agent loop returns `script[session]` after `delay[session]` seconds."""
    fake_tq = FakeTransferQueue()
    monkeypatch.setattr(rescue_worker, "tq", fake_tq)
    instance = RescueAgentLoopWorkerImpl.__new__(RescueAgentLoopWorkerImpl)
    instance.llm_client = FakeClient()
    instance._u_res, instance._u_high = 0.0, 0.5
    instance._rescues = {}
    instance.script, instance.delay, instance.generated = {}, {}, []

    async def agent_loop(self, sampling_params, trajectory, *, agent_name, trace=True, **kwargs):
        session = int(kwargs["session_id"])
        self.generated.append(session)
        self.llm_client.started_sessions.add((kwargs["uid"], session))
        try:
            await asyncio.sleep(self.delay.get(session, 0.01))
        except asyncio.CancelledError:
            raise
        return self.script[session]

    monkeypatch.setattr(rescue_worker.AgentLoopWorkerTQ.__ray_actor_class__, "_run_agent_loop", agent_loop)
    instance.fake_tq = fake_tq
    return instance


def run_prompt(worker, explore, allowance):
    """Run every session of one prompt concurrently, as verl's _run_prompt does."""
    worker._rescues["u"] = PromptRescue(explore, allowance)

    async def all_sessions():
        return await asyncio.gather(*[
            worker._run_agent_loop({}, {"validate": False}, agent_name="single_turn_agent", uid="u", session_id=s)
            for s in range(explore + allowance)])

    return asyncio.run(all_sessions())


def test_a_prompt_stage_one_solves_rescues_nothing(worker):
    worker.script = {s: float(s == 3) for s in range(8)}
    rewards = run_prompt(worker, 8, 8)
    assert rewards[8:] == [None] * 8  # no rescue session generated
    assert sorted(worker.generated) == list(range(8))
    assert "aero_stage1_done_s" in next(iter(worker.fake_tq.tags.values()))


def test_an_all_wrong_prompt_rescues_at_once_and_stops_at_its_first_success(worker):
    worker.script = {**{s: 0.0 for s in range(8)}, **{s: float(s == 10) for s in range(8, 16)}}
    worker.delay = {**{s: 0.01 for s in range(8)}, 10: 0.05, **{s: 0.5 for s in (8, 9, 11, 12, 13, 14, 15)}}
    rewards = run_prompt(worker, 8, 8)
    assert rewards[10] == 1.0
    assert sorted(worker.generated) == list(range(16))  # the whole remaining budget was asked in one go
    stopped = {key for key, tag in worker.fake_tq.tags.items() if tag.get("aero_stopped")}
    assert stopped == {f"u_{s}_0" for s in (8, 9, 11, 12, 13, 14, 15)}
    assert sorted(s for _, s in worker.llm_client.aborted) == [8, 9, 11, 12, 13, 14, 15]


def test_rows_outside_a_barrier_free_step_run_as_verl_runs_them(worker):
    worker.script = {0: 1.0}
    result = asyncio.run(worker._run_agent_loop({}, {"validate": False}, agent_name="single_turn_agent",
                                                uid="other", session_id=0))
    assert result == 1.0 and worker.generated == [0]
