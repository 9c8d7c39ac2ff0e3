"""The rollout engine: batching across episodes and seats, seating, records."""

from __future__ import annotations

import pytest
from arena.agents import Completion, HeuristicAgent, RandomAgent, make_agent

from arena import ArenaError
from arena.metrics import summarize, summarize_agents
from arena.rollout import play


class CountingAgent(RandomAgent):
    """A random agent that records the size of every batch it is asked for."""

    def __init__(self, seed=0):
        super().__init__(seed=seed)
        self.batches: list[list[str]] = []

    def act(self, requests):
        self.batches.append([r.role for r in requests])
        return super().act(requests)


def test_one_generation_call_per_tick_for_all_episodes_and_seats():
    agent = CountingAgent()
    episodes = play("spiral/TicTacToe-v0", [agent], 64, concurrency=64)
    assert len(agent.batches[0]) == 64  # every episode's first turn in one call
    assert len(agent.batches) <= 9  # at most 9 ticks: one per move of the longest game
    assert sum(len(b) for b in agent.batches) == sum(len(e.turns) for e in episodes)


def test_two_agents_each_get_their_seats_batched():
    a, b = CountingAgent(1), CountingAgent(2)
    play("spiral/KuhnPoker-v0", [a, b], 32, concurrency=16, swap_seats=True)
    # with swapped seats, one tick mixes both roles in the same agent's batch
    assert any(len(set(batch)) == 2 for batch in a.batches)


def test_swap_seats_rotates_the_seating():
    episodes = play("spiral/TicTacToe-v0", [RandomAgent(0), HeuristicAgent()], 10, swap_seats=True)
    seatings = [ep.agents["player_0"] for ep in episodes]
    assert seatings == ["random", "heuristic"] * 5
    per_agent = summarize_agents(episodes)
    assert per_agent["heuristic"]["loss_rate"] == 0.0 and per_agent["heuristic"]["episodes"] == 10


def test_turn_records_and_rewards():
    ep = play("spiral/KuhnPoker-v0", [RandomAgent(0), HeuristicAgent(0)], 1, seed=4)[0]
    assert ep.agents == {"player_0": "random", "player_1": "heuristic"}
    assert ep.turns[0].role == "player_0" and ep.turns[0].agent == "random"
    assert all(t.legal for t in ep.turns) and all(t.action.startswith("[") for t in ep.turns)
    assert sum(ep.rewards.values()) == 0  # zero-sum
    for t in ep.turns:
        assert t.reward == ep.rewards[t.role]  # gamma = 1: the role's return on each of its turns
    assert "Available Moves" in ep.turns[0].observation


def test_results_do_not_depend_on_concurrency_for_deterministic_agents():
    a = play("spiral/TicTacToe-v0", [HeuristicAgent(), HeuristicAgent()], 5, concurrency=1)
    b = play("spiral/TicTacToe-v0", [HeuristicAgent(), HeuristicAgent()], 5, concurrency=5)
    assert [e.rewards for e in a] == [e.rewards for e in b]
    assert [[t.completion for t in e.turns] for e in a] == [[t.completion for t in e.turns] for e in b]


def test_seating_errors():
    with pytest.raises(ArenaError, match="3 agents given for 2 roles"):
        play("spiral/TicTacToe-v0", [RandomAgent()] * 3, 1)
    with pytest.raises(ArenaError, match=r"no agent for roles \['player_1'\]"):
        play("spiral/TicTacToe-v0", {"player_0": RandomAgent()}, 1)


def test_summary_rates_add_up():
    episodes = play("spiral/SimpleNegotiation-v0", [RandomAgent(3)], 40)
    for s in summarize(episodes).values():
        assert s["win_rate"] + s["draw_rate"] + s["loss_rate"] == pytest.approx(1.0)
    # random plays valid moves (offers included); a garbage-writing seat is seen as invalid
    assert max(s["invalid_move_rate"] for s in summarize(episodes).values()) == 0
    garbage = type("Garbage", (), {"name": "garbage", "act": lambda self, reqs: [Completion(text="hmm") for _ in reqs]})()
    episodes = play("spiral/SimpleNegotiation-v0", [RandomAgent(3), garbage], 10)
    assert summarize(episodes)["player_1"]["invalid_move_rate"] == 1.0


