"""The benchmark's table of facts: each method's nominal budget, summary and settings, and the peers.

``NOMINAL[m] = (budget_s, summary, settings)``. The nominal budget is the unit of
:func:`gwf_tutorial.benchmark.run`'s ``budget_s`` (iteration counts scale with ``budget_s / nominal``):
it was set once to the CPU seconds the recommended settings took (``benchmarks/run_all.py``, one
thread) and is kept fixed, so that ``run(m, ..., budget_s=b)`` stays the same computation. ``PEERS``:
the peers' own code on their own toy settings, as the project measured it on a 2-core CPU machine (not
re-run; their sample sizes and protocols are theirs); ``ours`` is the method of the benchmark that
corresponds.

Writes ``gwf_tutorial/results/method_table.json`` (shipped with the package; ``benchmark.run``,
``benchmark.method_info`` and chapter 11 read it through ``benchmark.load_results("method_table")``)::

    python benchmarks/method_table.py
"""

from __future__ import annotations

import json

from _common import DATA

_JKO_NET = "ResidualMLP(d, 64, 2 blocks, identity at init) from N(0, I), batch 256, Adam 1e-3"
_DRIFT_NET = "generator MLP(8 -> d, 64 x 3 SiLU), batch 256, Adam 2e-3"
_GAN = "900 updates, Adam 2e-4, R1 0.4"

# fmt: off
NOMINAL: dict[str, tuple[float, str, str]] = {
    # particle flows (chapters 2 and 3)
    "particle_sw": (2.0, "sliced-W2 particle flow", "100 fresh directions per step, step 1, 150 steps"),
    "particle_energy": (2.5, "MMD particle flow, energy kernel -|x - y|",
                        "step 3 -> 0.5 (geometric), 200 steps"),
    "particle_mmd": (2.0, "MMD particle flow, Gaussian kernel, noise injection",
                     "median bandwidth, step 3, noise 0.5 -> 0 over the first half, 200 steps"),
    "particle_sinkhorn": (5.5, "Sinkhorn-divergence particle flow",
                          "eps 0.05, 20 warm-started Sinkhorn iterations per step, step 1, 12 steps"),
    "particle_kl": (1.5, "KL particle flow (blob velocity, target score)",
                    "Silverman KDE bandwidth, step 0.05 d / E|score|^2, 80 steps"),
    "langevin": (2.0, "unadjusted Langevin algorithm (target score)", "step 0.05 d / E|score|^2, 2000 steps"),
    # explicit f-divergence flows and their published instances (chapter 4)
    "f_flow": (2.0, "explicit KL flow, logistic critic refit every step",
               "step 0.05, 60 steps; critic 32 x 2, 200 then 10 Adam steps (5e-3) per step, R1 0.1"),
    "vgrow": (2.5, "VGrow: KL flow projected on a generator",
              "100 outer steps of 3 particle steps (0.02) and 5 regression steps (1e-2)"),
    "ept": (1.5, "EPT: least-squares ratio, forward Euler particles",
            "step 0.1, 30 steps, R1 1.0, ratio floor 0.1, 10 critic steps per step"),
    "monoflow": (3.0, "MonoFlow particles along h(D) = log sigmoid(D) (non-saturating GAN)",
                 "step 0.05, 80 steps; critic 32 x 2, 200 then 10 Adam steps per step, R1 0.1"),
    "dgflow": (0.5, "DGflow: refine N(0, I) along a fixed discriminator",
               "discriminator 300 Adam steps; 25 steps of 0.1, gamma 0.01 (official defaults)"),
    # parametric JKO for each objective (chapters 4-6)
    "jko_kl": (16.0, "parametric JKO, KL (critic)", f"tau 1, 6 steps x 600, R1 0.4; {_JKO_NET}"),
    "jko_kl_dv": (16.0, "parametric JKO, KL (Donsker-Varadhan critic)", "tau 1, 6 x 600, R1 0.4"),
    "jko_js": (18.0, "parametric JKO, Jensen-Shannon (critic)", "tau 10, 6 x 600, R1 0.4"),
    "jko_chi2": (16.0, "parametric JKO, Pearson chi^2 (critic)", "tau 1, 6 x 600, R1 0.4"),
    "jko_hellinger": (20.0, "parametric JKO, squared Hellinger (critic)", "tau 1, 6 x 600, R1 0.4"),
    "jko_mmd": (24.0, "parametric JKO, MMD^2 U-statistic (5 Gaussian bandwidths)",
                "bandwidths (1/16 .. 1) x median, tau 100, 6 x 450"),
    "jko_w1": (18.0, "parametric JKO, W1 (gradient-penalised critic)",
               "tau 0.1, 6 x 240, 5 critic steps per map step, GP 10"),
    "jko_sinkhorn": (24.0, "parametric JKO, Sinkhorn divergence",
                     "eps 0.1, at most 30 Sinkhorn iterations, tau 10, 6 x 240"),
    "jko_sw": (18.0, "parametric JKO, sliced W2", "100 directions, tau 10, 6 x 600, lr 2e-3"),
    # the GAN switches of the same loop: no transport term (chapter 5)
    "gan": (5.0, "minimax GAN (tau=None, JS critic)", _GAN),
    "gan_ns": (5.0, "non-saturating GAN (tau=None)", _GAN),
    "fgan_kl": (5.0, "f-GAN, KL(nu || rho) (tau=None, symmetric)", _GAN),
    "wgan_gp": (4.5, "WGAN-GP (tau=None, W1 critic)",
                "360 updates x 5 critic steps, GP 10, Adam 1e-4 (0, 0.9)"),
    "mmd_gan": (22.5, "MMD-GAN, learned kernel (tau=None)", "750 updates"),
    "gmmn": (24.0, "generator on a fixed-kernel MMD^2 (tau=None, no critic)",
             "2700 updates, bandwidths (1/16 .. 1) x median"),
    # S-JKO (chapter 7)
    "sjko": (18.0, "S-JKO: semi-dual KL JKO step, reparameterized map",
             "sjko.toy_trainer: tau 1, 6 phases x 600, Adam 1e-3 (cosine), map with a d-dim latent"),
    # drifting models, one per drift field (chapter 8)
    "drift_paper": (6.0, "drifting, the paper's mean-shift field (Laplace, T 0.15)",
                    f"3200 steps; {_DRIFT_NET}"),
    "drift_algorithm2": (6.0, "drifting, Algorithm 2 field (T 0.1)", f"3200 steps; {_DRIFT_NET}"),
    "drift_multi_temperature": (10.5, "drifting, multi-temperature normalised field",
                                f"2400 steps; {_DRIFT_NET}"),
    "drift_mmd": (12.0, "drifting, MMD witness field (bandwidths 0.05, 0.2, 0.8)",
                  f"2400 steps; {_DRIFT_NET}"),
    "drift_sinkhorn": (30.0, "drifting, Sinkhorn barycentric field (eps 0.1, <= 30 iters)",
                       f"2400 steps; {_DRIFT_NET}"),
    "drift_sw": (8.0, "drifting, sliced-W velocity (50 directions)", f"3200 steps; {_DRIFT_NET}"),
    "drift_critic": (15.0, "drifting, logistic critic (KL velocity)", f"2400 steps; {_DRIFT_NET}"),
}
# fmt: on

