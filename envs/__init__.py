"""arena's built-in environments (imported as `arena.envs`); each registers its ids here.

A new env is one file and one `register` call; third-party packages use the entry-point
group `arena.envs` instead of editing this file.
"""

from arena.registry import register

register("spiral/TicTacToe-v0", "arena.envs.spiral.tictactoe:TicTacToe")
register("spiral/KuhnPoker-v0", "arena.envs.spiral.kuhn_poker:KuhnPoker", {"rounds": 1, "scoring": "chips"},
         description="Kuhn Poker, one hand scored in chips: the standard game, with exact exploitability")
register("spiral/KuhnPoker-v1", "arena.envs.spiral.kuhn_poker:KuhnPoker", {"rounds": 5, "scoring": "outcome"},
         description="Kuhn Poker as SPIRAL trains it: five hands, the seat with more chips wins (+1/-1)")
register("spiral/SimpleNegotiation-v0", "arena.envs.spiral.simple_negotiation:SimpleNegotiation", {"max_turns": 10})
register("spiral/PigDice-v0", "arena.envs.spiral.pig_dice:PigDice", {"winning_score": 50})
register("spiral/TruthAndDeception-v0", "arena.envs.spiral.truth_and_deception:TruthAndDeception", {"max_turns": 6})
register("spiral/LiarsDice-v0", "arena.envs.spiral.liars_dice:LiarsDice")
register("azr/Deduction-v0", "arena.envs.absolute_zero.env:AbsoluteZero", {"task_type": "deduction"})
register("azr/Abduction-v0", "arena.envs.absolute_zero.env:AbsoluteZero", {"task_type": "abduction"})
register("azr/Induction-v0", "arena.envs.absolute_zero.env:AbsoluteZero", {"task_type": "induction"})
register("azr/Mixed-v0", "arena.envs.absolute_zero.env:AbsoluteZero", {"task_type": "mixed"})
register("spice/Corpus-v0", "arena.envs.spice.env:SpiceCorpus")
