"""Tic-tac-toe, as SPIRAL plays it (`spiral/TicTacToe-v0`).

## Description
Two seats of one model take turns marking a 3x3 board; three in a row wins. The board
rules are plain functions (`winner`, `free_cells`, `minimax`); the env renders them to
text and parses moves.

## Roles
- `player_0`: plays X and moves first.
- `player_1`: plays O.
Protocol graph: player_0 -> player_1 -> player_0.

## Observation
TextArena's text: the rules, the seat's mark, the board with free cells numbered 0-8
(row-major), the moves so far, and `Available Moves: '[0]', '[4]', ...`.

## Actions
`[n]` for a free cell n. The completion's last `\\boxed{n}` (or a short bare answer)
is normalised to `[n]`; anything else, or an occupied cell, is an invalid move.

## Rewards
Winner +1, loser -1, draw 0. An invalid move ends the game: -1.5 to its author and +0.5 to
the opponent with `mode="train"`, -1/+1 with `mode="eval"`.

## Episode end
Three in a row, a full board (draw), an invalid move, or `max_turns` moves (draw).

## Arguments
- `mode`: "train" (default) or "eval" (invalid-move rewards).
- `max_turns`: turn cap, default 50 (never reached by legal play).
- `render_mode`: None or "ansi".
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from arena.game import ZeroSumGame

Board = tuple[str, ...]  # 9 cells, "X", "O" or ""
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
MARKS = ("X", "O")


def winner(board: Board) -> str | None:
    """The mark with three in a row, or None."""
    for a, b, c in LINES:
        if board[a] and board[a] == board[b] == board[c]:
            return board[a]
    return None


def free_cells(board: Board) -> list[int]:
    return [i for i, cell in enumerate(board) if not cell]


@functools.cache
def minimax(board: Board, mark: str) -> tuple[int, int | None]:
    """(value for `mark` to move: +1 win, 0 draw, -1 loss; best cell) under perfect play.

    Among equally good cells the lowest index is chosen, so the heuristic is deterministic.
    """
    won = winner(board)
    if won is not None:
        return (1 if won == mark else -1), None
    cells = free_cells(board)
    if not cells:
        return 0, None
    other = "O" if mark == "X" else "X"
    best_value, best_cell = -2, None
    for cell in cells:
        child = board[:cell] + (mark,) + board[cell + 1 :]
        value = -minimax(child, other)[0]
        if value > best_value:
            best_value, best_cell = value, cell
    return best_value, best_cell


@functools.cache
def _free_actions(board: Board) -> tuple[str, ...]:
    """The legal actions `[i]` on `board` (cached: at most 3^9 boards)."""
    return tuple(f"[{i}]" for i in free_cells(board))


@functools.cache
def render_board(board: Board) -> str:
    """TextArena's board drawing (cached: at most 3^9 boards)."""
    rows = []
    for r in range(3):
        rows.append("|".join(f" {board[r * 3 + c] or r * 3 + c} " for c in range(3)))
    return "\n---+---+---\n".join(rows)


class TicTacToe(ZeroSumGame):
    """Tic-tac-toe for two seats of one model (SPIRAL's TicTacToe-v0)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "tictactoe", "is_parallelizable": False}

    def _new_game(self, options: dict[str, Any]) -> str:
        self.board: Board = ("",) * 9
        self.history: list[str] = []
        return "player_0"

    def mark(self, agent: str) -> str:
        return MARKS[self.seat(agent)]

    def legal_actions(self, agent: str | None = None) -> list[str]:
        """Free cells for the acting seat; [] for the other seat and after the end."""
        if self.done or (agent is not None and agent != self.agent_selection):
            return []
        return list(_free_actions(self.board))

    def _observe(self, agent: str) -> str:
        seat = self.seat(agent)
        lines = [
            f"You are Player {seat} in Tic Tac Toe.",
            "Your goal is to win three in a row (horizontally, vertically, or diagonally) on the board.",
            "On your turn, you should select the square number (0-8) you want to put your mark in next.",
            "For example, '[4]' places your mark in the center cell of the board.",
            "",
            f"As Player {seat}, you will be '{MARKS[seat]}', while your opponent is '{MARKS[1 - seat]}'.",
        ]
        if self.history:
            lines += ["", *self.history]
        lines += ["", "Current Board:", "", render_board(self.board), "", self.moves_line(self.legal_actions(agent))]
        return "\n".join(lines)

    def _play(self, agent: str, action: str) -> None:
        cell = int(action[1:-1])
        mark = self.mark(agent)
        self.board = self.board[:cell] + (mark,) + self.board[cell + 1 :]
        seat = self.seat(agent)
        self.history.append(f"Player {seat} placed their symbol ({mark}) in cell {cell}.")
        if winner(self.board) == mark:
            self._end({agent: 1.0, self.opponent(agent): -1.0}, winner=agent)
        elif not free_cells(self.board):
            self._end({a: 0.0 for a in self.possible_agents}, winner=None)
        else:
            self.agent_selection = self.opponent(agent)

    def heuristic_action(self, agent: str | None = None, rng: Any = None) -> str:
        """Perfect play by minimax (lowest cell among the best; `rng` unused)."""
        agent = agent or self.agent_selection
        _, cell = minimax(self.board, self.mark(agent))
        return f"[{cell}]"