def test_role_metrics_of_a_training_batch():
    from arena.metrics import role_metrics
    from arena.samples import Sample

    env_id = "spiral/KuhnPoker-v0"
    episodes = play(env_id, [RandomAgent(1), HeuristicAgent(2)], 20, swap_seats=True)

    def sample(role: str, advantage: float | None, tokens: int, truncated: bool = False) -> Sample:
        return Sample(env_id=env_id, role=role, episode=0, prompt_ids=[1], completion_ids=[2] * tokens, logprobs=None,
                      reward=None if advantage is None else 1.0, advantage=advantage, truncated=truncated)

    samples = [sample("player_0", 1.0, 2), sample("player_0", None, 4, truncated=True), sample("player_1", -0.5, 3)]
    everyone = role_metrics(episodes, samples, baselines={f"{env_id}|player_0": 0.25})
    assert everyone["KuhnPoker-v0/player_0/win_rate"] == summarize(episodes)["player_0"]["win_rate"]
    assert everyone["KuhnPoker-v0/player_0/advantage_mean"] == 1.0  # the masked sample left out
    assert everyone["KuhnPoker-v0/player_0/completion_tokens"] == 3.0  # but its tokens counted
    assert everyone["KuhnPoker-v0/player_0/truncated_rate"] == 0.5
    assert everyone["KuhnPoker-v0/player_1/truncated_rate"] == 0.0
    assert everyone["KuhnPoker-v0/player_0/rae_baseline"] == 0.25
    assert "KuhnPoker-v0/player_1/rae_baseline" not in everyone
    # against a fixed opponent: each role's outcomes over the episodes the model played it in
    mine = role_metrics(episodes, samples, model="random")
    seated = [e for e in episodes if e.agents["player_1"] == "random"]
    assert 0 < len(seated) < len(episodes)
    assert mine["KuhnPoker-v0/player_1/loss_rate"] == summarize(seated)["player_1"]["loss_rate"]
    assert mine["KuhnPoker-v0/player_1/loss_rate"] != everyone["KuhnPoker-v0/player_1/loss_rate"]


def test_summaries_leave_out_a_role_whose_turns_were_all_masked_as_infra():
    """The loss and the estimators leave an infra-masked sample out; the logged mean return
    and win/draw/loss rates once counted it as a return of 0 and a draw (0.333 for 0.5)."""
    from arena.episode import Episode, Turn
    from arena.metrics import mean_return_se, role_metrics
    from arena.samples import assign_advantages, collect

    def episode(seed, reward, infra):
        turn = Turn(index=0, role="proposer", agent="model", observation="", completion="x", reward=reward,
                    prompt_ids=[1, 2], token_ids=[3], logprobs=[-0.1],
                    info={"task_type": "deduction", **({"infra": True} if infra else {})})
        return Episode(env_id="azr/Deduction-v0", seed=seed, agents={"proposer": "model"}, turns=[turn],
                       rewards={"proposer": reward}, outcome={"reason": "infra" if infra else "verified"})

    episodes = [episode(0, 0.5, False), episode(1, 0.25, False), episode(2, 0.0, True)]
    samples = collect(episodes, "model")
    assign_advantages(samples, {}, {})
    assert [s.reward for s in samples] == [0.5, 0.25, None]
    logged = role_metrics(episodes, samples)
    assert logged["Deduction-v0/proposer/mean_return"] == 0.375
    assert logged["Deduction-v0/proposer/draw_rate"] == 0.0
    assert summarize(episodes)["proposer"]["episodes"] == 2
    assert summarize_agents(episodes)["model"]["mean_return"] == 0.375
    assert mean_return_se(episodes, "model") == mean_return_se(episodes[:2], "model")
    # one baseline per task type (the first sample's alone was logged)
    for s, ttype in zip(samples, ("deduction", "abduction", "deduction"), strict=True):
        s.task_type = ttype
    baselines = {"azr/Deduction-v0|proposer|deduction": 0.5, "azr/Deduction-v0|proposer|abduction": -0.25}
    logged = role_metrics(episodes, samples, baselines=baselines)
    assert logged["Deduction-v0/proposer/rae_baseline/deduction"] == 0.5
    assert logged["Deduction-v0/proposer/rae_baseline/abduction"] == -0.25
    one_type = role_metrics(episodes[1:2], samples[1:2], baselines=baselines)  # a column keeps its meaning
    assert one_type["Deduction-v0/proposer/rae_baseline/abduction"] == -0.25
    assert "Deduction-v0/proposer/rae_baseline" not in one_type
    # a role that never acted in an env crediting each turn (the solver after an invalid
    # proposal) has no score either; a game's seat that never moved keeps its win
    invalid = play("azr/Deduction-v0", [make_agent("scripted:invalid=1.0", seed=0)], 2, seed=0,
                   env_kwargs={"n": 2, "sandbox": "process"})
    assert summarize(invalid)["proposer"]["episodes"] == 2 and summarize(invalid)["solver"]["episodes"] == 0
    class Invalid(RandomAgent):
        name = "invalid"

        def act(self, requests):
            return [Completion(text="no move at all") for _ in requests]

    kuhn = play("spiral/KuhnPoker-v0", [Invalid(0), RandomAgent(1)], 4, seed=0)
    assert [len(e.turns) for e in kuhn] == [1] * 4 and summarize(kuhn)["player_1"]["win_rate"] == 1.0
    # every one masked: the role is listed with no episode, and no outcome is logged
    assert summarize(episodes[2:])["proposer"]["episodes"] == 0
    assert "Deduction-v0/proposer/mean_return" not in role_metrics(episodes[2:], samples[2:])


