"""Barrier-free rescue (`aero.rescue_mode=barrier_free`) inside verl 0.9.1's agent-loop worker.

Selected by the AERO trainer as `actor_rollout_ref.rollout.agent.agent_loop_manager_class`
(verl/trainer/main_ppo.py, TaskRunnerV1.init_agent_loop_manager). Prompt rows the trainer submits with a
rescue allowance (`__aero_rescue_n__`, AEROStep.rescue_allowance: the prompt's remaining budget) run as
one agent-loop prompt of n_explore + allowance sessions (verl/trainer/ppo/v1/agent_loop_tq.py,
`_run_prompt`), so every key is the prompt's own `{uid}_{session}_0` and the prompt finishes, for verl's
replay buffer, when its rescue does:

  * sessions below n_explore are Stage I and run at once;
  * when the last of them has its reward, the prompt's Stage I counts are stratified with the step's own
    rule (core.counts.stratify); unless it is in the rescue stratum, the rescue sessions end without
    generating anything;
  * otherwise they all generate at once, and at the first correct one the others are stopped: a request
    still queued is cancelled, one running is aborted on its rollout server (vLLM's and the CPU `hf`
    server's `abort_request`) and comes back with the tokens it had, tagged `aero_stopped`, so the trainer
    counts its tokens but gives it no outcome.

Why here and not in the trainer's replay buffer (`trainer.v1.sampler.custom_sampler`) or its wrapper:
the driver sees a prompt's outcomes only by polling TransferQueue, and it holds no connection to the
rollout servers; the worker sees each rollout the moment its reward is computed and holds the client
that routed the request, so a rescue starts and stops without a poll's delay or a round trip.

Timing tags for the trainer's `aero/rescue_tail_s`: `aero_stage1_done_s` on the prompt's last Stage I
rollout and `aero_rescue_done_s` on each rescue rollout (wall-clock seconds, time.time()).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass, field

import ray
import transfer_queue as tq

from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ
from verl.workers.rollout.llm_server import LLMServerClient

from aero_verl.core.counts import Stratum, stratify

logger = logging.getLogger(__name__)

RESCUE_ALLOWANCE_COLUMN = "__aero_rescue_n__"
_session = contextvars.ContextVar("aero_rescue_session", default=None)


class StoppableLLMServerClient(LLMServerClient):
    """verl's LLM client that remembers, per rescue session, which server got its request and under which
    id, so the request can be aborted there (verl/workers/rollout/llm_server.py)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._requests: dict[tuple[str, int], dict] = {}

    async def _acquire_server(self, request_id: str, **extra):
        server_id, server = await super()._acquire_server(request_id, **extra)
        session = _session.get()
        if session is not None:
            self._requests[session] = {"server": server}
        return server_id, server

    def _vllm_request_id(self, request_id: str) -> str:
        server_request_id = super()._vllm_request_id(request_id)
        session = _session.get()
        if session is not None and session in self._requests:
            self._requests[session]["request_id"] = server_request_id
        return server_request_id

    def started(self, session: tuple[str, int]) -> bool:
        return "request_id" in self._requests.get(session, {})

    async def abort(self, session: tuple[str, int]) -> bool:
        """Abort the session's request on its server; True if it was still running there."""
        entry = self._requests.get(session, {})
        if "request_id" not in entry:
            return False
        result = await entry["server"].abort_request.remote(entry["request_id"])
        return bool(result.get("aborted", False))

    def forget(self, session: tuple[str, int]) -> None:
        self._requests.pop(session, None)


@dataclass
class PromptRescue:
    """One prompt's barrier-free rescue inside the worker."""

    explore: int
    allowance: int
    stage1_left: int = 0
    stage1_correct: int = 0
    stage1_done: int = 0
    rescue: bool | None = None
    succeeded: bool = False
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    running: dict[int, asyncio.Task] = field(default_factory=dict)
    stopped: set[int] = field(default_factory=set)

    def __post_init__(self):
        self.stage1_left = self.explore


