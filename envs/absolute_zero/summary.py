"""Absolute Zero's play summary: solve rates, proposer learnability, verifier accuracy and
why proposals were refused, over played episodes (what `arena play` prints)."""

from __future__ import annotations

from typing import Any


def summarize_azr(episodes: Any) -> dict[str, Any]:
    """Solve rate, proposer learnability, verifier accuracy and rejection reasons over
    played episodes: `episodes`, `valid_proposals`, `by_type` (per task type, and `all`:
    episodes, valid, solve_rate, mean_learnability, verifier_accuracy; None when nothing
    was measured) and `rejections` (per kind: count and one example reason)."""
    out: dict[str, Any] = {"episodes": 0, "valid_proposals": 0, "by_type": {}, "rejections": {}}
    raw: dict[str, dict[str, Any]] = {}
    for ep in episodes:
        outcome = ep.outcome or {}
        ttype = (ep.options or {}).get("task_type") or next((t.info.get("task_type") for t in ep.turns), None)
        out["episodes"] += 1
        for key in (ttype, "all"):
            acc = raw.setdefault(key, {"episodes": 0, "valid": 0, "solve": [], "learnability": [], "verifier": []})
            acc["episodes"] += 1
            if outcome.get("reason") != "verified":
                continue
            acc["valid"] += 1
            if outcome.get("solve_rate") is not None:
                acc["solve"].append(outcome["solve_rate"])
                acc["learnability"].append(ep.rewards.get("proposer", 0.0))
            if outcome.get("verifier_agrees") is not None:
                acc["verifier"].append(1.0 if outcome["verifier_agrees"] else 0.0)
        if outcome.get("reason") == "invalid_proposal":
            rej = out["rejections"].setdefault(outcome.get("rejection"), {"count": 0, "example": outcome.get("detail", "")})
            rej["count"] += 1
        elif outcome.get("reason") == "verified":
            out["valid_proposals"] += 1
    names = {"solve": "solve_rate", "learnability": "mean_learnability", "verifier": "verifier_accuracy"}
    for key in sorted(raw, key=lambda k: (k == "all", str(k))):
        acc = raw[key]
        row = {"episodes": acc["episodes"], "valid": acc["valid"]}
        for field, name in names.items():
            row[name] = sum(acc[field]) / len(acc[field]) if acc[field] else None
        out["by_type"][key] = row
    out["rejections"] = dict(sorted(out["rejections"].items(), key=lambda kv: -kv[1]["count"]))
    return out