def test_duplicate_deals_play_each_deal_from_both_seats():
    episodes = play("spiral/KuhnPoker-v0", [HeuristicAgent(1), RandomAgent(2)], 40, seed=7, swap_seats=True,
                    duplicate=True)
    for first, second in zip(episodes[::2], episodes[1::2], strict=True):
        assert first.seed == second.seed == 7 + first.metadata["index"] // 2
        assert first.agents == {"player_0": "heuristic", "player_1": "random"}
        assert second.agents == {"player_0": "random", "player_1": "heuristic"}
        deal = [line for line in first.turns[0].observation.splitlines() if "Your card is" in line]
        assert deal == [line for line in second.turns[0].observation.splitlines() if "Your card is" in line]
    from arena.replay import verify

    assert all(verify(ep) == [] for ep in episodes)  # each episode replays from the seed it records
    with pytest.raises(ArenaError, match="swap_seats"):
        play("spiral/KuhnPoker-v0", [RandomAgent(1)], 2, duplicate=True)


def test_mean_return_se_counts_a_duplicate_deal_once():
    import math

    from arena.episode import Episode
    from arena.metrics import mean_return_se

    def ep(seed: int, first: str, r0: float) -> Episode:
        second = "b" if first == "a" else "a"
        return Episode("spiral/KuhnPoker-v0", seed, agents={"player_0": first, "player_1": second},
                       rewards={"player_0": r0, "player_1": -r0})

    # seeds 1, 2, 3 each from both seats: a's means per seed 1.5, -0.5, 0.5 -> sd 1, se 1 / sqrt(3)
    episodes = [ep(1, "a", 2.0), ep(1, "b", -1.0), ep(2, "a", -1.0), ep(2, "b", 0.0), ep(3, "a", 1.0), ep(3, "b", 0.0)]
    assert mean_return_se(episodes, "a") == pytest.approx(1 / math.sqrt(3))
    assert mean_return_se(episodes, "b") == pytest.approx(1 / math.sqrt(3))
    # one seed per episode: the usual sd / sqrt(n) (returns 2, -1, 1: sd sqrt(7/3))
    assert mean_return_se([ep(1, "a", 2.0), ep(2, "a", -1.0), ep(3, "a", 1.0)], "a") == pytest.approx(math.sqrt(7 / 3 / 3))
    assert math.isnan(mean_return_se(episodes[:2], "a"))


def test_duplicate_deals_cancel_the_cards_out_of_an_evaluation():
    """The Nash policy against `random` over 64 hands, at 30 base seeds: with each deal
    played from both seats its mean return varies about half as much as with independent
    deals (measured sd 0.11 against 0.20 over 60 seeds)."""
    import statistics

    from arena.metrics import summarize_agents

    def spread(duplicate: bool) -> float:
        returns = []
        for i in range(30):
            episodes = play("spiral/KuhnPoker-v0", [HeuristicAgent(i), RandomAgent(i + 1)], 64, seed=1000 * i,
                            swap_seats=True, duplicate=duplicate)
            returns.append(summarize_agents(episodes)["heuristic"]["mean_return"])
        return statistics.stdev(returns)

    assert spread(True) < 0.75 * spread(False)


def test_mixed_envs_share_each_tick_and_follow_the_weights():
    from arena.rollout import env_schedule

    agent = CountingAgent()
    ids = ["spiral/TicTacToe-v0", "spiral/KuhnPoker-v0"]
    episodes = play(ids, [agent], 30, env_weights=[2, 1], concurrency=30, seed=5)
    assert [e.env_id for e in episodes].count("spiral/TicTacToe-v0") == 20
    assert len(agent.batches[0]) == 30  # first turns of both envs in one call
    assert env_schedule(ids, [2, 1], 30, 5) == env_schedule(ids, [2, 1], 30, 5)
    with pytest.raises(ArenaError, match="weights"):
        env_schedule(ids, [1, -1], 4, 0)


