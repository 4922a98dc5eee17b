"""The learner: reward models, off-policy estimators, promotion rules and policy pull requests.

Library code, driven by the learner dataflow (``dataflows/``) and the CLI.
"""
