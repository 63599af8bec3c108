"""aero_verl: AERO (Adaptive Efficient Rollout Optimization, arXiv 2602.14338) for verl.

Layers, arrows pointing one way (each imports only the ones above it):
    aero_verl.core      the AERO mathematics and the step's order (numpy only, knows nothing of verl)
    aero_verl.verl_ext  the verl adapter: batches in and out (batches.py), the trainer subclass, the
                        estimator, settings checks, checkpoint state, evaluation, the plugin entry point
    aero_verl.main_ppo  the Hydra entry
Beside them: aero_verl.cpu (a CPU runtime for verl, only with VERL_PLATFORM=cpu), aero_verl.demo (the
embedded CPU tasks), aero_verl.data / rewards / eval (math data, math-verify reward, Pass@k).
"""

__version__ = "0.2.0"
