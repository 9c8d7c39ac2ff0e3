"""SPICE corpus self-play env `spice/Corpus-v0`; the manual is `arena.envs.spice.env`'s
docstring. `equivalent` and `letter` (answer equivalence), `load_corpus` and `summarize_spice`
(the play summary) are public."""

from arena.envs.spice.answers import equivalent, letter, number
from arena.envs.spice.corpus import build_stdlib_corpus, load_corpus
from arena.envs.spice.env import SpiceCorpus, challenger_reward, parse_task, summarize_spice

__all__ = ["SpiceCorpus", "build_stdlib_corpus", "challenger_reward", "equivalent", "letter", "load_corpus", "number",
           "parse_task", "summarize_spice"]
