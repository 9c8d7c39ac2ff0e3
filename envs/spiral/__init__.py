"""SPIRAL's zero-sum games: TicTacToe, Kuhn Poker and Simple Negotiation."""