class RescueAgentLoopWorkerImpl(AgentLoopWorkerTQ.__ray_actor_class__):
    """verl's TransferQueue agent-loop worker, running each AERO prompt's Stage I and rescue as one prompt."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if type(self.llm_client) is not LLMServerClient:
            raise TypeError(f"aero.rescue_mode=barrier_free needs verl's LLMServerClient, got "
                            f"{type(self.llm_client).__name__}; use aero.rescue_mode=rounds with this rollout")
        self.llm_client = StoppableLLMServerClient(self.llm_client.config,
                                                   load_balancer_handle=self.llm_client._load_balancer)
        aero = self.config.aero
        self._u_res, self._u_high = float(aero.u_res), float(aero.u_high)
        self._rescues: dict[str, PromptRescue] = {}

    async def _run_prompt(self, prompt: dict, sampling_params: dict, trajectory: dict, trace: bool = False) -> None:
        allowance = prompt.pop(RESCUE_ALLOWANCE_COLUMN, None)
        if allowance is None or trajectory["validate"]:
            return await super()._run_prompt(prompt, sampling_params, trajectory, trace)
        explore, allowance = int(prompt["__rollout_n__"]), int(allowance)
        uid = prompt["uid"]
        self._rescues[uid] = PromptRescue(explore, allowance)
        prompt["__rollout_n__"] = explore + allowance
        try:
            return await super()._run_prompt(prompt, sampling_params, trajectory, trace)
        finally:
            self._rescues.pop(uid, None)

    async def _agent_loop_postprocess(self, output, validate, **kwargs):
        await super()._agent_loop_postprocess(output, validate, **kwargs)
        outputs = output if isinstance(output, list) else [output]
        return outputs[-1].reward_score if outputs else None

    async def _run_agent_loop(self, sampling_params, trajectory, *, agent_name, trace=True, **kwargs):
        state = self._rescues.get(kwargs.get("uid"))
        if state is None:
            return await super()._run_agent_loop(sampling_params, trajectory, agent_name=agent_name, trace=trace,
                                                 **kwargs)
        uid, session = kwargs["uid"], int(kwargs["session_id"])
        if session < state.explore:
            return await self._stage1_session(state, uid, session, sampling_params, trajectory, agent_name, trace,
                                              kwargs)
        return await self._rescue_session(state, uid, session, sampling_params, trajectory, agent_name, trace, kwargs)

    async def _stage1_session(self, state, uid, session, sampling_params, trajectory, agent_name, trace, kwargs):
        reward = None
        try:
            reward = await super()._run_agent_loop(sampling_params, trajectory, agent_name=agent_name, trace=trace,
                                                   **kwargs)
        finally:
            state.stage1_left -= 1
            if reward is not None:
                state.stage1_done += 1
                state.stage1_correct += float(reward) == 1.0
            if state.stage1_left == 0:
                stratum = stratify([state.stage1_correct], [state.stage1_done], self._u_res, self._u_high)[0]
                state.rescue = bool(stratum == Stratum.RESCUE) and state.allowance > 0
                state.decided.set()
                if reward is not None:
                    await tq.async_kv_put(key=f"{uid}_{session}_0", partition_id="train",
                                          tag={"aero_stage1_done_s": time.time()})
        return reward

    async def _rescue_session(self, state, uid, session, sampling_params, trajectory, agent_name, trace, kwargs):
        await state.decided.wait()
        if not state.rescue or state.succeeded:
            return None  # not needed: no request, no trajectory
        key = (uid, session)

        async def generate():
            _session.set(key)
            return await AgentLoopWorkerTQ.__ray_actor_class__._run_agent_loop(
                self, sampling_params, trajectory, agent_name=agent_name, trace=trace, **kwargs)

        task = asyncio.create_task(generate())
        state.running[session] = task
        try:
            reward = await task
        except asyncio.CancelledError:
            if session in state.stopped:
                return None  # stopped before its request reached a server: nothing was generated
            raise
        finally:
            state.running.pop(session, None)
            self.llm_client.forget(key)
        tag = {"aero_rescue_done_s": time.time()}
        if session in state.stopped:
            tag["aero_stopped"] = True
        elif reward is not None and float(reward) == 1.0 and not state.succeeded:
            state.succeeded = True
            await self._stop_siblings(state, uid, session)
        await tq.async_kv_put(key=f"{uid}_{session}_0", partition_id="train", tag=tag)
        return reward

    async def _stop_siblings(self, state: PromptRescue, uid: str, winner: int) -> None:
        for session, task in list(state.running.items()):
            if session == winner or task.done():
                continue
            state.stopped.add(session)
            if self.llm_client.started((uid, session)):
                if not await self.llm_client.abort((uid, session)):
                    state.stopped.discard(session)  # it finished before the abort arrived: a full rollout
            else:
                task.cancel()


RescueAgentLoopWorker = ray.remote(RescueAgentLoopWorkerImpl)


class RescueAgentLoopManager(AgentLoopManagerTQ):
    """verl's TransferQueue agent-loop manager with RescueAgentLoopWorker as its workers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = RescueAgentLoopWorker