PEERS = [
    dict(peer="GWF code, KL-DV + JKO, 5 steps x 500 iterations", target="eight_gaussians", ours="jko_kl_dv",
         cpu="13-16 s",
         result="W2^2 / floor 4.4-4.9 (modes smeared into a ring)"),
    dict(peer="GWF code, the same without JKO (the GAN)", target="eight_gaussians", ours="fgan_kl",
         cpu="12-14 s",
         result="W2^2 / floor 6.5-12.5"),
    dict(peer="GWF code, MMD + JKO", target="eight_gaussians", ours="jko_mmd", cpu="65-73 s",
         result="W2^2 / floor 14.5-15.3"),
    dict(peer="S-JKO code, KL, README toy command", target="twenty_five_gaussians", ours="sjko", cpu="939 s",
         result="collapsed onto 9 and 7 of 25 modes (2 seeds)"),
    dict(peer="drifting toy demo, 2000 steps", target="checkerboard", ours="drift_algorithm2",
         cpu="about 212 s",
         result="W2^2 / floor 1.20"),
    dict(peer="drifting toy demo, 2000 steps", target="swiss_roll", ours="drift_algorithm2",
         cpu="about 212 s",
         result="W2^2 at the floor"),
]  # fmt: skip


def main() -> None:
    methods = {m: dict(budget_s=b, summary=s, settings=t) for m, (b, s, t) in NOMINAL.items()}
    path = DATA / "method_table.json"
    path.write_text(json.dumps(dict(methods=methods, peers=PEERS), indent=1) + "\n")
    print(f"wrote {path} ({len(methods)} methods, {len(PEERS)} peers)")


if __name__ == "__main__":
    main()
