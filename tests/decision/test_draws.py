"""The decision's bootstrap draws: a mean over training seeds, seeds paired across variants."""

from __future__ import annotations

import numpy as np

from dtmerge.decision.draws import X_AXIS, Plane, draw
from dtmerge.results.records import TaskResult, VariantResult

ITEMS = 200


def variant(name: str, seed: int, instr: np.ndarray, know: np.ndarray) -> VariantResult:
    tasks = {t: TaskResult(t, "acc", float(v.mean()), None, len(v), cat,
                           items={i: float(x) for i, x in enumerate(v)})
             for t, cat, v in (("follow", "instruction", instr), ("facts", "knowledge", know))}
    return VariantResult(name, None, None, {}, tasks, seed=seed)


def replicates(shift: float, seeds=(0, 1, 2)) -> dict[str, list[VariantResult]]:
    """sft and a point derived from it, three training seeds whose levels differ a lot
    (0.2, 0.5, 0.8) while the derived point follows its own seed's SFT item for item."""
    rng = np.random.default_rng(0)
    out: dict[str, list[VariantResult]] = {"sft": [], "point": []}
    for k, level in zip(seeds, (0.2, 0.5, 0.8)):
        instr = (rng.random(ITEMS) < level).astype(float)
        know = (rng.random(ITEMS) < 0.5).astype(float)
        out["sft"].append(variant("sft", k, instr, know))
        moved = instr.copy()
        moved[: int(shift * ITEMS)] = 1.0  # the point answers a few more items
        out["point"].append(variant("point", k, moved, know))
    return out


def spread(reps) -> float:
    d = draw(reps, ["follow"], [Plane("knowledge", ("facts",))], n_boot=800, seed=0)
    diff = d.of(X_AXIS, "point")[1:] - d.of(X_AXIS, "sft")[1:]
    return float(np.percentile(diff, 97.5) - np.percentile(diff, 2.5))


def test_variants_of_the_same_training_seed_are_drawn_together():
    paired = spread(replicates(0.05))
    # the same replicates with the seed labels lost (all 0): each variant draws its own seed
    unpaired_reps = {n: [VariantResult(r.name, None, None, {}, r.tasks) for r in reps]
                     for n, reps in replicates(0.05).items()}
    unpaired = spread(unpaired_reps)
    print(f"95% width of point - sft: paired {paired:.3f}, unpaired {unpaired:.3f}")
    assert paired < 0.1 < unpaired  # the seed spread (0.2-0.8) cancels only when paired


def test_a_variant_missing_a_seed_draws_among_its_own():
    reps = replicates(0.05)
    reps["point"] = reps["point"][:2]  # seed 2 never trained for this variant
    d = draw(reps, ["follow"], [Plane("knowledge", ("facts",))], n_boot=400, seed=0)
    assert d.seeds == {"sft": 3, "point": 2}
    levels = {round(float(x), 2) for x in d.of(X_AXIS, "point")[1:]}
    assert max(levels) < 0.7  # never seed 2's level (~0.8): its own two seeds only


def test_a_draw_is_a_mean_over_resampled_seeds_centred_on_the_observed_mean():
    reps = replicates(0.0)
    d = draw(reps, ["follow"], [Plane("knowledge", ("facts",))], n_boot=2000, seed=0)
    x = d.of(X_AXIS, "sft")
    per_seed = [r.tasks["follow"].score for r in reps["sft"]]
    assert abs(x[0] - np.mean(per_seed)) < 1e-12  # draw 0: the mean over seeds
    # draws are means of three resampled seeds, not single seeds: values between the seed
    # levels are common (a single-seed draw would sit near 0.2, 0.5 or 0.8)
    middle = np.mean((x[1:] > 0.3) & (x[1:] < 0.4) | (x[1:] > 0.6) & (x[1:] < 0.7))
    assert middle > 0.3
    assert abs(np.median(x[1:]) - x[0]) < 0.05
