"""Valid task programs for the scripted proposer: varied (loops, helpers, a class, imports,
set and dict outputs), deterministic, fast; each with several inputs (induction)."""

from __future__ import annotations

#: (program, inputs): every input is an argument list of literals.
PROGRAMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("def f(s):\n    return s[::-1].upper()\n", ("'hello'", "'Arena'", "'abc def'", "'x'")),
    ("def f(xs):\n    return sum(x * x for x in xs if x % 2 == 0)\n", ("[1, 2, 3, 4]", "[5, 6]", "[]", "[10, -2, 7]")),
    (("def vowels(s):\n    return sum(ch in 'aeiou' for ch in s.lower())\n\n\n"
     "def f(words):\n    return sorted(words, key=lambda w: (vowels(w), w))\n"),
     ("['banana', 'kiwi', 'apple']", "['sky', 'tree']", "['a', 'b', 'aa']")),
    (("class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n        self.items.append(x)\n\n"
     "    def pop(self):\n        return self.items.pop() if self.items else None\n\n\n"
     "def f(ops):\n    s = Stack()\n    out = []\n    for op in ops:\n        if op == 'pop':\n            out.append(s.pop())\n"
     "        else:\n            s.push(op)\n    return out\n"),
     ("[1, 2, 'pop', 3, 'pop', 'pop']", "['pop', 5]", "[7, 'pop', 'pop']")),
    ("def f(n, m):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, (a + b) % m\n    return a\n",
     ("10, 7", "20, 100", "5, 3", "0, 9")),
    ("def f(text):\n    counts = {}\n    for w in text.split():\n        counts[w] = counts.get(w, 0) + 1\n    return counts\n",
     ("'a b a c b a'", "'one'", "'x y z x'")),
    ("def f(n):\n    steps = 0\n    while n > 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n    return steps\n",
     ("6", "7", "1", "27")),
    ("def f(m):\n    return [list(row) for row in zip(*m)]\n", ("[[1, 2], [3, 4]]", "[[1, 2, 3]]", "[[5], [6], [7]]")),
    (("def f(s):\n    out = []\n    for ch in s:\n        if out and out[-1][0] == ch:\n            out[-1] = (ch, out[-1][1] + 1)\n"
     "        else:\n            out.append((ch, 1))\n    return out\n"), ("'aaabcc'", "'abc'", "'zzzz'")),
    ("from collections import Counter\n\n\ndef f(s):\n    return Counter(s).most_common(2)\n",
     ("'mississippi'", "'aab'", "'hello world'")),
    ("def f(a, b):\n    return set(a) & set(b)\n", ("[1, 2, 3], [2, 3, 4]", "[5], [6]", "'abc', 'cab'")),
    ("def f(xs, k):\n    return [sum(xs[i:i + k]) for i in range(len(xs) - k + 1)]\n",
     ("[1, 2, 3, 4, 5], 2", "[3, 1, 4, 1, 5, 9], 3", "[7], 1")),
)