def test_mixed_envs_with_an_opponent_balance_the_seats_of_each_env():
    """By the episode index, the random order of the envs gave one env's seats 17/15 in a
    batch, the same every step (the order repeats); by each env's own count, every env's
    seats split evenly over the run, and a batch split in shares seats each episode alike."""
    from collections import Counter

    from arena.rollout import env_schedule

    ids = ["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"]
    seats: Counter = Counter()
    for step in range(2):
        episodes = play(ids, [RandomAgent(1), HeuristicAgent(2)], 64, seed=0, swap_seats=True, start_index=64 * step,
                        env_weights=[1.0, 2.0])  # 21 and 43 episodes: odd counts, evened out over two steps
        seats.update((e.env_id, e.agents["player_0"]) for e in episodes)
    assert seats == {(e, a): n for e, n in zip(ids, (21, 43)) for a in ("random", "heuristic")}
    whole = play(ids, [RandomAgent(1), HeuristicAgent(2)], 30, seed=3, swap_seats=True, start_index=30)
    schedule = env_schedule(ids, None, 30, 3)
    shares = [e for offset, count in ((0, 13), (13, 17)) for e in
              play(ids, [RandomAgent(1), HeuristicAgent(2)], count, seed=3, swap_seats=True, start_index=30 + offset,
                   schedule=schedule, schedule_offset=offset)]
    assert [(e.env_id, e.agents) for e in shares] == [(e.env_id, e.agents) for e in whole]


def test_writer_gets_episodes_in_index_order(tmp_path):
    from arena.store import EpisodeWriter, read_episodes

    with EpisodeWriter(tmp_path) as writer:
        play("spiral/TicTacToe-v0", [RandomAgent(3)], 40, concurrency=7, writer=writer, start_index=10)
    indices = [e.metadata["index"] for e in read_episodes(tmp_path)]
    assert indices == list(range(10, 50))


def _events(monkeypatch, cls):
    """Record the order of `reset` and `step` calls on `cls`."""
    events: list[str] = []
    reset, step = cls.reset, cls.step
    monkeypatch.setattr(cls, "reset", lambda self, seed=None, options=None: (events.append("reset"), reset(self, seed, options))[1])
    monkeypatch.setattr(cls, "step", lambda self, action: (events.append("step"), step(self, action))[1])
    return events


def _record(episodes):
    return [(e.seed, e.env_id, e.rewards, e.outcome, [(t.observation, t.completion, t.reward) for t in e.turns])
            for e in episodes]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_games_reset_upcoming_episodes_back_to_back_and_play_the_same(monkeypatch, concurrency):
    from arena.envs.spiral.kuhn_poker import KuhnPoker

    import arena.rollout

    events = _events(monkeypatch, KuhnPoker)
    eps = play("spiral/KuhnPoker-v0", [RandomAgent(seed=2)], 20, seed=4, concurrency=concurrency)
    assert events[:arena.rollout.RESET_AHEAD] == ["reset"] * arena.rollout.RESET_AHEAD
    monkeypatch.setattr(arena.rollout, "RESET_AHEAD", 1)
    events.clear()
    one = play("spiral/KuhnPoker-v0", [RandomAgent(seed=2)], 20, seed=4, concurrency=concurrency)
    assert events[:concurrency + 1] == ["reset"] * concurrency + ["step"]
    assert _record(eps) == _record(one)


def test_an_env_with_shared_reset_state_is_reset_only_when_its_episode_starts(monkeypatch):
    # an env whose reset reads state shared across episodes (AZR's task buffer) must see
    # the episodes before it finished: one reset, then that episode's steps
    from arena.envs.spiral.kuhn_poker import KuhnPoker

    monkeypatch.setattr(KuhnPoker, "independent_reset", False)
    events = _events(monkeypatch, KuhnPoker)
    play("spiral/KuhnPoker-v0", [RandomAgent(seed=2)], 10, seed=4, concurrency=1)
    assert "reset reset" not in " ".join(events) and events.count("reset") == 10


def test_a_policy_that_breaks_the_protocol_is_one_line():
    """Plain strings from act() were an AttributeError deep in the rollout; a policy without
    a name, another."""

    class Strings:
        name = "strings"

        def act(self, requests):
            return ["[check]" for _ in requests]

    class Nameless:
        def act(self, requests):
            return []

    with pytest.raises(ArenaError, match=r"agent 'strings' returned a str where act\(\) returns arena.policy.Completion"):
        play("spiral/KuhnPoker-v0", [Strings()], 2)
    with pytest.raises(ArenaError, match=r"is not a Policy: give it a `name` \(str\) and `act\(requests\)`"):
        play("spiral/KuhnPoker-v0", [Nameless()], 2)
