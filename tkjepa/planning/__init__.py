"""Planning with the latent world model toward the thinker's subgoals (an extension beyond the paper's
experiments, after V-JEPA 2-AC).

state (the planner's latent state, actions, proprioception) → world_model (the action-conditioned predictor,
its play data and training) → subgoal (the head that turns the thinker's words into a subgoal latent z*) →
cem (the cross-entropy method over action sequences, the energy) → goals (one goal source per planning mode) →
plan (MPC episodes in the tabletop, their scores). Import submodules directly.
"""
