"""SPIRAL's zero-sum games: TicTacToe, Kuhn Poker and Simple Negotiation (training), Pig Dice and
Liar's Dice (its out-of-distribution evaluation games)."""
