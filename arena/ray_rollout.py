"""Rollout workers as Ray actors: `arena train --ray-address local|auto|ADDRESS`.

The learner stays in the training process; `--ray-workers` Ray actors play the episodes.
Each actor holds its own model copy and `HFPolicy` (the settings `train()` uses), its own
opponent (with `--opponent`), and its own envs and sandbox pool (whatever
`arena.rollout.play` creates in that process). One training step:

1. the learner puts the current weights in the Ray object store once (`ray.put` of a CPU
   state dict; with LoRA the adapter merged into the base weights, so actors hold plain
   models), and every actor loads them (`load_state_dict`) before it plays;
2. the step's episode indices are cut into contiguous shares, one per actor; an actor plays
   its share with `play(..., start_index=share_start)` (`--concurrency` is the number in
   flight over all actors: each takes its part), so episode i is reset with seed
   `rollout_seed(config) + i` as in the local backend, and in a mixed-env run plays the env
   the whole step's `env_schedule` gives index i (the share's slice is passed to `play`);
3. the learner writes the shares to the run's episode store in index order, each as soon
   as every earlier share is written, and returns the step's episodes in index order.

**Determinism.** An actor's sampling RNG is reseeded for every share from
`(config.seed, share start index)`, a model or scripted opponent's from `config.seed + 1`
and the start index, so a run is reproducible for a given `--ray-workers`, a resumed run
continues exactly (there is no RNG state to checkpoint), and a share played again after a
worker died gives the same episodes. Episodes differ from the local backend's (other RNG
streams, and other batches per generate call), and from a run with another worker count.

**Worker death.** When an actor dies mid-step (killed, out of memory, node lost), it is
replaced by a new actor and only its share is played again, with the same weights, up to
`retries` times per share; then the step fails with an `ArenaError`. A step never returns
a short batch and never writes an episode twice or leaves a gap: shares are written
whole, in order. An error raised by the rollout itself (a bug, a bad env argument) is not
retried: it would fail again.

**Ray.** `local` starts a Ray instance in this process (no dashboard, a small object store,
`num_cpus` = this machine's cores, workers at nice 0: Ray's default 15 starved them on a
machine shared with other jobs) and stops it at `close()`; `auto` joins the cluster started
with `ray start`; anything else is a cluster address (`HOST:PORT` or `ray://HOST:PORT`),
checked with a plain TCP connect first so a wrong address fails in seconds (Ray itself
retries for minutes). A process already connected to Ray (a Ray job, a notebook, the
tests) keeps its connection, whatever the address says. Each actor asks for one CPU, or
a fraction when there are more actors than CPUs (two actors fit on two cores), and runs
torch with one thread (the tiny model is fastest so; more actors rather than more threads);
actors that cannot be placed within `READY_TIMEOUT_S` are a one-line error, not a hang.
Actors see this process's `ARENA_CACHE`, so the `tiny` model is the same folder. Actors
generate on CPU; the nodes need arena installed (`pip install 'selfplay-arena[ray]'`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arena.config import TrainConfig
from arena.env_state import StateMirror, Tail, apply_tail, mirror_folder
from arena.episode import Episode
from arena.errors import ArenaError

RETRIES = 2  # new actors per share before the step fails
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20  # weights of a ~100M-parameter fp32 model, a few times over
CONNECT_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 600.0  # actors placed and built (a cluster may first have to add a node)
ENV_VARS = ("ARENA_CACHE", "ARENA_DEVICE", "HF_HOME", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class Share:
    """A contiguous run of a step's episode indices, played by one worker."""

    worker: int
    start: int  # index of its first episode in the run
    count: int
    offset: int  # position of its first episode in the step


def split(start_index: int, episodes: int, workers: int) -> list[Share]:
    """Cut a step's episodes into `workers` contiguous shares whose sizes differ by at most
    one (the first ones are larger); shares of size 0 are left out."""
    from arena.data_parallel import share_of

    shares = []
    for w in range(workers):
        part = share_of(episodes, w, workers)
        if part.stop > part.start:
            shares.append(Share(w, start_index + part.start, part.stop - part.start, part.start))
    return shares


