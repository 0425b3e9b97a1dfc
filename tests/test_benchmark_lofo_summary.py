"""benchmarks/lofo_summary.py: held-out and trained-on tables from the fold runs' JSON files."""

from __future__ import annotations

import json

from benchmark_module import load_benchmark


def _fold(fold: int, held: dict[str, float], seen: dict[str, float]) -> dict:
    rows = [{"kind": f.split("/")[0], "family": f.split("/")[1], "pixel_ap": ap, "tolerant_ap": ap + 0.1,
             "held_out": is_held} for is_held, fams in ((True, held), (False, seen)) for f, ap in fams.items()]
    return {"fold": fold, "families": rows}


def test_trained_on_comes_from_the_other_fold_or_the_seen_run(tmp_path, capsys):
    # each family held out in one fold and trained on in the other
    runs = [_fold(0, {"ruler/a": 0.2, "ink/c": 0.5}, {"ruler/b": 0.4, "ink/d": 0.7}),
            _fold(1, {"ruler/b": 0.3, "ink/d": 0.6}, {"ruler/a": 0.6, "ink/c": 0.8})]
    paths = []
    for run in runs:
        paths.append(tmp_path / f"f{run['fold']}.json")
        paths[-1].write_text(json.dumps(run))
    summary = load_benchmark("lofo_summary")
    assert summary.main([str(p) for p in paths]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "| ruler | 0.250 (worst a 0.200) | 0.350 (worst a 0.300) | 0.500 (worst b 0.400) |" in table[2]
    assert table[5].startswith("| all | 0.400 | 0.500 | 0.625 | 0.725 |")
    seen = tmp_path / "all.json"
    seen.write_text(json.dumps(_fold(-1, {}, {"ruler/a": 0.9, "ruler/b": 0.9, "ink/c": 0.9, "ink/d": 0.9})))
    assert summary.main([str(p) for p in paths] + ["--seen", str(seen)]) == 0
    assert "| all | 0.400 | 0.500 | 0.900 | 1.000 |" in capsys.readouterr().out
