"""Simple Negotiation: trades, legality, scoring, determinism, robustness."""

from __future__ import annotations

import numpy as np
import pytest
from arena.agents import make_agent
from arena.envs.spiral.simple_negotiation import RESOURCES, inventory_value, parse_offer

import arena
from arena.policy import Request

ID = "spiral/SimpleNegotiation-v0"


def box(action: str) -> str:
    """A completion stating `action` (a bare answer of more than 5 words is invalid, as in SPIRAL)."""
    return f"\\boxed{{{action}}}"


def _env(seed: int = 0):
    env = arena.make(ID)
    env.reset(seed=seed)
    # fix the state so the scenarios read plainly
    env.inventory = {a: {r: 10 for r in RESOURCES} for a in env.possible_agents}
    env.values = {"player_0": {"Wheat": 5, "Wood": 10, "Sheep": 15, "Brick": 25, "Ore": 40},
                  "player_1": {"Wheat": 6, "Wood": 8, "Sheep": 15, "Brick": 25, "Ore": 32}}
    env.initial_value = {a: env.value(a) for a in env.possible_agents}
    return env


def test_parse_offer() -> None:
    assert parse_offer("[Offer: 2 Wheat, 1 Ore -> 3 Sheep]") == ({"Wheat": 2, "Ore": 1}, {"Sheep": 3})
    assert parse_offer("[offer 2 wheats and 1 ore -> 3 SHEEP]") == ({"Wheat": 2, "Ore": 1}, {"Sheep": 3})
    assert parse_offer("[Offer: 1 Wheat, 1 Wheat -> 1 Ore.]") == ({"Wheat": 2}, {"Ore": 1})
    for bad in ("[Offer: 2 Wheat]", "[Offer: 0 Wheat -> 1 Ore]", "[Offer: 2 Gold -> 1 Ore]",
                "[Offer: 2 Wheat -> 1 Wheat]", "[Offer: two Wheat -> 1 Ore]", "[Offer: ٣ Wheat -> 1 Ore]",
                "[Offer: 2 Wheat -> 1 Ore] please", "[Offer: 1234567 Wheat -> 1 Ore]", "[Accept]"):
        assert parse_offer(bad) is None, bad


def test_accepted_trade_moves_resources_and_values() -> None:
    env = _env()
    env.step("\\boxed{[Offer: 8 Wheat -> 1 Ore]}")
    assert env.offer["from"] == "player_0" and "offers you: 8 Wheat for your 1 Ore" in env.observe("player_1")
    env.step("\\boxed{Accept}")
    assert env.inventory["player_0"] == {"Wheat": 2, "Wood": 10, "Sheep": 10, "Brick": 10, "Ore": 11}
    assert env.inventory["player_1"] == {"Wheat": 18, "Wood": 10, "Sheep": 10, "Brick": 10, "Ore": 9}
    assert env.change("player_0") == -8 * 5 + 40 and env.change("player_1") == 8 * 6 - 32
    assert env.value("player_1") == inventory_value(env.inventory["player_1"], env.values["player_1"])
    assert env.offer is None and not env.done
    for _ in range(8):  # the rest of the 10 turns: offers refused
        env.step(box("[Offer: 1 Wood -> 1 Sheep]") if env.offer is None else "[Deny]")
    assert env.done and env.outcome["reason"] == "win" and env.outcome["winner"] == "player_1"
    assert env.outcome["rewards"] == {"player_0": -1.0, "player_1": 1.0}
    assert env.outcome["value_change"] == {"player_0": 0, "player_1": 16}
    assert env.terminations == {"player_0": True, "player_1": True}


def test_no_trade_is_a_draw() -> None:
    env = _env()
    for _ in range(10):
        env.step(box("[Offer: 1 Wood -> 1 Sheep]") if env.offer is None else "[Deny]")
    assert env.outcome["reason"] == "draw" and env.outcome["rewards"] == {"player_0": 0.0, "player_1": 0.0}


@pytest.mark.parametrize("first, second", [
    ("[Offer: 11 Wheat -> 1 Ore]", None),        # offers more than it holds
    ("[Accept]", None),                           # accept without an offer
    ("[Deny]", None),                             # deny without an offer
    ("Let us trade wheat for ore", None),         # free text
    ("[Offer: 1 Wheat -> 11 Ore]", "[Accept]"),   # accepting without the asked resources
])
def test_invalid_moves(first: str, second: str | None) -> None:
    env = _env()
    offender = "player_0"
    env.step(box(first))
    if second is not None:
        offender = "player_1"
        assert not env.done
        env.step(second)
    assert env.outcome["reason"] == "invalid_move" and env.outcome["invalid_move_by"] == offender
    assert env.outcome["rewards"][offender] == -1.5
    assert sum(env.outcome["rewards"].values()) == -1.0


def test_counter_offer_replaces_pending_offer() -> None:
    env = _env()
    env.step(box("[Offer: 8 Wheat -> 1 Ore]"))
    env.step(box("[Offer: 2 Ore -> 5 Sheep, 1 Wood]"))
    assert env.offer == {"from": "player_1", "give": {"Ore": 2}, "get": {"Sheep": 5, "Wood": 1}}
    assert "Player 1 rejected the trade offer." in env.log
    env.step("[Accept]")
    assert env.inventory["player_0"]["Ore"] == 12 and env.inventory["player_1"]["Sheep"] == 15


def _play(seed: int, agent_seed: int) -> tuple[list[str], dict]:
    env = arena.make(ID)
    env.reset(seed=seed)
    agent = make_agent("heuristic", seed=agent_seed)
    texts = []
    while not env.done:
        role = env.agent_selection
        request = Request(ID, role, env.observe(role), env.prompt(role), env.legal_actions(role), env)
        texts.append(env.observe(role) + agent.act([request])[0].text)
        env.step(texts[-1][len(env.observe(role)):])
    return texts, env.outcome


def test_deterministic_under_seed_and_heuristic_is_legal() -> None:
    assert _play(5, 1) == _play(5, 1)
    a, b = arena.make(ID), arena.make(ID)
    a.reset(seed=1)
    b.reset(seed=2)
    assert (a.inventory, a.values) != (b.inventory, b.values)
    for agent in a.possible_agents:
        assert all(5 <= a.values[agent][r] <= 40 and 5 <= a.inventory[agent][r] <= 25 for r in RESOURCES)
    accepted = 0
    for seed in range(40):
        texts, outcome = _play(seed, seed)
        assert outcome["reason"] in ("win", "draw") and len(texts) == 10
        accepted += sum(t.endswith("{[Accept]}") for t in texts)
    assert accepted > 0  # the heuristic does trade with itself


def test_fuzz_never_crashes() -> None:
    rng = np.random.default_rng(0)
    pieces = ["[", "]", "Offer", "offer:", "->", "Accept", "Deny", ",", " and ", "\\boxed{", "}", " ",
              "Wheat", "Ore", "Sheeps", "0", "3", "25", "999999", "9" * 50, "٣", "\n", "é", "{", "-"]
    env = arena.make(ID)
    for episode in range(300):
        env.reset(seed=episode)
        while not env.done:
            if rng.random() < 0.5 and env.offer is None:
                env.step(f"\\boxed{{[Offer: {int(rng.integers(1, 30))} {RESOURCES[int(rng.integers(5))]} -> 1 Ore]}}")
            else:
                env.step("".join(rng.choice(pieces, size=int(rng.integers(0, 12)))))
            for agent in env.possible_agents:
                assert isinstance(env.observe(agent), str)
        assert set(env.outcome["rewards"]) == {"player_0", "player_1"}