def share_seed(seed: int, start: int) -> int:
    """The sampling seed of the share starting at episode `start`: both numbers mixed by
    numpy's `SeedSequence`, so neighbouring shares get unrelated streams."""
    import numpy as np

    return int(np.random.SeedSequence([seed, start]).generate_state(1)[0])


def policy_weights(model: Any) -> dict[str, Any]:
    """The weights an actor loads: a CPU copy of `arena.weights.merged_weights(model)` (for a
    PEFT model the base weights with the active LoRA adapters added in, computed, never
    merged into the trained model, under the base model's own keys)."""
    from arena.weights import merged_weights

    return {k: v.detach().cpu() for k, v in merged_weights(model).items()}  # ray.put copies


def weights_digest(state: dict[str, Any]) -> str:
    """A SHA-256 over a state dict's names and tensor bytes (tests compare copies with it)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ArenaError("--ray-address needs Ray: pip install 'selfplay-arena[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """A TCP connect to HOST:PORT (or ray://HOST:PORT), so a wrong address fails fast."""
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise ArenaError(f"--ray-address {address!r}: give local, auto, or HOST:PORT of the Ray head node")
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ArenaError(f"cannot reach the Ray cluster at {address} ({reason}): start it with `ray start --head` "
                         "there, or use --ray-address local") from None


def connect(address: str) -> bool:
    """Connect this process to Ray as `address` says; True when it called `ray.init` (and
    `close()` must call `ray.shutdown()`), False when Ray was already initialised."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "logging_level": "warning"}
    sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it with sys.exit(15)
    try:
        if address == "local":
            # worker_niceness: Ray runs workers at nice 15 to keep its own daemons responsive;
            # on a machine shared with other jobs that starves the rollout (measured: 6x slower)
            ray.init(address="local", num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                     _system_config={"worker_niceness": 0}, **quiet)
        else:
            if address != "auto":
                _check_reachable(address)
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError) as exc:  # RuntimeError: e.g. the cluster runs another Ray version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "start one with `ray start --head`" if address == "auto" else "check the address"
        raise ArenaError(f"cannot connect to Ray at {address!r} ({first[:160]}): {hint}, "
                         "or use --ray-address local") from None
    finally:
        if sigterm not in (signal.SIG_DFL, None) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, sigterm)  # the CLI's: SIGTERM stops a run like Ctrl-C
    return True


class RolloutWorker:
    """A Ray actor that plays shares of training steps (made remote by `RayRollout`).

    It builds what `train()` builds for the rollout (model, `HFPolicy`, opponent) from the
    run's config, on CPU, with `threads` torch threads.
    """

    def __init__(self, config: dict[str, Any], threads: int):
        import torch
        from transformers.utils import logging as hf_logging

        from arena.agents import is_agent_spec, make_agent
        from arena.agents.hf import HFPolicy, load_model

        torch.set_num_threads(threads)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        hf_logging.disable_progress_bar()  # one "Loading weights" bar per actor, forwarded to the driver
        self.config = cfg = TrainConfig(**config)
        self.model, tokenizer = load_model(cfg.model, device="cpu", chat_template=cfg.chat_template)
        self.policy = HFPolicy(self.model, tokenizer, name="model", max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, top_p=cfg.top_p, constrain=cfg.resolved_constrain(),
                               seed=cfg.seed, share_prefix=cfg.share_prefix, top_k=cfg.top_k, min_p=cfg.min_p,
                               chat_template_kwargs=cfg.chat_template_kwargs)
        self.state_dir = mirror_folder()  # the run's env state as the driver holds it (`arena.env_state`)
        self.opponent = None
        if cfg.opponent:  # as train() builds it
            if is_agent_spec(cfg.opponent):  # random, heuristic, openai:MODEL@URL, ...
                self.opponent = make_agent(cfg.opponent, seed=cfg.seed + 1, chat_template_kwargs=cfg.chat_template_kwargs)
            else:
                opp_model, opp_tokenizer = load_model(cfg.opponent, device="cpu", flag="--opponent",
                                                      chat_template=cfg.chat_template)
                self.opponent = HFPolicy(opp_model, opp_tokenizer, name="opponent", max_new_tokens=cfg.max_new_tokens,
                                         temperature=cfg.temperature, constrain=cfg.resolved_constrain(),
                                         seed=cfg.seed + 1, share_prefix=cfg.share_prefix,
                                         chat_template_kwargs=cfg.chat_template_kwargs)

    def pid(self) -> int:
        """The actor's process id (also: a call that returns once the actor is built)."""
        return os.getpid()

    def remove_state(self) -> None:
        """Remove the actor's mirror of the env state (`ray.kill` runs no exit handlers)."""
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def digest(self) -> str:
        """`weights_digest` of the actor's model (tests: the broadcast arrived)."""
        return weights_digest(self.model.state_dict())

    def play(self, weights: dict[str, Any], config: dict[str, Any], start: int, count: int, seed: int,
             metadata: dict[str, Any], run_name: str, schedule: list[int] | None,
             schedule_offset: int = 0, state: Tail | None = None) -> tuple[list[Episode], float]:
        """Load `weights` and what the run's env state gained (`state`, `arena.env_state`),
        reseed, play episodes `start .. start + count - 1` (entries `schedule_offset` on of
        the step's env `schedule`); returns them in index order and the seconds it took. What to play (envs, their arguments and
        weights, concurrency, seed) comes from the caller's `config` with every call; the
        model, its sampling settings and the opponent are those the actor was built with."""
        from arena.rollout import play, run_env_kwargs

        t0 = time.perf_counter()
        cfg = TrainConfig(**config)
        self.model.load_state_dict(weights)
        apply_tail(self.state_dir, state or {})
        reseed(self.policy, share_seed(cfg.seed, start))
        opponent = self.opponent
        if opponent is not None:
            reseed(opponent, share_seed(cfg.seed + 1, start))
        agents = [self.policy] if opponent is None else [self.policy, opponent]
        episodes = play(
            cfg.env, agents, count, seed=seed,
            env_kwargs=run_env_kwargs(cfg.env, [cfg.env_kwargs.get(e, {}) for e in cfg.env], run_name, self.state_dir),
            env_weights=cfg.env_weights or None, concurrency=min(-(-cfg.concurrency // cfg.ray_workers), count),
            writer=None, run_name=run_name, swap_seats=opponent is not None, start_index=start,
            metadata=metadata, schedule=schedule, schedule_offset=schedule_offset, run_state=False,  # the driver folds
        )
        return episodes, time.perf_counter() - t0


class RayRollout:
    """The `Rollout` of `arena.trainer` on Ray actors (see the module docstring).

    Args:
        config: the run's `TrainConfig` (`ray_address`, `ray_workers` and what the
            rollout plays).
        retries: new actors per share when its actor dies, before the step fails.
    """

    #: the actors sample with an fp32 `HFPolicy` of the broadcast weights (on CPU, no copy in
    #: another dtype): their log-probs are the trained model's, up to the learner's autocast
    generates_with_model = True

    def __init__(self, config: TrainConfig, *, retries: int = RETRIES):
        if not config.ray_address:
            raise ArenaError("RayRollout needs --ray-address local, auto or HOST:PORT")
        if config.backend != "hf":
            raise ArenaError(f"--ray-address plays the rollout with the hf backend on Ray actors; --backend "
                             f"{config.backend} cannot run there yet: drop --ray-address or use --backend hf")
        self.config = config
        self.retries = retries
        self.ray = _import_ray()
        self.restarts = 0
        self.workers: list[Any] = []
        self.connected = connect(config.ray_address)
        try:
            self._options = self._actor_options()
            self.workers = [self._spawn() for _ in range(config.ray_workers)]
            self.mirrors = [StateMirror() for _ in self.workers]  # what each actor holds of the env state
            self._wait_ready(self.workers)
        except BaseException:
            self.close()
            raise

    # -- actors --------------------------------------------------------------------------
    def _actor_options(self) -> dict[str, Any]:
        cpus = float(self.ray.cluster_resources().get("CPU", 1.0))
        share = min(1.0, cpus / self.config.ray_workers)
        self._threads = max(1, int(share))
        env_vars = {"TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(self._threads)}
        env_vars.update({k: os.environ[k] for k in ENV_VARS if k in os.environ})
        return {"num_cpus": share, "runtime_env": {"env_vars": env_vars}}

    def _actor_config(self) -> dict[str, Any]:
        """The config the actors build from, with a `--chat-template` file read here: the text
        travels, so a cluster's node needs no copy of the file."""
        from arena.agents.loading import read_chat_template

        config = self.config.to_dict()
        if config.get("chat_template"):
            config["chat_template"] = read_chat_template(config["chat_template"])
        return config

    def _spawn(self) -> Any:
        actor_class = self.ray.remote(RolloutWorker)
        return actor_class.options(**self._options).remote(self._actor_config(), self._threads)

    def _wait_ready(self, workers: Sequence[Any]) -> None:
        """Wait until every actor is built; an actor that cannot be placed (not enough CPUs)
        or fails to build is a one-line error instead of a hang or a remote traceback."""
        try:
            self.ray.get([w.pid.remote() for w in workers], timeout=READY_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            free = self.ray.available_resources().get("CPU", 0.0)
            raise ArenaError(f"Ray did not start {len(workers)} rollout workers within {READY_TIMEOUT_S:.0f} s "
                             f"(each asks for {self._options['num_cpus']:.2g} CPU, {free:.2g} CPU free): "
                             "use fewer --ray-workers or add nodes") from None
        except self.ray.exceptions.RayError as exc:
            raise ArenaError(f"a Ray rollout worker failed to start: {_last_line(exc)}") from None

    def _replace(self, w: int) -> None:
        """Kill worker `w` (if anything is left of it) and start a new one in its place, ready:
        a replacement Ray cannot place (its node lost, no CPU free elsewhere) is one line
        after `READY_TIMEOUT_S`, not a step that waits forever."""
        self._kill(self.workers[w])
        self.workers[w] = self._spawn()
        self.mirrors[w].reset()
        self.restarts += 1
        try:
            self._wait_ready([self.workers[w]])
        except ArenaError as exc:
            raise ArenaError(f"Ray rollout worker {w} died and could not be replaced: {exc}") from None

    def _kill(self, actor: Any) -> None:
        with contextlib.suppress(self.ray.exceptions.RayError):  # already gone
            self.ray.kill(actor, no_restart=True)

    def _submit(self, share: Share, weights: Any, seed: int, metadata: dict[str, Any], run_name: str,
                schedule: list[int] | None, state_dir: Path) -> Any:
        # the whole step's schedule and the share's place in it: each env's seats rotate over the step
        return self.workers[share.worker].play.remote(weights, self._actor_config(), share.start, share.count, seed,
                                                      metadata, run_name, schedule,
                                                      share.offset if schedule is not None else 0,
                                                      self.mirrors[share.worker].tail(state_dir))

    def pids(self) -> list[int]:
        """Each actor's process id (tests kill one)."""
        return self.ray.get([w.pid.remote() for w in self.workers])

    def digests(self) -> list[str]:
        """Each actor's `weights_digest` (tests)."""
        return self.ray.get([w.digest.remote() for w in self.workers])

    # -- one step ------------------------------------------------------------------------
    def __call__(self, trainer: Any, start_index: int, metadata: dict[str, Any]) -> list[Episode]:
        from arena.rollout import env_schedule
        from arena.trainer import rollout_seed

        ray, cfg = self.ray, self.config
        t0 = time.perf_counter()
        weights = ray.put(policy_weights(trainer.model))
        broadcast = time.perf_counter() - t0
        seed = rollout_seed(cfg)
        schedule = (env_schedule(cfg.env, cfg.env_weights or None, cfg.episodes_per_step, seed)
                    if len(cfg.env) > 1 else None)
        run_name = trainer.run_dir.name
        shares = split(start_index, cfg.episodes_per_step, len(self.workers))
        pending = {self._submit(s, weights, seed, metadata, run_name, schedule, trainer.env_state_dir): (s, 0) for s in shares}
        done: dict[int, list[Episode]] = {}
        seconds: dict[int, float] = {}
        written = 0
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            share, attempt = pending.pop(ref)
            try:
                episodes, seconds[share.worker] = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError) as exc:
                if attempt >= self.retries:
                    raise ArenaError(f"Ray rollout worker {share.worker} died playing episodes {share.start}-"
                                     f"{share.start + share.count - 1} (tried {attempt + 1}x; "
                                     f"{_last_line(exc)}): check memory and the Ray logs, then --resume the run") from None
                self._replace(share.worker)
                pending[self._submit(share, weights, seed, metadata, run_name, schedule, trainer.env_state_dir)] = (share, attempt + 1)
                continue
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, ArenaError):
                    raise exc.cause from None
                raise
            done[share.offset] = _checked(episodes, share)
            while written < len(shares) and shares[written].offset in done:
                trainer.writer.write(done[shares[written].offset])
                written += 1
        del weights
        self._log(trainer, broadcast, seconds)
        return [ep for s in shares for ep in done[s.offset]]

    def _log(self, trainer: Any, broadcast: float, seconds: dict[int, float]) -> None:
        """Per-worker seconds into the trainer's logged metrics (TRL's `_metrics`, as the
        trainer's own rollout metrics), when it has them."""
        metrics = getattr(trainer, "_metrics", None)
        if not isinstance(metrics, dict) or "train" not in metrics:
            return
        metrics["train"]["ray/broadcast_seconds"].append(broadcast)
        metrics["train"]["ray/restarts"].append(float(self.restarts))
        for w, s in sorted(seconds.items()):
            metrics["train"][f"ray/worker{w}_seconds"].append(s)

    def close(self) -> None:
        """Kill the actors (their env-state mirrors removed first); stop Ray (or disconnect)
        if this object connected."""
        if self.workers:  # a dead actor's call fails at once; a few seconds at most for the others
            self.ray.wait([w.remove_state.remote() for w in self.workers], num_returns=len(self.workers), timeout=10)
        for worker in self.workers:
            self._kill(worker)
        self.workers = []
        if self.connected:
            self.connected = False
            self.ray.shutdown()


def _checked(episodes: list[Episode], share: Share) -> list[Episode]:
    """A share's episodes, checked to be exactly its indices in order."""
    got = [ep.metadata.get("index") for ep in episodes]
    if got != list(range(share.start, share.start + share.count)):
        raise ArenaError(f"Ray rollout worker {share.worker} returned episodes {got[:3]}... for "
                         f"{share.start}-{share.start + share.count - 1}: a bug in arena, please report it")
    return episodes


def reseed(agent: Any, seed: int) -> None:
    """Restart an agent's sampling stream from `seed`: an agent with a `reseed` method (the
    hf, vllm and openai agents: their CPU and CUDA streams, or their per-request seeds)
    through it, a scripted agent (random, heuristic, scripted) through its numpy `rng`."""
    import numpy as np

    if callable(getattr(agent, "reseed", None)):
        agent.reseed(seed)
    elif isinstance(getattr(agent, "rng", None), np.random.Generator):
        agent.rng = np.random.default_rng(seed)


def _last_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:200]
